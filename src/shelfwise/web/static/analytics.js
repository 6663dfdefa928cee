// Analytics dashboard: the live funnel explorer, and polling while the full report builds.
"use strict";

function cell(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Math.abs(v) < 10 && !Number.isInteger(v) ? v.toFixed(3) : v.toLocaleString();
  return String(v);
}

async function loadFunnel() {
  const by = document.getElementById("funnel-by").value;
  const top = document.getElementById("funnel-top").value;
  const out = document.getElementById("funnel-table");
  const chart = document.getElementById("funnel-chart");
  out.setAttribute("aria-busy", "true");
  const resp = await fetch(`/analytics/api/funnel?by=${encodeURIComponent(by)}&top=${encodeURIComponent(top)}`);
  const data = await resp.json();
  if (!resp.ok) {
    out.textContent = data.detail || "error";
    return;
  }
  const head = "<tr>" + data.columns.map((c) => `<th>${c}</th>`).join("") + "</tr>";
  const rows = data.rows.map((r) => "<tr>" + r.map((v) => `<td>${cell(v)}</td>`).join("") + "</tr>").join("");
  out.innerHTML = `<table>${head}${rows}</table><p class="note">${data.rows.length} rows in ${data.seconds} s</p>`;
  out.setAttribute("aria-busy", "false");
  chart.src = `/analytics/chart/funnel.svg?by=${encodeURIComponent(by)}&top=${encodeURIComponent(top)}`;
}

async function pollReport() {
  const status = document.getElementById("report-status");
  if (!status || status.dataset.status !== "building") return;
  const resp = await fetch("/analytics/api/report");
  const data = await resp.json();
  if (data.status === "building") {
    setTimeout(pollReport, 2000);
  } else {
    window.location.reload();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const id of ["funnel-by", "funnel-top"]) {
    document.getElementById(id).addEventListener("change", loadFunnel);
  }
  document.getElementById("rebuild").addEventListener("click", async () => {
    await fetch("/analytics/api/rebuild", { method: "POST" });
    window.location.reload();
  });
  loadFunnel();
  pollReport();
});
