// A provider's, unit's or district's own page: SLA (GET /api/v1/sla, providers) and utilization
// (GET /api/v1/my/utilization). Every value is set as text: names are provider-supplied.
"use strict";
Object.assign(I18N.zh, { my_title: "我的服务质量与资源利用率", nav_wall: "大屏", nav_console: "告警", logout: "退出登录",
  sla_heading: "服务质量（SLA，不含演练）", this_month: "本月", this_year: "本年", response_share: "响应及时率",
  restore_share: "恢复及时率", incidents: "故障数", mtta: "平均响应时长", mttr: "平均恢复时长", drills: "演练（不计入）",
  col_provider: "云服务商", col_severity: "级别", sla_empty: "本期暂无故障",
  sla_note: "SLA（响应、恢复及时率）是对云服务商的考核指标，由市大数据局和云服务商查看；本页显示您范围内资源的利用率。",
  util_heading: "资源利用率", w1h: "近 1 小时", w24h: "近 24 小时", w7d: "近 7 天", resources: "纳管资源",
  reporting: "实时上报", high: "偏高（>80%）", low: "偏低（<20%）", normal: "合理", no_data: "暂无窗口数据",
  col_resource: "资源", col_unit: "单位", col_district: "区县", col_spec: "规格", col_cpu: "CPU 均值 / P95",
  col_mem: "内存 P95", col_storage: "存储 P95", col_live: "实时 CPU", more: "显示利用率最高的 {n} 个，共 {total} 个",
  none_in_scope: "您的范围内暂无纳管资源", failed: "加载失败", min: "分钟", hour: "小时", sec: "秒",
  role_provider: "云服务商", role_unit: "使用单位", role_district: "区县" });
Object.assign(I18N.en, { my_title: "My service quality and utilization", nav_wall: "Wall", nav_console: "Alerts",
  logout: "Log out", sla_heading: "Service quality (SLA, drills excluded)", this_month: "This month",
  this_year: "This year", response_share: "Responded in time", restore_share: "Restored in time",
  incidents: "Incidents", mtta: "Mean time to respond", mttr: "Mean time to restore", drills: "Drills (not counted)",
  col_provider: "Provider", col_severity: "Severity", sla_empty: "No incidents in this period",
  sla_note: "SLA figures (responded / restored in time) assess the cloud providers and are read by the bureau and the providers; this page shows the utilization of the resources in your scope.",
  util_heading: "Utilization", w1h: "Last hour", w24h: "Last 24 h", w7d: "Last 7 days", resources: "Resources",
  reporting: "Reporting now", high: "High (>80%)", low: "Low (<20%)", normal: "In band", no_data: "No window data",
  col_resource: "Resource", col_unit: "Unit", col_district: "District", col_spec: "Spec", col_cpu: "CPU mean / p95",
  col_mem: "Memory p95", col_storage: "Storage p95", col_live: "CPU now", more: "Showing the {n} busiest of {total}",
  none_in_scope: "No resources in your scope", failed: "Failed to load", min: "min", hour: "h", sec: "s",
  role_provider: "Provider", role_unit: "Unit", role_district: "District" });

