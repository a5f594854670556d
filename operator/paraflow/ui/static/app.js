// The Map Run view's page: a list of workflows and schedules, and one run drawn with plotly.js.
// Everything shown comes from the server's JSON (paraflow/ui/view.py); the run updates from a
// server-sent event stream the server feeds from a watch.
"use strict";

// The order of paraflow.ui.grid.STATES: a cell's digit indexes both.
const STATES = ["pending", "queued", "running", "retrying", "succeeded", "failed", "notRun"];
const COLORS = ["#cfd8dc", "#8e24aa", "#1e88e5", "#fb8c00", "#2e7d32", "#c62828", "#90a4ae"];
const LABELS = ["pending", "queued", "running", "retrying", "succeeded", "failed", "not run"];

const $ = (id) => document.getElementById(id);
const paraflow = (window.paraflow = { lastDrawMs: null, view: null, columns: 0 });
let stream = null;
let manifestShown = "";  // the manifest URI whose counts are on the page

// #/ns/<namespace> lists; #/ns/<namespace>/wf/<name> shows one run.
function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const namespace = (parts[0] === "ns" && parts[1]) || $("namespace").value || "default";
  $("namespace").value = namespace;
  if (stream) { stream.close(); stream = null; $("live").className = ""; }
  manifestShown = "";
  if (parts[0] === "ns" && parts[2] === "wf" && parts[3]) {
    showRun(namespace, parts[3]);
  } else {
    showList(namespace).catch((e) => { $("schedules").textContent = String(e.message || e); });
  }
}

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }

function runLink(ns, name) {
  const a = document.createElement("a");
  a.href = `#/ns/${encodeURIComponent(ns)}/wf/${encodeURIComponent(name)}`;
  a.textContent = name;
  return a;
}

async function showList(ns) {
  $("run-view").hidden = true;
  $("list-view").hidden = false;
  const [workflows, schedules] = await Promise.all([
    getJSON(`api/namespaces/${encodeURIComponent(ns)}/workflows`),
    getJSON(`api/namespaces/${encodeURIComponent(ns)}/schedules`),
  ]);
  const body = $("workflows").tBodies[0];
  body.replaceChildren();
  for (const wf of workflows) {
    const row = document.createElement("tr");
    const name = document.createElement("td");
    name.append(runLink(ns, wf.name));
    const p = wf.partitions || {};
    row.append(name, cell(wf.phase), cell(p.succeeded || 0), cell(p.total || 0), cell(p.running || 0),
      cell(p.failed || 0), cell(wf.created));
    body.append(row);
  }
  const holder = $("schedules");
  holder.replaceChildren();
  for (const s of schedules) {
    const section = document.createElement("div");
    const title = document.createElement("h3");
    title.textContent = `${s.name} (${s.schedule}${s.suspended ? ", suspended" : ""}), next ${s.nextScheduleTime || "-"}`;
    const list = document.createElement("ul");
    const runs = workflows.filter((w) => w.schedule === s.name).sort((a, b) => b.slot.localeCompare(a.slot));
    for (const run of runs) {
      const item = document.createElement("li");
      item.append(`slot ${run.slot}: `, runLink(ns, run.name), ` ${run.phase}`);
      list.append(item);
    }
    section.append(title, list);
    holder.append(section);
  }
  if (!schedules.length) holder.textContent = "none in this namespace";
}

function showRun(ns, name) {
  $("list-view").hidden = true;
  $("run-view").hidden = false;
  $("run-name").textContent = `${ns}/${name}`;
  paraflow.target = { ns, name };
  const base = `api/namespaces/${encodeURIComponent(ns)}/workflows/${encodeURIComponent(name)}`;
  getJSON(base).then(render).catch((e) => { $("message").textContent = String(e.message || e); });
  stream = new EventSource(`${base}/stream`);
  stream.onopen = () => { $("live").className = "on"; };
  stream.onerror = () => { $("live").className = ""; };
  stream.onmessage = (event) => render(JSON.parse(event.data));
  stream.addEventListener("problem", (event) => {
    // Following again would fail again (deleted, forbidden): say why and stop.
    stream.close();
    $("live").className = "";
    $("note").textContent = `no longer live: ${JSON.parse(event.data).message}`;
  });
}

function gridShape(n) {
  const columns = n <= 40 ? Math.max(n, 1) : Math.min(n, Math.max(40, Math.round(Math.sqrt(n * 3))));
  return { columns, rows: Math.max(1, Math.ceil(n / columns)) };
}

