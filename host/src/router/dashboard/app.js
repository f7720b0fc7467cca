// pactown's dashboard: everything from this page's own origin (see its Content-Security-Policy).
// Text from services (logs, names, errors) is only ever set as textContent.
"use strict";

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
};
const svg = (tag, attrs = {}) => {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};

async function get(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

let graph = { services: [], actions: false };
let previous = null;
const MAX_LINES = 500;

function rates(now, stats) {
  const out = {};
  for (const s of stats.services) {
    const before = previous && previous.stats.services.find((p) => p.service === s.service);
    const dt = previous ? (now - previous.at) / 1000 : 0;
    if (!before || dt <= 0) {
      out[s.service] = { rps: null, eps: null, latency: s.requests ? s.latency_sum_us / s.requests / 1000 : null };
      continue;
    }
    const n = s.requests - before.requests;
    out[s.service] = {
      rps: n / dt,
      eps: (s.errors - before.errors) / dt,
      latency: n > 0 ? (s.latency_sum_us - before.latency_sum_us) / n / 1000 : null,
    };
  }
  return out;
}

const fmt = (v, digits = 1) => (v === null || v === undefined ? "–" : v.toFixed(digits));

function renderServices(status, r) {
  const body = $("#services tbody");
  const rows = [];
  for (const s of status.services) {
    const ready = s.replicas.filter((x) => x.state === "ready").length;
    const link = s.port
      ? el("a", { href: `http://${s.name}.localhost:${location.port}/`, text: s.name })
      : document.createTextNode(s.name);
    const m = r[s.name] || {};
    const actions = el("td");
    if (graph.actions) {
      const b = el("button", { type: "button", text: "restart" });
      b.addEventListener("click", () => restart(s.name, b));
      actions.append(b);
    }
    const row = el(
      "tr",
      { class: `row-${s.state}`, "data-service": s.name, "data-state": s.state },
      el("td", {}, link),
      el("td", { text: s.kind }),
      el("td", { text: s.sandbox }),
      el("td", { class: `state state-${s.state}`, text: s.state }),
      el("td", { class: "num", text: `${ready}/${s.replicas.length}` }),
      el("td", { class: "num", text: String(s.restarts) }),
      el("td", { class: "num", text: s.port ? String(s.port) : "–" }),
      el("td", { class: "num", text: fmt(m.rps) }),
      el("td", { class: "num", text: fmt(m.eps) }),
      el("td", { class: "num", text: m.latency === null || m.latency === undefined ? "–" : `${fmt(m.latency, 2)} ms` }),
      actions,
    );
    rows.push(row);
  }
  body.replaceChildren(...rows);
  const ready = status.services.filter((s) => s.state === "ready").length;
  $("#summary").textContent = `${ready} of ${status.services.length} ready`;
}

function renderGraph(status) {
  const g = $("#graph");
  const state = Object.fromEntries(status.services.map((s) => [s.name, s.state]));
  const deps = Object.fromEntries(graph.services.map((s) => [s.name, s.depends_on]));
  const depth = {};
  const level = (n, seen = new Set()) => {
    if (depth[n] !== undefined) return depth[n];
    if (seen.has(n)) return 0;
    seen.add(n);
    const d = (deps[n] || []).filter((x) => x in deps);
    depth[n] = d.length ? 1 + Math.max(...d.map((x) => level(x, seen))) : 0;
    return depth[n];
  };
  const columns = [];
  for (const s of graph.services) (columns[level(s.name)] ||= []).push(s.name);
  const W = 120, H = 30, gapX = 50, gapY = 16;
  const pos = {};
  columns.forEach((names, c) => names.forEach((n, i) => (pos[n] = { x: 10 + c * (W + gapX), y: 10 + i * (H + gapY) })));
  const width = 20 + columns.length * (W + gapX);
  const height = 20 + Math.max(1, ...columns.map((c) => c.length)) * (H + gapY);
  g.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "6", markerHeight: "6", orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#59636e" }));
  defs.append(marker);
  const items = [defs];
  for (const s of graph.services) {
    for (const d of s.depends_on) {
      if (!pos[d]) continue;
      items.push(svg("line", { x1: pos[s.name].x, y1: pos[s.name].y + H / 2, x2: pos[d].x + W, y2: pos[d].y + H / 2 }));
    }
  }
  for (const s of graph.services) {
    const node = svg("g", { class: `node state-${state[s.name] || "stopped"}`, "data-service": s.name });
    node.append(svg("rect", { x: pos[s.name].x, y: pos[s.name].y, width: W, height: H }));
    const t = svg("text", { x: pos[s.name].x + 8, y: pos[s.name].y + 19 });
    t.textContent = s.name;
    node.append(t);
    items.push(node);
  }
  g.replaceChildren(...items);
}

async function restart(name, button) {
  button.disabled = true;
  try {
    const r = await fetch(`/_pactown/actions/restart/${encodeURIComponent(name)}`, { method: "POST", headers: { "x-pactown-action": "1" } });
    button.textContent = r.ok ? "restarted" : "failed";
  } finally {
    setTimeout(() => { button.disabled = false; button.textContent = "restart"; }, 2000);
  }
}

async function refresh() {
  try {
    const [status, stats] = await Promise.all([get("/_pactown/services"), get("/_pactown/stats")]);
    const now = Date.now();
    renderServices(status, rates(now, stats));
    renderGraph(status);
    previous = { at: now, stats };
    document.body.dataset.live = "yes";
  } catch (e) {
    document.body.dataset.live = "no";
    $("#summary").textContent = `pactown is not answering (${e.message})`;
    for (const row of document.querySelectorAll("#services tbody tr")) {
      row.className = "row-stopped";
      row.dataset.state = "stopped";
    }
  }
}

async function refreshAnomalies() {
  try {
    const { anomalies } = await get("/_pactown/anomalies");
    const list = $("#anomalies");
    if (!anomalies.length) return list.replaceChildren(el("li", { class: "empty", text: "none" }));
    list.replaceChildren(...anomalies.slice(-50).reverse().map((a) => el("li", { text: `${a.ts || a.time || ""} ${a.service}: ${a.action} ${a.target} ${a.detail || ""}` })));
  } catch (_) {}
}

async function refreshJobs() {
  try {
    const { job_controls } = await get("/_pactown/jobs");
    if (!job_controls.length) return;
    $("#jobs-section").hidden = false;
    const out = [];
    for (const jc of job_controls) {
      for (const j of jc.jobs) {
        const steps = el("div", { class: "steps" });
        for (const s of j.steps || []) {
          const step = el("div", { class: "step" }, el("strong", { text: s.name }), document.createTextNode(" "));
          for (const t of s.tasks) step.append(el("span", { class: `task state-${t.status}`, text: `${t.name}: ${t.status}` }));
          steps.append(step);
        }
        out.push(el("div", { class: "job", "data-job": j.id },
          el("span", { class: `state state-${j.status}`, text: j.status }),
          document.createTextNode(` ${j.name} ${j.id} (${jc.service})`),
          steps));
      }
    }
    $("#jobs").replaceChildren(...out);
  } catch (_) {}
}

let source = null;
function follow() {
  if (source) source.close();
  const service = $("#log-service").value;
  $("#logs").replaceChildren();
  source = new EventSource("/_pactown/logs/stream" + (service ? `?service=${encodeURIComponent(service)}` : ""));
  source.onmessage = (m) => {
    const { service, line } = JSON.parse(m.data);
    const logs = $("#logs");
    const stick = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
    const div = el("div", { class: "line", "data-service": service, text: line });
    div.hidden = !matches(div);
    logs.append(div);
    while (logs.childElementCount > MAX_LINES) logs.firstElementChild.remove();
    if (stick) logs.scrollTop = logs.scrollHeight;
  };
}

function matches(div) {
  const f = $("#log-filter").value.toLowerCase();
  return !f || div.textContent.toLowerCase().includes(f);
}

async function start() {
  try {
    graph = await get("/_pactown/graph");
  } catch (_) {}
  $("#ecosystem").textContent = graph.ecosystem || "pactown";
  document.title = `${graph.ecosystem || "pactown"} · pactown`;
  const select = $("#log-service");
  for (const s of graph.services) select.append(el("option", { value: s.name, text: s.name }));
  select.addEventListener("change", follow);
  $("#log-filter").addEventListener("input", () => {
    for (const div of document.querySelectorAll("#logs .line")) div.hidden = !matches(div);
  });
  follow();
  await refresh();
  refreshAnomalies();
  refreshJobs();
  setInterval(refresh, 1000);
  setInterval(refreshAnomalies, 3000);
  setInterval(refreshJobs, 2000);
}

start();
