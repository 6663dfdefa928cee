// Storefront pages: everything they show comes from the same JSON API a shop's front end calls.
// Needs dom.js: data from the API is only ever put into the page as text nodes, never parsed as HTML.
"use strict";

// --- the shopper's token ----------------------------------------------------------------------
// Personal answers (a shopper's recommendations, personalised search) need that shopper's token:
// the demo signs in by shopper id (POST /v1/demo/sign-in, on when SHELFWISE_DEMO_USERS lists the
// id) and gets a short-lived token scoped to that one shopper. A real shop's back end would get it
// from POST /v1/tokens with its write key after its own login. The token (never an API key) lives
// in this page's memory only, never in storage, and is sent as `Authorization: Bearer`.
let shopper = null; // { user_id, token, expires_at }

function forgetToken() { shopper = null; }

/** A token for ``user``: the one this page holds, or a fresh demo sign-in. Throws with the API's reason. */
async function shopperToken(user) {
  if (shopper && shopper.user_id === user && shopper.expires_at * 1000 > Date.now() + 30_000) return shopper.token;
  forgetToken();
  const out = await api("/v1/demo/sign-in", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: user }),
  });
  shopper = { user_id: user, token: out.token, expires_at: out.expires_at };
  return out.token;
}

/** Options for a personal call as ``user`` (signed in by shopper id); none without a user. */
async function asShopper(user, options = {}) {
  if (!user) return options;
  const token = await shopperToken(user);
  return { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${token}` } };
}

async function api(path, options = {}) {
  const resp = await fetch(path, options);
  // a token the service no longer accepts (expired, key rotated): forget it; the next call signs in again
  if (resp.status === 401 && options.headers?.Authorization) forgetToken();
  const body = resp.headers.get("content-type")?.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) {
    const detail = typeof body === "string" ? body : body.detail ?? body;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return body;
}

function cartItems() {
  try { return JSON.parse(localStorage.getItem("shelfwise-cart") || "[]"); } catch { return []; }
}
function saveCart(items) { localStorage.setItem("shelfwise-cart", JSON.stringify(items)); }

function money(price, currency) {
  if (price == null) return null;
  const n = Number(price);
  try {
    if (currency) return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(n);
  } catch { /* an unknown currency code: plain number below */ }
  return n.toFixed(2);
}

function itemCard(it) {
  const available = it.available === undefined || it.available === null ? null : Boolean(it.available);
  const price = money(it.price, it.currency);
  return el("div", { class: "item", dataset: { item: it.item_id } },
    el("div", { class: "picture", "aria-hidden": "true" }),
    el("a", { href: `/p/${encodeURIComponent(it.item_id)}` }, it.title || it.item_id),
    el("div", { class: "meta" },
      price ? el("span", { class: "price" }, price) : el("span", { class: "note" }, "no price"),
      it.category ? el("span", { class: "category" }, it.category) : null,
      it.brand ? el("span", { class: "brand" }, it.brand) : null,
      available === null ? null
        : el("span", { class: available ? "in availability" : "out availability" }, available ? "in stock" : "out of stock")),
    el("div", { class: "why", title: "why this item" }, it.reason || ""));
}

function showItems(node, items, empty = "Nothing to show yet.") {
  fill(node, items.length ? items.map(itemCard) : el("p", { class: "note" }, empty));
}

// --- home -------------------------------------------------------------------------------------
/** Popular items for nobody in particular (no credential). A service from before the anonymous
 * route answers 404 there; it served the same list under the shopper id "_anonymous". */
async function popular() {
  try {
    return await api("/v1/recommendations?k=12&scenario=home");
  } catch (e) {
    if (!/not found/i.test(e.message)) throw e;
    return api("/v1/users/_anonymous/recommendations?k=12&scenario=home");
  }
}

async function home() {
  let user = $("recs").dataset.user;
  let options = {};
  if (user) {
    try {
      options = await asShopper(user);
      $("signed-in").textContent = `signed in as shopper ${user}`;
    } catch (e) {
      $("signed-in").textContent = `could not sign in as ${user}: ${e.message}; showing popular items`;
      user = "";
    }
  }
  try {
    const out = user
      ? await api(`/v1/users/${encodeURIComponent(user)}/recommendations?k=12&scenario=home`, options)
      : await popular();
    $("rec-meta").textContent = `model ${out.model_version} · ${out.source}${out.cached ? " · cached" : ""}`;
    showItems($("recs"), out.items);
  } catch (e) { $("rec-meta").textContent = `error: ${e.message}`; }
}

// --- search -----------------------------------------------------------------------------------
const searchState = { page: 1, category: null, brand: [], price_min: null, price_max: null, available: null, attributes: [] };

async function runSearch() {
  const q = $("q").value.trim();
  if (!q) return;
  const params = new URLSearchParams({ q, page: searchState.page, size: 12, sort: $("sort").value });
  const user = $("user").value.trim();
  if (user) params.set("user_id", user);
  if (searchState.category) params.set("category", searchState.category);
  for (const b of searchState.brand) params.append("brand", b);
  if (searchState.price_min != null) params.set("price_min", searchState.price_min);
  if (searchState.price_max != null) params.set("price_max", searchState.price_max);
  if (searchState.available != null) params.set("available", searchState.available);
  for (const a of searchState.attributes) params.append("attribute", a);
  history.replaceState(null, "", `/search?${params}`);
  let out;
  let options = {};
  let signInNote = "";
  try { options = await asShopper(user); } catch (e) {
    params.delete("user_id"); // search anyway, without personalisation, and say why
    signInNote = ` · not personalised (could not sign in as ${user}: ${e.message})`;
  }
  try { out = await api(`/v1/search?${params}`, options); } catch (e) { $("search-meta").textContent = `error: ${e.message}`; return; }
  if (out.redirect) {
    fill($("redirect"), "This search has its own page: ", el("a", { href: out.redirect, id: "redirect-link" }, out.redirect));
    fill($("results"));
    fill($("facets"));
    $("search-meta").textContent = "";
    return;
  }
  fill($("redirect"));
  fill($("corrected"), out.showing_results_for
    ? ["Showing results for ", el("b", { id: "corrected-query" }, out.showing_results_for), ` (you typed “${q}”)`] : []);
  $("search-meta").textContent = `${out.total} results · ${out.took_ms} ms · index ${out.model_version}${out.personalised ? " · personalised" : ""}${signInNote}`;
  showItems($("results"), out.hits, "No results.");
  renderFacets(out.facets);
  const pages = Math.ceil(out.total / out.size);
  fill($("pager"), pages > 1 ? Array.from({ length: Math.min(pages, 10) }, (_, i) => {
    const b = el("button", { class: i + 1 === out.page ? "" : "plain", dataset: { page: i + 1 } }, String(i + 1));
    b.addEventListener("click", () => { searchState.page = i + 1; runSearch(); });
    return [b, " "];
  }) : []);
}

function renderFacets(facets) {
  const box = $("facets");
  const pick = (name, v) => {
    if (name === "category") searchState.category = v.value;
    if (name === "brand") searchState.brand = [v.value];
    if (name === "price") { searchState.price_min = v.min; searchState.price_max = v.max; }
    if (name === "availability") searchState.available = v.value === "in stock";
    if (!["category", "brand", "price", "availability"].includes(name)) searchState.attributes = [`${name}:${v.value}`];
    searchState.page = 1;
    runSearch();
  };
  const part = (name) => {
    const values = facets[name];
    if (!values || !values.length) return null;
    return el("div", { class: "card" }, el("b", {}, name), values.map((v) => {
      const a = el("a", { href: "#", class: "facet", dataset: { facet: name } }, String(v.value));
      a.addEventListener("click", (ev) => { ev.preventDefault(); pick(name, v); });
      return el("div", {}, a, " ", el("span", { class: "note" }, String(v.count)));
    }));
  };
  const active = [];
  if (searchState.category) active.push(`category: ${searchState.category}`);
  for (const b of searchState.brand) active.push(`brand: ${b}`);
  if (searchState.price_min != null || searchState.price_max != null) active.push(`price: ${searchState.price_min ?? ""}–${searchState.price_max ?? ""}`);
  if (searchState.available != null) active.push(searchState.available ? "in stock" : "out of stock");
  for (const a of searchState.attributes) active.push(a.replace(":", ": "));
  let filters = null;
  if (active.length) {
    const clear = el("button", { class: "plain", id: "clear-filters" }, "clear");
    clear.addEventListener("click", () => { Object.assign(searchState, { page: 1, category: null, brand: [], price_min: null, price_max: null, available: null, attributes: [] }); runSearch(); });
    filters = el("div", { class: "card", id: "active-filters" }, active.map((a, i) => [i ? el("br") : null, a]), " ", clear);
  }
  const known = ["category", "brand", "price", "availability"];
  const more = Object.keys(facets).filter((n) => !known.includes(n));
  fill(box, filters, [...known, ...more].map(part));
}

let suggestTimer = null;
function suggest() {
  clearTimeout(suggestTimer);
  suggestTimer = setTimeout(async () => {
    const q = $("q").value.trim();
    if (!q) return;
    try {
      const out = await api(`/v1/autocomplete?q=${encodeURIComponent(q)}&k=8`);
      fill($("suggestions"), out.suggestions.map((s) => el("option", { value: s })));
      $("suggestions").dataset.count = out.suggestions.length;
    } catch { /* suggestions are optional */ }
  }, 120);
}

function searchPage() {
  const params = new URLSearchParams(location.search);
  searchState.category = params.get("category");
  searchState.brand = params.getAll("brand");
  searchState.attributes = params.getAll("attribute");
  if (params.get("sort")) $("sort").value = params.get("sort");
  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); searchState.page = 1; runSearch(); });
  $("q").addEventListener("input", suggest);
  $("sort").addEventListener("change", () => { searchState.page = 1; runSearch(); });
  if ($("q").value) runSearch();
}

// --- product ----------------------------------------------------------------------------------
async function productPage() {
  const id = $("product").dataset.item;
  try {
    const it = await api(`/v1/items/${encodeURIComponent(id)}`);
    $("title").textContent = it.title || it.item_id;
    document.title = `${it.title || it.item_id} · shelfwise`;
    $("price").textContent = money(it.price, it.currency) || "no price";
    const bits = [it.category, it.brand, it.available ? "in stock" : "out of stock"];
    $("details").textContent = bits.filter(Boolean).join(" · ");
    const attrs = Object.entries(it.attributes || {})
      .filter(([k, v]) => k !== "annotated" && (typeof v === "string" || typeof v === "number"));
    fill($("attributes"), attrs.map(([k, v]) => [el("dt", {}, k.replaceAll("_", " ")), el("dd", { dataset: { attribute: k } }, String(v))]));
  } catch (e) { $("details").textContent = `error: ${e.message}`; }
  $("add-to-cart").addEventListener("click", () => {
    const items = cartItems();
    if (!items.includes(id)) items.push(id);
    saveCart(items);
    $("added").textContent = `in your cart (${items.length} items)`;
  });
  const [similar, together] = await Promise.allSettled([
    api(`/v1/items/${encodeURIComponent(id)}/similar?k=8`),
    api(`/v1/items/${encodeURIComponent(id)}/bought-together?k=8`),
  ]);
  if (similar.status === "fulfilled") showItems($("similar"), similar.value.items);
  if (together.status === "fulfilled") showItems($("together"), together.value.items, "No bundles for this item yet.");
}

// --- cart -------------------------------------------------------------------------------------
async function cartPage() {
  const items = cartItems();
  fill($("cart-items"), items.length ? items.map((i) => el("div", {}, el("a", { href: `/p/${encodeURIComponent(i)}` }, i))) : el("p", { class: "note" }, "The cart is empty."));
  $("clear-cart").addEventListener("click", () => { saveCart([]); location.reload(); });
  if (!items.length) return;
  try {
    const out = await api("/v1/cart/recommendations", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ items, k: 8 }) });
    $("bundle-meta").textContent = `model ${out.model_version} · ${out.source}`;
    showItems($("bundle"), out.items);
  } catch (e) { $("bundle-meta").textContent = `error: ${e.message}`; }
}

// --- operations -------------------------------------------------------------------------------
// The page is signed in by a session cookie (HttpOnly: no script here can read it); every POST
// carries the session's CSRF token. No key is kept in the browser.
function adminPost() { return { method: "POST", headers: { "X-CSRF-Token": csrfToken() } }; }

async function loadVersions() {
  let out;
  try { out = await api("/ops/api/models"); } catch (e) { $("ops-status").textContent = `error: ${e.message}`; return; }
  $("active").textContent = out.active || "none";
  const rows = out.versions.map((v) => {
    const m = v.metrics || {};
    const w = v.data_window || {};
    const fmt = (x) => (typeof x === "number" ? x.toFixed(4) : "");
    let button = el("b", {}, "active");
    if (!v.active) {
      button = el("button", { class: "plain activate", dataset: { version: v.version } }, "activate");
      button.addEventListener("click", () => admin(`/ops/api/models/${encodeURIComponent(v.version)}/activate`));
    }
    return el("tr", { dataset: { version: v.version } },
      el("td", {}, v.version), el("td", {}, v.model), el("td", {}, v.created_at),
      el("td", {}, fmt(m["ndcg@10"])), el("td", {}, fmt(m["recall@10"])),
      el("td", { class: "note" }, `${w.start ?? w.min_ts ?? ""} – ${w.end ?? w.max_ts ?? ""}`), el("td", {}, button));
  });
  const table = $("versions");
  table.querySelectorAll("tr[data-version]").forEach((r) => r.remove());
  append(table, rows);
  showSelection(out.selection);
}

function showSelection(sel) {
  const table = $("selection");
  table.querySelectorAll("tr[data-candidate]").forEach((r) => r.remove());
  if (!sel) return;
  $("selection-reason").textContent = `${sel.reason} (p99 budget ${sel.budget_ms} ms, ${sel.at})`;
  append(table, sel.candidates.map((c) => el("tr", { dataset: { candidate: c.model } },
    el("td", {}, c.model), el("td", {}, c.version), el("td", {}, c.metric.toFixed(4)),
    el("td", {}, c.p50_ms.toFixed(2)), el("td", {}, c.p99_ms.toFixed(2)),
    el("td", {}, c.within_budget ? "yes" : "no"), el("td", {}, String(c.train_seconds)))));
}

async function admin(path) {
  try {
    const out = await api(path, adminPost());
    $("ops-status").textContent = `active ${out.active} (was ${out.previous}) in ${(out.seconds * 1000).toFixed(1)} ms`;
  } catch (e) { $("ops-status").textContent = `error: ${e.message}`; }
  loadVersions();
}

function opsPage() {
  $("rollback").addEventListener("click", () => admin("/ops/api/rollback"));
  loadVersions();
}

document.addEventListener("DOMContentLoaded", () => {
  const pages = { home, search: searchPage, product: productPage, cart: cartPage, ops: opsPage };
  pages[document.body.dataset.page]?.();
});
