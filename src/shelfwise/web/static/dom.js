// Building page content from data without ever parsing data as HTML: every string from the API
// (titles, brands, categories, reasons, report rows) becomes a text node, never markup.
"use strict";

const $ = (id) => document.getElementById(id);

/** An element: el("a", { href: "/p/1", class: "x", dataset: { item: "1" } }, "text", child, ...).
 * Strings become text nodes; null/undefined/false children are skipped; arrays are flattened. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) throw new Error("no event handler attributes; use addEventListener");
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Replace everything inside ``node`` with ``children``. */
function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** The CSRF token of this page's signed-in session (a meta tag the server renders), or "". */
function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content || "";
}
