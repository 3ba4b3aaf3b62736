// A finished job's data drawn as a chart (bars, a map, a trend line or grouped bars), a table and
// exports. Each render returns a short summary for the status line and sets `redraw` for resizes.
import { fmt, h, widest } from "./dom.js";
import { NATIONAL, QUESTIONS, categoryColour, naturalOrder } from "./facts.js";
import { chartWidth, legend } from "./charts/axis.js";
import { stateBars } from "./charts/bars.js";
import { categoryBars } from "./charts/categories.js";
import { choropleth, loadShapes } from "./charts/map.js";
import { trendChart } from "./charts/trend.js";
import { exportBar } from "./exports.js";
import { parsePyTuple } from "./pytuple.js";
import { resultTable } from "./table.js";

export const view = { redraw: null };

const PANELS_SHOWN = 6;

function unitOf(kind, question) {
  if (kind === "diff") return " points";
  return QUESTIONS.has(question) ? " %" : "";
}

function headerWithUnit(label, kind, question) {
  const unit = unitOf(kind, question).trim();
  return unit ? `${label} (${unit})` : label;
}

export function shortQuestion(question) {
  const known = QUESTIONS.get(question);
  return known ? known.short : question;
}

function describeFilter(context) {
  const parts = [`on the data set “${context.dataset}”`];
  if (context.years) parts.push(`years ${context.years[0]}–${context.years[1]}`);
  return parts.join(", ");
}

// The national mean's name in a legend: the rows it pools are those of the years asked, if any.
function nationalName(context) {
  return context.years ? `national mean, rows of ${context.years[0]}–${context.years[1]}` : "national mean, all rows";
}

function fileName(context) {
  return `lestats-${context.jobId}-${context.kind}`;
}

// Which entries are best and worst, by the question's direction; for a diff (national mean minus the
// state's mean) the direction flips. "National" is a location but not a state: it is never ranked.
function rank(entries, context) {
  const ranked = entries.filter((entry) => entry.key !== NATIONAL);
  if (ranked.length < 2) return;
  const better = QUESTIONS.get(context.question)?.better;
  const sign = (better === "lower" ? -1 : 1) * (context.query.value === "diff" ? -1 : 1);
  const score = (entry) => sign * entry.value;
  const best = ranked.reduce((a, b) => (score(b) > score(a) ? b : a));
  const worst = ranked.reduce((a, b) => (score(b) < score(a) ? b : a));
  if (!better) {
    // No known direction (a question of an uploaded file): mark the extremes, in neutral colours.
    const [high, low] = sign > 0 ? [best, worst] : [worst, best];
    Object.assign(high, { cls: "high", note: "highest" });
    Object.assign(low, { cls: "low", note: "lowest" });
    return;
  }
  // Among the 5 best, the last is still not "worst" (nor among the 5 worst the last "best").
  if (context.kind !== "worst5") Object.assign(best, { cls: "best", note: "best" });
  if (context.kind !== "best5") Object.assign(worst, { cls: "worst", note: "worst" });
}

// The map of a per-state result, drawn once the shapes have loaded.
function mapFigure(entries, context, kind, caption) {
  const box = h("div", { class: "map-slot", "data-loading": "true" }, h("p", { class: "note", text: "Loading the map…" }));
  loadShapes()
    .then((shapes) => {
      box.replaceChildren(choropleth({ shapes, entries, kind, unit: unitOf(kind, context.question), label: `Map: ${caption}` }));
    })
    .catch((error) => box.replaceChildren(h("p", { class: "note", text: `The map is not available: ${error.message}` })))
    .finally(() => box.removeAttribute("data-loading"));
  return h("figure", { class: "chart-figure map-figure" }, box, h("figcaption", { class: "note", text: `Map: ${caption}. Colours from light (lowest) to dark (highest).` }));
}

