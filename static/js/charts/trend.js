// A line chart of means per survey year: one line per series (the state's, the national mean), the
// years in the API's order, evenly spaced (a "2011-2012" span sits between its neighbours).
import { fmt, s, svgTitle, widest } from "../dom.js";

function niceTicks(lo, hi, count) {
  if (lo === hi) [lo, hi] = [lo - 1, hi + 1];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((m) => m >= raw);
  const first = Math.floor(lo / step) * step;
  const last = Math.ceil(hi / step) * step;
  const marks = [];
  for (let tick = first; tick <= last + step / 2; tick += step) marks.push(Number(tick.toFixed(10)));
  return { lo: first, hi: last, marks };
}

// series: [{name, cls, points: Map(year -> mean)}]; years: every year key, in order.
export function trendChart({ series, years, width, label }) {
  const height = 300;
  const values = series.flatMap((line) => [...line.points.values()]);
  const ticks = niceTicks(Math.min(...values), Math.max(...values), 5);
  const left = Math.ceil(widest(ticks.marks.map(String), 11) + 14);
  const right = 16;
  const top = 14;
  const bottom = 40;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const x = (index) => left + (years.length === 1 ? plotW / 2 : (index / (years.length - 1)) * plotW);
  const y = (value) => top + plotH - ((value - ticks.lo) / (ticks.hi - ticks.lo)) * plotH;
  const svg = s("svg", { class: "chart trend", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  svg.append(svgTitle(label));
  const every = Math.max(1, Math.ceil((widest(years, 11) + 10) / (plotW / Math.max(1, years.length - 1))));
  svg.append(
    s("g", { class: "axis", "aria-hidden": "true" },
      ticks.marks.map((tick) => s("g", {},
        s("line", { class: "grid", x1: left, x2: left + plotW, y1: y(tick), y2: y(tick) }),
        s("text", { x: left - 6, y: y(tick) + 4, "text-anchor": "end", text: String(tick) }))),
      years.map((year, index) => (index % every === 0 || index === years.length - 1
        ? s("text", { x: x(index), y: top + plotH + 18, "text-anchor": "middle", text: year })
        : null)),
    ),
  );
  for (const line of series) {
    const points = years.map((year, index) => [year, index]).filter(([year]) => line.points.has(year));
    const path = points.map(([year, index], n) => `${n ? "L" : "M"}${x(index).toFixed(1)},${y(line.points.get(year)).toFixed(1)}`).join(" ");
    svg.append(
      s("g", { class: `series ${line.cls}`, "data-series": line.name },
        s("path", { class: "line", d: path }),
        points.map(([year, index]) => {
          const value = line.points.get(year);
          const describe = `${line.name}, ${year}: ${fmt(value)}`;
          return s("circle", { class: "point", cx: x(index), cy: y(value), r: 4, "data-key": year, "data-value": value, "aria-label": describe }, svgTitle(describe));
        }),
      ),
    );
  }
  return svg;
}
