// Status page: polls /api/v1/status every 2 s; Chinese first, English remembered in localStorage.
"use strict";
let last = null;
function t(el) { return localStorage.getItem("lang") === "en" ? el.dataset.en : el.dataset.zh; }
function applyLang() {
  document.querySelectorAll("[data-zh]").forEach((el) => { el.textContent = t(el); });
  document.getElementById("lang").textContent = localStorage.getItem("lang") === "en" ? "中文" : "English";
}
function fmt(n) { return Number(n).toLocaleString("zh-CN"); }
async function poll() {
  try {
    const r = await fetch("/api/v1/status");
    const s = await r.json();
    const now = Date.now();
    document.getElementById("resources").textContent = fmt(s.resources);
    document.getElementById("samples").textContent = fmt(s.samples);
    document.getElementById("minutes").textContent = fmt(s.rollup_minutes);
    document.getElementById("newest").textContent = s.newest_sample_ms
      ? new Date(s.newest_sample_ms).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai" }) : "–";
    if (last) {
      const rate = (s.samples - last.samples) / ((now - last.at) / 1000);
      document.getElementById("rate").textContent = fmt(Math.max(0, Math.round(rate)));
    }
    last = { samples: s.samples, at: now };
    const ul = document.getElementById("dead");
    ul.replaceChildren(...Object.entries(s.deadletters).map(([reason, n]) => {
      const li = document.createElement("li");
      li.textContent = `${reason}: ${fmt(n)}`;
      return li;
    }));
  } catch (e) { /* server restarting: keep polling */ }
}
document.getElementById("lang").addEventListener("click", () => {
  localStorage.setItem("lang", localStorage.getItem("lang") === "en" ? "zh" : "en");
  applyLang();
});
applyLang();
poll();
setInterval(poll, 2000);