function renderStates(data, context, result) {
  const { query, question, national } = context;
  const entries = Object.entries(data).map(([key, value]) => ({ key, value, cls: key === NATIONAL ? "national" : "", note: key === NATIONAL ? "national location" : "" }));
  rank(entries, context);
  const valueLabel = query.value === "diff" ? "National mean − state mean" : "Mean";
  const caption = `${query.label}: ${shortQuestion(question)} (${describeFilter(context)})`;
  const nationalValue = query.value === "diff" ? 0 : national;
  const chartBox = h("div", { class: "chart-scroll" });
  const figure = h("figure", { class: "chart-figure" },
    chartBox,
    h("figcaption", {},
      legend([
        ...["best", "worst", "high", "low"].flatMap((cls) => entries.filter((e) => e.cls === cls).map((e) => [cls, e.note])),
        ...(entries.some((e) => !e.cls) ? [["plain", "state"]] : []),
        ...(entries.some((e) => e.key === NATIONAL) ? [["national", "“National” (CDC location)"]] : []),
        ...(nationalValue !== null && nationalValue !== undefined ? [["line", query.value === "diff" ? `${nationalName(context)} (difference 0)` : nationalName(context)]] : []),
      ]),
      h("span", { class: "note", text: "The same numbers are in the table." }),
    ),
  );
  const draw = () => {
    chartBox.replaceChildren(
      stateBars({
        entries,
        kind: query.value,
        national: nationalValue ?? null,
        width: chartWidth(chartBox),
        label: `Bar chart, one bar per state: ${caption}. ${entries.map((e) => `${e.key} ${fmt(e.value, query.value)}${e.note ? ` (${e.note})` : ""}`).join("; ")}.`,
      }),
    );
  };
  const table = resultTable(caption, [
    { label: "State", type: "text", rowHeader: true },
    { label: headerWithUnit(valueLabel, query.value, question), type: "number" },
    { label: "Note", type: "text" },
  ], entries.map((entry) => ({ key: entry.key, cls: entry.cls, cells: [entry.key, fmt(entry.value, query.value), entry.note], sortKeys: [entry.key, entry.value, entry.note] })));
  const map = mapFigure(entries, context, query.value, caption);
  result.append(
    exportBar({ table, jobId: context.jobId, name: fileName(context), charts: [
      { slug: "chart", label: "Chart", get: () => [chartBox.querySelector("svg")] },
      { slug: "map", label: "Map", get: () => [map.querySelector("svg.map")] },
    ] }),
    map, figure, table,
  );
  draw();
  view.redraw = draw;
  return `${entries.length} ${entries.length === 1 ? "state" : "states"}`;
}

function renderSingle(data, context, result) {
  const { kind, query, question, national } = context;
  const [[key, value]] = Object.entries(data);
  const name = kind === "global_mean" ? "All rows" : key;
  const unit = unitOf(query.value, question);
  let explain;
  if (kind === "global_mean") explain = `National mean of “${shortQuestion(question)}” over every row ${describeFilter(context)}.`;
  else if (kind === "state_mean") explain = `Mean of ${key} for “${shortQuestion(question)}” ${describeFilter(context)}.`;
  else explain = `National mean minus the mean of ${key} for “${shortQuestion(question)}” ${describeFilter(context)}: ${value > 0 ? `${key} is below the national mean` : value < 0 ? `${key} is above the national mean` : `${key} is at the national mean`}.`;
  const comparison = kind === "state_mean" && national !== null
    ? h("p", { class: "compare", text: `National mean: ${fmt(national)}${unit} — ${key} is ${fmt(Math.abs(value - national))} points ${value >= national ? "above" : "below"} it.` })
    : null;
  const figure = h("figure", { class: "big-figure", role: "img", "aria-label": `${name}: ${fmt(value, query.value)}${unit}` },
    h("div", { class: "big-name", text: name }),
    h("div", { class: "big-number", "data-value": String(value) }, fmt(value, query.value), h("span", { class: "unit", text: unit })),
    h("figcaption", {}, h("p", { text: explain }), comparison),
  );
  const caption = `${query.label}: ${shortQuestion(question)} (${describeFilter(context)})`;
  const table = resultTable(caption, [
    { label: kind === "global_mean" ? "Over" : "State", type: "text", rowHeader: true },
    { label: headerWithUnit(query.value === "diff" ? "National mean − state mean" : "Mean", query.value, question), type: "number" },
  ], [{ key, cells: [kind === "global_mean" ? "all rows" : key, fmt(value, query.value)], sortKeys: [key, value] }]);
  const charts = [];
  let map = null;
  if (context.statesMean && Object.keys(context.statesMean).length) {
    // state_mean in context: every state's mean on the map, the chosen state outlined.
    const entries = Object.entries(context.statesMean).map(([state, mean]) => ({ key: state, value: mean, cls: state === key ? "chosen" : "", note: state === key ? "chosen state" : "" }));
    map = mapFigure(entries, context, "mean", `Mean per state, ${key} outlined: ${shortQuestion(question)} (${describeFilter(context)})`);
    charts.push({ slug: "map", label: "Map", get: () => [map.querySelector("svg.map")] });
  }
  result.append(exportBar({ table, jobId: context.jobId, name: fileName(context), charts }), figure, map, table);
  view.redraw = null;
  return kind === "global_mean" ? "1 figure" : `1 state`;
}

