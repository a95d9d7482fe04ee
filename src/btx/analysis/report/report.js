// btx report: builds the page from the JSON blob #btx-data (report.cpp, report_data()).
// Every piece of data reaches the DOM as text (textContent, title attributes), never as HTML.
// Heavy panels (one per routed model or ensemble) are built when first opened.
(function () {
  "use strict";

  const started = performance.now();
  const data = JSON.parse(document.getElementById("btx-data").textContent);
  const results = data.results || {};
  const rows = results.rows || [];
  const trainDomains = results.train_domains || [];
  const novelDomains = results.novel_domains || [];
  const main = document.getElementById("main");
  const toc = document.getElementById("toc");

  btxPage.chartDefaults();

  // ---- small helpers ------------------------------------------------------------------------

  const { el, isNum, fixed, PALETTE, errorBars } = btxPage;
  function count(n) {
    if (!isNum(n)) return "–";
    if (Math.abs(n) >= 1e9) return (n / 1e9).toFixed(2) + "B";
    if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(2) + "M";
    if (Math.abs(n) >= 1e3) return (n / 1e3).toFixed(1) + "k";
    return String(n);
  }
  function report(where, err) {
    const message = where + ": " + (err && err.stack ? err.stack : err);
    if (window.btxRecordError) window.btxRecordError(message);
    main.prepend(el("div", { class: "errors", text: "The report could not draw " + message }));
  }
  // Runs one part of the page; an error there is shown and recorded, the rest still draws.
  function guard(where, fn) {
    try {
      fn();
    } catch (err) {
      report(where, err);
    }
  }

  // Colours: Tableau 10, then 10 more; an expert keeps its colour everywhere (experts trained on
  // a domain are usually named after it, so a domain and its expert share one).
  function palette() {
    const map = new Map();
    return (name) => {
      if (!map.has(name)) map.set(name, PALETTE[map.size % PALETTE.length]);
      return map.get(name);
    };
  }
  const expertColour = palette();
  for (const d of trainDomains.concat(novelDomains)) expertColour(d);
  const modelColour = palette();
  for (const r of rows) modelColour(r.model);
  function rgba(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return "rgba(" + ((n >> 16) & 255) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }
  // A sequential blue scale for heatmaps, v in [0, 1].
  function heat(v) {
    const t = Math.max(0, Math.min(1, isNum(v) ? v : 0));
    const lo = [244, 248, 253], hi = [31, 78, 150];
    const c = lo.map((a, i) => Math.round(a + (hi[i] - a) * Math.pow(t, 0.8)));
    return { bg: "rgb(" + c.join(",") + ")", fg: t > 0.5 ? "#fff" : "#1d2330" };
  }

  // ---- page structure ------------------------------------------------------------------------

  toc.append(el("div", { class: "toc-title", text: "Contents" }));
  function section(id, title, lead) {
    const s = el("section", { class: "card", id: id }, el("h2", { text: title }));
    if (lead) s.append(el("p", { class: "lead", text: lead }));
    main.append(s);
    toc.append(el("a", { href: "#" + id, text: title }));
    return s;
  }
  function note(parent, text) {
    parent.append(el("div", { class: "note", text: text }));
  }
  function chartBox(parent, title, config, opts) {
    const o = opts || {};
    const canvas = el("canvas", { role: "img", "aria-label": title });
    const box = el("div", { class: "chart-box" }, el("div", { class: "chart-title", text: title }),
      el("div", { class: "chart" + (o.tall ? " tall" : ""), style: o.height ? { height: o.height + "px" } : null },
        canvas));
    if (o.hint) box.append(el("div", { class: "hint", text: o.hint }));
    parent.append(box);
    new Chart(canvas, config);
    canvas.setAttribute("data-chart", "drawn");
    return box;
  }
  // A collapsible panel whose body is built when first opened.
  function panel(parent, id, title, meta, open, build) {
    const body = el("div", { class: "body" });
    const d = el("details", { class: "model", id: id },
      el("summary", {}, el("span", { text: title }), el("span", { class: "meta", text: meta })), body);
    let built = false;
    const ensure = () => {
      if (built) return;
      built = true;
      guard(title, () => build(body));
    };
    d.addEventListener("toggle", () => { if (d.open) ensure(); });
    parent.append(d);
    if (open) {
      d.open = true;
      ensure();
    }
    return d;
  }
  function tocSub(id, text) {
    toc.append(el("a", {
      class: "sub", href: "#" + id, text: text,
      onclick: () => { const d = document.getElementById(id); if (d) d.open = true; },
    }));
  }
  // A segmented control; onPick(value) on a click and once at the start.
  function segmented(choices, initial, onPick) {
    const seg = el("div", { class: "seg", role: "group" });
    const buttons = choices.map(([value, label]) => {
      const b = el("button", { type: "button", text: label });
      b.addEventListener("click", () => {
        buttons.forEach((x) => x.classList.toggle("on", x === b));
        onPick(value);
      });
      if (value === initial) b.classList.add("on");
      seg.append(b);
      return b;
    });
    onPick(initial);
    return seg;
  }
  const tokensAxis = {
    type: "linear",
    beginAtZero: true,
    title: { display: true, text: "training tokens" },
    ticks: { callback: (v) => count(v) },
  };

  // ---- header --------------------------------------------------------------------------------

  document.title = "btx report: " + (data.run || "run");
  document.getElementById("title").textContent = "Study report: " + (data.run || "run");
  document.getElementById("subtitle").textContent = rows.length + " models · " +
    trainDomains.length + " training domains" +
    (novelDomains.length ? " · " + novelDomains.length + " novel" : "");

  // ---- results -------------------------------------------------------------------------------

  guard("results", () => {
    const s = section("results", "Results",
      "Test perplexity per domain (lower is better) and what each model costs. Click a column to sort.");
    const best = results.best || {};
    const columns = [{ key: "model", label: "model", text: (r) => r.model, value: (r) => r.model }];
    const ppl = (d) => (r) => (r.ppl ? r.ppl[d] : null);
    for (const d of trainDomains) columns.push({ key: d, label: d, value: ppl(d), text: (v) => fixed(v, 2) });
    columns.push({ key: "train_mean_ppl", label: "mean", value: (r) => r.train_mean_ppl, text: (v) => fixed(v, 2),
      title: "exp(mean loss over the training domains)" });
    const ciText = (key) => (r) => (Array.isArray(r[key]) ? fixed(r[key][0], 2) + "–" + fixed(r[key][1], 2) : "");
    if (rows.some((r) => Array.isArray(r.train_mean_ppl_ci))) {
      columns.push({ key: "train_mean_ppl_ci", label: "95% CI", value: ciText("train_mean_ppl_ci"),
        text: (v) => v, title: results.intervals || "bootstrap interval of the mean" });
    }
    if (rows.some((r) => isNum(r.gap_to_ensemble_all))) {
      columns.push({ key: "gap_to_ensemble_all", label: "vs ensemble-all", value: (r) => r.gap_to_ensemble_all,
        text: (v) => (isNum(v) ? (v >= 0 ? "+" : "") + (100 * v).toFixed(1) + "%" : ""),
        title: "a one-model row's mean perplexity against the ensemble of all experts" });
    }
    for (const d of novelDomains) {
      columns.push({ key: d, label: d + "*", value: ppl(d), text: (v) => fixed(v, 2), novel: true,
        title: "novel domain: no expert trained on it" });
    }
    if (novelDomains.length) {
      columns.push({ key: "novel_mean_ppl", label: "mean*", value: (r) => r.novel_mean_ppl,
        text: (v) => fixed(v, 2), novel: true, title: "exp(mean loss over the novel domains)" });
      if (rows.some((r) => Array.isArray(r.novel_mean_ppl_ci))) {
        columns.push({ key: "novel_mean_ppl_ci", label: "95% CI*", value: ciText("novel_mean_ppl_ci"),
          text: (v) => v, novel: true, title: results.intervals || "bootstrap interval of the mean" });
      }
    }
    columns.push({ key: "params_total", label: "params", value: (r) => r.params_total, text: count });
    columns.push({ key: "params_active", label: "active", value: (r) => r.params_active, text: count,
      title: "parameters used per token" });
    // FLOPs in the unit that suits the table's largest value.
    const flopsMax = Math.max(0, ...rows.map((r) => (isNum(r.flops_per_token) ? r.flops_per_token : 0)));
    const [flopsUnit, flopsScale] = flopsMax >= 1e9 ? ["GFLOP", 1e9] : flopsMax >= 1e6 ? ["MFLOP", 1e6] : ["kFLOP", 1e3];
    columns.push({ key: "flops_per_token", label: flopsUnit + "/token", value: (r) => r.flops_per_token,
      text: (v) => (isNum(v) ? (v / flopsScale).toPrecision(3) : "–"), title: "forward FLOPs per token" });
    columns.push({ key: "training_tokens", label: "training tokens", value: (r) => r.training_tokens,
      text: count, title: "seed + experts used + the model's own training" });

    const table = el("table", { class: "results", id: "results-table" });
    const head = el("tr");
    const tbody = el("tbody");
    let sortKey = null, sortDir = 1;
    const trs = rows.map((r) => {
      const tr = el("tr", { class: r.causal === false ? "noncausal" : null, "data-model": r.model });
      for (const c of columns) {
        if (c.key === "model") {
          const td = el("td", {}, el("span", { text: r.model }));
          if (r.causal === false) {
            td.append(el("span", { class: "badge", text: "not causal",
              title: "routing reads the whole sequence, so a position sees later tokens: not ranked" }));
          }
          tr.append(td);
          continue;
        }
        const v = c.value(r);
        tr.append(el("td", { class: best[c.key] === r.model ? "best" : null, text: c.text(v),
          title: best[c.key] === r.model ? "best of the column" : null }));
      }
      tr.sortValues = columns.map((c) => c.value(r));
      return tr;
    });
    columns.forEach((c, i) => {
      const th = el("th", { text: c.label, title: c.title, class: c.novel ? "group-novel" : null, scope: "col" });
      th.addEventListener("click", () => {
        sortDir = sortKey === i ? -sortDir : 1;
        sortKey = i;
        head.querySelectorAll("th").forEach((x) => x.classList.remove("sorted-asc", "sorted-desc"));
        th.classList.add(sortDir > 0 ? "sorted-asc" : "sorted-desc");
        const key = (tr) => tr.sortValues[i];
        const sorted = trs.slice().sort((a, b) => {
          const x = key(a), y = key(b);
          if (x === y) return 0;
          if (x === null || x === undefined) return 1;
          if (y === null || y === undefined) return -1;
          return (x < y ? -1 : 1) * sortDir;
        });
        tbody.replaceChildren(...sorted);
      });
      head.append(th);
    });
    tbody.append(...trs);
    table.append(el("thead", {}, head), tbody);
    s.append(el("div", { class: "table-wrap" }, table));
    const anyNc = rows.some((r) => r.causal === false);
    s.append(el("p", { class: "hint", text: "mean = exp(mean loss over domains); * novel domain (no expert trained on it); " +
      "the best value of each column is highlighted" + (anyNc ? "; models marked “not causal” are not ranked." : ".") }));
    const findings = results.findings || [];
    if (findings.length) {
      s.append(el("h3", { text: "Findings" }));
      s.append(el("ul", { class: "findings" }, ...findings.map((f) => el("li", { text: f }))));
    }
  });

  // ---- perplexity charts ---------------------------------------------------------------------

  guard("perplexity", () => {
    if (!rows.length) return;
    const s = section("perplexity", "Perplexity by method",
      "Mean test perplexity of every model (whiskers: the 95% bootstrap interval over the test windows), and per domain for a few of them (click legend entries to show others).");
    const grid = el("div", { class: "grid" });
    s.append(grid);
    const sorted = rows.slice().sort((a, b) => (a.train_mean_ppl || Infinity) - (b.train_mean_ppl || Infinity));
    const label = (r) => r.model + (r.causal === false ? " (not causal)" : "");
    const datasets = [{ label: "training domains", data: sorted.map((r) => r.train_mean_ppl), backgroundColor: "#4e79a7",
      intervals: sorted.map((r) => r.train_mean_ppl_ci) }];
    if (novelDomains.length) {
      datasets.push({ label: "novel domains", data: sorted.map((r) => r.novel_mean_ppl), backgroundColor: "#b07aa1",
        intervals: sorted.map((r) => r.novel_mean_ppl_ci) });
    }
    chartBox(grid, "Mean perplexity (sorted by the training domains)", {
      type: "bar",
      data: { labels: sorted.map(label), datasets: datasets },
      plugins: [errorBars],
      options: {
        indexAxis: "y",
        scales: { x: { title: { display: true, text: "perplexity" } }, y: { ticks: { autoSkip: false } } },
        plugins: { legend: { position: "top" } },
      },
    }, { height: Math.max(260, 60 + rows.length * (novelDomains.length ? 26 : 18)) });

    // One model vs the ensemble: each one-model row's gap against the tokens it spent.
    const gaps = rows.filter((r) => isNum(r.gap_to_ensemble_all) && isNum(r.training_tokens));
    if (gaps.length) {
      chartBox(grid, "Gap to the ensemble of all experts vs training tokens", {
        type: "scatter",
        data: {
          datasets: gaps.map((r) => ({
            label: r.model,
            data: [{ x: r.training_tokens / 1e6, y: 100 * r.gap_to_ensemble_all }],
            backgroundColor: modelColour(r.model),
            pointRadius: 6,
          })),
        },
        options: {
          scales: {
            x: { title: { display: true, text: "training tokens (millions): seed + experts + its own" } },
            y: { title: { display: true, text: "mean perplexity vs ensemble-all (%)" } },
          },
          plugins: { legend: { position: "right" } },
        },
      }, { height: 320 });
    }

    // Per domain: the seed, the best model of each column, the ensemble and dense baselines.
    const shown = new Set(rows.length <= 8 ? rows.map((r) => r.model) : ["seed", "ensemble-all", "dense"]);
    for (const [col, m] of Object.entries(results.best || {})) {
      if (col.endsWith("_ppl") || trainDomains.includes(col) || novelDomains.includes(col)) shown.add(m);
    }
    const domains = trainDomains.concat(novelDomains);
    chartBox(grid, "Perplexity per domain", {
      type: "bar",
      data: {
        labels: domains.map((d) => (novelDomains.includes(d) ? d + "*" : d)),
        datasets: rows.map((r) => ({
          label: label(r),
          data: domains.map((d) => (r.ppl ? r.ppl[d] : null)),
          backgroundColor: modelColour(r.model),
          hidden: !shown.has(r.model),
        })),
      },
      options: {
        scales: { y: { title: { display: true, text: "perplexity" } } },
        plugins: { legend: { position: "bottom" } },
      },
    }, { tall: true, hint: "* novel domain. Shown: the seed, the baselines and each column's best; click the legend to add others." });
  });

  // ---- training curves -----------------------------------------------------------------------

  guard("training", () => {
    const curves = data.curves || [];
    const s = section("training", "Training",
      "Training loss (per logged step) and validation loss (per evaluation) against tokens seen, for the seed, the experts and every model trained after merging.");
    if (!curves.length) {
      note(s, "No training logs (metrics.jsonl) found in the run.");
      return;
    }
    const grid = el("div", { class: "grid" });
    s.append(grid);
    const points = (pairs) => (pairs || []).map((p) => ({ x: p[0], y: p[1] }));
    const lineOpts = {
      parsing: true,
      scales: { x: tokensAxis, y: { title: { display: true, text: "loss (nats)" } } },
      plugins: { legend: { position: "bottom" } },
      interaction: { mode: "nearest", intersect: false },
    };
    // Mean validation loss over the domains evaluated at the same step.
    function meanValid(valid) {
      const by = new Map();
      const ds = Object.keys(valid || {});
      for (const d of ds) for (const [x, y] of valid[d]) by.set(x, (by.get(x) || []).concat([y]));
      return [...by.entries()].filter(([, ys]) => ys.length === ds.length)
        .sort((a, b) => a[0] - b[0]).map(([x, ys]) => ({ x: x, y: ys.reduce((a, b) => a + b, 0) / ys.length }));
    }
    const seed = curves.find((c) => c.group === "seed");
    if (seed) {
      const ds = [{ label: "training loss", data: points(seed.train), borderColor: "#1d2330",
        backgroundColor: "#1d2330", borderWidth: 1.5, pointRadius: 0 }];
      for (const [d, pairs] of Object.entries(seed.valid || {})) {
        ds.push({ label: "valid " + d, data: points(pairs), borderColor: expertColour(d),
          backgroundColor: expertColour(d), borderDash: [5, 3], borderWidth: 1.5, pointRadius: 2 });
      }
      chartBox(grid, "Seed", { type: "line", data: { datasets: ds }, options: lineOpts });
    }
    const experts = curves.filter((c) => c.group === "expert");
    if (experts.length) {
      const name = (c) => c.name.replace(/^expert-/, "");
      chartBox(grid, "Experts: training loss", {
        type: "line",
        data: { datasets: experts.map((c) => ({ label: name(c), data: points(c.train),
          borderColor: expertColour(name(c)), backgroundColor: expertColour(name(c)), borderWidth: 1.5, pointRadius: 0 })) },
        options: lineOpts,
      });
      chartBox(grid, "Experts: validation loss (own domain, else the mean)", {
        type: "line",
        data: { datasets: experts.map((c) => ({ label: name(c),
          data: c.valid && c.valid[name(c)] ? points(c.valid[name(c)]) : meanValid(c.valid),
          borderColor: expertColour(name(c)), backgroundColor: expertColour(name(c)), borderWidth: 1.5, pointRadius: 2 })) },
        options: lineOpts,
      });
    }
    const merged = curves.filter((c) => c.group === "merged");
    if (merged.length) {
      chartBox(grid, "Finetuning and further training: training loss", {
        type: "line",
        data: { datasets: merged.map((c) => ({ label: c.name, data: points(c.train),
          borderColor: modelColour(c.name), backgroundColor: modelColour(c.name), borderWidth: 1.5, pointRadius: 0 })) },
        options: lineOpts,
      }, { tall: merged.length > 8 });
      chartBox(grid, "Finetuning and further training: validation loss (mean over domains)", {
        type: "line",
        data: { datasets: merged.map((c) => ({ label: c.name, data: meanValid(c.valid),
          borderColor: modelColour(c.name), backgroundColor: modelColour(c.name), borderWidth: 1.5, pointRadius: 2 })) },
        options: lineOpts,
      }, { tall: merged.length > 8 });
    }
  });

  // ---- token view (routing samples and ensemble posteriors) ----------------------------------

  // The text of a piece as shown: newlines and tabs visible, control tokens named.
  function shownPiece(p) {
    if (p === "") return "∅";
    return p.replace(/\n/g, "↵").replace(/\t/g, "⇥");
  }
  // One token: its piece on the colour of `expert` (more opaque as `weight` nears 1).
  function tokenSpan(piece, expert, weight, title) {
    const span = el("span", { class: "tok" + (piece === "" ? " ctl" : ""), text: shownPiece(piece), title: title });
    if (expert !== null && expert !== undefined) span.style.background = rgba(expertColour(expert), 0.18 + 0.62 * weight);
    return span;
  }
  function tokenLine(parent, pieces, spans, scroll) {
    const line = el("div", { class: "tokens" + (scroll ? " scroll" : "") });
    spans.forEach((span, i) => {
      line.append(span);
      if (pieces[i].includes("\n")) line.append(el("br"));
    });
    parent.append(line);
  }
  function legend(parent, experts) {
    parent.append(el("div", { class: "legend" }, ...experts.map((e) =>
      el("span", { class: "key" }, el("span", { class: "swatch", style: { background: expertColour(e) } }), e))));
  }
  const domainLabel = (a, d) => (a.novel_domains || []).includes(d) ? d + " (novel)" : d;

  // ---- routing -------------------------------------------------------------------------------

  function buildRouting(body, a) {
    const experts = a.experts || [];
    const layers = a.layers || [];
    const domains = a.domains || [];
    const smear = a.model_type === "smear";
    experts.forEach((e) => expertColour(e));

    // Heatmaps: one domain x expert table per layer.
    body.append(el("h3", { text: "Which experts each domain's tokens use, per layer" }));
    const metrics = [["top1", "top-1 share"]];
    if (!smear && a.top_k > 1) metrics.push(["topk", "chosen (top-" + a.top_k + ") share"]);
    metrics.push(["mean_weight", smear ? "mean merge weight" : "mean router probability"]);
    const explain = {
      top1: "fraction of the domain's test tokens whose top-1 expert is this one",
      topk: "fraction of the domain's test tokens that use this expert (rows sum to k)",
      mean_weight: smear ? "mean merge weight of the expert over the domain's tokens" : "mean router softmax probability of the expert",
    };
    const maps = el("div", { class: "heatmaps" });
    const caption = el("p", { class: "hint" });
    const anyOwn = layers.some((l) => Object.keys(l.own_expert_top1 || {}).length);
    function drawMaps(metric) {
      caption.textContent = "Cell: " + explain[metric] + ". H: mean router entropy (nats; uniform over " +
        experts.length + " experts = " + Math.log(experts.length).toFixed(2) + ")" +
        (anyOwn ? "; own: top-1 share of the domain's own expert." : ".");
      maps.replaceChildren(...layers.map((l) => {
        const t = el("table", { class: "heatmap", "data-layer": l.layer },
          el("caption", { text: "layer " + l.layer }));
        t.append(el("tr", {}, el("th"), ...experts.map((e) => el("th", { class: "col", text: e, title: e })),
          el("th", { class: "col", text: "H" }), anyOwn ? el("th", { class: "col", text: "own" }) : null));
        for (const d of domains) {
          const row = el("tr", {}, el("th", { class: "row", text: domainLabel(a, d) }));
          const values = (l[metric] || {})[d] || [];
          experts.forEach((e, j) => {
            const v = values[j];
            const c = heat(metric === "topk" ? v / Math.max(1, a.top_k) : v);
            row.append(el("td", { class: "cell", text: fixed(v, 2), title: d + " → " + e + ": " + fixed(v, 3),
              style: { background: c.bg, color: c.fg } }));
          });
          row.append(el("td", { class: "own", text: fixed((l.entropy || {})[d], 2) }));
          if (anyOwn) row.append(el("td", { class: "own", text: fixed((l.own_expert_top1 || {})[d], 2) }));
          t.append(row);
        }
        return t;
      }));
    }
    body.append(el("div", { class: "controls" }, "Show:",
      segmented(metrics, smear ? "mean_weight" : "top1", drawMaps)));
    body.append(maps, caption);

    // Router entropy per layer and domain.
    const grid = el("div", { class: "grid" });
    body.append(grid);
    const datasets = domains.map((d) => ({
      label: domainLabel(a, d), data: layers.map((l) => (l.entropy || {})[d]),
      borderColor: expertColour(d), backgroundColor: expertColour(d),
      borderDash: (a.novel_domains || []).includes(d) ? [5, 3] : undefined, pointRadius: 3,
    }));
    datasets.push({ label: "uniform", data: layers.map(() => Math.log(experts.length)), borderColor: "#aab2bf",
      backgroundColor: "#aab2bf", borderDash: [2, 3], pointRadius: 0 });
    chartBox(grid, "Router entropy per layer", {
      type: "line",
      data: { labels: layers.map((l) => "layer " + l.layer), datasets: datasets },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "nats" } } },
        plugins: { legend: { position: "bottom" } } },
    });
    if (anyOwn) {
      const own = domains.filter((d) => layers.some((l) => isNum((l.own_expert_top1 || {})[d])));
      chartBox(grid, "Tokens whose top-1 is their domain's own expert", {
        type: "bar",
        data: {
          labels: layers.map((l) => "layer " + l.layer),
          datasets: own.map((d) => ({ label: d, data: layers.map((l) => (l.own_expert_top1 || {})[d]),
            backgroundColor: expertColour(d) })),
        },
        options: { scales: { y: { min: 0, max: 1, title: { display: true, text: "share of tokens" } } },
          plugins: { legend: { position: "bottom" } } },
      }, { hint: "Chance is 1/" + experts.length + " for a router that ignores the domain." });
    }

    // Tokens of each domain, coloured by their top-1 expert at one layer.
    const samples = a.samples || {};
    const sampleDomains = domains.filter((d) => samples[d] && samples[d].length);
    if (!sampleDomains.length) return;
    body.append(el("h3", { text: "Tokens and their experts" }));
    body.append(el("p", { class: "hint", text: "The first tokens of a test window of each domain, on the colour of their top-1 expert " +
      "(stronger = larger weight). Hover a token for its experts and weights in every layer." }));
    legend(body, experts);
    const view = el("div");
    function drawTokens(layer) {
      view.replaceChildren();
      for (const d of sampleDomains) {
        const toks = samples[d];
        const box = el("div", { class: "tokens-domain", "data-domain": d }, el("div", { class: "label", text: domainLabel(a, d) }));
        const spans = toks.map((t) => {
          const lines = ["“" + shownPiece(t.piece) + "”"];
          (t.layers || []).forEach((r, i) => {
            const order = r.weights.map((w, j) => [w, r.experts[j]]).sort((x, y) => y[0] - x[0]).slice(0, 4);
            lines.push("layer " + i + ": " + order.map(([w, e]) => (experts[e] || e) + " " + w.toFixed(2)).join(" · "));
          });
          const r = (t.layers || [])[layer];
          let top = null, w = 0;
          if (r) r.weights.forEach((x, j) => { if (x > w) { w = x; top = experts[r.experts[j]]; } });
          return tokenSpan(t.piece, top, w, lines.join("\n"));
        });
        tokenLine(box, toks.map((t) => t.piece), spans);
        view.append(box);
      }
    }
    const mid = Math.floor(layers.length / 2);
    body.append(el("div", { class: "controls" }, "Colour by layer:",
      segmented(layers.map((l, i) => [i, String(l.layer)]), mid, drawTokens)));
    body.append(view);
  }

  guard("routing", () => {
    const routed = rows.map((r) => (data.analysis || {})[r.model]).filter((a) => a && a.kind === "routing");
    if (!routed.length) return;
    const s = section("routing", "Routing",
      "How each routed model (MoE or SMEAR) spreads the tokens of each domain over its experts, measured on test windows.");
    routed.forEach((a, i) => {
      const meta = [a.model_type === "smear" ? "SMEAR" : "MoE", "router " + a.router_mode,
        a.model_type === "smear" ? null : "top-" + a.top_k, (a.experts || []).length + " experts",
        (a.layers || []).length + " layers"].filter(Boolean).join(" · ");
      const id = "routing-" + i;
      panel(s, id, a.model, meta, i === 0, (body) => buildRouting(body, a));
      tocSub(id, a.model);
    });
  });

  // ---- ensembles -----------------------------------------------------------------------------

  function buildEnsemble(body, a) {
    const experts = a.experts || [];
    experts.forEach((e) => expertColour(e));
    const choices = (data.choices || {})[a.model] || {};
    const priors = (a.domains || []).filter((d) => choices[d] && choices[d].prior).map((d) => [d, choices[d]]);
    if (priors.length) {
      body.append(el("h3", { text: "Prior used at evaluation, per domain" }));
      const t = el("table", { class: "heatmap", "data-kind": "prior" });
      t.append(el("tr", {}, el("th"), ...experts.map((e) => el("th", { class: "col", text: e, title: e }))));
      for (const [d, c] of priors) {
        const row = el("tr", {}, el("th", { class: "row", text: domainLabel(a, d) }));
        for (const e of experts) {
          const v = c.prior[e];
          const h = heat(v);
          row.append(el("td", { class: "cell", text: fixed(v, 2), title: d + " → " + e + ": " + fixed(v, 3),
            style: { background: h.bg, color: h.fg } }));
        }
        t.append(row);
      }
      body.append(t);
      const mode = priors[0][1].prior_mode;
      if (mode) body.append(el("p", { class: "hint", text: "prior mode: " + mode }));
    }
    body.append(el("h3", { text: "Posterior over the experts along a text" }));
    body.append(el("p", { class: "hint", text: "BTM's updating posterior p(expert | text so far), from a uniform start, along a test window " +
      "of each domain (stacked; log scale, as it settles within a few tokens). Each token below is coloured by the " +
      "expert the posterior favoured when predicting it; hover for the weights." }));
    legend(body, experts);
    const grid = el("div", { class: "grid" });
    body.append(grid);
    for (const d of a.domains || []) {
      const smp = (a.samples || {})[d];
      if (!smp || !smp.posterior || !smp.posterior.length) continue;
      const post = smp.posterior, pieces = smp.pieces || [];
      const box = el("div", { "data-domain": d });
      grid.append(box);
      chartBox(box, domainLabel(a, d), {
        type: "line",
        data: {
          datasets: experts.map((e, j) => ({
            label: e, data: post.map((row, t) => ({ x: t + 1, y: row[j] })),
            borderColor: expertColour(e), backgroundColor: rgba(expertColour(e), 0.55),
            fill: j === 0 ? "origin" : "-1", pointRadius: 0, borderWidth: 1,
          })),
        },
        options: {
          interaction: { mode: "index", intersect: false },
          scales: {
            x: {
              type: "logarithmic", min: 1, max: post.length,
              title: { display: true, text: "tokens read (log scale)" },
              ticks: { maxRotation: 0, callback: (v) => (/^(1|2|5)0*$/.test(String(v)) ? String(v) : "") },
            },
            y: { stacked: true, min: 0, max: 1, title: { display: true, text: "p(expert | prefix)" } },
          },
          plugins: {
            legend: { display: false },
            tooltip: { callbacks: { title: (items) => {
              const t = items[0].dataIndex;
              return "after " + (t + 1) + " tokens, predicting “" + shownPiece(pieces[t + 1] || "") + "”";
            } } },
          },
        },
      });
      const spans = pieces.map((p, t) => {
        if (t === 0) return tokenSpan(p, null, 0, "first token: no evidence yet");
        const row = post[t - 1] || [];
        let top = 0;
        row.forEach((w, j) => { if (w > row[top]) top = j; });
        const title = "“" + shownPiece(p) + "” predicted with " +
          row.map((w, j) => [w, experts[j]]).sort((x, y) => y[0] - x[0]).map(([w, e]) => e + " " + w.toFixed(2)).join(" · ");
        return tokenSpan(p, experts[top], row[top] || 0, title);
      });
      tokenLine(box, pieces, spans, true);
    }
  }

  guard("ensembles", () => {
    const ens = rows.map((r) => (data.analysis || {})[r.model]).filter((a) => a && a.kind === "ensemble");
    if (!ens.length) return;
    const s = section("ensembles", "Ensembles",
      "Which experts the ensemble trusts as it reads a text: the posterior over the experts after each token.");
    ens.forEach((a, i) => {
      const id = "ensemble-" + i;
      panel(s, id, a.model, (a.experts || []).length + " experts", i === 0, (body) => buildEnsemble(body, a));
      tocSub(id, a.model);
    });
  });

  // ---- why merging fails ---------------------------------------------------------------------

  function pct(v) {
    return isNum(v) ? (100 * v).toFixed(1) + "%" : "–";
  }

  function buildDivergence(s, dv) {
    s.append(el("h3", { text: "How far the experts moved" }));
    s.append(el("p", { class: "hint", text: "Distances relative to the norm of the seed's parameters in each group. " +
      "Averaging moves the model by the mean update: with updates at a low cosine it keeps only part of what each expert " +
      "learned (the last bar against the first)." }));
    const groups = (dv.groups || []).filter((g) => (dv.by_group || {})[g]);
    const cells = groups.map((g) => dv.by_group[g]).concat([dv.total || {}]);
    const labels = groups.concat(["all"]);
    const grid = el("div", { class: "grid" });
    s.append(grid);
    chartBox(grid, "Distance per parameter group", {
      type: "bar",
      data: { labels: labels, datasets: [
        { label: "expert from the seed", data: cells.map((c) => c.mean_from_seed), backgroundColor: "#4e79a7" },
        { label: "between two experts", data: cells.map((c) => c.mean_between), backgroundColor: "#f28e2b" },
        { label: "the average from the seed", data: cells.map((c) => c.mean_update), backgroundColor: "#59a14f" },
      ] },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "‖Δθ‖ / ‖θ seed‖" } } },
        plugins: { legend: { position: "bottom" } } },
    });
    const layerCells = (dv.cells || []).filter((c) => typeof c.layer === "number");
    const layers = [...new Set(layerCells.map((c) => c.layer))].sort((a, b) => a - b);
    const layerGroups = [...new Set(layerCells.map((c) => c.group))];
    const find = (l, g) => layerCells.find((c) => c.layer === l && c.group === g) || {};
    chartBox(grid, "Per layer: distance from the seed (solid) and cosine between updates (dashed)", {
      type: "line",
      data: { labels: layers.map((l) => "layer " + l), datasets: layerGroups.flatMap((g, i) => [
        { label: g, data: layers.map((l) => find(l, g).mean_from_seed), borderColor: PALETTE[i], backgroundColor: PALETTE[i],
          yAxisID: "y", pointRadius: 3 },
        { label: g + " cosine", data: layers.map((l) => find(l, g).mean_cosine), borderColor: PALETTE[i],
          backgroundColor: PALETTE[i], borderDash: [5, 3], yAxisID: "y2", pointRadius: 2 },
      ]) },
      options: { scales: {
        y: { beginAtZero: true, position: "left", title: { display: true, text: "‖Δθ‖ / ‖θ seed‖" } },
        y2: { min: 0, max: 1, position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "cosine" } },
      }, plugins: { legend: { position: "bottom" } } },
    });
    const experts = dv.experts || [];
    const total = dv.total || {};
    if (experts.length > 1 && total.cosine) {
      const t = el("table", { class: "heatmap", "data-kind": "cosine" }, el("caption", { text: "cosine between the experts' updates (all parameters)" }));
      t.append(el("tr", {}, el("th"), ...experts.map((e) => el("th", { class: "col", text: e, title: e }))));
      experts.forEach((a, i) => {
        const row = el("tr", {}, el("th", { class: "row", text: a }));
        experts.forEach((b, j) => {
          const v = total.cosine[i][j];
          const c = heat(v);
          row.append(el("td", { class: "cell", text: fixed(v, 2), title: a + " · " + b + ": " + fixed(v, 3),
            style: { background: c.bg, color: c.fg } }));
        });
        t.append(row);
      });
      s.append(t);
    }
  }

  function buildBarriers(s, br) {
    const paths = br.paths || [];
    if (!paths.length) return;
    s.append(el("h3", { text: "Loss along the straight path between two models" }));
    s.append(el("p", { class: "hint", text: "Test perplexity at (1-α)·A + α·B (" + paths[0].alphas.length +
      " points). A bump above the straight line between the ends (\"vs chord\") is a barrier: the two models sit in " +
      "different basins. A path that bends down means they are linearly connected, and averaging pays only the " +
      "compromise between them. Barrier = highest loss on the path minus the mean of the ends' (nats)." }));
    const domains = (paths[0].domains || []).map((d) => d.domain);
    const grid = el("div", { class: "grid" });
    const pick = [["mean", "mean over the domains"]].concat(domains.map((d) => [d, d]));
    function draw(which) {
      grid.replaceChildren();
      chartBox(grid, "Test perplexity along each path: " + (which === "mean" ? "exp(mean loss over the training domains)" : which), {
        type: "line",
        data: { labels: paths[0].alphas.map((a) => a.toFixed(2)), datasets: paths.map((p, i) => {
          const curve = which === "mean" ? p.mean : (p.domains || []).find((d) => d.domain === which) || {};
          const colour = PALETTE[i % PALETTE.length];
          return { label: p.a + " → " + p.b, data: curve.ppl || [], borderColor: colour, backgroundColor: colour,
            borderDash: p.a === "seed" ? [5, 3] : undefined, pointRadius: 3 };
        }) },
        options: { scales: { x: { title: { display: true, text: "α" } },
          y: { type: "logarithmic", title: { display: true, text: "perplexity (log scale)" } } },
          plugins: { legend: { position: "bottom" } } },
      }, { tall: true });
    }
    s.append(el("div", { class: "controls" }, "Domain:", segmented(pick, "mean", draw)));
    s.append(grid);
    const t = el("table", { class: "results", "data-kind": "barriers" });
    t.append(el("tr", {}, ...["path", "ppl(A)", "ppl(α=½)", "ppl(B)", "barrier", "vs chord"].map((h) => el("th", { text: h }))));
    for (const p of paths) {
      const ppl = p.mean.ppl || [];
      t.append(el("tr", {}, el("td", { text: p.a + " → " + p.b }), el("td", { text: fixed(ppl[0], 2) }),
        el("td", { text: fixed(ppl[Math.floor(ppl.length / 2)], 2) }), el("td", { text: fixed(ppl[ppl.length - 1], 2) }),
        el("td", { text: fixed(p.mean.barrier, 4) }), el("td", { text: fixed(p.mean.barrier_linear, 4) })));
    }
    s.append(t);
  }

  function buildTokenGains(s, gains) {
    s.append(el("h3", { text: "Which tokens carry the gain" }));
    const first = gains[0][1];
    s.append(el("p", { class: "hint", text: "Each model's gain per test token over a reference (nats: the reference's loss minus the " +
      "model's), with the training domains' tokens ranked by the seed's predictive entropy into " + first.bins +
      " equal bins. If the few high-entropy (\"forking\") tokens carried the gain, the top " +
      Math.round(100 * first.top_fraction) + "% would hold far more than " + Math.round(100 * first.top_fraction) +
      "% of it." }));
    const t = el("table", { class: "results", "data-kind": "token-gain" });
    t.append(el("tr", {}, ...["model", "gain vs average", "top " + Math.round(100 * first.top_fraction) + "% share",
      "novel: gain", "novel: top share", "gain vs seed", "top share"].map((h) => el("th", { text: h }))));
    for (const [model, g] of gains) {
      const avg = g.references.average || {}, seed = g.references.seed || {};
      const tr = avg.training || {}, nv = avg.novel || {}, sd = seed.training || {};
      t.append(el("tr", { "data-model": model }, el("td", { text: model }), el("td", { text: fixed(tr.gain, 4) }),
        el("td", { text: pct(tr.top_share) }), el("td", { text: fixed(nv.gain, 4) }), el("td", { text: pct(nv.top_share) }),
        el("td", { text: fixed(sd.gain, 4) }), el("td", { text: pct(sd.top_share) })));
    }
    s.append(t);
    const grid = el("div", { class: "grid" });
    s.append(grid);
    const binLabels = ((first.references.average.training || {}).bins || []).map((b, k) =>
      (k + 1) + (isNum(b.entropy_mean) ? " (H " + b.entropy_mean.toFixed(1) + ")" : ""));
    for (const ref of ["average", "seed"]) {
      chartBox(grid, "Mean gain per token over the " + (ref === "average" ? "experts' average" : "seed") + ", by seed-entropy decile", {
        type: "bar",
        data: { labels: binLabels, datasets: gains.map(([model, g]) => ({
          label: model, data: (((g.references[ref] || {}).training || {}).bins || []).map((b) => b.gain_mean),
          backgroundColor: modelColour(model) })) },
        options: { scales: { x: { title: { display: true, text: "decile of the seed's entropy (mean nats)" } },
          y: { title: { display: true, text: "nats per token" } } }, plugins: { legend: { position: "bottom" } } },
      });
    }
    const routed = gains.filter(([, g]) => g.router && g.router.training);
    if (routed.length) {
      chartBox(grid, "Routers by seed-entropy decile: own-domain top-1 (solid), router entropy (dashed)", {
        type: "line",
        data: { labels: binLabels, datasets: routed.flatMap(([model, g]) => [
          { label: model + " own top-1", data: g.router.training.own_top1 || [], borderColor: modelColour(model),
            backgroundColor: modelColour(model), yAxisID: "y", pointRadius: 3 },
          { label: model + " router entropy", data: g.router.training.router_entropy || [], borderColor: modelColour(model),
            backgroundColor: modelColour(model), borderDash: [5, 3], yAxisID: "y2", pointRadius: 2 },
        ]) },
        options: { scales: {
          y: { min: 0, max: 1, position: "left", title: { display: true, text: "share of choices" } },
          y2: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "nats" } },
        }, plugins: { legend: { position: "bottom" } } },
      });
    }
  }

  guard("why", () => {
    const gains = rows.map((r) => [r.model, ((data.analysis || {})[r.model] || {}).token_gain]).filter(([, g]) => g && g.references);
    if (!data.divergence && !data.barriers && !gains.length) return;
    const s = section("why", "Why merging fails",
      "How far the experts moved from their seed and from one another, whether the straight paths between them cross a " +
      "loss barrier, and which tokens carry what routing buys back.");
    if (data.divergence) guard("divergence", () => buildDivergence(s, data.divergence));
    if (data.barriers) guard("barriers", () => buildBarriers(s, data.barriers));
    if (gains.length) guard("token gains", () => buildTokenGains(s, gains));
  });

  // ---- notes ---------------------------------------------------------------------------------

  guard("notes", () => {
    const notes = (data.notes || []).slice();
    if (!Object.keys(data.analysis || {}).length) {
      notes.push("No model analyses (analysis/*.json): the routing and ensemble views are left out.");
    }
    if (!notes.length) return;
    const s = section("notes", "Notes", "What this report could not show, and how to add it.");
    s.append(el("ul", {}, ...notes.map((n) => el("li", { text: n }))));
  });

  document.documentElement.setAttribute("data-render-ms", String(Math.round(performance.now() - started)));
  document.documentElement.setAttribute("data-rendered", "1");
})();
