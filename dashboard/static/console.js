// On-call console: open alerts with acknowledge / resolve / silence; timeline; a cue for new P1.
"use strict";
Object.assign(I18N.zh, { console_title: "值班处置台", sound: "P1 提示音", new_p1: "新的 P1 告警！", open_alerts: "未恢复告警",
  col_sev: "级别", col_summary: "告警", col_state: "状态", col_since: "开始", col_escalation: "升级", col_actions: "处置",
  timeline: "处置时间线", ack: "确认", resolve: "恢复", silence: "静默 1 小时", reason_prompt: "请填写恢复原因：",
  done: "已提交", failed: "提交失败", firing: "告警中", acknowledged: "已确认", resolved: "已恢复", step: "第 {n} 级",
  read_only: "只读：仅显示您权限范围内的告警；确认、恢复、静默由市大数据局值班人员处置。", my_page: "我的页面 ›",
  actor_system: "系统", reason_rule: "规则触发", reason_refired: "再次触发", reason_resolved_by_event: "恢复事件",
  reason_data_resumed: "数据恢复上报", reason_recovered: "指标恢复正常", reason_rule_removed: "规则已删除",
  reason_timed_out: "超时自动恢复", reason_acknowledged: "" });
Object.assign(I18N.en, { console_title: "On-call console", sound: "P1 sound", new_p1: "New P1 alert!", open_alerts: "Open alerts",
  col_sev: "Sev", col_summary: "Alert", col_state: "State", col_since: "Since", col_escalation: "Escalation", col_actions: "Actions",
  timeline: "Timeline", ack: "Acknowledge", resolve: "Resolve", silence: "Silence 1 h", reason_prompt: "Reason for resolving:",
  done: "Done", failed: "Failed", firing: "firing", acknowledged: "acknowledged", resolved: "resolved", step: "step {n}",
  read_only: "Read-only: alerts within your scope; the bureau's duty officers acknowledge, resolve and silence.",
  my_page: "My page ›",
  actor_system: "system", reason_rule: "fired by rule", reason_refired: "fired again", reason_resolved_by_event: "resolving event",
  reason_data_resumed: "data resumed", reason_recovered: "back to normal", reason_rule_removed: "rule removed",
  reason_timed_out: "timed out", reason_acknowledged: "" });

let csrf = "", readOnly = true, selected = null, knownP1 = new Set(), firstLoad = true, refreshTimer = null;
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = String(text); return e; }
function time(ms) { return ms ? new Date(ms).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false }) : ""; }
function summary(a) { return (lang() === "en" ? a.summary_en : a.summary_zh) || a.rule; }
function say(text) { document.getElementById("message").textContent = text; }

async function api(method, path, body) {
  const r = await fetch(path, { method, headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: body ? JSON.stringify(body) : undefined });
  if (r.status === 401) { location.href = "/login?next=/console"; throw new Error("login"); }
  const doc = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((lang() === "en" ? doc.message_en : doc.message) || r.status);
  return doc;
}

function beep() {
  try {
    const ctx = new AudioContext(), o = ctx.createOscillator(), g = ctx.createGain();
    o.frequency.value = 880; o.connect(g); g.connect(ctx.destination); g.gain.value = 0.2;
    o.start(); o.stop(ctx.currentTime + 0.6);
  } catch (e) { /* no audio device */ }
}

function cue(alerts) {
  const p1 = alerts.filter((a) => a.severity === "P1" && a.state === "firing").map((a) => a.alert_id);
  const fresh = p1.filter((id) => !knownP1.has(id));
  knownP1 = new Set(p1);
  if (firstLoad) { firstLoad = false; return; }
  if (fresh.length) {
    const f = document.getElementById("p1-flash");
    f.classList.remove("hidden");
    setTimeout(() => f.classList.add("hidden"), 8000);
    if (localStorage.getItem("p1sound") === "on") beep();
  }
}

async function act(kind, a) {
  try {
    if (kind === "ack") await api("POST", `/api/v1/alerts/${a.alert_id}/acknowledge`, { comment: "" });
    if (kind === "resolve") {
      const reason = prompt(t("reason_prompt"));
      if (!reason) return;
      await api("POST", `/api/v1/alerts/${a.alert_id}/resolve`, { reason });
    }
    if (kind === "silence") {
      const matchers = Object.entries(a.labels).map(([k, v]) => `${k}="${v}"`);
      await api("POST", "/api/v1/silences", { matchers, ends_at: Date.now() + 3600_000, comment: `console: ${summary(a)}` });
    }
    say(t("done"));
  } catch (e) { say(`${t("failed")}: ${e.message}`); }
  refresh();
}

