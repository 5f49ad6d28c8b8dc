// Wall screen client: websocket frames → DOM (text only: provider-supplied names are never HTML).
"use strict";
const params = new URLSearchParams(location.search);
const ROTATE_S = Number(params.get("rotate") || 30);
const START_VIEW = params.get("view");  // e.g. ?view=quality: a screen that starts on (or keeps) one view
let ws = null, backoff = 500, lastSeq = 0, version = null, lastFrame = null;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function pct(v) { return v === null || v === undefined ? "–" : `${v.toFixed(0)}%`; }

function tickClock() {
  const now = new Date();
  const opts = { timeZone: "Asia/Shanghai", hour12: false };
  document.getElementById("clock").textContent = now.toLocaleTimeString("zh-CN", opts);
  document.getElementById("date").textContent = now.toLocaleDateString(lang() === "en" ? "en-GB" : "zh-CN",
    { ...opts, year: "numeric", month: "long", day: "numeric", weekday: "long" });
  renderAssurance();
}

function renderDistricts(list) {
  const root = document.getElementById("districts");
  root.replaceChildren(...list.map((d) => {
    const tile = el("div", `tile ${d.band}`);
    tile.dataset.district = d.id;
    tile.append(el("div", "tile-name", d.name));
    tile.append(el("div", "tile-value", pct(d.peak)));
    tile.append(el("div", "tile-sub",
      `${t("cpu")} ${pct(d.cpu)} · ${t("mem")} ${pct(d.mem)} · ${t("storage")} ${pct(d.storage)}`));
    tile.append(el("div", "tile-sub", `${d.reporting}/${d.resources} · ${t("band_" + d.band)}`));
    return tile;
  }));
}

function renderUnits(list) {
  const root = document.getElementById("units");
  root.replaceChildren(...list.slice(0, 24).map((u) => {
    const row = el("div", "unit");
    row.append(el("span", "name", u.name));
    const bar = el("div", "bar"); const fill = el("i", u.band);
    fill.style.width = `${Math.min(100, u.peak || 0)}%`;
    bar.append(fill); row.append(bar);
    row.append(el("span", `v ${u.band}`, pct(u.peak)));
    return row;
  }));
}

function renderHot(list) {
  document.getElementById("hot").replaceChildren(...list.map((h) => {
    const li = el("li");
    li.dataset.resource = h.id;
    li.append(el("span", "name", h.name));
    li.append(el("span", `v ${h.band}`, pct(h.cpu)));
    return li;
  }));
}

function renderHistory(list) {
  document.getElementById("history-empty").classList.toggle("hidden", list.length > 0);
  document.getElementById("history").replaceChildren(...list.slice(0, 8).map((h) => {
    const li = el("li");
    const when = h.ts_ms ? new Date(h.ts_ms).toLocaleTimeString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false }) : "";
    const what = (lang() === "en" ? h.summary_en : h.summary_zh) || `${h.kind || h.state || ""} ${h.subject || ""}`;
    if (h.severity) li.append(el("span", `sev ${h.severity}`, h.severity));
    const stateText = h.state === "acknowledged" || h.state === "resolved" ? ` · ${t("state_" + h.state)}` : "";
    li.append(el("span", `what ${h.state || ""}`, what + stateText));
    li.append(el("span", "when", when));
    return li;
  }));
}

function renderAssurance() {
  const box = document.getElementById("assurance");
  const a = lastFrame && lastFrame.assurance;
  if (!a) { box.classList.add("hidden"); return; }
  box.classList.remove("hidden");
  document.getElementById("assurance-name").textContent = lang() === "en" && a.name_en ? a.name_en : a.name;
  const left = Math.max(0, a.end_ms - Date.now());
  const h = Math.floor(left / 3600000), m = Math.floor((left % 3600000) / 60000);
  document.getElementById("assurance-left").textContent = lang() === "en" ? `${h} h ${m} min` : `${h} 小时 ${m} 分`;
}

