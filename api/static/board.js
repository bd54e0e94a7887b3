// FleetFlow dispatcher board. No external resources: plain DOM, SVG and fetch.
// The live feed reads /v1/alerts/stream with fetch() rather than EventSource because
// EventSource cannot send the Authorization header (and keys must not go in URLs).
"use strict";

const state = { key: "", lastEventId: null, alerts: new Map(), vehicles: [], fences: [], abort: null };
const $ = (sel) => document.querySelector(sel);
const RECONNECT_MS = 2000;
const VEHICLES_EVERY_MS = 5000;
const FENCES_EVERY_MS = 30000;

function headers(extra) {
  return Object.assign({ "Authorization": "Bearer " + state.key }, extra || {});
}

function showError(msg) { $("#error").textContent = msg || ""; }

function setConn(cls, text) { const c = $("#conn"); c.className = "conn " + cls; c.textContent = text; }

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ headers: headers() }, opts || {}));
  if (!r.ok) {
    let msg = r.status + "";
    try { const b = await r.json(); msg = b.error.code + ": " + b.error.message; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r.status === 204 ? null : r.json();
}

// ---- alerts -------------------------------------------------------------------------
function fmtTime(ms) { return ms ? new Date(Number(ms)).toLocaleTimeString() : ""; }

function renderAlert(a) {
  let li = document.querySelector(`li.alert[data-alert-id="${CSS.escape(a.alert_id)}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.alertId = a.alert_id;
    li.innerHTML = '<div><span class="type"></span> · <span class="state"></span></div>' +
      '<div class="meta"></div><div class="acked-by"></div>' +
      '<button type="button" class="ack">Acknowledge</button>';
    li.querySelector(".ack").addEventListener("click", () => acknowledge(a.alert_id, li));
    $("#alerts").prepend(li);
  }
  li.className = ["alert", a.severity || "", a.state || "", a.acked ? "acked" : ""].join(" ").trim();
  li.querySelector(".type").textContent = a.type || "ALERT";
  li.querySelector(".state").textContent = a.state || "";
  li.querySelector(".meta").textContent =
    `${a.severity || ""} · ${a.entity_type || ""} ${a.entity_id || ""} · ${fmtTime(a.event_time_ms)}`;
  li.querySelector(".acked-by").textContent = a.acked ? "acknowledged" + (a.assignee ? " → " + a.assignee : "") : "";
  $("#alert-count").textContent = String(state.alerts.size);
}

function onStreamEntry(id, data) {
  state.lastEventId = id;
  if (data.type === "ALERT_ACK") {
    // The alerts job pushes acks on the same stream so every open board updates.
    const a = state.alerts.get(data.alert_id);
    if (a) { a.acked = true; a.assignee = data.assignee || (data.details || {}).assignee; renderAlert(a); }
    return;
  }
  const prev = state.alerts.get(data.alert_id) || {};
  const a = Object.assign(prev, data);
  state.alerts.set(a.alert_id, a);
  renderAlert(a);
}

async function acknowledge(alertId, li) {
  const btn = li.querySelector(".ack");
  btn.disabled = true;
  try {
    await api(`/v1/alerts/${encodeURIComponent(alertId)}/ack`, {
      method: "POST", headers: headers({ "Content-Type": "application/json", "Idempotency-Key": "board-" + alertId }),
      body: JSON.stringify({ action: "ACK" }),
    });
    const a = state.alerts.get(alertId);
    a.acked = true;
    renderAlert(a);
    showError("");
  } catch (e) {
    btn.disabled = false;
    showError("acknowledge failed: " + e.message);
  }
}

// Server-sent events over fetch: split on blank lines, read id/data fields.
async function streamAlerts() {
  while (state.key) {
    state.abort = new AbortController();
    const h = headers({ "Accept": "text/event-stream" });
    if (state.lastEventId) h["Last-Event-ID"] = state.lastEventId;
    try {
      setConn("wait", "connecting");
      const r = await fetch("/v1/alerts/stream?backlog=50", { headers: h, signal: state.abort.signal });
      if (!r.ok) throw new Error("stream: HTTP " + r.status);
      setConn("on", "live");
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let id = null, data = null;
          for (const line of block.split("\n")) {
            if (line.startsWith("id: ")) id = line.slice(4);
            else if (line.startsWith("data: ")) data = line.slice(6);
          }
          if (id && data) onStreamEntry(id, JSON.parse(data));
        }
      }
    } catch (e) {
      if (e.name === "AbortError") return;
      showError(e.message);
    }
    setConn("off", "reconnecting");
    await new Promise((res) => setTimeout(res, RECONNECT_MS));
  }
}

// ---- vehicles and map ---------------------------------------------------------------
async function loadVehicles() {
  const out = [];
  let token = null;
  do {
    const page = await api("/v1/vehicles?limit=500" + (token ? "&page_token=" + encodeURIComponent(token) : ""));
    out.push(...page.items);
    token = page.next_page_token;
  } while (token);
  state.vehicles = out;
  renderVehicles();
  renderMap();
}

async function loadFences() {
  state.fences = (await api("/v1/geofences")).items;
  renderMap();
}

function renderVehicles() {
  const tbody = $("#vehicles tbody");
  tbody.replaceChildren(...state.vehicles.map((v) => {
    const tr = document.createElement("tr");
    tr.dataset.vehicleId = v.vehicle_id;
    for (const text of [v.vehicle_id, v.status || "", v.speed_mps == null ? "" : v.speed_mps.toFixed(1),
                        fmtTime(v.last_event_time_ms), (v.fences || []).join(", ")]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    return tr;
  }));
  $("#vehicle-count").textContent = String(state.vehicles.length);
}

function parsePolygon(wkt) {
  const m = /POLYGON\s*\(\(([^)]*)\)/i.exec(wkt || "");
  if (!m) return [];
  return m[1].split(",").map((p) => p.trim().split(/\s+/).map(Number)).filter((p) => p.length === 2);
}

const SVG_NS = "http://www.w3.org/2000/svg";
const W = 800, H = 560, PAD = 20;

function renderMap() {
  const svg = $("#map");
  const pts = [];
  for (const v of state.vehicles) if (v.lat != null && v.lon != null) pts.push([v.lon, v.lat]);
  const shapes = state.fences.map((f) => f.circle
    ? { f, circle: f.circle } : { f, ring: parsePolygon(f.polygon_wkt) });
  for (const s of shapes) {
    if (s.circle) pts.push([s.circle.lon, s.circle.lat]);
    else pts.push(...s.ring);
  }
  svg.replaceChildren();
  if (!pts.length) return;
  let [minX, minY, maxX, maxY] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [x, y] of pts) { minX = Math.min(minX, x); maxX = Math.max(maxX, x); minY = Math.min(minY, y); maxY = Math.max(maxY, y); }
  // Equirectangular with longitude shrunk by cos(latitude): fine at city scale.
  const k = Math.cos(((minY + maxY) / 2) * Math.PI / 180);
  const spanX = Math.max((maxX - minX) * k, 1e-4), spanY = Math.max(maxY - minY, 1e-4);
  const scale = Math.min((W - 2 * PAD) / spanX, (H - 2 * PAD) / spanY);
  const px = (lon) => PAD + (lon - minX) * k * scale;
  const py = (lat) => H - PAD - (lat - minY) * scale;
  const metresPerDegLat = 111320;
  for (const s of shapes) {
    let el;
    if (s.circle) {
      el = document.createElementNS(SVG_NS, "circle");
      el.setAttribute("cx", px(s.circle.lon)); el.setAttribute("cy", py(s.circle.lat));
      el.setAttribute("r", Math.max(2, (s.circle.radius_m / metresPerDegLat) * scale));
    } else {
      el = document.createElementNS(SVG_NS, "polygon");
      el.setAttribute("points", s.ring.map(([x, y]) => `${px(x)},${py(y)}`).join(" "));
    }
    el.setAttribute("class", "fence " + s.f.kind);
    const t = document.createElementNS(SVG_NS, "title");
    t.textContent = `${s.f.name || s.f.geofence_id} (${s.f.kind})`;
    el.appendChild(t);
    svg.appendChild(el);
  }
  for (const v of state.vehicles) {
    if (v.lat == null || v.lon == null) continue;
    const c = document.createElementNS(SVG_NS, "circle");
    c.setAttribute("cx", px(v.lon)); c.setAttribute("cy", py(v.lat)); c.setAttribute("r", 5);
    c.setAttribute("class", "van " + (v.status || ""));
    c.dataset.vehicleId = v.vehicle_id;
    const t = document.createElementNS(SVG_NS, "title");
    t.textContent = `${v.vehicle_id} ${v.status || ""}`;
    c.appendChild(t);
    svg.appendChild(c);
  }
}

// ---- start --------------------------------------------------------------------------
let timers = [];

function start(key) {
  state.key = key;
  sessionStorage.setItem("fleetflow-key", key);
  if (state.abort) state.abort.abort();
  timers.forEach(clearInterval);
  const refresh = (fn) => fn().catch((e) => showError(e.message));
  refresh(loadVehicles);
  refresh(loadFences);
  timers = [setInterval(() => refresh(loadVehicles), VEHICLES_EVERY_MS),
            setInterval(() => refresh(loadFences), FENCES_EVERY_MS)];
  streamAlerts();
}

$("#key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const key = $("#api-key").value.trim();
  if (key) start(key);
});

const saved = sessionStorage.getItem("fleetflow-key");
if (saved) { $("#api-key").value = saved; start(saved); }
