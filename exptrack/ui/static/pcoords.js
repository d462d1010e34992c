/* Parallel coordinates drawn as plain SVG: every axis labelled in full (categorical values and
 * a "(missing)" tick for runs without the param), per-axis log scale, brushing by dragging along
 * an axis.  SVG, not WebGL: it renders in every browser, headless ones and printed reports too;
 * the server caps the rows (an even sample), so the number of paths stays small. */
"use strict";

ET.pcoords = {
  NS: "http://www.w3.org/2000/svg",
  STOPS: [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]],  // viridis

  svg(tag, attrs, text) {
    const node = document.createElementNS(ET.pcoords.NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  },

  color(t) {
    const stops = ET.pcoords.STOPS, x = Math.max(0, Math.min(1, t)) * (stops.length - 1), i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
    const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
    return "rgb(" + c.join(",") + ")";
  },

  /* dims: [{label, values (numbers, one per row), range [lo, hi], tickvals, ticktext}], the
   * last one colours the lines.  onBrush(ranges) gets one [lo, hi] or null per axis. */
  draw(node, dims, onBrush) {
    node.textContent = "";
    const width = Math.max(600, node.clientWidth || 1100), height = 500, top = 66, bottom = height - 40;
    const left = 110, right = width - 110, n = dims.length;
    const xs = dims.map((_, i) => (n === 1 ? (left + right) / 2 : left + ((right - left) * i) / (n - 1)));
    const ys = dims.map((d) => (v) => bottom - ((v - d.range[0]) / (d.range[1] - d.range[0] || 1)) * (bottom - top));
    const root = ET.pcoords.svg("svg", { width, height, class: "pcoords", role: "img", "aria-label": "parallel coordinates" });
    const lines = ET.pcoords.svg("g", { class: "lines" });
    const colorDim = dims[n - 1];
    const rows = colorDim.values.length;
    const paths = [];
    for (let r = 0; r < rows; r += 1) {
      let d = "";
      dims.forEach((dim, i) => { d += (i ? "L" : "M") + xs[i].toFixed(1) + "," + ys[i](dim.values[r]).toFixed(1); });
      // runs without the metric are grey: the colour scale spans the values that exist
      const value = colorDim.values[r], low = colorDim.lo !== undefined ? colorDim.lo : colorDim.range[0];
      const missing = colorDim.missingAt !== null && colorDim.missingAt !== undefined && value === colorDim.missingAt;
      const t = (value - low) / (colorDim.range[1] - low || 1);
      const path = ET.pcoords.svg("path", { d, stroke: missing ? "#b8bec8" : ET.pcoords.color(t), "data-row": r });
      paths.push(path);
      lines.append(path);
    }
    root.append(lines);
    const brushes = dims.map(() => null);
    const refresh = () => {
      for (let r = 0; r < rows; r += 1) {
        const inside = brushes.every((b, i) => !b || (dims[i].values[r] >= b[0] && dims[i].values[r] <= b[1]));
        paths[r].classList.toggle("faded", !inside);
      }
    };
    dims.forEach((dim, i) => {
      const axis = ET.pcoords.svg("g", { class: "axis", "data-axis": dim.field || dim.label });
      axis.append(ET.pcoords.svg("line", { x1: xs[i], x2: xs[i], y1: top, y2: bottom }));
      const ticks = dim.tickvals || [0, 0.25, 0.5, 0.75, 1].map((f) => dim.range[0] + f * (dim.range[1] - dim.range[0]));
      const texts = dim.ticktext || ticks.map((v) => ET.charts.tick(v));
      ticks.forEach((v, k) => {
        const y = ys[i](v);
        axis.append(ET.pcoords.svg("line", { x1: xs[i] - 4, x2: xs[i], y1: y, y2: y }));
        axis.append(ET.pcoords.svg("text", { x: xs[i] - 7, y: y + 4, "text-anchor": "end", class: "tick" }, texts[k]));
      });
      // labels alternate between two rows so long names of neighbouring axes never overlap
      const title = ET.pcoords.svg("text", { x: xs[i], y: top - (i % 2 ? 14 : 34), "text-anchor": "middle", class: "label" }, dim.label);
      axis.append(title);
      const band = ET.pcoords.svg("rect", { x: xs[i] - 12, y: top, width: 24, height: bottom - top, class: "brush-zone" });
      const shown = ET.pcoords.svg("rect", { x: xs[i] - 8, width: 16, y: 0, height: 0, class: "brush", visibility: "hidden" });
      axis.append(shown, band);
      const valueAt = (py) => dim.range[0] + ((bottom - py) / (bottom - top)) * (dim.range[1] - dim.range[0]);
      band.addEventListener("pointerdown", (event) => {
        const box = root.getBoundingClientRect(), start = event.clientY - box.top;
        band.setPointerCapture(event.pointerId);
        const move = (e) => {
          const now = Math.max(top, Math.min(bottom, e.clientY - box.top)), y0 = Math.min(start, now), y1 = Math.max(start, now);
          shown.setAttribute("y", y0);
          shown.setAttribute("height", y1 - y0);
          shown.setAttribute("visibility", "visible");
        };
        const up = (e) => {
          band.removeEventListener("pointermove", move);
          band.removeEventListener("pointerup", up);
          const end = Math.max(top, Math.min(bottom, e.clientY - box.top));
          if (Math.abs(end - start) < 3) { brushes[i] = null; shown.setAttribute("visibility", "hidden"); }
          else brushes[i] = [valueAt(Math.max(start, end)), valueAt(Math.min(start, end))];
          refresh();
          onBrush(brushes.slice());
        };
        band.addEventListener("pointermove", move);
        band.addEventListener("pointerup", up);
      });
      root.append(axis);
    });
    node.append(root);
    return root;
  },
};