function share(v) { return v === null || v === undefined ? "–" : `${Math.floor(v * 1000) / 10}%`.replace(".0%", "%"); }
// SLA shares: ≥ 95 % no deduction (opscenter/data/deduction.yaml), ≥ 90 % a small one, below that red
function slaClass(v) { return v === null || v === undefined ? "none" : v >= 0.95 ? "good" : v >= 0.9 ? "warn" : "bad"; }
// completeness: the supervision threshold is 90 % (§34)
function compClass(v) { return v === null || v === undefined ? "none" : v >= 0.95 ? "good" : v >= 0.9 ? "warn" : "bad"; }

function gauge(value, label) {
  const g = el("div", `gauge ${slaClass(value)}`);
  const ring = el("div", "ring");
  ring.style.setProperty("--p", String(value === null || value === undefined ? 0 : value));
  ring.append(el("b", "", share(value)));
  g.append(ring, el("span", "gauge-label", label));
  return g;
}

function renderSla(sla) {
  const view = document.getElementById("view-quality");
  view.classList.toggle("no-sla", !sla);
  if (!sla) return;
  const cards = sla.providers;
  const root = document.getElementById("sla-cards");
  // up to three providers: one card per row; more: two columns (at most six cards are sent)
  const cols = cards.length <= 3 ? 1 : 2, rows = Math.max(1, Math.ceil(cards.length / cols));
  root.style.setProperty("--cols", String(cols));
  root.style.setProperty("--ring", `${cols === 2 ? 13 : [30, 22, 18][rows - 1]}vh`);
  root.replaceChildren(...cards.map((c) => {
    const card = el("div", "sla-card");
    card.dataset.provider = c.id;
    card.append(el("div", "card-name", c.name));
    const gauges = el("div", "gauges");
    gauges.append(gauge(c.response_share, t("sla_response")), gauge(c.restore_share, t("sla_restore")));
    card.append(gauges);
    const open = el("div", "open-row");
    open.append(el("span", "open-label", t("sla_open")));
    for (const sev of ["P1", "P2", "P3", "P4"]) {
      const n = (c.open && c.open[sev]) || 0;
      const box = el("span", `open-sev ${sev}${n > 0 ? " lit" : ""}`);
      box.dataset.sev = sev;
      box.append(el("i", "", sev), el("b", "", n));
      open.append(box);
    }
    card.append(open);
    const foot = el("div", "card-foot");
    const br = el("span", `breaches${c.breaches_today > 0 ? " lit" : ""}`);
    br.append(el("i", "", t("sla_breaches")), el("b", "", c.breaches_today));
    const inc = el("span", "incidents");
    inc.append(el("i", "", t("sla_incidents")), el("b", "", c.incidents));
    foot.append(br, inc);
    card.append(foot);
    return card;
  }));
  const asof = sla.as_of_ms
    ? `${t("sla_updated")} ${new Date(sla.as_of_ms).toLocaleTimeString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false })}` : "";
  const more = sla.hidden ? ` · ${t("sla_more").replace("{n}", sla.hidden)}` : "";
  const box = document.getElementById("sla-asof");
  box.textContent = sla.ok ? `${asof}${more}` : `${t("sla_stale")} ${asof}${more}`;
  box.classList.toggle("stale", !sla.ok);
}

function renderCompleteness(list) {
  document.getElementById("completeness-empty").classList.toggle("hidden", list.length > 0);
  const root = document.getElementById("completeness");
  root.style.setProperty("--n", String(Math.max(1, Math.min(8, list.length))));
  root.replaceChildren(...list.slice(0, 8).map((p) => {
    const row = el("div", `comp ${compClass(p.share)}`);
    row.dataset.provider = p.id;
    row.append(el("span", "name", p.name));
    const bar = el("div", "bar"); const fill = el("i");
    fill.style.width = `${Math.round((p.share || 0) * 100)}%`;
    bar.append(fill); row.append(bar);
    row.append(el("span", "comp-value", share(p.share)));
    row.append(el("span", "comp-count", `${p.reporting}/${p.resources}`));
    return row;
  }));
}

