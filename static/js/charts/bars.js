// Horizontal bars, one per state, in the API's order, with the national mean as a dashed line.
import { fittedText, fmt, s, svgTitle, widest } from "../dom.js";
import { axis, scale } from "./axis.js";

// entries: [{key, value, cls, note}]
export function stateBars({ entries, kind, national, width, label }) {
  const rowH = 20;
  const barH = 14;
  const top = national !== null ? 34 : 12;
  const labelW = Math.ceil(Math.min(widest(entries.map((e) => e.key), 12, 700) + 12, Math.max(90, width * 0.4)));
  const valueW = Math.ceil(widest(entries.map((e) => fmt(e.value, kind))) + 14);
  const plotW = Math.max(80, width - labelW - valueW - 8);
  const values = entries.map((entry) => entry.value);
  const sc = scale(national !== null ? [...values, national] : values, plotW, Math.max(2, Math.floor(plotW / 70)));
  const height = top + entries.length * rowH + 22;
  const svg = s("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  svg.append(svgTitle(label));
  svg.append(axis(sc, labelW, top - 4, top + entries.length * rowH, kind));
  entries.forEach((entry, index) => {
    const y = top + index * rowH;
    const x0 = labelW + sc.x(Math.min(0, entry.value));
    const x1 = labelW + sc.x(Math.max(0, entry.value));
    const describe = `${entry.key}: ${fmt(entry.value, kind)}${entry.note ? ` (${entry.note})` : ""}`;
    const weight = ["best", "worst", "high", "low"].includes(entry.cls) ? 700 : 400;
    svg.append(
      s("g", { class: `row ${entry.cls || ""}` },
        fittedText({ class: "label", x: labelW - 6, y: y + rowH / 2 + 4, "text-anchor": "end" }, entry.key, labelW - 8, 12, weight),
        s("rect", { class: "bar", x: x0, y: y + (rowH - barH) / 2, width: Math.max(1, x1 - x0), height: barH, "data-key": entry.key, "data-value": entry.value, "aria-label": describe }, svgTitle(describe)),
        s("text", { class: "value", x: width - 4, y: y + rowH / 2 + 4, "text-anchor": "end", text: fmt(entry.value, kind) }),
      ),
    );
  });
  if (national !== null) {
    const x = labelW + sc.x(national);
    const text = kind === "diff" ? "National mean (0)" : `National mean ${fmt(national)}`;
    const anchor = x - labelW < 60 ? "start" : x > labelW + plotW - 60 ? "end" : "middle";
    svg.append(
      s("g", { class: "national-line" },
        s("line", { x1: x, x2: x, y1: top - 10, y2: top + entries.length * rowH }),
        s("text", { x, y: top - 16, "text-anchor": anchor, text }),
      ),
    );
  }
  return svg;
}
