/* One run: every section as stored, its metric histories, artifacts to download (verified on the
 * server against their sha256), and the reproduce steps to copy. */
"use strict";

ET.runpage = {
  section(title, value) {
    const flat = ET.compare.flatten(value, "", {});
    const table = ET.el("table", { class: "grid kv" });
    for (const [key, v] of Object.entries(flat)) {
      table.append(ET.el("tr", {}, ET.el("th", { text: key || title }), ET.el("td", { class: typeof v === "number" ? "num" : null, text: ET.format(v) })));
    }
    return ET.el("section", { class: "run-section", "data-section": title }, ET.el("h3", { text: title }), table);
  },

  async show(id) {
    const host = document.getElementById("run-body");
    host.textContent = "";
    let run;
    try {
      run = await ET.source.run(id);
    } catch (error) {
      host.append(ET.el("p", { class: "error", text: error.message }));
      return;
    }
    const title = ET.el("h2", {}, "run ", ET.el("code", { id: "run-id", text: run.run_id }));
    const facts = ET.el("p", { class: "facts" }, ET.el("span", { class: "status-" + String(run.status).replace(/[^a-z]/g, ""), text: run.status }),
      " \u00b7 " + run.timestamp, run.tags && run.tags.length ? " \u00b7 tags: " + run.tags.join(", ") : "");
    host.append(title, facts);
    for (const key of ["name", "experiment", "note"]) if (run[key] !== undefined) host.append(ET.runpage.section(key, { [key]: run[key] }));
    const steps = await ET.source.reproduce(run.run_id).catch(() => ({ steps: [] }));
    const text = steps.steps.join("\n");
    const pre = ET.el("pre", { id: "reproduce-steps", class: "code", text });
    const copy = ET.el("button", { type: "button", text: "Copy", onclick: async () => {
      try { await navigator.clipboard.writeText(text); copy.textContent = "Copied"; } catch (e) { copy.textContent = "Select and copy"; }
    } });
    host.append(ET.el("section", { class: "run-section", "data-section": "reproduce" }, ET.el("h3", {}, "reproduce ", copy), pre));
    host.append(ET.runpage.section("params", run.params), ET.runpage.section("metrics", run.metrics));
    const artifacts = run.artifacts || {};
    if (Object.keys(artifacts).length) {
      const list = ET.el("ul", { id: "artifact-list" });
      for (const [name, info] of Object.entries(artifacts)) {
        const url = ET.source.artifactUrl(run.run_id, name);
        const label = name + " (" + (info && info.size !== undefined ? info.size + " bytes, " : "") + "sha256 " + String(info && info.sha256).slice(0, 12) + ")";
        list.append(ET.el("li", {}, url ? ET.el("a", { href: url, download: name.split("/").pop(), text: label }) : ET.el("span", { text: label + " \u2014 download it from the live view" })));
      }
      host.append(ET.el("section", { class: "run-section", "data-section": "artifacts" }, ET.el("h3", { text: "artifacts" }), list));
    }
    const skip = new Set(["schema", "run_id", "timestamp", "status", "tags", "params", "metrics", "artifacts", "name", "experiment", "note"]);
    for (const [key, value] of Object.entries(run)) if (!skip.has(key)) host.append(ET.runpage.section(key, value && typeof value === "object" ? value : { [key]: value }));
    const history = await ET.source.history(run.run_id).catch(() => null);
    if (history && Object.keys(history.metrics).length) {
      await ET.plotly();
      const chart = ET.el("div", { id: "run-history-chart", class: "chart" });
      host.append(ET.el("section", { class: "run-section", "data-section": "history" }, ET.el("h3", { text: "metric history" }), chart));
      const traces = Object.entries(history.metrics).map(([name, series]) => ({ type: "scatter", mode: "lines", name, x: series.steps,
        y: series.values.map((v) => (ET.isFinite(v) ? v : null)) }));
      Plotly.react(chart, traces, { height: 360, margin: { t: 20 }, xaxis: { title: { text: "step" } } }, ET.charts.config);
    }
  },
};
