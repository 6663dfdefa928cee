// Analytics dashboard: the live funnel explorer, and polling while the full report builds.
// Needs dom.js. Rows hold catalogue text (brands, categories): they go in as text nodes only.
"use strict";

function cell(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Math.abs(v) < 10 && !Number.isInteger(v) ? v.toFixed(3) : v.toLocaleString();
  return String(v);
}

async function getJson(url, options = {}) {
  const resp = await fetch(url, { credentials: "same-origin", ...options });
  if (resp.status === 401) {
    window.location.assign(`/sign-in?next=${encodeURIComponent(location.pathname)}`);
    throw new Error("signed out");
  }
  const data = resp.headers.get("content-type")?.includes("json") ? await resp.json() : { detail: await resp.text() };
  return { resp, data };
}

let funnelRequest = 0; // answers can arrive out of order: only the latest request's is shown

async function loadFunnel() {
  const mine = ++funnelRequest;
  const by = $("funnel-by").value;
  const top = $("funnel-top").value;
  const out = $("funnel-table");
  out.setAttribute("aria-busy", "true");
  const { resp, data } = await getJson(`/analytics/api/funnel?by=${encodeURIComponent(by)}&top=${encodeURIComponent(top)}`);
  if (mine !== funnelRequest) return;
  if (!resp.ok) {
    out.textContent = typeof data.detail === "string" ? data.detail : "error";
    return;
  }
  const table = el("table", {},
    el("tr", {}, data.columns.map((c) => el("th", {}, c))),
    data.rows.map((r) => el("tr", {}, r.map((v) => el("td", {}, cell(v))))));
  fill(out, table, el("p", { class: "note" }, `${data.rows.length} rows in ${data.seconds} s`));
  out.setAttribute("aria-busy", "false");
  $("funnel-chart").src = `/analytics/chart/funnel.svg?by=${encodeURIComponent(by)}&top=${encodeURIComponent(top)}`;
}

async function pollReport() {
  const status = $("report-status");
  if (!status || status.dataset.status !== "building") return;
  const { data } = await getJson("/analytics/api/report");
  if (data.status === "building") {
    setTimeout(pollReport, 2000);
  } else {
    window.location.reload();
  }
}

// When the headline is computed the page offers to show it; it never reloads itself under the hands of
// someone exploring the funnel (a reload would drop what they chose).
async function waitForHeadline() {
  const pending = $("headline-pending");
  if (!pending) return;
  const { resp } = await getJson("/analytics/api/headline"); // answers when it is computed
  if (!resp.ok) { setTimeout(waitForHeadline, 5000); return; }
  pending.dataset.status = "ready";
  fill(pending, "The headline is ready: ", el("a", { href: location.pathname, id: "headline-show" }, "show it"), ".");
}

async function pollForecast() {
  const status = $("forecast-status");
  if (!status || status.dataset.status !== "building") return;
  const { data } = await getJson("/analytics/api/forecast");
  if (data.status === "building") {
    setTimeout(pollForecast, 3000);
  } else {
    window.location.reload();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.page === "forecast") {
    $("forecast-rebuild").addEventListener("click", async () => {
      const { resp, data } = await getJson("/analytics/api/forecast/rebuild", { method: "POST", headers: { "X-CSRF-Token": csrfToken() } });
      if (!resp.ok) { $("forecast-status").textContent = typeof data.detail === "string" ? data.detail : "refused"; return; }
      window.location.reload();
    });
    pollForecast();
    return;
  }
  for (const id of ["funnel-by", "funnel-top"]) $(id).addEventListener("change", loadFunnel);
  $("rebuild").addEventListener("click", async () => {
    const { resp, data } = await getJson("/analytics/api/rebuild", { method: "POST", headers: { "X-CSRF-Token": csrfToken() } });
    if (!resp.ok) { $("report-status").textContent = typeof data.detail === "string" ? data.detail : "refused"; return; }
    window.location.reload();
  });
  loadFunnel();
  pollReport();
  waitForHeadline();
});
