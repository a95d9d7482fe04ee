// btx sweep's page: builds itself from the JSON blob #btx-data (sweep_report.cpp). Every piece
// of data reaches the DOM as text, never as HTML.
(function () {
  "use strict";

  const started = performance.now();
  const data = JSON.parse(document.getElementById("btx-data").textContent);
  const points = data.points || [];
  const models = data.models || [];
  const axes = data.axes || [];
  const main = document.getElementById("main");
  const toc = document.getElementById("toc");
  btxPage.chartDefaults();

  const { el, isNum, fixed, PALETTE, errorBars } = btxPage;
  function guard(where, fn) {
    try {
      fn();
    } catch (err) {
      const message = where + ": " + (err && err.stack ? err.stack : err);
      if (window.btxRecordError) window.btxRecordError(message);
      main.prepend(el("div", { class: "errors", text: "The page could not draw " + message }));
    }
  }
  toc.append(el("div", { class: "toc-title", text: "Contents" }));
  function section(id, title, lead) {
    const s = el("section", { class: "card", id: id }, el("h2", { text: title }));
    if (lead) s.append(el("p", { class: "lead", text: lead }));
    main.append(s);
    toc.append(el("a", { href: "#" + id, text: title }));
    return s;
  }
  function chartBox(parent, title, config) {
    const canvas = el("canvas", { role: "img", "aria-label": title });
    parent.append(el("div", { class: "chart-box" }, el("div", { class: "chart-title", text: title }),
      el("div", { class: "chart tall" }, canvas)));
    new Chart(canvas, config);
    canvas.setAttribute("data-chart", "drawn");
  }

  const swept = axes.map((a) => a.key).join(", ");
  document.title = "btx sweep: " + swept;
  document.getElementById("title").textContent = "Sweep: " + swept;
  document.getElementById("subtitle").textContent = points.length + " points · " + models.length + " rows";
  // One numeric axis: the values on a linear scale; otherwise the points in order.
  const numeric = axes.length === 1 && axes[0].values.every((v) => isFinite(Number(v)));
  const xOf = (p) => (numeric ? Number(p.settings[axes[0].key]) : p.label);

  function measure(key, title, yTitle, digits, lead) {
    guard(key, () => {
      const rows = models.filter((m) => points.some((p) => p.rows[m] && isNum(p.rows[m][key])));
      if (!rows.length) return;
      const s = section(key, title, lead);
      chartBox(s, title + " against " + swept, {
        type: "line",
        data: {
          labels: numeric ? undefined : points.map((p) => p.label),
          datasets: rows.map((m, i) => ({
            label: m, borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length],
            pointRadius: 4,
            data: points.map((p) => (numeric ? { x: xOf(p), y: (p.rows[m] || {})[key] } : (p.rows[m] || {})[key])),
            intervals: points.map((p) => (p.rows[m] || {})[key + "_ci"]),
          })),
        },
        plugins: [errorBars],
        options: {
          scales: {
            x: numeric ? { type: "linear", title: { display: true, text: axes[0].key } } : { title: { display: true, text: swept } },
            y: { title: { display: true, text: yTitle } },
          },
          plugins: { legend: { position: "bottom" } },
        },
      });
      const t = el("table", { class: "results", "data-kind": key });
      t.append(el("tr", {}, el("th", { text: "model" }), ...points.map((p) => el("th", { text: p.label }))));
      for (const m of rows) {
        const values = points.map((p) => (p.rows[m] || {})[key]);
        const best = Math.min(...values.filter(isNum));
        t.append(el("tr", { "data-model": m }, el("td", { text: m }), ...values.map((v) =>
          el("td", { class: v === best ? "best" : null, text: key === "gap_to_ensemble_all" ? (isNum(v) ? (100 * v).toFixed(1) + "%" : "–") : fixed(v, digits) }))));
      }
      s.append(t);
    });
  }
  measure("train_mean_ppl", "Mean perplexity on the training domains", "perplexity", 2,
    "exp(mean test loss over the training domains) of every row of the study at each point.");
  measure("novel_mean_ppl", "Mean perplexity on the novel domains", "perplexity", 2,
    "The same on the domains no expert trained on.");
  measure("gap_to_ensemble_all", "One-model rows against the ensemble of all experts", "mean perplexity vs ensemble-all", 1,
    "How far each one-model row is behind (above 0) or ahead of (below 0) the ensemble at each point.");

  // The study under several seeds: each row's spread, and the orderings that did not always hold.
  guard("seeds", () => {
    const seeds = data.seeds;
    if (!seeds) return;
    const s = section("seeds", "Across seeds",
      "Each row's mean perplexity over the " + seeds.count + " seeds ± its sample standard deviation [min–max].");
    const t = el("table", { class: "results", "data-kind": "seeds" });
    t.append(el("tr", {}, ...["model", "training domains", "novel domains"].map((h) => el("th", { text: h }))));
    const cell = (row, col) => {
      const c = row[col];
      return el("td", { text: c ? fixed(c.mean, 2) + " ± " + fixed(c.sd, 2) + " [" + fixed(c.min, 2) + "–" + fixed(c.max, 2) + "]" : "" });
    };
    for (const m of models) {
      const row = seeds.rows[m];
      if (row) t.append(el("tr", { "data-model": m }, el("td", { text: m }), cell(row, "train_mean_ppl"), cell(row, "novel_mean_ppl")));
    }
    s.append(t);
    const flipped = (seeds.orderings || []).filter((o) => o.held < o.of);
    s.append(el("div", { class: "note" }, (seeds.orderings || []).length - flipped.length + " of " + (seeds.orderings || []).length +
      " pairs of rows kept their order in every seed" + (flipped.length ? "; the others:" : ".")));
    if (flipped.length) {
      s.append(el("ul", {}, ...flipped.map((o) => el("li", { text: o.better + " below " + o.worse + " (" +
        (o.column === "train_mean_ppl" ? "training" : "novel") + " domains): in " + o.held + " of " + o.of + " seeds" }))));
    }
  });

  guard("points", () => {
    const s = section("points", "Points", "Each point's token split, wall time (stages shared with earlier points copied) and findings.");
    const t = el("table", { class: "results" });
    t.append(el("tr", {}, ...["point", "seed tokens", "expert tokens", "seed share", "time"].map((h) => el("th", { text: h }))));
    for (const p of points) {
      t.append(el("tr", {}, el("td", { text: p.label }), el("td", { text: (p.seed_tokens / 1e6).toFixed(2) + "M" }),
        el("td", { text: (p.expert_tokens / 1e6).toFixed(2) + "M" }), el("td", { text: (100 * p.seed_share).toFixed(1) + "%" }),
        el("td", { text: Math.floor(p.seconds / 60) + "m" + String(Math.round(p.seconds % 60)).padStart(2, "0") + "s" })));
    }
    s.append(t);
    for (const p of points) {
      if (!(p.findings || []).length) continue;
      s.append(el("details", { class: "model" }, el("summary", {}, el("span", { text: p.label + ": findings" })),
        el("div", { class: "body" }, el("ul", {}, ...p.findings.map((f) => el("li", { text: f }))))));
    }
  });

  document.documentElement.setAttribute("data-render-ms", String(Math.round(performance.now() - started)));
  document.documentElement.setAttribute("data-rendered", "1");
})();
