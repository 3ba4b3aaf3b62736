// Grouped horizontal bars: a heading per category, a bar per segment, one chart per state. Every
// panel of a result shares its widths and scale, so their bars start and scale alike.
import { fittedText, fmt, s, svgTitle } from "../dom.js";
import { axis, scale } from "./axis.js";

// groups: [{category, colour, items: [{segment, value, key}]}]
export function categoryBars({ groups, width, max, label, segmentWidth, valueWidth }) {
  const rowH = 17;
  const barH = 12;
  const headH = 20;
  // Segment labels get up to 55% of the width; one still too long is cut, its <title> holds it whole.
  const labelW = Math.ceil(Math.min(segmentWidth + 12, Math.max(110, width * 0.55)));
  const valueW = Math.ceil(valueWidth + 14);
  const plotW = Math.max(60, width - labelW - valueW - 8);
  const sc = scale([0, max], plotW, Math.max(2, Math.floor(plotW / 60)));
  let y = 6;
  const body = [];
  for (const group of groups) {
    body.push(fittedText({ class: "group-label", x: 2, y: y + 14 }, group.category, width - 4, 12, 700));
    y += headH;
    for (const item of group.items) {
      const describe = `${group.category}, ${item.segment}: ${fmt(item.value)}`;
      body.push(
        s("g", { class: `row colour-${group.colour}` },
          fittedText({ class: "label", x: labelW - 6, y: y + rowH / 2 + 4, "text-anchor": "end" }, item.segment, labelW - 8),
          s("rect", { class: "bar", x: labelW, y: y + (rowH - barH) / 2, width: Math.max(1, sc.x(item.value)), height: barH, "data-key": item.key, "data-value": item.value, "aria-label": describe }, svgTitle(describe)),
          s("text", { class: "value", x: width - 4, y: y + rowH / 2 + 4, "text-anchor": "end", text: fmt(item.value) }),
        ),
      );
      y += rowH;
    }
    y += 4;
  }
  const height = y + 18;
  const svg = s("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, "data-plot-left": labelW, "data-plot-width": plotW });
  svg.append(svgTitle(label), axis(sc, labelW, 4, y - 4, "mean"), ...body);
  return svg;
}
