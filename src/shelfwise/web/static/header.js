// The header's search box on every page: completions from GET /v1/autocomplete as the shopper types.
// Needs dom.js; suggestions are option values (text), never markup.
"use strict";

let headerTimer = null;
function headerSuggest() {
  clearTimeout(headerTimer);
  headerTimer = setTimeout(async () => {
    const q = $("site-q").value.trim();
    if (!q) return;
    try {
      const resp = await fetch(`/v1/autocomplete?q=${encodeURIComponent(q)}&k=8`);
      if (!resp.ok) return;
      const out = await resp.json();
      fill($("site-suggestions"), out.suggestions.map((s) => el("option", { value: s })));
      $("site-suggestions").dataset.count = out.suggestions.length;
    } catch { /* suggestions are optional */ }
  }, 120);
}

document.addEventListener("DOMContentLoaded", () => {
  $("site-q")?.addEventListener("input", headerSuggest);
});
