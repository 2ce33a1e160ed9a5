// The driftline console: one server-sent document a second (/api/stream), drawn as plain
// DOM and SVG. No library and nothing fetched from elsewhere.
"use strict";

const COLORS = { champion: "#4cc38a", challenger: "#e5c07b", shadow: "#c678dd", online: "#61afef" };
const MARKS = { champion: "★", online: "◆", drift: "▲", request: "↻", candidate: "◇", promotion: "●" };
const views = {};
let selected = localStorage.getItem("driftline.usecase");

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function num(value, digits = 3) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? value.toLocaleString() : Number(value).toFixed(digits);
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const m = Math.floor(s / 60);
  return `${String(m).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

// A line chart of several series ([[x, y], ...] each) in one SVG, scaled together.
function chart(series, { height = 70, width = 360, min = null, max = null } = {}) {
  const points = Object.values(series).flat();
  if (!points.length) return '<p class="dim">no data yet</p>';
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || 1;
  const y0 = min ?? Math.min(...ys), y1 = max ?? Math.max(...ys);
  const sx = (x) => (x1 === x0 ? width : ((x - x0) / (x1 - x0)) * width);
  const sy = (y) => height - 4 - (y1 === y0 ? 0.5 : (y - y0) / (y1 - y0)) * (height - 8);
  const lines = Object.entries(series).map(([name, pts]) => {
    const path = pts.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    return `<polyline points="${path}" stroke="${COLORS[name] || "#61afef"}"><title>${esc(name)}</title></polyline>`;
  });
  return `<svg class="chart" viewBox="0 0 ${width} ${height}" preserveAspectRatio="none">${lines.join("")}</svg>`;
}

function skeleton(uc) {
  const section = document.createElement("section");
  section.className = "usecase";
  section.dataset.usecase = uc;
  section.innerHTML = `
    <div class="card"><h2>throughput</h2><div class="throughput"></div></div>
    <div class="card"><h2>dead letters</h2><div class="deadletters"></div></div>
    <div class="card"><h2>models</h2><div class="models"></div>
      <div class="buttons">
        <button data-action="promote" title="promote the challenger on trial">promote</button>
        <button data-action="rollback" title="back to the previous champion, or end the trial">rollback</button>
        <button data-action="retrain" title="ask the batch trainer for a new model">retrain</button>
      </div></div>
    <div class="card"><h2>live metric per variant</h2><div class="live"></div></div>
    <div class="card"><h2>drift alerts</h2><div class="alerts"></div></div>
    <div class="card"><h2>loop timeline</h2><ul class="timeline"></ul></div>
    <div class="card"><h2>last predictions</h2><div class="predictions"></div></div>`;
  section.querySelectorAll("button[data-action]").forEach((button) => {
    button.addEventListener("click", () => act(uc, button.dataset.action));
  });
  document.getElementById("usecases").appendChild(section);
  const tab = document.createElement("button");
  tab.textContent = uc;
  tab.dataset.tab = uc;
  tab.addEventListener("click", () => select(uc));
  document.getElementById("tabs").appendChild(tab);
  return section;
}

function select(uc) {
  selected = uc;
  localStorage.setItem("driftline.usecase", uc);
  for (const [name, section] of Object.entries(views)) section.hidden = name !== uc;
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === uc));
}

function drawThroughput(el, view) {
  const t = view.throughput, lat = view.latency_ms;
  const now = view.now;
  const raw = t.raw.series.map((v, i) => [now - t.raw.series.length + i, v]);
  const preds = t.predictions.series.map((v, i) => [now - t.predictions.series.length + i, v]);
  el.innerHTML = `
    <div class="stats">
      <div><span class="big raw-rate">${num(t.raw.rate, 1)}</span><span class="dim">raw events/s</span></div>
      <div><span class="big features-rate">${num(t.features.rate, 1)}</span><span class="dim">feature rows/s</span></div>
      <div><span class="big predictions-rate">${num(t.predictions.rate, 1)}</span><span class="dim">predictions/s</span></div>
    </div>
    ${chart({ online: raw, champion: preds }, { min: 0 })}
    <div class="legend"><span class="online">— raw</span><span class="champion">— predictions</span></div>
    <div class="row"><span class="dim">seen since start</span><span class="raw-seen">${num(t.raw.seen)} raw, ${num(t.labels.seen)} labels</span></div>
    <div class="row"><span class="dim">prediction latency</span><span>p50 ${num(lat.p50)} · p95 ${num(lat.p95)} · p99 ${num(lat.p99)} ms</span></div>`;
}

function drawDeadletters(el, view) {
  const d = view.deadletters;
  const reasons = d.top_reasons.map(([reason, n]) => `<tr><td>${num(n)}</td><td>${esc(reason)}</td></tr>`);
  const share = d.share_of_raw === null ? "" : `${(d.share_of_raw * 100).toFixed(1)}% of raw`;
  el.innerHTML = `
    <div class="row"><span class="big deadletter-minute">${num(d.last_minute)}</span><span class="dim">in the last minute ${share}</span></div>
    <table><tr><th>count</th><th>top reasons (last minute)</th></tr>${reasons.join("") || '<tr><td colspan="2" class="dim">none</td></tr>'}</table>
    ${d.last ? `<p class="dim">last: ${esc(d.last.service)}: ${esc(d.last.reason)}</p>` : ""}`;
}