function drawGrid(view) {
  const cells = view.cells;
  const n = cells.length;
  const { columns, rows } = gridShape(n);
  const z = [], text = [];
  for (let r = 0; r < rows; r++) {
    const zr = new Array(columns).fill(null), tr = new Array(columns).fill("");
    for (let c = 0; c < columns; c++) {
      const i = r * columns + c;
      if (i >= n) break;
      const state = cells.charCodeAt(i) - 48;
      zr[c] = state;
      tr[c] = `partition ${i}: ${LABELS[state]}, attempt ${view.attempts[i] || 1}`;
    }
    z.push(zr);
    text.push(tr);
  }
  const scale = [];
  COLORS.forEach((color, k) => {
    scale.push([Math.max(0, (k - 0.5) / 6), color], [Math.min(1, (k + 0.5) / 6), color]);
  });
  paraflow.columns = columns;
  // Square cells across the page's width; a small run's cells stay small enough to read as a grid.
  const side = Math.min(28, ($("grid").clientWidth - 20) / columns);
  $("grid").style.height = `${Math.max(60, Math.ceil(rows * side) + 20)}px`;
  return Plotly.react($("grid"), [{
    type: "heatmap", z, text, zmin: 0, zmax: 6, colorscale: scale, showscale: false,
    hoverinfo: "text", xgap: n <= 5000 ? 1 : 0, ygap: n <= 5000 ? 1 : 0,
  }], {
    margin: { l: 10, r: 10, t: 10, b: 10 },
    xaxis: { visible: false, fixedrange: true, range: [-0.5, columns - 0.5] },
    yaxis: { visible: false, fixedrange: true, autorange: "reversed", scaleanchor: "x" },
  }, { displayModeBar: false, responsive: true }).then((gd) => {
    if (!paraflow.clickable) {
      paraflow.clickable = true;
      gd.on("plotly_click", (event) => {
        const i = event.points[0].y * paraflow.columns + event.points[0].x;
        if (i < paraflow.view.cells.length) showLogs(i);
      });
    }
  });
}

function drawProgress(view) {
  const total = (view.partitions || {}).total || 0;
  const at = view.history.map((s) => s.at);
  const traces = [
    { x: at, y: view.history.map((s) => s.done), name: "done (succeeded or failed)", mode: "lines+markers",
      line: { shape: "hv", color: "#2e7d32" } },
  ];
  if (view.replicates) {
    traces.push({ x: at, y: view.history.map((s) => s.replicated), name: "replicated", mode: "lines+markers",
      line: { shape: "hv", color: "#1e88e5" } });
  }
  const left = view.eta.secondsLeft;
  if (left != null && view.history.length) {
    const last = view.history[view.history.length - 1];
    const end = new Date(new Date(view.now).getTime() + left * 1000).toISOString();
    traces.push({ x: [view.now, end], y: [last.done, total], name: "at the recent rate", mode: "lines",
      line: { dash: "dot", color: "#757575" } });
  }
  return Plotly.react("progress", traces, {
    margin: { l: 50, r: 10, t: 30, b: 50 }, yaxis: { title: { text: "partitions" }, range: [0, Math.max(total, 1) * 1.05] },
    legend: { orientation: "h", x: 0, y: 1.12 },
  }, { displayModeBar: false, responsive: true });
}

function describeEta(view) {
  const { perMinute, secondsLeft } = view.eta;
  if (view.phase === "Succeeded" || view.phase === "Failed") return `finished: ${view.phase}`;
  if (secondsLeft == null) return perMinute == null ? "ETA: not yet known (no progress seen)" : "ETA: not yet known";
  const end = new Date(new Date(view.now).getTime() + secondsLeft * 1000);
  const minutes = Math.round(secondsLeft / 60);
  return `ETA ${end.toLocaleTimeString()} (in ${minutes < 1 ? "under a minute" : minutes + " min"}), ` +
    `${perMinute.toFixed(1)} partitions/min`;
}

