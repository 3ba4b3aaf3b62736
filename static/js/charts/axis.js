// What every chart shares: a linear scale with round ticks, an axis, a legend and the chart width.
import { h, s } from "../dom.js";

function niceStep(span, count) {
  const raw = span / Math.max(count, 1);
  const power = 10 ** Math.floor(Math.log10(raw));
  const scaled = raw / power;
  return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 2.5 ? 2.5 : scaled <= 5 ? 5 : 10) * power;
}

// The domain is [min(0, values), max(0, values)] exactly, so the longest bar spans the whole plot
// (an axis to 100 for a largest value of 55 wastes half of it); ticks are round numbers inside it.
export function scale(values, width, ticks) {
  const lo = Math.min(0, ...values);
  let hi = Math.max(0, ...values);
  if (lo === hi) hi = lo + 1;
  const step = niceStep(hi - lo, ticks);
  const marks = [];
  for (let tick = Math.ceil(lo / step) * step; tick <= hi + 1e-9; tick += step) marks.push(Number(tick.toFixed(10)));
  return { lo, hi, marks, x: (value) => ((value - lo) / (hi - lo)) * width };
}

export function axis(sc, left, top, bottom, kind) {
  return s("g", { class: "axis", "aria-hidden": "true" },
    sc.marks.map((tick) => {
      const x = left + sc.x(tick);
      const anchor = sc.x(tick) > sc.x(sc.hi) - 12 ? "end" : "middle";
      return s("g", {},
        s("line", { class: tick === 0 ? "zero" : "grid", x1: x, x2: x, y1: top, y2: bottom }),
        s("text", { x, y: bottom + 14, "text-anchor": anchor, text: kind === "diff" && tick > 0 ? `+${tick}` : String(tick) }),
      );
    }),
  );
}

export function legend(items) {
  return h("ul", { class: "legend", "aria-hidden": "true" },
    items.map(([cls, text]) => h("li", {}, h("span", { class: `swatch ${cls}` }), text)),
  );
}

export function chartWidth(container) {
  return Math.max(300, Math.floor(container.clientWidth || 600));
}