function renderTrend(data, context, result) {
  const { query, question, state } = context;
  const mine = new Map(Object.entries(data));
  const national = state && context.nationalTrend ? new Map(Object.entries(context.nationalTrend)) : null;
  const series = [{ name: state || "National mean (all rows)", cls: state ? "state-series" : "national-series", points: mine }];
  if (national) series.push({ name: "National mean (all rows)", cls: "national-series", points: national });
  // Every year either series has, in year order ("2011" < "2011-2012" < "2012").
  const yearKey = (year) => year.split("-").map(Number);
  const years = [...new Set([...mine.keys(), ...(national ? national.keys() : [])])].sort((a, b) => {
    const [x, y] = [yearKey(a), yearKey(b)];
    return x[0] - y[0] || (x[1] ?? x[0]) - (y[1] ?? y[0]);
  });
  const caption = `${query.label}: ${shortQuestion(question)}${state ? `, ${state} against the national mean` : ", national mean"} (${describeFilter(context)})`;
  const chartBox = h("div", { class: "chart-scroll" });
  const figure = h("figure", { class: "chart-figure" }, chartBox,
    h("figcaption", {},
      legend(series.map((line) => [line.cls, line.name === "National mean (all rows)" ? nationalName(context).replace(/^n/, "N") : line.name])),
      h("span", { class: "note", text: "The same numbers are in the table." })));
  const draw = () => {
    chartBox.replaceChildren(trendChart({
      series,
      years,
      width: chartWidth(chartBox),
      label: `Line chart: ${caption}. ${series.map((line) => `${line.name}: ${[...line.points].map(([year, value]) => `${year} ${fmt(value)}`).join(", ")}`).join(". ")}.`,
    }));
  };
  const columns = [{ label: "Year", type: "text", rowHeader: true }, { label: headerWithUnit(state || "National mean", "mean", question), type: "number" }];
  if (national) columns.push({ label: headerWithUnit("National mean", "mean", question), type: "number" });
  const rows = years.map((year) => {
    const values = series.map((line) => line.points.get(year));
    return { key: year, cells: [year, ...values.map((value) => (value === undefined ? "–" : fmt(value)))], sortKeys: [year, ...values.map((value) => value ?? NaN)] };
  });
  const table = resultTable(caption, columns, rows);
  result.append(exportBar({ table, jobId: context.jobId, name: fileName(context), charts: [{ slug: "chart", label: "Chart", get: () => [chartBox.querySelector("svg")] }] }), figure, table);
  draw();
  view.redraw = draw;
  return `${mine.size} ${mine.size === 1 ? "year" : "years"}`;
}

// mean_by_category: {"('<state>', '<category>', '<segment>')": mean}; state_mean_by_category:
// {state: {"('<category>', '<segment>')": mean}}. Both become rows of (state, category, segment).
function categoryRows(data, context) {
  const pairs = context.kind === "mean_by_category"
    ? Object.entries(data).map(([key, value]) => [key, parsePyTuple(key), value])
    : Object.entries(data).flatMap(([stateName, inner]) =>
      Object.entries(inner).map(([key, value]) => {
        const tuple = parsePyTuple(key);
        return [key, tuple ? [stateName, ...tuple] : null, value];
      }));
  return pairs.map(([key, tuple, value]) => {
    const [stateName, category, segment] = tuple && tuple.length === 3 ? tuple : ["?", "?", key];
    return { key, state: stateName, category, segment, value };
  });
}

