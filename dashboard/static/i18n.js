// Chinese first; English on demand, remembered on this device.
"use strict";
const I18N = {
  zh: {
    title: "威海市市级政务云 运行监控指挥中心", offline: "连接中断，正在重连…", online: "实时",
    districts: "各区市（开发区）资源利用率", resources: "纳管资源", reporting: "实时上报",
    throughput: "近 1 分钟更新", history: "告警与状态变化", no_events: "暂无告警", hot: "CPU 最高的资源",
    units: "各单位资源利用率（按峰值排序）", legend_low: "<20% 偏低", legend_normal: "20–80% 合理",
    legend_high: ">80% 偏高", assurance: "重保", remaining: "剩余", cpu: "CPU", mem: "内存", storage: "存储",
    no_data: "无数据", band_low: "偏低", band_normal: "合理", band_high: "偏高", band_none: "无数据",
    state_acknowledged: "已确认", state_resolved: "已恢复",
    sla_title: "云服务商服务质量（本月 · 不含演练）", sla_response: "响应及时率", sla_restore: "恢复及时率",
    sla_open: "未恢复故障", sla_breaches: "今日超时", sla_incidents: "本月故障", sla_updated: "更新于",
    sla_stale: "数据暂未更新", sla_more: "另有 {n} 家未显示",
    completeness_title: "数据上报完整率（近 2 分钟有上报）", no_resources: "暂无纳管资源",
    pipeline_title: "数据链路运行状态", pipe_checking: "检测中…", pipe_ok: "链路正常",
    pipe_lag_warn: "数据延迟 {s} 秒，请关注", pipe_down: "链路异常：{what}中断",
    svc_broker: "消息总线", svc_redis: "实时缓存", svc_clickhouse: "分析数据库", svc_up: "正常", svc_down: "中断",
    pipe_rate: "入库速率 条/秒", pipe_lag: "数据延迟 秒", pipe_dead: "近 15 分钟死信", my_page: "我的页面 ›",
  },
  en: {
    title: "Weihai Government Cloud Operations Control Center", offline: "Disconnected, reconnecting…",
    online: "Live", districts: "Utilization by district", resources: "Resources", reporting: "Reporting",
    throughput: "Updated last minute", history: "Alerts and state changes", no_events: "No alerts",
    hot: "Busiest resources (CPU)", units: "Utilization by unit (by peak)", legend_low: "<20% low",
    legend_normal: "20–80% in band", legend_high: ">80% high", assurance: "Assurance period",
    remaining: "left", cpu: "CPU", mem: "Memory", storage: "Storage", no_data: "no data",
    band_low: "low", band_normal: "in band", band_high: "high", band_none: "no data",
    state_acknowledged: "acknowledged", state_resolved: "resolved",
    sla_title: "Provider service quality (this month, drills excluded)", sla_response: "Responded in time",
    sla_restore: "Restored in time", sla_open: "Open incidents", sla_breaches: "Breaches today",
    sla_incidents: "Incidents this month", sla_updated: "as of", sla_stale: "figures not updated",
    sla_more: "{n} more not shown",
    completeness_title: "Telemetry completeness (reported in the last 2 min)", no_resources: "No resources",
    pipeline_title: "Pipeline health", pipe_checking: "Checking…", pipe_ok: "Pipeline healthy",
    pipe_lag_warn: "Data {s} s behind", pipe_down: "Pipeline down: {what}",
    svc_broker: "Message broker", svc_redis: "Live cache (Redis)", svc_clickhouse: "Analytics DB", svc_up: "up",
    svc_down: "down", pipe_rate: "Stored samples/s", pipe_lag: "Seconds behind", pipe_dead: "Dead letters, 15 min",
    my_page: "My page ›",
  },
};
function lang() { return localStorage.getItem("lang") === "en" ? "en" : "zh"; }
function t(key) { return I18N[lang()][key] ?? key; }
function applyLang() {
  document.documentElement.lang = lang() === "en" ? "en" : "zh-CN";
  document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
  const b = document.getElementById("lang");
  if (b) b.textContent = lang() === "en" ? "中文" : "EN";
}
