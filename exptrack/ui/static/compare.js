/* Compare 2-10 runs side by side: one row per field (status, tags, params, metrics, code, data,
 * environment...), only the rows whose values differ unless "differences only" is unticked. */
"use strict";

ET.compare = {
  flatten(value, prefix, out) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      const keys = Object.keys(value);
      if (!keys.length) out[prefix] = "{}";
      for (const key of keys) ET.compare.flatten(value[key], prefix ? prefix + "." + key : key, out);
    } else {
      out[prefix] = value;
    }
    return out;
  },

  rows(runs) {
    const flat = runs.map((run) => {
      const copy = Object.assign({}, run);
      delete copy.schema;
      return ET.compare.flatten(copy, "", {});
    });
    const order = ["run_id", "name", "experiment", "note", "status", "timestamp", "tags"];
    const keys = new Set();
    for (const f of flat) for (const key of Object.keys(f)) keys.add(key);
    const rank = (k) => {
      const top = order.indexOf(k);
      if (top >= 0) return [0, top, k];
      const section = ["params", "metrics", "code", "data", "system", "invocation", "history", "artifacts", "error"].indexOf(k.split(".")[0]);
      return [1, section < 0 ? 99 : section, k];
    };
    const sorted = [...keys].sort((a, b) => {
      const ra = rank(a), rb = rank(b);
      return ra[0] - rb[0] || ra[1] - rb[1] || (ra[2] < rb[2] ? -1 : ra[2] > rb[2] ? 1 : 0);
    });
    return sorted.map((key) => {
      const values = flat.map((f) => f[key]);
      const texts = values.map((v) => JSON.stringify(v === undefined ? null : v));
      return { key, values, differs: key === "run_id" || new Set(texts).size > 1 };
    });
  },

  async show(ids) {
    const host = document.getElementById("compare-body");
    host.textContent = "";
    if (ids.length < 2 || ids.length > 10) {
      host.append(ET.el("p", { class: "empty", text: "select 2 to 10 runs in the table, then press Compare selected" }));
      return;
    }
    let runs;
    try {
      runs = await Promise.all(ids.map((id) => ET.source.run(id)));
    } catch (error) {
      host.append(ET.el("p", { class: "error", text: error.message }));
      return;
    }
    const onlyDiff = document.getElementById("compare-diff-only").checked;
    const rows = ET.compare.rows(runs).filter((r) => r.differs || !onlyDiff);
    const table = ET.el("table", { id: "compare-table", class: "grid" });
    const head = ET.el("tr", {}, ET.el("th", { text: "field" }));
    for (const run of runs) head.append(ET.el("th", {}, ET.el("a", { href: "#run/" + encodeURIComponent(run.run_id), text: ET.shortId(run.run_id), title: run.run_id })));
    table.append(ET.el("thead", {}, head));
    const body = ET.el("tbody");
    for (const row of rows) {
      if (row.key === "run_id") continue;
      const tr = ET.el("tr", { "data-field": row.key, class: row.differs ? "differs" : null }, ET.el("th", { text: row.key }));
      for (const value of row.values) tr.append(ET.el("td", { class: typeof value === "number" ? "num" : null, text: value === undefined ? "\u2014" : ET.format(value) }));
      body.append(tr);
    }
    table.append(body);
    host.append(ET.el("p", { class: "note", text: runs.length + " runs; " + (rows.length - 1) + " fields shown" + (onlyDiff ? " (only those that differ)" : "") }), table);
  },
};