function renderCategories(data, context, result) {
  const { kind, query, question } = context;
  const rows = categoryRows(data, context);
  const caption = `${query.label}: ${shortQuestion(question)} (${describeFilter(context)})`;
  const categories = [...new Set(rows.map((row) => row.category))].sort();
  const segmentWidth = widest([...new Set(rows.map((row) => row.segment))]);
  const valueWidth = widest(rows.map((row) => fmt(row.value)));
  const max = Math.max(0, ...rows.map((row) => row.value));

  // state -> category -> items; categories by name, segments in their natural order.
  const byState = new Map();
  for (const row of rows) {
    if (!byState.has(row.state)) byState.set(row.state, new Map());
    const perCategory = byState.get(row.state);
    if (!perCategory.has(row.category)) perCategory.set(row.category, []);
    perCategory.get(row.category).push(row);
  }

  const many = byState.size > 1;
  const panels = h("div", { class: many ? "panels" : "panels single" });
  const panelList = [...byState].map(([stateName, perCategory]) => {
    const box = h("div", { class: "chart-box" });
    const panel = h("section", { class: "chart-panel", "data-state": stateName, "aria-label": stateName }, h("h3", { text: stateName }), box);
    const groups = [...perCategory].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([category, items]) => ({ category, colour: categoryColour(category), items: naturalOrder(category, items) }));
    return { stateName, panel, box, groups };
  });
  panels.append(...panelList.map((p) => p.panel));

  const draw = () => {
    // Every panel as wide as its grid cell (they are all equal), so text is drawn at its real size.
    const visible = panelList.find((p) => !p.panel.hidden) || panelList[0];
    const width = chartWidth(visible.box);
    for (const { stateName, box, groups } of panelList) {
      const count = groups.reduce((n, g) => n + g.items.length, 0);
      box.replaceChildren(categoryBars({
        groups, width, max, segmentWidth, valueWidth,
        label: `Grouped bar chart of ${stateName}, ${count} segments in ${groups.length} categories: ${groups.map((g) => `${g.category}: ${g.items.map((i) => `${i.segment} ${fmt(i.value)}`).join(", ")}`).join("; ")}.`,
      }));
    }
  };

  const tableBox = resultTable(caption, [
    { label: "State", type: "text", rowHeader: true },
    { label: "Category", type: "text" },
    { label: "Segment", type: "text" },
    { label: headerWithUnit("Mean", "mean", question), type: "number" },
  ], rows.map((row) => ({ key: row.key, cells: [row.state, row.category, row.segment, fmt(row.value)], sortKeys: [row.state, row.category, row.segment, row.value] })));

  // With every state there are dozens of panels: the first few are shown, a counter says how many
  // more exist and a button shows them all; a filter narrows the panels and the table to one state.
  // The counter says which of these applies, and that the table is not cut, so no word contradicts it.
  let showAll = !many || byState.size <= PANELS_SHOWN;
  let only = "";
  const counter = h("p", { class: "panel-count", id: "panel-count", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "secondary", id: "show-all-panels" });
  const applyFilter = () => {
    panelList.forEach((p, index) => { p.panel.hidden = only ? p.stateName !== only : !showAll && index >= PANELS_SHOWN; });
    for (const tr of tableBox.querySelectorAll("tbody tr")) {
      const row = rows.find((r) => r.key === tr.dataset.key);
      tr.hidden = Boolean(only) && row && row.state !== only;
    }
    const shown = panelList.filter((p) => !p.panel.hidden).length;
    const total = byState.size;
    if (only) counter.textContent = `Filtered to ${only}: its chart and its rows in the table (1 of ${total} states).`;
    else if (shown === total) counter.textContent = `Charts of all ${total} states.`;
    else counter.textContent = `Charts of the first ${shown} of ${total} states; the table below lists all ${total}.`;
    more.hidden = showAll || Boolean(only);
    more.textContent = `Show the charts of all ${total} states (${total - shown} more)`;
  };
  more.addEventListener("click", () => { showAll = true; applyFilter(); });

  const figure = h("figure", { class: "chart-figure" },
    many ? counter : null,
    panels,
    many ? more : null,
    h("figcaption", {},
      legend(categories.map((category) => [`colour-${categoryColour(category)}`, category])),
      h("span", { class: "note", text: "A cut label shows whole on hover; the table has every label in full." }),
    ),
  );

  const controls = [];
  if (kind === "mean_by_category" && many) {
    const filter = h("select", { id: "category-state-filter" },
      h("option", { value: "", text: "No filter" }),
      [...byState.keys()].map((name) => h("option", { value: name, text: name })),
    );
    filter.addEventListener("change", () => { only = filter.value; applyFilter(); draw(); });
    controls.push(h("div", { class: "field inline" }, h("label", { for: "category-state-filter", text: "Filter by state" }), filter));
  }
  const visibleCharts = () => panelList.filter((p) => !p.panel.hidden).map((p) => p.box.querySelector("svg"));
  result.append(exportBar({ table: tableBox, jobId: context.jobId, name: fileName(context), charts: [{ slug: "chart", label: "Chart", get: visibleCharts }] }), ...controls, figure, tableBox);
  applyFilter();
  draw();
  view.redraw = draw;
  return `${rows.length} segments in ${byState.size} ${byState.size === 1 ? "state" : "states"}`;
}

export function renderResult(data, context) {
  const result = document.getElementById("result");
  result.replaceChildren();
  const heading = h("p", { class: "result-heading" },
    h("strong", { text: context.query.label }), " · ",
    h("span", { text: shortQuestion(context.question) }),
    context.state ? ` · ${context.state}` : "",
    ` · ${describeFilter(context).replace(/^on /, "")}`,
  );
  result.append(heading);
  if (!data || Object.keys(data).length === 0) {
    result.append(h("p", { class: "empty", text: "No value matches: the result is empty." }));
    view.redraw = null;
    return "no values";
  }
  switch (context.query.shape) {
    case "states": return renderStates(data, context, result);
    case "single": return renderSingle(data, context, result);
    case "trend": return renderTrend(data, context, result);
    default: return renderCategories(data, context, result);
  }
}

export function clearResult() {
  document.getElementById("result").replaceChildren();
  view.redraw = null;
}
