// Helpers shared by the pages btx writes (report.js, sweep.js): element building, number
// formatting, the colour palette and Chart.js's defaults. Loaded before the page's own script.
const btxPage = (function () {
  "use strict";

  // el("div", {class: "x", title: "..."}, child, "text", ...): children are nodes or text.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "style") Object.assign(node.style, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const isNum = (v) => typeof v === "number" && isFinite(v);
  const fixed = (v, d) => (isNum(v) ? v.toFixed(d) : "–");

  // Colours: Tableau 10, then 10 more.
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
    "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b",
    "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#393b79"];

  function chartDefaults() {
    Chart.defaults.animation = false;
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.font.size = 12;
    Chart.defaults.color = "#5c6677";
    Chart.defaults.plugins.legend.labels.boxWidth = 12;
    Chart.defaults.plugins.legend.labels.boxHeight = 12;
  }

  // Error bars (a Chart.js plugin): a dataset's `intervals` holds [lo, hi] per data point (or
  // nothing), drawn as a whisker along the value axis: across the end of each bar of a
  // horizontal bar chart (indexAxis "y"), through each point of a line chart.
  const errorBars = {
    id: "errorBars",
    afterDatasetsDraw(chart) {
      const ctx = chart.ctx;
      const horizontal = chart.options.indexAxis === "y";
      const scale = horizontal ? chart.scales.x : chart.scales.y;
      chart.data.datasets.forEach((ds, i) => {
        const meta = chart.getDatasetMeta(i);
        if (!ds.intervals || meta.hidden) return;
        ctx.save();
        ctx.strokeStyle = horizontal ? "#1d2330" : ds.borderColor || "#1d2330";
        ctx.lineWidth = 1.2;
        meta.data.forEach((elem, j) => {
          const ci = ds.intervals[j];
          if (!Array.isArray(ci) || !isNum(ci[0]) || !isNum(ci[1])) return;
          const lo = scale.getPixelForValue(ci[0]), hi = scale.getPixelForValue(ci[1]);
          const cap = horizontal ? Math.min(5, (elem.height || 10) / 3) : 4;
          ctx.beginPath();
          if (horizontal) {
            const y = elem.y;
            ctx.moveTo(lo, y); ctx.lineTo(hi, y);
            ctx.moveTo(lo, y - cap); ctx.lineTo(lo, y + cap);
            ctx.moveTo(hi, y - cap); ctx.lineTo(hi, y + cap);
          } else {
            const x = elem.x;
            ctx.moveTo(x, lo); ctx.lineTo(x, hi);
            ctx.moveTo(x - cap, lo); ctx.lineTo(x + cap, lo);
            ctx.moveTo(x - cap, hi); ctx.lineTo(x + cap, hi);
          }
          ctx.stroke();
        });
        ctx.restore();
      });
    },
  };

  return { el, isNum, fixed, PALETTE, chartDefaults, errorBars };
})();
