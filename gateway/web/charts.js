/* Charts of the operators' console in plain SVG: no library, nothing loaded from elsewhere,
 * no inline style (colours and fonts come from app.css classes, the CSP allows no inline style).
 * Each chart is an <svg role="img"> with a <title> and a <desc>, followed by the same numbers as
 * a table (for screen readers and for copying).
 */
"use strict";

window.VinGwCharts = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  let serial = 0;

  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function htmlEl(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  /** A "nice" upper bound and tick step for values up to ``max``. */
  function scale(max) {
    if (max <= 0) return { top: 1, step: 1 };
    const rough = max / 4;
    const mag = 10 ** Math.floor(Math.log10(rough));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= rough) || rough;
    return { top: Math.max(step, Math.ceil(max / step) * step), step: Math.max(1, step) };
  }

  function shorten(text, max) {
    const s = String(text);
    return s.length > max ? s.slice(0, max - 1) + "…" : s;
  }

  /** The drawing width: the figure's own width in CSS pixels (so text keeps its size), or
   * ``fallback`` while the figure is not laid out. */
  function widthOf(figure, fallback) {
    const inner = figure.clientWidth - 18; // the figure's padding and border
    return inner > 200 ? Math.min(1400, inner) : fallback;
  }

  function svgRoot(width, height, title, desc) {
    serial += 1;
    const titleId = `chart-title-${serial}`;
    const descId = `chart-desc-${serial}`;
    const svg = svgEl("svg", {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": `${titleId} ${descId}`,
      class: "chart-svg",
      preserveAspectRatio: "xMinYMin meet",
    });
    svg.append(svgEl("title", { id: titleId }, title), svgEl("desc", { id: descId }, desc));
    return svg;
  }

  function table(caption, head, rows) {
    return htmlEl(
      "details",
      { class: "chart-table" },
      htmlEl("summary", {}, caption),
      htmlEl(
        "table",
        {},
        htmlEl(
          "thead",
          {},
          htmlEl("tr", {}, ...head.map((h) => htmlEl("th", { scope: "col" }, h))),
        ),
        htmlEl(
          "tbody",
          {},
          ...rows.map((r) =>
            htmlEl(
              "tr",
              {},
              ...r.map((c, i) =>
                htmlEl(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : {}, String(c)),
              ),
            ),
          ),
        ),
      ),
    );
  }

  function legend(series) {
    return htmlEl(
      "ul",
      { class: "chart-legend" },
      ...series.map((s) =>
        htmlEl(
          "li",
          {},
          htmlEl("span", { class: `swatch ${s.cls}`, "aria-hidden": "true" }),
          s.label,
        ),
      ),
    );
  }

  /**
   * Stacked columns, one per ``labels`` entry: ``series`` is [{label, cls, values: [..]}].
   * ``text``: {title, desc, empty, table, total} already translated.
   */
  function columns(figure, { labels, series, text, format }) {
    const fmt = format || String;
    const totals = labels.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
    figure.replaceChildren(htmlEl("figcaption", {}, text.title));
    if (!totals.some((n) => n > 0)) {
      figure.append(htmlEl("p", { class: "hint chart-empty" }, text.empty));
      return;
    }
    const W = widthOf(figure, 900);
    const H = 260;
    const left = 44;
    const bottom = 28;
    const top = 10;
    const plotH = H - top - bottom;
    const plotW = W - left - 8;
    const { top: yMax, step } = scale(Math.max(...totals));
    const svg = svgRoot(W, H, text.title, text.desc);
    for (let v = 0; v <= yMax; v += step) {
      const y = top + plotH - (v / yMax) * plotH;
      svg.append(
        svgEl("line", { x1: left, x2: W - 8, y1: y, y2: y, class: "grid-line" }),
        svgEl("text", { x: left - 6, y: y + 4, class: "axis-label", "text-anchor": "end" }, fmt(v)),
      );
    }
    const slot = plotW / labels.length;
    const barW = Math.max(2, Math.min(40, slot * 0.7));
    const every = Math.max(1, Math.ceil(labels.length / 8));
    labels.forEach((label, i) => {
      const x = left + i * slot + (slot - barW) / 2;
      let y = top + plotH;
      const group = svgEl("g", { class: "bar" });
      group.append(svgEl("title", {}, `${label}: ${fmt(totals[i])}`));
      for (const s of series) {
        const value = s.values[i] || 0;
        if (value <= 0) continue;
        const h = (value / yMax) * plotH;
        y -= h;
        group.append(svgEl("rect", { x, y, width: barW, height: h, class: s.cls }));
      }
      svg.append(group);
      if (i % every === 0) {
        svg.append(
          svgEl(
            "text",
            {
              x: left + i * slot + slot / 2,
              y: H - 8,
              class: "axis-label",
              "text-anchor": "middle",
            },
            label,
          ),
        );
      }
    });
    svg.append(
      svgEl("line", { x1: left, x2: W - 8, y1: top + plotH, y2: top + plotH, class: "axis" }),
    );
    figure.append(
      svg,
      legend(series),
      table(
        text.table,
        [text.label, ...series.map((s) => s.label), text.total],
        labels.map((label, i) => [
          label,
          ...series.map((s) => fmt(s.values[i] || 0)),
          fmt(totals[i]),
        ]),
      ),
    );
  }

  /** Horizontal bars: ``rows`` is [{label, value, cls?}], largest first. */
  function bars(figure, { rows, text, format }) {
    const fmt = format || String;
    figure.replaceChildren(htmlEl("figcaption", {}, text.title));
    const shown = rows.filter((r) => r.value > 0).sort((a, b) => b.value - a.value);
    if (!shown.length) {
      figure.append(htmlEl("p", { class: "hint chart-empty" }, text.empty));
      return;
    }
    const W = widthOf(figure, 560);
    const rowH = 28;
    const left = Math.round(Math.min(230, W * 0.42));
    const H = shown.length * rowH + 12;
    const { top: xMax } = scale(Math.max(...shown.map((r) => r.value)));
    const svg = svgRoot(W, H, text.title, text.desc);
    shown.forEach((r, i) => {
      const y = 6 + i * rowH;
      const w = Math.max(1, (r.value / xMax) * (W - left - 60));
      const group = svgEl("g", { class: "bar" });
      group.append(
        svgEl("title", {}, `${r.label}: ${fmt(r.value)}`),
        svgEl(
          "text",
          { x: left - 8, y: y + 16, class: "axis-label", "text-anchor": "end" },
          shorten(r.label, 30),
        ),
        svgEl("rect", {
          x: left,
          y: y + 3,
          width: w,
          height: rowH - 8,
          class: r.cls || "series-1",
        }),
        svgEl("text", { x: left + w + 6, y: y + 16, class: "value-label" }, fmt(r.value)),
      );
      svg.append(group);
    });
    figure.append(
      svg,
      table(
        text.table,
        [text.label, text.value],
        shown.map((r) => [r.label, fmt(r.value)]),
      ),
    );
  }

  return { bars, columns, scale };
})();
