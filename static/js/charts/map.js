// A US choropleth in SVG: the 50 states and DC from us-atlas (already projected, Albers USA in a
// 975x610 box, so no projection code is needed), decoded by topojson-client; both vendored under
// /static/vendor/ at pinned versions. Locations the atlas has no shape for (Guam, Puerto Rico, the
// Virgin Islands, "National") are listed beside the map in the same colours.
import feature from "../../vendor/topojson-client-3.1.0/feature.js";
import { fmt, h, s, svgTitle } from "../dom.js";

const ATLAS = "/static/vendor/us-atlas-3.0.1/states-albers-10m.json";
// Light to dark (ColorBrewer YlGnBu, 5 classes): a larger value is always a darker fill.
const RAMP = ["#ffffcc", "#a1dab4", "#41b6c4", "#2c7fb8", "#253494"];
const NO_VALUE = "#d9d9d9";
const MARKS = { best: "#1b7f3b", worst: "#c2410c", high: "#6a3d9a", low: "#1f9bb0", chosen: "#111111" };

let shapes = null;

// [{name, d}] once per page: the atlas is fetched on the first map only.
export function loadShapes() {
  shapes ??= fetch(ATLAS)
    .then((response) => {
      if (!response.ok) throw new Error(`the map shapes did not load (HTTP ${response.status})`);
      return response.json();
    })
    .then((topology) => feature(topology, topology.objects.states).features.map((f) => ({ name: f.properties.name, d: pathOf(f.geometry) })))
    .catch((error) => {
      shapes = null;
      throw error;
    });
  return shapes;
}

function pathOf(geometry) {
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
  return polygons.flatMap((rings) => rings.map((ring) => `M${ring.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join("L")}Z`)).join("");
}

// Equal-width classes between the smallest and the largest value.
function classify(values) {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const width = (hi - lo) / RAMP.length || 1;
  const bin = (value) => Math.min(RAMP.length - 1, Math.floor((value - lo) / width));
  const bounds = RAMP.map((_, index) => [lo + index * width, index === RAMP.length - 1 ? hi : lo + (index + 1) * width]);
  return { bin, bounds };
}

// entries: [{key, value, cls, note}] (cls best/worst/high/low/chosen marks a state's outline);
// unit: " %" or " points"; kind: "mean" or "diff".
export function choropleth({ shapes: states, entries, kind, unit, label }) {
  const byName = new Map(entries.map((entry) => [entry.key, entry]));
  const { bin, bounds } = classify(entries.map((entry) => entry.value));
  const describe = (entry) => `${entry.key}: ${fmt(entry.value, kind)}${unit}${entry.note ? ` (${entry.note})` : ""}`;
  const readout = h("p", { class: "map-readout", "aria-live": "polite", text: "Point at a state, or Tab to it, to read its value." });
  const show = (text) => () => { readout.textContent = text; };

  const svg = s("svg", { class: "map", viewBox: "0 0 975 610", role: "group", "aria-label": label, "data-kind": kind });
  const marked = [];
  for (const { name, d } of states) {
    const entry = byName.get(name);
    const text = entry ? describe(entry) : `${name}: no value`;
    const attrs = { class: "state", d, fill: entry ? RAMP[bin(entry.value)] : NO_VALUE, stroke: "#ffffff", "stroke-width": 0.75, "data-state": name, tabindex: "0", role: "img", "aria-label": text };
    if (entry) Object.assign(attrs, { "data-value": entry.value, "data-bin": bin(entry.value), "data-mark": entry.cls || null });
    const path = s("path", attrs, svgTitle(text));
    path.addEventListener("mouseenter", show(text));
    path.addEventListener("focus", show(text));
    svg.append(path);
    if (entry && MARKS[entry.cls]) marked.push(s("path", { class: "mark", d, fill: "none", stroke: MARKS[entry.cls], "stroke-width": 3, "pointer-events": "none", "aria-hidden": "true" }));
  }
  svg.append(...marked); // drawn last, so no neighbour covers the outline

  const mapped = new Set(states.map((state) => state.name));
  const outside = entries.filter((entry) => !mapped.has(entry.key));
  const aside = outside.length
    ? h("div", { class: "map-outside" },
      h("h3", { text: "Not on the map" }),
      h("ul", {}, outside.map((entry) => h("li", { "data-state": entry.key, "data-value": entry.value, class: entry.cls || null },
        h("span", { class: "swatch", style: `background:${RAMP[bin(entry.value)]}`, "aria-hidden": "true" }),
        describe(entry)))))
    : null;

  const legend = h("ul", { class: "map-legend", "aria-label": "Colour legend" },
    bounds.map(([lo, hi], index) => h("li", {},
      h("span", { class: "swatch", style: `background:${RAMP[index]}`, "aria-hidden": "true" }),
      `${fmt(lo, kind)} to ${fmt(hi, kind)}${unit}`)),
    states.some((state) => !byName.has(state.name))
      ? h("li", {}, h("span", { class: "swatch", style: `background:${NO_VALUE}`, "aria-hidden": "true" }), "no value")
      : null,
    Object.entries(MARKS).filter(([cls]) => entries.some((entry) => entry.cls === cls)).map(([cls, colour]) =>
      h("li", {}, h("span", { class: "swatch outline", style: `border-color:${colour}`, "aria-hidden": "true" }),
        `${entries.find((entry) => entry.cls === cls).note}: ${entries.filter((entry) => entry.cls === cls).map((entry) => entry.key).join(", ")}`)),
  );
  return h("div", { class: "map-wrap" }, h("div", { class: "map-box" }, svg, readout), h("div", { class: "map-side" }, legend, aside));
}
