/* The charts: parallel coordinates, param vs metric, optimization history, learning curves.
 *
 * Run charts draw the chart rows the server sent: every matching run, or an even sample of them
 * when there are more than the server's cap, and then the page says so.  Best-so-far lines are
 * computed by the server over all matching runs, never over the sample. */
"use strict";

ET.charts = {
  config: { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendDataToCloud"] },
  MISSING: "(missing)",
  tick: (v) => (Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(3)))),

  note(id, points, what) {
    const node = document.getElementById(id);
    node.textContent = points.sampled
      ? what + ": " + points.rows.length + " of " + points.total + " runs drawn (an even sample, every " + points.stride + "th run)"
      : what + ": all " + points.total + " runs";
  },

  fill(select, names, keep) {
    const previous = keep !== undefined ? keep : select.value;
    select.textContent = "";
    for (const name of names) select.append(ET.el("option", { value: name, text: name }));
    if (names.includes(previous)) select.value = previous;
  },

  paramKind(rows, name) {
    let numeric = 0, other = 0;
    for (const row of rows) {
      const v = row.params[name];
      if (v === undefined || v === null) continue;
      if (typeof v === "number") numeric += 1; else other += 1;
    }
    return other === 0 && numeric > 0 ? "numeric" : "categorical";
  },

  paramNames(rows) {
    const names = new Set();
    for (const row of rows) for (const key of Object.keys(row.params)) names.add(key);
    return [...names].sort();
  },

  empty(id, message) {
    const node = document.getElementById(id);
    if (window.Plotly) Plotly.purge(node);
    node.textContent = "";
    node.append(ET.el("p", { class: "empty", text: message }));
  },

  /* -- parallel coordinates ------------------------------------------------------------------ */

  dimension(rows, name, getter, logScale) {
    const values = rows.map(getter);
    const present = values.filter((v) => v !== undefined && v !== null && !(typeof v === "string" && /^-?(NaN|Infinity)$/.test(v) && name.startsWith("metrics.")));
    const numeric = present.length > 0 && present.every((v) => typeof v === "number");
    const hasMissing = present.length < values.length;
    if (numeric) {
      const canLog = logScale && present.every((v) => v > 0);
      const tf = canLog ? Math.log10 : (v) => v;
      const shown = present.map(tf);
      let lo = Math.min(...shown), hi = Math.max(...shown);
      if (lo === hi) { lo -= 1; hi += 1; }
      const missingAt = lo - (hi - lo) * 0.12;
      const dim = { label: name + (canLog ? " (log)" : ""), values: values.map((v) => (typeof v === "number" ? tf(v) : missingAt)),
        range: [hasMissing ? missingAt : lo, hi], lo, kind: "numeric", log: canLog, missingAt: hasMissing ? missingAt : null, field: name };
      if (hasMissing || canLog) {
        const ticks = [];
        const count = 5;
        for (let i = 0; i <= count; i += 1) ticks.push(lo + ((hi - lo) * i) / count);
        dim.tickvals = (hasMissing ? [missingAt] : []).concat(ticks);
        dim.ticktext = (hasMissing ? [ET.charts.MISSING] : []).concat(ticks.map((t) => ET.charts.tick(canLog ? 10 ** t : t)));
      }
      return dim;
    }
    const labels = [...new Set(present.map((v) => ET.format(v)))].sort();
    if (hasMissing) labels.push(ET.charts.MISSING);
    const index = new Map(labels.map((label, i) => [label, i]));
    return { label: name, kind: "categorical", field: name, categories: labels, tickvals: labels.map((_, i) => i), ticktext: labels,
      values: values.map((v) => index.get(v === undefined || v === null ? ET.charts.MISSING : ET.format(v))),
      range: [-0.5, Math.max(0.5, labels.length - 0.5)], rawValues: values };
  },

  parallel(points) {
    const metric = document.getElementById("parallel-metric");
    ET.charts.fill(metric, points.metrics);
    const chosen = document.getElementById("parallel-log");
    const rows = points.rows;
    if (!rows.length || !metric.value) { ET.charts.empty("parallel-chart", "no runs with a metric to draw"); return; }
    const params = ET.charts.paramNames(rows);
    const logs = new Set([...chosen.querySelectorAll("input:checked")].map((i) => i.dataset.axis));
    chosen.textContent = "log scale:";
    const dims = params.map((p) => ET.charts.dimension(rows, "params." + p, (r) => r.params[p], logs.has("params." + p)));
    const m = metric.value;
    dims.push(ET.charts.dimension(rows, "metrics." + m, (r) => (ET.isFinite(r.metrics[m]) ? r.metrics[m] : undefined), logs.has("metrics." + m)));
    for (const dim of dims) {
      if (dim.kind !== "numeric") continue;
      chosen.append(ET.el("label", {}, ET.el("input", { type: "checkbox", "data-axis": dim.field, checked: logs.has(dim.field),
        onchange: () => ET.charts.parallel(points) }), " " + dim.field));
    }
    const node = document.getElementById("parallel-chart");
    ET.charts.dims = dims;
    ET.charts.parallelRows = rows;
    ET.pcoords.draw(node, dims, (ranges) => ET.charts.brushed(ranges));
    ET.charts.note("parallel-note", points, "parallel coordinates");
  },

  /* Brushing an axis filters the table: live, as a where expression (so the filter language
   * decides, over all runs, not just the drawn sample); in a report, as the brushed runs. */
  brushed(brushes) {
    const dims = ET.charts.dims, clauses = [], keep = [];
    brushes.forEach((brush, i) => {
      if (!brush) return;
      const ranges = [brush];
      const dim = dims[i];
      keep.push((row, r) => ranges.some(([lo, hi]) => dim.values[r] >= lo && dim.values[r] <= hi));
      const field = ET.quoteField(dim.field), parts = [];
      for (const [lo, hi] of ranges) {
        if (dim.kind === "numeric") {
          const inv = (v) => (dim.log ? 10 ** v : v);
          if (dim.missingAt !== null && lo <= dim.missingAt) parts.push(field + " is null");
          parts.push(field + " >= " + Number(inv(lo).toPrecision(8)) + " and " + field + " <= " + Number(inv(hi).toPrecision(8)));
        } else {
          const picked = dim.categories.filter((_, k) => k >= lo && k <= hi);
          const real = picked.filter((c) => c !== ET.charts.MISSING);
          if (real.length) {
            const raw = new Map(dim.rawValues.filter((v) => v !== undefined && v !== null).map((v) => [ET.format(v), v]));
            parts.push(field + " in (" + real.map((c) => { const v = raw.get(c); return typeof v === "string" ? ET.quoteString(v) : ET.format(v); }).join(", ") + ")");
          }
          if (picked.length !== real.length) parts.push(field + " is null");
        }
      }
      if (parts.length) clauses.push(parts.length > 1 ? "(" + parts.join(" or ") + ")" : parts[0]);
    });
    if (ET.source.live) {
      const base = ET.state.baseWhere !== undefined ? ET.state.baseWhere : ET.state.where;
      ET.state.baseWhere = base;
      const expr = [base ? "(" + base + ")" : "", ...clauses].filter(Boolean).join(" and ");
      document.getElementById("filter").value = expr;
      ET.state.where = expr;
    } else {
      ET.state.brushIds = clauses.length
        ? new Set(ET.charts.parallelRows.filter((row, r) => keep.every((f) => f(row, r))).map((row) => row.run_id)) : null;
    }
    ET.state.offset = 0;
    const info = document.getElementById("brush-info");
    return ET.table.load().then((page) => {
      info.textContent = "";
      if (!clauses.length || !page) return;
      info.append(ET.el("a", { href: "#runs", text: page.total + " runs inside the brushed ranges: show them in the table" }),
        ET.source.live ? " (filter: " + ET.state.where + ")" : "");
    });
  },

  /* -- param vs metric ----------------------------------------------------------------------- */

  scatter(points) {
    const rows = points.rows;
    const paramSel = document.getElementById("scatter-param"), metricSel = document.getElementById("scatter-metric");
    ET.charts.fill(paramSel, ET.charts.paramNames(rows));
    ET.charts.fill(metricSel, points.metrics);
    const p = paramSel.value, m = metricSel.value;
    if (!p || !m) { ET.charts.empty("scatter-chart", "no params or metrics to draw"); return; }
    const usable = rows.filter((r) => ET.isFinite(r.metrics[m]));
    const kind = ET.charts.paramKind(usable, p);
    const logX = document.getElementById("scatter-logx").checked && kind === "numeric";
    const text = usable.map((r) => r.run_id);
    let trace;
    if (kind === "numeric") {
      const withParam = usable.filter((r) => typeof r.params[p] === "number");
      trace = { type: "scatter", mode: "markers", x: withParam.map((r) => r.params[p]), y: withParam.map((r) => r.metrics[m]),
        text: withParam.map((r) => r.run_id), hovertemplate: "%{text}<br>" + "%{x}, %{y}<extra></extra>", marker: { size: 6, opacity: 0.7 } };
    } else {
      trace = { type: "box", boxpoints: "all", jitter: 0.5, pointpos: 0, x: usable.map((r) => (r.params[p] === undefined ? ET.charts.MISSING : ET.format(r.params[p]))),
        y: usable.map((r) => r.metrics[m]), text, hovertemplate: "%{text}<br>%{x}: %{y}<extra></extra>", marker: { size: 4, opacity: 0.6 } };
    }
    const node = document.getElementById("scatter-chart");
    node.textContent = "";
    Plotly.react(node, [trace], { height: 460, margin: { t: 30 }, xaxis: { title: { text: "params." + p }, type: logX ? "log" : (kind === "numeric" ? "linear" : "category"), automargin: true },
      yaxis: { title: { text: "metrics." + m } } }, ET.charts.config);
    ET.charts.note("scatter-note", points, "param vs metric");
  },

  /* -- optimization history ------------------------------------------------------------------ */

  history(points) {
    const metricSel = document.getElementById("history-metric"), dirSel = document.getElementById("history-direction");
    const before = metricSel.value;
    ET.charts.fill(metricSel, points.metrics);
    const m = metricSel.value;
    if (!m) { ET.charts.empty("history-chart", "no metric to draw"); return; }
    if (m !== before || !dirSel.dataset.touched) dirSel.value = (points.modes && points.modes[m]) || "max";
    const mode = dirSel.value;
    const rows = points.rows.filter((r) => ET.isFinite(r.metrics[m]));
    const best = (points.best[m] || {})[mode] || [];
    const bx = best.map((b) => b[0]), by = best.map((b) => b[1]);
    if (best.length) { bx.push(points.total - 1); by.push(by[by.length - 1]); }
    const traces = [
      { type: "scatter", mode: "markers", name: m, x: rows.map((r) => r.n), y: rows.map((r) => r.metrics[m]), text: rows.map((r) => r.run_id),
        hovertemplate: "run #%{x}: %{y}<br>%{text}<extra></extra>", marker: { size: 5, opacity: 0.55 } },
      { type: "scatter", mode: "lines", name: "best so far (" + mode + ")", x: bx, y: by, line: { shape: "hv", width: 2.5, color: "#d62728" },
        text: best.map((b) => b[2]), hovertemplate: "best so far: %{y}<br>%{text}<extra></extra>" },
    ];
    const node = document.getElementById("history-chart");
    node.textContent = "";
    Plotly.react(node, traces, { height: 460, margin: { t: 30 }, xaxis: { title: { text: "run number (time order)" } },
      yaxis: { title: { text: "metrics." + m } }, legend: { orientation: "h" } }, ET.charts.config);
    const among = points.ranked === "any" ? "every run" : "every " + [].concat(points.ranked).join(" or ") + " run";
    ET.charts.note("history-note", points, "optimization history (the best-so-far line uses " + among + ")");
  },

  /* -- learning curves ----------------------------------------------------------------------- */

  async curves() {
    const s = ET.state;
    let ids = [...s.selected];
    const note = document.getElementById("curves-note");
    if (!ids.length) ids = (s.lastPageIds || []).slice(0, 5);
    const histories = await Promise.all(ids.map((id) => ET.source.history(id).catch(() => null)));
    const metrics = new Set();
    for (const h of histories) if (h) for (const name of Object.keys(h.metrics)) metrics.add(name);
    const metricSel = document.getElementById("curves-metric");
    // by default the metric with the longest history among these runs
    const longest = (name) => Math.max(...histories.map((h) => (h && h.metrics[name] ? h.metrics[name].total : 0)));
    const names = [...metrics].sort();
    const fallback = names.slice().sort((a, b) => longest(b) - longest(a))[0];
    ET.charts.fill(metricSel, names, metricSel.value && metrics.has(metricSel.value) ? metricSel.value : fallback);
    const m = metricSel.value;
    if (!m) {
      ET.charts.empty("curves-chart", "no metric history among " + (s.selected.size ? "the selected runs" : "the runs on this page") + "; select runs that logged step metrics");
      note.textContent = "";
      return;
    }
    const alpha = Number(document.getElementById("curves-smoothing").value);
    const useTime = document.getElementById("curves-x").value === "time";
    const traces = [];
    let sampled = 0;
    histories.forEach((h, i) => {
      const series = h && h.metrics[m];
      if (!series) return;
      if (series.sampled) sampled += 1;
      const t0 = series.times.find((t) => typeof t === "number") || 0;
      const x = useTime ? series.times.map((t) => (typeof t === "number" ? t - t0 : null)) : series.steps;
      let last = null;
      const y = series.values.map((v) => {
        if (!ET.isFinite(v)) return null;
        last = last === null ? v : alpha * last + (1 - alpha) * v;
        return last;
      });
      traces.push({ type: "scatter", mode: "lines", name: ET.shortId(ids[i]), x, y, hovertemplate: ids[i] + "<br>%{x}: %{y}<extra></extra>" });
    });
    const node = document.getElementById("curves-chart");
    node.textContent = "";
    Plotly.react(node, traces, { height: 460, margin: { t: 30 }, xaxis: { title: { text: useTime ? "seconds since the first point" : "step" } },
      yaxis: { title: { text: m + (alpha > 0 ? " (smoothed " + alpha + ")" : "") }, type: document.getElementById("curves-log").checked ? "log" : "linear" } },
      ET.charts.config);
    note.textContent = traces.length + " runs" + (s.selected.size ? " (selected)" : " (first runs of the table page; select runs to choose)") +
      (sampled ? "; " + sampled + " long histories downsampled on the server (min and max of each bucket kept)" : "");
  },
};