function renderPipeline(p) {
  const view = document.getElementById("view-quality");
  view.classList.toggle("no-pipe", p === null || p === undefined);
  if (!p) return;
  const status = document.getElementById("pipe-status");
  status.className = `pipe-status ${p.status}`;
  if (p.status === "down") {
    const what = p.problems.map((x) => t(`svc_${x}`)).join(lang() === "en" ? ", " : "、");
    status.textContent = t("pipe_down").replace("{what}", what);
  } else if (p.status === "warn") {
    status.textContent = t("pipe_lag_warn").replace("{s}", p.behind_s);
  } else {
    status.textContent = t("pipe_ok");
  }
  for (const [name, up] of Object.entries(p.checks)) {
    const lamp = document.getElementById(`lamp-${name}`);
    if (!lamp) continue;
    lamp.className = `lamp ${up ? "up" : "down"}`;
    lamp.querySelector("b").textContent = t(up ? "svc_up" : "svc_down");
  }
  const num = (v) => (v === null || v === undefined ? "–" : Math.round(v).toLocaleString("zh-CN"));
  document.getElementById("p-rate").textContent = num(p.samples_per_s);
  const lag = document.getElementById("p-lag");
  lag.textContent = num(p.behind_s);
  lag.classList.toggle("bad", p.status === "warn");
  document.getElementById("p-dead").textContent = num(p.deadletters);
}

function render(f) {
  lastFrame = f;
  renderDistricts(f.districts);
  renderUnits(f.units);
  renderHot(f.hot);
  renderHistory(f.history);
  renderAssurance();
  renderSla(f.sla);
  renderCompleteness(f.providers || []);
  renderPipeline(f.pipeline);
  document.getElementById("my-link").classList.toggle("hidden", !f.scope);
  document.getElementById("k-resources").textContent = f.totals.resources.toLocaleString("zh-CN");
  document.getElementById("k-reporting").textContent = f.totals.reporting.toLocaleString("zh-CN");
  const rate = f.totals.updated_last_minute;
  document.getElementById("k-rate").textContent = rate === null ? "–" : rate.toLocaleString("zh-CN");
  document.getElementById("seq").textContent = `#${f.seq}`;
  const open = f.alerts_open || {};
  for (const sev of ["P1", "P2", "P3", "P4"]) {
    const box = document.getElementById(`a-${sev}`);
    box.textContent = String(open[sev] || 0);
    box.parentElement.classList.toggle("lit", (open[sev] || 0) > 0);
  }
}

function setConn(on) {
  const c = document.getElementById("conn");
  c.className = `conn ${on ? "on" : "off"}`;
  c.dataset.t = on ? "online" : "offline";
  c.textContent = t(c.dataset.t);
}

function connect() {
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/live`);
  ws.onopen = () => { backoff = 500; setConn(true); };
  ws.onmessage = (msg) => {
    const f = JSON.parse(msg.data);
    if (f.type !== "frame") return;
    if (version && f.version !== version) { location.reload(); return; }  // a new version was deployed
    version = f.version;
    lastSeq = f.seq;  // frames are complete pictures: a gap in seq loses nothing
    render(f);
  };
  ws.onclose = (ev) => {
    if (ev.code === 4401) { location.href = "/login?next=/wall"; return; }  // logged out or kiosk revoked
    setConn(false);
    lastSeq = 0;
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  };
}

function showView(id) {
  const target = document.getElementById(`view-${id}`);
  if (!target) return;
  document.querySelectorAll(".view").forEach((v) => v.classList.toggle("active", v === target));
}

function rotate() {
  if (START_VIEW) showView(START_VIEW);
  if (!(ROTATE_S > 0)) return;
  const views = [...document.querySelectorAll(".view")];
  setInterval(() => {
    const i = views.findIndex((v) => v.classList.contains("active"));
    views[i].classList.remove("active");
    views[(i + 1) % views.length].classList.add("active");
  }, ROTATE_S * 1000);
}

document.getElementById("lang").addEventListener("click", () => {
  localStorage.setItem("lang", lang() === "en" ? "zh" : "en");
  applyLang();
  if (lastFrame) render(lastFrame);
  tickClock();
});
applyLang();
tickClock();
setInterval(tickClock, 1000);
rotate();
connect();
