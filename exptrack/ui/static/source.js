/* Where the page's data comes from: the live JSON API, or the data embedded in a report.
 *
 * Both sources answer the same questions with the same shapes, so every view works in both.
 * The API source remembers each answer with its ETag and revalidates with If-None-Match: an
 * unchanged answer costs a 304 without a body.  User data is only ever handled as JSON values. */
"use strict";
window.ET = window.ET || {};

ET.ApiError = class extends Error {
  constructor(body, status) {
    super(body && body.error ? body.error : "HTTP " + status);
    this.body = body || {};
    this.status = status;
  }
};

ET.ApiSource = class {
  constructor() { this.cache = new Map(); this.live = true; this.requests = 0; }
  async get(path, params) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
    }
    const url = path + (query.toString() ? "?" + query.toString() : "");
    const cached = this.cache.get(url);
    const headers = cached ? { "If-None-Match": cached.etag } : {};
    this.requests += 1;
    const response = await fetch(url, { headers, cache: "no-store" });
    if (response.status === 304 && cached) return cached.body;
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) throw new ET.ApiError(body, response.status);
    const etag = response.headers.get("ETag");
    if (etag) this.cache.set(url, { etag, body });
    return body;
  }
  version() { return this.get("/api/version"); }
  runs(q) { return this.get("/api/runs", q); }
  columns(q) { return this.get("/api/columns", q); }
  points(q) { return this.get("/api/points", q); }
  summary(q) { return this.get("/api/summary", q); }
  run(id) { return this.get("/api/runs/" + encodeURIComponent(id)); }
  history(id) { return this.get("/api/runs/" + encodeURIComponent(id) + "/history"); }
  reproduce(id) { return this.get("/api/runs/" + encodeURIComponent(id) + "/reproduce"); }
  artifactUrl(id, name) {
    return "/api/runs/" + encodeURIComponent(id) + "/artifacts/" + name.split("/").map(encodeURIComponent).join("/");
  }
  async experiments() {
    const { experiments } = await this.version();  // asked only where the store has them: no 404
    return experiments ? this.get("/api/experiments") : null;
  }
};

/* The report's source: everything was computed by the server-side code when the file was
 * written (pages, sort orders, chart rows, histories); nothing is fetched. */
ET.EmbeddedSource = class {
  constructor(data) { this.data = data; this.live = false; this.byId = new Map(data.runs.map((r) => [r.run_id, r])); }
  checkWhere(where) {
    if (where && where !== (this.data.where || "")) {
      throw new ET.ApiError({ error: "this report was frozen with its filter; filter in the live view (exptrack ui)" }, 400);
    }
  }
  async version() { return { version: this.data.version, runs: this.data.total }; }
  async runs(q) {
    this.checkWhere(q.where);
    let order = this.data.newest_first;
    if (q.sort) {
      order = this.data.orders[q.sort];
      if (!order) throw new ET.ApiError({ error: "the report has no order for " + q.sort }, 400);
    }
    const offset = Number(q.offset || 0), limit = Number(q.limit || 50);
    const ids = (q.ids ? order.filter((i) => q.ids.has(this.data.runs[i].run_id)) : order);
    return { runs: ids.slice(offset, offset + limit).map((i) => this.data.runs[i]), total: ids.length, limit, offset };
  }
  async columns(q) { this.checkWhere(q.where); return this.data.columns; }
  async points(q) {
    this.checkWhere(q.where);
    return (q.status === "any" && this.data.points_any) || this.data.points;
  }
  async summary(q) { this.checkWhere(q.where); return this.data.summary; }
  async run(id) {
    const run = this.byId.get(id);
    if (!run) throw new ET.ApiError({ error: "run " + id + " is not in this report" }, 404);
    return run;
  }
  async history(id) { return this.data.histories[id] || { run_id: id, metrics: {} }; }
  async reproduce(id) { return { run_id: id, steps: this.data.reproduce[id] || [] }; }
  artifactUrl() { return null; }
  async experiments() { return this.data.experiments || null; }
};

ET.makeSource = function () {
  const embedded = document.getElementById("exptrack-data");
  if (embedded) return new ET.EmbeddedSource(JSON.parse(embedded.textContent));
  return new ET.ApiSource();
};

/* Small DOM helpers: every user string goes in as text or as an attribute value. */
ET.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

ET.shortId = (id) => (id.length > 16 ? id.slice(0, 8) + "\u2026" + id.slice(-6) : id);  // time prefix + random tail
/* Plotly (4.8 MB of script) loads asynchronously, so the table paints without waiting for it;
 * a chart awaits it.  In a report it is inline and already there. */
ET.plotly = function () {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  const tag = document.getElementById("plotly-js");
  return new Promise((resolve, reject) => {
    tag.addEventListener("load", () => resolve(window.Plotly));
    tag.addEventListener("error", () => reject(new Error("the chart library did not load")));
  });
};
ET.isFinite = (v) => typeof v === "number" && Number.isFinite(v);
ET.format = function (value) {
  if (value === undefined) return "";
  if (value === null) return "null";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return String(value);
    return String(Number(value.toPrecision(6)));
  }
  if (typeof value === "string") return value;
  return JSON.stringify(value);
};
ET.get = function (record, field) {
  /* A dotted column of a run as the table shows it (params.optimizer.lr, metrics.accuracy). */
  const [section, ...rest] = field.split(".");
  let node = record[section];
  if (section === "tags" && rest.length === 0) return (node || []).join(", ");
  for (const part of rest.length ? [rest.join(".")] : []) {
    if (node && typeof node === "object" && part in node) { node = node[part]; continue; }
    let walk = node;
    for (const seg of part.split(".")) walk = walk && typeof walk === "object" ? walk[seg] : undefined;
    node = walk;
  }
  return node;
};
ET.quoteField = function (field) {
  /* A dotted field as the where language reads it: odd segments in backquotes. */
  return field.split(".").map((seg) => (/^\w+$/.test(seg) ? seg : "`" + seg.replace(/`/g, "``") + "`")).join(".");
};
ET.quoteString = (text) => "'" + String(text).replace(/'/g, "''") + "'";
