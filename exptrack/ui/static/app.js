/* The page: tabs and hash routes, one shared state, and live polling.
 *
 * Live polling asks /api/version every few seconds while the tab is visible (never while it is
 * hidden); when the store's version changed, the current view refetches, and every request
 * revalidates with its ETag, so only answers that changed come back with a body. */
"use strict";

ET.state = { where: "", sort: "", limit: 50, offset: 0, columns: null, columnsChosen: false, selected: new Set(), brushIds: null };
ET.POLL_MS = 2000;
ET.polls = 0;

ET.views = ["runs", "parallel", "scatter", "history", "curves", "compare", "run"];

ET.route = function () {
  const hash = decodeURIComponent(location.hash.replace(/^#/, ""));
  const [view, ...rest] = hash.split("/");
  const name = ET.views.includes(view) ? view : "runs";
  for (const v of ET.views) document.getElementById("view-" + v).hidden = v !== name;
  for (const tab of document.querySelectorAll("#tabs a")) tab.classList.toggle("active", tab.dataset.view === name);
  ET.current = name;
  if (name === "run") ET.runpage.show(rest.join("/"));
  else if (name === "compare") {
    const ids = rest.length ? location.hash.replace(/^#compare\/?/, "").split(",").filter(Boolean).map(decodeURIComponent) : [...ET.state.selected];
    ET.compareIds = ids;
    ET.compare.show(ids);
  } else ET.drawCurrent();
};

ET.points = async function () {
  return ET.source.points({ where: ET.state.where, status: document.getElementById("history-status").value });
};

ET.drawCurrent = async function () {
  const view = ET.current;
  try {
    if (view === "runs") {
      await ET.table.load();
      return;
    }
    if (view === "curves") { await ET.plotly(); await ET.charts.curves(); return; }
    const [points] = await Promise.all([ET.points(), view === "parallel" ? null : ET.plotly()]);
    if (view === "parallel") ET.charts.parallel(points);
    else if (view === "scatter") ET.charts.scatter(points);
    else if (view === "history") ET.charts.history(points);
  } catch (error) {
    ET.table.showError(error);
  }
};

ET.refresh = function () {
  ET.state.baseWhere = undefined;
  ET.route();
};

ET.summaryLine = async function () {
  try {
    const summary = await ET.source.summary({ where: ET.state.where });
    const statuses = Object.entries(summary.statuses || {}).map(([k, v]) => k + " " + v).join(", ");
    document.getElementById("store-info").textContent = summary.total_runs + " runs" + (statuses ? " (" + statuses + ")" : "") +
      (summary.corrupt_lines ? " \u00b7 " + summary.corrupt_lines + " corrupt lines skipped" : "");
  } catch (error) { /* the table shows filter errors */ }
};

/* Experiments (when the store has them): choosing one filters every view by it. */
ET.experiments = async function () {
  const answer = await ET.source.experiments();
  const items = answer && Array.isArray(answer.experiments) ? answer.experiments : [];
  if (!items.length) return;
  const select = document.getElementById("experiment");
  select.textContent = "";
  select.append(ET.el("option", { value: "", text: "all" }));
  for (const item of items) {
    const name = typeof item === "string" ? item : item && item.name;
    if (typeof name !== "string") continue;
    const runs = item && typeof item === "object" && typeof item.runs === "number" ? " (" + item.runs + ")" : "";
    select.append(ET.el("option", { value: name, text: name + runs }));
  }
  select.addEventListener("change", () => {
    ET.state.where = select.value ? "experiment = " + ET.quoteString(select.value) : "";
    document.getElementById("filter").value = ET.state.where;
    ET.state.offset = 0;
    ET.refresh();
    ET.summaryLine();
  });
  document.getElementById("experiment-chooser").hidden = !ET.source.live;
};

ET.poll = async function () {
  const badge = document.getElementById("live-status");
  if (document.hidden) { badge.textContent = "live \u00b7 paused while the tab is hidden"; return; }
  ET.polls += 1;
  try {
    const { version } = await ET.source.version();
    if (version !== ET.version) {
      const first = ET.version === undefined;
      ET.version = version;
      if (!first) { await ET.drawCurrent(); ET.summaryLine(); }
    }
    badge.textContent = "live \u00b7 checked " + new Date().toLocaleTimeString();
  } catch (error) {
    badge.textContent = "live \u00b7 server unreachable";
  }
};

ET.start = function () {
  ET.source = ET.makeSource();
  ET.table.init();
  for (const id of ["parallel-metric"]) document.getElementById(id).addEventListener("change", () => ET.drawCurrent());
  for (const id of ["scatter-param", "scatter-metric", "scatter-logx", "history-metric", "history-status", "curves-metric", "curves-smoothing", "curves-x", "curves-log"]) {
    document.getElementById(id).addEventListener("change", () => ET.drawCurrent());
  }
  document.getElementById("history-direction").addEventListener("change", (e) => { e.target.dataset.touched = "1"; ET.drawCurrent(); });
  document.getElementById("compare-diff-only").addEventListener("change", () => ET.compare.show(ET.compareIds || []));
  window.addEventListener("hashchange", ET.route);
  const origLoad = ET.table.render;
  ET.table.render = function (page) { ET.state.lastPageIds = page.runs.map((r) => r.run_id); origLoad(page); };
  ET.route();
  ET.summaryLine();
  ET.experiments();
  if (ET.source.live) {
    ET.poll();
    ET.timer = setInterval(ET.poll, ET.POLL_MS);
    document.addEventListener("visibilitychange", ET.poll);  // resume at once when shown
  } else {
    const d = ET.source.data;
    document.getElementById("live-status").textContent = "report written " + d.generated + (d.where ? " \u00b7 filter: " + d.where : "") +
      (d.truncated ? " \u00b7 the newest " + d.runs.length + " of " + d.total + " matching runs" : "");
  }
};

document.addEventListener("DOMContentLoaded", ET.start);