function render(alerts) {
  const body = document.getElementById("alerts");
  document.getElementById("count").textContent = alerts.length ? `(${alerts.length})` : "";
  document.getElementById("empty").classList.toggle("hidden", alerts.length > 0);
  body.replaceChildren(...alerts.map((a) => {
    const tr = el("tr"); tr.dataset.alert = a.alert_id;
    if (selected === a.alert_id) tr.classList.add("selected");
    tr.addEventListener("click", () => { selected = a.alert_id; showTimeline(a); render(alerts); });
    tr.append(el("td", `sev ${a.severity}`, a.severity));
    tr.append(el("td", "summary", summary(a)));
    tr.append(el("td", `state ${a.state}`, t(a.state)));
    tr.append(el("td", "since", time(a.started_ms)));
    tr.append(el("td", "step", a.state === "firing" && a.escalation_step ? t("step").replace("{n}", a.escalation_step) : "–"));
    const actions = el("td", "actions");
    tr.append(actions);
    if (readOnly) return tr;  // not the bureau: nothing to act on here (the API would refuse it too)
    const ack = el("button", "primary ack", t("ack")); ack.disabled = a.state !== "firing";
    ack.addEventListener("click", (ev) => { ev.stopPropagation(); act("ack", a); });
    const res = el("button", "resolve", t("resolve"));
    res.addEventListener("click", (ev) => { ev.stopPropagation(); act("resolve", a); });
    const sil = el("button", "silence", t("silence"));
    sil.addEventListener("click", (ev) => { ev.stopPropagation(); act("silence", a); });
    actions.append(ack, res, sil);
    return tr;
  }));
}

async function showTimeline(a) {
  document.getElementById("detail-title").textContent = summary(a);
  const doc = await api("GET", `/api/v1/alerts/${a.alert_id}`);
  document.getElementById("timeline").replaceChildren(...(doc.transitions || []).map((x) => {
    const li = el("li");
    li.append(el("span", "when", time(x.at_ms)));
    // the system's own actor and reasons read in the screen's language; a person's name and comment as typed
    const actor = x.actor === "system" ? t("actor_system") : (x.actor || "");
    const reason = x.reason ? (I18N[lang()][`reason_${x.reason}`] ?? x.reason) : "";
    li.append(el("span", "", `${t(x.from_state) || "–"} → ${t(x.to_state)} · ${actor} ${reason}`.trim()));
    return li;
  }));
}

async function refresh() {
  try {
    const doc = await api("GET", "/api/v1/alerts?state=firing,acknowledged");
    cue(doc.alerts);
    render(doc.alerts);
  } catch (e) { say(`${t("failed")}: ${e.message}`); }
}

function connect() {
  // the live feed tells us when anything changed; the list itself comes from the API
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/live`);
  let lastHistory = "";
  ws.onopen = () => { const c = document.getElementById("conn"); c.className = "conn on"; c.dataset.t = "online"; c.textContent = t("online"); };
  ws.onmessage = (m) => {
    const f = JSON.parse(m.data);
    const h = JSON.stringify([f.history && f.history[0], f.alerts_open]);
    if (h !== lastHistory) { lastHistory = h; clearTimeout(refreshTimer); refreshTimer = setTimeout(refresh, 150); }
  };
  ws.onclose = (ev) => {
    if (ev.code === 4401) { location.href = "/login?next=/console"; return; }
    const c = document.getElementById("conn"); c.className = "conn off"; c.dataset.t = "offline"; c.textContent = t("offline");
    setTimeout(connect, 2000);
  };
}

async function start() {
  applyLang();
  const me = await api("GET", "/api/v1/me");
  csrf = me.csrf || "";
  document.getElementById("who").textContent = `${me.name} (${me.role}${me.scope ? " · " + me.scope : ""})`;
  readOnly = me.role !== "bureau";
  document.body.classList.toggle("read-only", readOnly);
  document.getElementById("my-link").classList.toggle("hidden", !["provider", "unit", "district"].includes(me.role));
  const sound = document.getElementById("sound");
  sound.checked = localStorage.getItem("p1sound") === "on";
  sound.addEventListener("change", () => localStorage.setItem("p1sound", sound.checked ? "on" : "off"));
  document.getElementById("lang").addEventListener("click", () => {
    localStorage.setItem("lang", lang() === "en" ? "zh" : "en"); applyLang(); refresh();
  });
  await refresh();
  connect();
  setInterval(refresh, 15000);  // escalation steps change without notices to this page
}
start();
