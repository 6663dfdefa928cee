// Storefront pages: everything they show comes from the same JSON API a shop's front end calls.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

async function api(path, options = {}) {
  const resp = await fetch(path, options);
  const body = resp.headers.get("content-type")?.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) throw new Error(typeof body === "string" ? body : JSON.stringify(body.detail ?? body));
  return body;
}

function cartItems() {
  try { return JSON.parse(localStorage.getItem("shelfwise-cart") || "[]"); } catch { return []; }
}
function saveCart(items) { localStorage.setItem("shelfwise-cart", JSON.stringify(items)); }

function itemCard(it) {
  const price = it.price != null ? `<span class="price">${Number(it.price).toFixed(2)}</span>` : "";
  const brand = it.brand ? ` · ${esc(it.brand)}` : "";
  return `<div class="item" data-item="${esc(it.item_id)}">
    <a href="/p/${encodeURIComponent(it.item_id)}">${esc(it.title || it.item_id)}</a>
    <div class="note">${esc(it.category || "")}${brand} ${price}</div>
    <div class="why" title="why recommended">${esc(it.reason || "")}</div></div>`;
}

function showItems(el, items, empty = "Nothing to show yet.") {
  el.innerHTML = items.length ? items.map(itemCard).join("") : `<p class="note">${esc(empty)}</p>`;
}

// --- home -------------------------------------------------------------------------------------
async function home() {
  const user = $("recs").dataset.user;
  const path = user ? `/v1/users/${encodeURIComponent(user)}/recommendations?k=12&scenario=home` : "/v1/users/_anonymous/recommendations?k=12&scenario=home";
  try {
    const out = await api(path);
    $("rec-meta").textContent = `model ${out.model_version} · ${out.source}${out.cached ? " · cached" : ""}`;
    showItems($("recs"), out.items);
  } catch (e) { $("rec-meta").textContent = `error: ${e.message}`; }
}

// --- search -----------------------------------------------------------------------------------
const searchState = { page: 1, category: null, brand: [], price_min: null, price_max: null, available: null };

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
  history.replaceState(null, "", `/search?${params}`);
  let out;
  try { out = await api(`/v1/search?${params}`); } catch (e) { $("search-meta").textContent = `error: ${e.message}`; return; }
  $("corrected").innerHTML = out.showing_results_for
    ? `Showing results for <b id="corrected-query">${esc(out.showing_results_for)}</b> (you typed “${esc(q)}”)` : "";
  $("search-meta").textContent = `${out.total} results · ${out.took_ms} ms · index ${out.model_version}${out.personalised ? " · personalised" : ""}`;
  showItems($("results"), out.hits, "No results.");
  renderFacets(out.facets);
  const pages = Math.ceil(out.total / out.size);
  $("pager").innerHTML = pages > 1 ? Array.from({ length: Math.min(pages, 10) }, (_, i) =>
    `<button class="${i + 1 === out.page ? "" : "plain"}" data-page="${i + 1}">${i + 1}</button>`).join(" ") : "";
  for (const b of $("pager").querySelectorAll("button")) {
    b.addEventListener("click", () => { searchState.page = Number(b.dataset.page); runSearch(); });
  }
}

function renderFacets(facets) {
  const box = $("facets");
  const part = (name, values, pick) => values && values.length ? `<div class="card"><b>${esc(name)}</b>` +
    values.map((v, i) => `<div><a href="#" class="facet" data-facet="${esc(name)}" data-i="${i}">${esc(v.value)}</a> <span class="note">${v.count}</span></div>`).join("") + "</div>" : "";
  box.innerHTML = part("category", facets.category) + part("brand", facets.brand) + part("price", facets.price) + part("availability", facets.availability);
  const active = [];
  if (searchState.category) active.push(`category: ${esc(searchState.category)}`);
  for (const b of searchState.brand) active.push(`brand: ${esc(b)}`);
  if (searchState.price_min != null || searchState.price_max != null) active.push(`price: ${searchState.price_min ?? ""}–${searchState.price_max ?? ""}`);
  if (searchState.available != null) active.push(searchState.available ? "in stock" : "out of stock");
  if (active.length) box.insertAdjacentHTML("afterbegin", `<div class="card" id="active-filters">${active.join("<br>")} <button class="plain" id="clear-filters">clear</button></div>`);
  $("clear-filters")?.addEventListener("click", () => { Object.assign(searchState, { page: 1, category: null, brand: [], price_min: null, price_max: null, available: null }); runSearch(); });
  for (const a of box.querySelectorAll("a.facet")) {
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      const v = facets[a.dataset.facet][Number(a.dataset.i)];
      if (a.dataset.facet === "category") searchState.category = v.value;
      if (a.dataset.facet === "brand") searchState.brand = [v.value];
      if (a.dataset.facet === "price") { searchState.price_min = v.min; searchState.price_max = v.max; }
      if (a.dataset.facet === "availability") searchState.available = v.value === "in stock";
      searchState.page = 1;
      runSearch();
    });
  }
}