function drawModels(el, view) {
  const m = view.models, metric = view.metric;
  const serving = (model, cls, empty) => model
    ? `<span class="${cls}">${esc(model.label)}</span> <span class="dim">${model.role === "champion" ? "" : esc(model.role) + (model.traffic_share ? " " + Math.round(model.traffic_share * 100) + "%" : "")}</span>`
    : `<span class="dim">${empty}</span>`;
  const online = m.online
    ? `<span class="online">${esc(m.online.label)}</span> <span class="dim">${num(m.online.rows)} rows · rolling ${esc(metric)} ${num(m.online.rolling)}</span>`
    : '<span class="dim">not learning yet</span>';
  const candidates = m.candidates.map((c) => `<div class="row"><span class="dim">candidate</span><span>${esc(c.label)} test ${esc(metric)} ${num(c.score)}</span></div>`);
  const history = m.online ? chart({ online: m.online.history }) : "";
  el.innerHTML = `
    <div class="row"><span class="dim">champion</span><span class="champion-label">${serving(m.champion, "champion", "waiting for the first")}</span></div>
    <div class="row"><span class="dim">challenger</span><span>${serving(m.challenger, "challenger", "none")}</span></div>
    <div class="row"><span class="dim">online model</span><span>${online}</span></div>
    ${history}${candidates.join("")}`;
}

function drawLive(el, view) {
  const live = view.models.live, metric = view.metric;
  const series = {}, rows = [];
  for (const [variant, v] of Object.entries(live)) {
    series[variant] = v.history;
    const per = view.predictions_by_variant[variant];
    rows.push(`<tr><td class="${variant}">${esc(variant)}</td><td>${num(v.metrics[metric])}</td>
      <td>${num(v.metrics.accuracy)}</td><td>${num(v.window)}</td><td>${num(per ?? 0)}</td></tr>`);
  }
  el.innerHTML = `${chart(series)}
    <table><tr><th>variant</th><th>${esc(metric)}</th><th>accuracy</th><th>labeled</th><th>predictions/min</th></tr>
    ${rows.join("") || '<tr><td colspan="5" class="dim">no labeled predictions yet</td></tr>'}</table>`;
}

function drawAlerts(el, view) {
  const rows = view.alerts.map((a) => {
    const features = a.features.map(([n, s, d]) => `${esc(n)} ${Number(s).toPrecision(3)}${d ? "*" : ""}`).join(", ");
    const report = a.report ? `<a href="${esc(a.report)}" target="_blank" rel="noopener">report</a>` : "";
    return `<tr><td>+${clock(a.at - view.started_at)}</td><td class="${esc(a.severity)}">${esc(a.severity)}</td>
      <td>${esc(a.kind)} (${esc(a.method)})</td><td>${features}</td><td>${report}</td></tr>`;
  });
  el.innerHTML = `<table>${rows.join("") || '<tr><td class="dim">no drift alerts yet</td></tr>'}</table>`;
}

function drawTimeline(el, view) {
  el.innerHTML = view.timeline.slice().reverse().map((m) => `<li><span class="dim">+${clock(m.at - view.started_at)}</span>
    ${MARKS[m.kind] || "·"} ${esc(m.text)}${m.count > 1 ? ` ×${m.count}` : ""}</li>`).join("")
    || '<li class="dim">waiting for the first champion</li>';
}

function drawPredictions(el, view) {
  const rows = view.predictions.map((p) => `<tr><td>${esc(p.entity_id)}</td><td class="${esc(p.variant)}">${esc(p.model)}</td>
    <td>${esc(p.prediction)}</td><td>${num(p.latency_ms, 2)} ms</td></tr>`);
  el.innerHTML = `<table><tr><th>entity</th><th>model</th><th>prediction</th><th>latency</th></tr>${rows.join("")}</table>`;
}

function draw(document_) {
  for (const [uc, view] of Object.entries(document_)) {
    const section = views[uc] || (views[uc] = skeleton(uc));
    drawThroughput(section.querySelector(".throughput"), view);
    drawDeadletters(section.querySelector(".deadletters"), view);
    drawModels(section.querySelector(".models"), view);
    drawLive(section.querySelector(".live"), view);
    drawAlerts(section.querySelector(".alerts"), view);
    drawTimeline(section.querySelector(".timeline"), view);
    drawPredictions(section.querySelector(".predictions"), view);
  }
  if (!selected || !views[selected]) selected = Object.keys(views)[0];
  if (selected) select(selected);
}

async function act(uc, action) {
  const key = document.getElementById("api-key").value;
  const headers = key ? { "X-API-Key": key } : {};
  const response = await fetch(`/api/${encodeURIComponent(uc)}/${action}`, { method: "POST", headers });
  const body = await response.json().catch(() => ({}));
  const message = document.getElementById("message");
  message.dataset.status = String(response.status);
  message.textContent = response.ok ? `${action}: published on ${body.published} (${body.event_id})`
                                    : `${action} refused (${response.status}): ${body.error || ""}`;
}

function connect() {
  const status = document.getElementById("status");
  const source = new EventSource("/api/stream");
  source.onmessage = (message) => {
    draw(JSON.parse(message.data));
    status.textContent = `live · ${new Date().toLocaleTimeString()}`;
    status.dataset.live = "1";
  };
  source.onerror = () => { status.textContent = "reconnecting…"; status.dataset.live = "0"; };
}

document.getElementById("api-key").value = sessionStorage.getItem("driftline.key") || "";
document.getElementById("api-key").addEventListener("change", (e) => sessionStorage.setItem("driftline.key", e.target.value));
connect();