let me = null, period = "month", windowName = "24h", lastSla = null, lastUtil = null;
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = String(text); return e; }
function share(v) { return v === null || v === undefined ? "–" : `${Math.floor(v * 1000) / 10}%`; }
function shareClass(v) { return v === null || v === undefined ? "" : v >= 0.95 ? "good" : v >= 0.9 ? "warn" : "bad"; }
function pct(v) { return v === null || v === undefined ? "–" : `${Number(v).toFixed(0)}%`; }
function dur(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${Math.round(s)} ${t("sec")}`;
  if (s < 3600) return `${Math.round(s / 60)} ${t("min")}`;
  return `${(s / 3600).toFixed(1)} ${t("hour")}`;
}
function say(text) { document.getElementById("message").textContent = text; }
function setText(id, v) { document.getElementById(id).textContent = v; }

async function get(path) {
  const r = await fetch(path);
  if (r.status === 401) { location.href = "/login?next=/my"; throw new Error("login"); }
  const doc = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((lang() === "en" ? doc.message_en : doc.message) || r.status);
  return doc;
}

function ymd(d) { return d.toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" }); }  // YYYY-MM-DD

async function loadSla() {
  const today = ymd(new Date());
  const tomorrow = ymd(new Date(Date.now() + 86400000));
  const from = period === "year" ? `${today.slice(0, 4)}-01-01` : `${today.slice(0, 7)}-01`;
  lastSla = await get(`/api/v1/sla?group_by=${period}&from=${from}&to=${tomorrow}`);
  renderSla();
}

function renderSla() {
  if (!lastSla) return;
  const rows = lastSla.rows;
  const sum = (k) => rows.reduce((n, r) => n + (r[k] || 0), 0);
  const weighted = (k, n) => { const w = sum(n); return w ? rows.reduce((a, r) => a + (r[k] || 0) * (r[n] || 0), 0) / w : null; };
  const resp = sum("response_decided") ? sum("response_within") / sum("response_decided") : null;
  const rest = sum("restore_decided") ? sum("restore_within") / sum("restore_decided") : null;
  setText("s-response", share(resp)); document.getElementById("s-response").className = `value ${shareClass(resp)}`;
  setText("s-restore", share(rest)); document.getElementById("s-restore").className = `value ${shareClass(rest)}`;
  setText("s-incidents", sum("incidents"));
  setText("s-mtta", dur(weighted("mtta_s", "responded")));
  setText("s-mttr", dur(weighted("mttr_s", "restored")));
  setText("s-drills", sum("drills"));
  document.getElementById("sla-empty").classList.toggle("hidden", rows.length > 0);
  document.getElementById("sla-rows").replaceChildren(...rows.map((r) => {
    const tr = el("tr"); tr.dataset.provider = r.provider_id; tr.dataset.severity = r.severity;
    tr.append(el("td", "", lastUtil && lastUtil.scope.id === r.provider_id ? lastUtil.scope.name : r.provider_id));
    tr.append(el("td", `sev ${r.severity}`, r.severity));
    tr.append(el("td", "num", r.incidents));
    tr.append(el("td", `num ${shareClass(r.response_within_share)}`, share(r.response_within_share)));
    tr.append(el("td", `num ${shareClass(r.restore_within_share)}`, share(r.restore_within_share)));
    tr.append(el("td", "num", dur(r.mtta_s)));
    tr.append(el("td", "num", dur(r.mttr_s)));
    return tr;
  }));
}

async function loadUtil() {
  lastUtil = await get(`/api/v1/my/utilization?window=${windowName}`);
  renderUtil();
}

function renderUtil() {
  if (!lastUtil) return;
  const u = lastUtil, s = u.summary;
  setText("scope-name", u.scope.name);
  setText("u-resources", s.resources); setText("u-reporting", s.reporting); setText("u-high", s.high);
  setText("u-low", s.low); setText("u-normal", s.normal); setText("u-nodata", s.no_data);
  document.getElementById("util-rows").replaceChildren(...u.rows.map((r) => {
    const tr = el("tr"); tr.dataset.resource = r.resource_id; tr.dataset.provider = r.provider_id;
    const f = r.figures || {}, b = r.bands || {};
    const stat = (m, k) => (f[m] ? f[m][k] : null);
    tr.append(el("td", "name", r.name), el("td", "", r.unit_name), el("td", "", r.district_name), el("td", "", r.provider_name));
    tr.append(el("td", "num", `${r.spec.vcpu} vCPU · ${r.spec.mem_gb} GB · ${r.spec.storage_gb} GB`));
    tr.append(el("td", `num band-${b.cpu || "none"}`, `${pct(stat("cpu", "mean"))} / ${pct(stat("cpu", "p95"))}`));
    tr.append(el("td", `num band-${b.memory || "none"}`, pct(stat("memory", "p95"))));
    tr.append(el("td", `num band-${b.storage || "none"}`, pct(stat("storage", "p95"))));
    tr.append(el("td", "num", r.live && r.live.fresh ? pct(r.live.cpu) : "–"));
    return tr;
  }));
  const more = u.total === 0 ? t("none_in_scope")
    : u.total > u.rows.length ? t("more").replace("{n}", u.rows.length).replace("{total}", u.total) : "";
  setText("util-more", more);
  renderSla();  // the provider's display name came with this answer
}

function switcher(id, attr, onPick) {
  const root = document.getElementById(id);
  root.addEventListener("click", (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    root.querySelectorAll("button").forEach((x) => x.classList.toggle("active", x === b));
    onPick(b.dataset[attr]);
  });
}

async function refresh() {
  try {
    const jobs = [loadUtil()];
    if (me.role === "provider") jobs.push(loadSla());
    await Promise.all(jobs);
    say("");
  } catch (e) { if (e.message !== "login") say(`${t("failed")}: ${e.message}`); }
}

async function start() {
  applyLang();
  me = await get("/api/v1/me");
  document.getElementById("logout-csrf").value = me.csrf || "";
  setText("who", `${me.name} · ${t("role_" + me.role)}`);
  document.getElementById("sla-section").classList.toggle("hidden", me.role !== "provider");
  document.getElementById("sla-note").classList.toggle("hidden", me.role === "provider");
  switcher("period-switch", "period", (p) => { period = p; loadSla().catch((e) => say(`${t("failed")}: ${e.message}`)); });
  switcher("window-switch", "window", (w) => { windowName = w; loadUtil().catch((e) => say(`${t("failed")}: ${e.message}`)); });
  document.getElementById("lang").addEventListener("click", () => {
    localStorage.setItem("lang", lang() === "en" ? "zh" : "en");
    applyLang(); setText("who", `${me.name} · ${t("role_" + me.role)}`); renderSla(); renderUtil();
  });
  await refresh();
  setInterval(refresh, 30000);
}
start().catch((e) => say(`${t("failed")}: ${e.message}`));
