/* The runs table: the filter box (the --where language, errors shown with the caret), sort by
 * any column, a column chooser, paging on the server, and run selection for comparison. */
"use strict";

ET.table = {
  defaultColumns(info) {
    const base = info.columns.filter((c) => !c.startsWith("metrics.") && !c.startsWith("params."));
    return base.concat(info.metrics.slice(0, 6).map((m) => "metrics." + m), info.params.slice(0, 6).map((p) => "params." + p));
  },

  async load() {
    const s = ET.state;
    const box = document.getElementById("filter-error");
    const query = { where: s.where, sort: s.sort, limit: s.limit, offset: s.offset };
    if (s.brushIds) query.ids = s.brushIds;
    let page, info;
    try {
      [page, info] = await Promise.all([ET.source.runs(query), ET.source.columns({ where: s.where })]);
    } catch (error) {
      ET.table.showError(error);
      return;
    }
    box.hidden = true;
    box.textContent = "";
    if (!s.columns || !s.columnsChosen) s.columns = ET.table.defaultColumns(info);
    s.info = info;
    ET.table.render(page);
    ET.table.renderChooser(info);
    if (info.partial) {  // the server is still reading the store: the columns of the newest runs so far
      clearTimeout(ET.table.again);
      ET.table.again = setTimeout(() => { if (ET.current === "runs") ET.table.load(); }, 2000);
    }
    return page;
  },

  showError(error) {
    const box = document.getElementById("filter-error");
    const body = error.body || {};
    box.textContent = "";
    if (typeof body.position === "number" && body.expression !== undefined) {
      box.append(ET.el("div", { text: body.reason }),
        ET.el("div", { class: "code", text: body.expression }),
        ET.el("div", { class: "code caret", text: " ".repeat(body.position) + "^" }));
    } else {
      box.append(ET.el("div", { text: error.message }));
    }
    box.hidden = false;
  },

  render(page) {
    const s = ET.state;
    const table = document.getElementById("runs-table");
    table.textContent = "";
    const head = ET.el("tr", {}, ET.el("th", { class: "select" },
      ET.el("input", { type: "checkbox", "aria-label": "select all on this page", onchange: (e) => {
        for (const run of page.runs) e.target.checked ? s.selected.add(run.run_id) : s.selected.delete(run.run_id);
        ET.table.render(page);
      } })));
    for (const column of s.columns) {
      const [field, dir] = (s.sort || "").split(/ (?=asc$|desc$)/);
      const mark = field === ET.quoteField(column) ? (dir === "desc" ? " \u25bc" : " \u25b2") : "";
      head.append(ET.el("th", { "data-column": column, title: "sort by " + column, onclick: () => ET.table.sortBy(column) },
        column + mark));
    }
    table.append(ET.el("thead", {}, head));
    const body = ET.el("tbody");
    for (const run of page.runs) {
      const row = ET.el("tr", { "data-run-id": run.run_id, class: s.selected.has(run.run_id) ? "selected" : null });
      row.append(ET.el("td", { class: "select" }, ET.el("input", {
        type: "checkbox", checked: s.selected.has(run.run_id), "aria-label": "select run " + run.run_id,
        onchange: (e) => { e.target.checked ? s.selected.add(run.run_id) : s.selected.delete(run.run_id); ET.table.updateSelection(); },
      })));
      for (const column of s.columns) {
        const value = ET.get(run, column);
        const cell = ET.el("td", { class: typeof value === "number" ? "num" : null, "data-column": column });
        if (column === "run_id") cell.append(ET.el("a", { href: "#run/" + encodeURIComponent(run.run_id), text: ET.shortId(run.run_id) , title: run.run_id }));
        else cell.textContent = ET.format(value);
        if (column === "status") cell.classList.add("status-" + String(value).replace(/[^a-z]/g, ""));
        row.append(cell);
      }
      body.append(row);
    }
    table.append(body);
    const first = page.total ? page.offset + 1 : 0;
    document.getElementById("page-info").textContent =
      first + "\u2013" + (page.offset + page.runs.length) + " of " + page.total + " runs" + (s.brushIds ? " (brushed)" : "");
    document.getElementById("prev-page").disabled = page.offset <= 0;
    document.getElementById("next-page").disabled = page.offset + page.runs.length >= page.total;
    ET.table.updateSelection();
  },

  renderChooser(info) {
    const list = document.getElementById("column-list");
    list.textContent = "";
    for (const column of info.columns) {
      const box = ET.el("input", { type: "checkbox", checked: ET.state.columns.includes(column), "data-column": column,
        onchange: (e) => {
          const s = ET.state;
          s.columnsChosen = true;
          s.columns = e.target.checked ? info.columns.filter((c) => c === column || s.columns.includes(c)) : s.columns.filter((c) => c !== column);
          ET.table.load();
        } });
      list.append(ET.el("label", {}, box, " ", column));
    }
  },

  updateSelection() {
    const n = ET.state.selected.size;
    const button = document.getElementById("compare-selected");
    button.disabled = n < 2 || n > 10;
    button.textContent = "Compare selected (" + n + ")";
    document.getElementById("clear-selection").disabled = n === 0;
  },

  sortBy(column) {
    const s = ET.state, field = ET.quoteField(column);
    s.sort = s.sort === field + " desc" ? field + " asc" : field + " desc";
    s.offset = 0;
    ET.table.load();
  },

  init() {
    const s = ET.state;
    document.getElementById("filter-form").addEventListener("submit", (e) => {
      e.preventDefault();
      s.where = document.getElementById("filter").value.trim();
      s.offset = 0;
      s.brushIds = null;
      ET.refresh();
    });
    document.getElementById("prev-page").addEventListener("click", () => { s.offset = Math.max(0, s.offset - s.limit); ET.table.load(); });
    document.getElementById("next-page").addEventListener("click", () => { s.offset += s.limit; ET.table.load(); });
    document.getElementById("page-size").addEventListener("change", (e) => { s.limit = Number(e.target.value); s.offset = 0; ET.table.load(); });
    document.getElementById("compare-selected").addEventListener("click", () => {
      location.hash = "#compare/" + [...s.selected].map(encodeURIComponent).join(",");
    });
    document.getElementById("clear-selection").addEventListener("click", () => { s.selected.clear(); ET.table.load(); });
    if (!ET.source.live) {
      const input = document.getElementById("filter");
      input.value = ET.source.data.where || "";
      input.readOnly = true;
      input.title = "the filter this report was written with; filter in the live view (exptrack ui)";
    }
  },
};