let suggestTimer = null;
function suggest() {
  clearTimeout(suggestTimer);
  suggestTimer = setTimeout(async () => {
    const q = $("q").value.trim();
    if (!q) return;
    try {
      const out = await api(`/v1/autocomplete?q=${encodeURIComponent(q)}&k=8`);
      $("suggestions").innerHTML = out.suggestions.map((s) => `<option value="${esc(s)}">`).join("");
      $("suggestions").dataset.count = out.suggestions.length;
    } catch { /* suggestions are optional */ }
  }, 120);
}

function searchPage() {
  const params = new URLSearchParams(location.search);
  searchState.category = params.get("category");
  searchState.brand = params.getAll("brand");
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
    const bits = [it.category, it.brand, it.price != null ? `price ${Number(it.price).toFixed(2)}` : null, it.available ? "in stock" : "out of stock"];
    $("details").textContent = bits.filter(Boolean).join(" · ");
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
  $("cart-items").innerHTML = items.length ? items.map((i) => `<div><a href="/p/${encodeURIComponent(i)}">${esc(i)}</a></div>`).join("") : "<p class=note>The cart is empty.</p>";
  $("clear-cart").addEventListener("click", () => { saveCart([]); location.reload(); });
  if (!items.length) return;
  try {
    const out = await api("/v1/cart/recommendations", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ items, k: 8 }) });
    $("bundle-meta").textContent = `model ${out.model_version} · ${out.source}`;
    showItems($("bundle"), out.items);
  } catch (e) { $("bundle-meta").textContent = `error: ${e.message}`; }
}

// --- operations -------------------------------------------------------------------------------
function adminHeaders() { return { "X-API-Key": sessionStorage.getItem("shelfwise-admin-key") || "" }; }

async function loadVersions() {
  let out;
  try { out = await api("/v1/admin/models", { headers: adminHeaders() }); } catch (e) { $("ops-status").textContent = `error: ${e.message}`; return; }
  $("active").textContent = out.active || "none";
  const rows = out.versions.map((v) => {
    const m = v.metrics || {};
    const w = v.data_window || {};
    const fmt = (x) => (typeof x === "number" ? x.toFixed(4) : "");
    const button = v.active ? "<b>active</b>" : `<button class="plain activate" data-version="${esc(v.version)}">activate</button>`;
    return `<tr data-version="${esc(v.version)}"><td>${esc(v.version)}</td><td>${esc(v.model)}</td><td>${esc(v.created_at)}</td><td>${fmt(m["ndcg@10"])}</td><td>${fmt(m["recall@10"])}</td><td class="note">${esc(w.start ?? w.min_ts ?? "")} – ${esc(w.end ?? w.max_ts ?? "")}</td><td>${button}</td></tr>`;
  });
  const table = $("versions");
  table.querySelectorAll("tr[data-version]").forEach((r) => r.remove());
  table.insertAdjacentHTML("beforeend", rows.join(""));
  for (const b of table.querySelectorAll("button.activate")) {
    b.addEventListener("click", () => admin(`/v1/admin/models/${encodeURIComponent(b.dataset.version)}/activate`));
  }
}

async function admin(path) {
  try {
    const out = await api(path, { method: "POST", headers: adminHeaders() });
    $("ops-status").textContent = `active ${out.active} (was ${out.previous}) in ${(out.seconds * 1000).toFixed(1)} ms`;
  } catch (e) { $("ops-status").textContent = `error: ${e.message}`; }
  loadVersions();
}

function opsPage() {
  $("api-key").value = sessionStorage.getItem("shelfwise-admin-key") || "";
  $("key-form").addEventListener("submit", (ev) => { ev.preventDefault(); sessionStorage.setItem("shelfwise-admin-key", $("api-key").value); loadVersions(); });
  $("rollback").addEventListener("click", () => admin("/v1/admin/rollback"));
  loadVersions();
}

document.addEventListener("DOMContentLoaded", () => {
  const pages = { home, search: searchPage, product: productPage, cart: cartPage, ops: opsPage };
  pages[document.body.dataset.page]?.();
});
