// The merchant page: placements and their rules, edited as JSON and saved with the session's CSRF
// token. Needs dom.js; everything from the service is shown as text.
"use strict";

let merchantData = null;

async function merchantCall(path, options = {}) {
  const resp = await fetch(path, options);
  const body = await resp.json();
  if (!resp.ok) {
    const d = body.detail;
    throw new Error(Array.isArray(d) ? d.map((p) => `${p.field}: ${p.message}`).join("; ") : String(d));
  }
  return body;
}

function showRules() {
  const name = $("rules-placement").value;
  const p = merchantData.placements.find((x) => x.name === name);
  $("rules-json").value = JSON.stringify(p ? p.rules : { rules: [] }, null, 2);
}

async function loadPlacements() {
  try { merchantData = await merchantCall("/merchant/api/placements"); } catch (e) {
    $("merchant-status").textContent = `error: ${e.message}`; return;
  }
  const table = $("placements");
  table.querySelectorAll("tr[data-placement]").forEach((r) => r.remove());
  append(table, merchantData.placements.map((p) => el("tr", { dataset: { placement: p.name } },
    el("td", {}, p.name), el("td", {}, p.source), el("td", {}, String(p.k)), el("td", {}, String(p.version)),
    el("td", { class: "rules" }, p.rules.rules.map((r) => r.name || r.kind).join(", ") || "none"))));
  const chosen = $("rules-placement").value || "home";
  fill($("rules-placement"), merchantData.placements.map((p) => el("option", { value: p.name }, p.name)));
  $("rules-placement").value = chosen;
  showRules();
  $("search-settings").textContent = JSON.stringify(merchantData.search, null, 2);
}

async function saveRules(ev) {
  ev.preventDefault();
  const name = $("rules-placement").value;
  let body;
  try { body = JSON.parse($("rules-json").value); } catch (e) {
    $("merchant-status").textContent = `not JSON: ${e.message}`; return;
  }
  try {
    const out = await merchantCall(`/merchant/api/placements/${encodeURIComponent(name)}/rules`, {
      method: "POST",
      headers: { "content-type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body),
    });
    $("merchant-status").textContent = `saved ${name} version ${out.version}`;
  } catch (e) { $("merchant-status").textContent = `refused: ${e.message}`; }
  loadPlacements();
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.page !== "merchant") return;
  $("rules-placement").addEventListener("change", showRules);
  $("rules-form").addEventListener("submit", saveRules);
  loadPlacements();
});
