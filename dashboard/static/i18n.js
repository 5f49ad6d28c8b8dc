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