function render(view) {
  // A version the page already drew (the stream's first event, or a watch's re-list) changes
  // only the estimate: the rest stays as drawn.
  const seen = paraflow.view;
  paraflow.view = view;
  $("eta").textContent = describeEta(view);
  if (seen && view.resourceVersion && seen.uid === view.uid && seen.resourceVersion === view.resourceVersion) {
    drawProgress(view);
    return;
  }
  const started = performance.now();
  $("phase").textContent = view.phase;
  $("phase").className = `phase ${view.phase}`;
  $("message").textContent = view.message || "";
  $("note").textContent = view.note || "";
  const counts = view.partitions || {};
  $("count-total").textContent = counts.total || 0;
  const drawn = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (let i = 0; i < view.cells.length; i++) drawn[STATES[view.cells.charCodeAt(i) - 48]]++;
  for (const state of STATES) $(`count-${state}`).textContent = drawn[state];
  $("suspend").textContent = view.suspended ? "Resume" : "Suspend";
  if (document.activeElement !== $("concurrency")) $("concurrency").value = view.maxConcurrency || "";
  const body = $("failed").tBodies[0];
  body.replaceChildren();
  for (const f of view.failed) {
    const row = document.createElement("tr");
    const link = document.createElement("a");
    link.href = "#";
    link.textContent = "logs";
    link.className = "logs";
    link.onclick = (e) => { e.preventDefault(); showLogs(f.partition); };
    const td = document.createElement("td");
    td.append(link);
    row.append(cell(f.partition), cell(f.attempt), cell(f.why || "see its logs"), td);
    body.append(row);
  }
  if (!view.failed.length) {
    const row = document.createElement("tr");
    row.append(cell("none"));
    body.append(row);
  }
  $("failed-note").textContent = view.failedCount > view.failed.length ? `(the first ${view.failed.length} of ${view.failedCount})` : "";
  const rep = view.replication;
  $("replication").textContent = rep
    ? `replication: ${rep.partitions || 0} partitions replicated, ${rep.objects || 0} objects (${rep.bytes || 0} bytes) copied, ` +
      `${rep.skipped || 0} already there, ${rep.failed || 0} failed`
    : "no replication";
  $("reduce").textContent = view.reduce ? `reduce: ${view.reduce.phase}, attempt ${view.reduce.attempt}` : "";
  showManifest(view);
  Promise.all([drawGrid(view), drawProgress(view)]).then(() => {
    paraflow.lastDrawMs = performance.now() - started;
    paraflow.drawnAt = performance.now();  // since the page's navigation began
    paraflow.drawnUid = view.uid + ":" + view.cells.length;
    document.body.dataset.drawn = String(Date.now());
  });
}

async function showManifest(view) {
  if (!view.manifest) {
    manifestShown = "";  // a redrive clears it; it comes back at the same URI
    $("manifest").textContent = "no result manifest yet: it is written when the map is done";
    return;
  }
  if (manifestShown === view.manifest) return;
  manifestShown = view.manifest;
  const { ns, name } = paraflow.target;
  try {
    const m = await getJSON(`api/namespaces/${encodeURIComponent(ns)}/workflows/${encodeURIComponent(name)}/manifest`);
    $("manifest").textContent = `result manifest ${m.uri}: ${m.succeeded} partitions succeeded, ${m.failedCount} failed`;
  } catch (e) {
    $("manifest").textContent = `result manifest ${view.manifest} (cannot read it: ${e.message || e})`;
  }
}

async function showLogs(partition) {
  const { ns, name } = paraflow.target;
  $("log-section").hidden = false;
  $("log-title").textContent = `Logs of partition ${partition}`;
  $("log").textContent = "loading...";
  const response = await fetch(`api/namespaces/${encodeURIComponent(ns)}/workflows/${encodeURIComponent(name)}/logs?partition=${partition}`);
  $("log").textContent = await response.text();
}

async function act(action, body) {
  const { ns, name } = paraflow.target;
  const buttons = document.querySelectorAll("#actions button");
  buttons.forEach((b) => { b.disabled = true; });  // one action at a time: no second redrive token
  $("action-result").textContent = `${action}...`;
  try {
    await send(ns, name, action, body);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

async function send(ns, name, action, body) {
  const response = await fetch(`api/namespaces/${encodeURIComponent(ns)}/workflows/${encodeURIComponent(name)}/${action}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Paraflow-Token": PARAFLOW_TOKEN },
    body: JSON.stringify(body || {}),
  });
  const text = await response.text();
  let message = text;
  try { message = JSON.parse(text).message; } catch (_) { /* a plain-text refusal */ }
  $("action-result").textContent = message;
}

// Where cell i is drawn, in the page's pixels: tests read the colour a person sees there.
paraflow.cellCenter = (i) => {
  const layout = $("grid")._fullLayout;
  const box = $("grid").getBoundingClientRect();
  const column = i % paraflow.columns, row = Math.floor(i / paraflow.columns);
  return {
    x: box.left + layout.xaxis._offset + layout.xaxis.l2p(column),
    y: box.top + layout.yaxis._offset + layout.yaxis.l2p(row),
  };
};

function start() {
  $("redrive").onclick = () => act("redrive");
  $("suspend").onclick = () => act(paraflow.view && paraflow.view.suspended ? "resume" : "suspend");
  $("set-concurrency").onclick = () => act("concurrency", { limit: Number($("concurrency").value) });
  $("namespace").onchange = () => { location.hash = `#/ns/${encodeURIComponent($("namespace").value)}`; };
  window.addEventListener("hashchange", route);
  route();
}

document.addEventListener("DOMContentLoaded", start);
