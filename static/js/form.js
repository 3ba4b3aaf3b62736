// The form: data sets, questions, queries, states and years, filled from GET /api/datasets; and the
// form's state as a URL (?dataset=&question=&query=&state=&from=&to=), so a link reproduces a view.
import { ApiError, api } from "./api.js";
import { $, countFormat, fit, h, textWidth } from "./dom.js";
import { clearFieldErrors, showFieldError } from "./fields.js";
import { QUERIES, QUESTIONS, TOPICS } from "./facts.js";

let datasets = []; // as GET /api/datasets lists them

export function currentDataset() {
  return datasets.find((d) => d.dataset === $("dataset").value) || datasets[0] || null;
}

function baseName(path) {
  return String(path || "").split(/[\\/]/).pop();
}

// An option whose text is cut to its select's width when it must be (see fitOptions): `keep` is how
// many characters at its end always stay, as they tell the options apart (a question's id, the end
// of a file name, "one state"); the whole text is its tooltip.
function fittedOption(value, text, keep, title = text) {
  return h("option", { value, title, text, "data-full": text, "data-keep": keep });
}

// Cuts the options of `select` to the width its text has (the closed select shows the chosen one, and
// a native select clips it silently). The arrow sits in the right padding (style.css), so that width
// is the content box (less 1px, as clientWidth is rounded). A hidden select is left for its next resize.
export function fitOptions(select) {
  const style = getComputedStyle(select);
  const width = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 1;
  if (width <= 0) return;
  const size = parseFloat(style.fontSize);
  for (const option of select.querySelectorAll("option[data-full]")) {
    const full = option.dataset.full;
    const tail = full.slice(full.length - Number(option.dataset.keep));
    const shown = textWidth(full, size) <= width ? full : fit(full.slice(0, full.length - tail.length), width - textWidth(tail, size), size) + tail;
    option.textContent = shown;
  }
}

const fitter = new ResizeObserver((entries) => entries.forEach((entry) => fitOptions(entry.target)));

// The selects whose options may be too long for them, refitted whenever their width changes.
export function fitOptionsOnResize() {
  for (const id of ["dataset", "question", "query"]) fitter.observe($(id));
}

// Marks the sticky "Run the query" row .stuck while it floats over the form (style.css gives it an
// edge then): it sits 1px below the window's bottom edge, so it is not wholly in view exactly then.
export function markStuckSubmitRow() {
  const row = $("submit-field");
  new IntersectionObserver(([entry]) => {
    row.classList.toggle("stuck", entry.intersectionRatio < 1 && entry.boundingClientRect.bottom > entry.rootBounds.bottom);
  }, { threshold: 1 }).observe(row);
}

export async function loadDatasets(select) {
  let reply;
  try {
    reply = await api("GET", "/api/datasets");
  } catch (error) {
    showFieldError("dataset", `cannot list the data sets: ${error.reason}`);
    return;
  }
  clearFieldErrors("dataset");
  datasets = Array.isArray(reply.datasets) ? reply.datasets : [];
  const picker = $("dataset");
  const previous = select || picker.value;
  picker.replaceChildren(
    ...datasets.map((d) => {
      const file = baseName(d.source) || (d.removable ? "uploaded" : "loaded at start");
      return fittedOption(d.dataset, `${d.dataset}: ${file}`, Math.min(14, file.length));
    }),
  );
  fitOptions(picker);
  if (datasets.some((d) => d.dataset === previous)) picker.value = previous;
  onDatasetChange();
}

export function onDatasetChange() {
  const d = currentDataset();
  clearFieldErrors("dataset", "question", "state", "years");
  if (!d) {
    $("dataset-info").textContent = "No data set is loaded.";
    return;
  }
  const years = Array.isArray(d.years) ? `, years ${d.years[0]}–${d.years[1]}` : ", no years";
  $("dataset-info").replaceChildren(
    h("span", { class: "file-name", text: baseName(d.source) || d.dataset }),
    `: ${countFormat.format(d.rows)} rows, ${d.questions.length} questions, ${d.states.length} states${years}.` +
      (d.removable ? " Uploaded." : " Loaded at start; it cannot be deleted."),
  );
  $("delete-dataset").hidden = !d.removable;
  $("delete-dataset").textContent = `Delete the data set “${d.dataset}”`;
  fillQuestions(d.questions);
  fillStates(d.states);
  fillYears(d.years);
  onQueryChange();
}

function fillQuestions(questions) {
  const picker = $("question");
  const previous = picker.value;
  const groups = new Map(TOPICS.map(([topic, label]) => [topic, h("optgroup", { label })]));
  for (const question of questions) {
    const known = QUESTIONS.get(question);
    const option = known ? fittedOption(question, `${known.short} (${known.id})`, known.id.length + 3, question) : fittedOption(question, question, 0);
    groups.get(known ? known.topic : "other").append(option);
  }
  picker.replaceChildren(...[...groups.values()].filter((group) => group.children.length));
  fitOptions(picker);
  if (questions.includes(previous)) picker.value = previous;
  describeQuestion();
}

export function describeQuestion() {
  const question = $("question").value;
  const known = QUESTIONS.get(question);
  $("question-hint").textContent = question
    ? `${question}.${known ? ` ${known.better === "lower" ? "Lower" : "Higher"} is better.` : " Which direction is better is not known: best 5 and worst 5 are refused."}`
    : "";
}

function fillStates(states) {
  const picker = $("state");
  const previous = picker.value;
  picker.replaceChildren(h("option", { value: "", text: "Choose a state…" }), ...states.map((name) => h("option", { value: name, text: name })));
  if (states.includes(previous)) picker.value = previous;
}

function fillYears(years) {
  const has = Array.isArray(years) && years.length === 2;
  $("years-field").hidden = !has;
  for (const id of ["year-from", "year-to"]) {
    const picker = $(id);
    const previous = picker.value;
    const options = [h("option", { value: "", text: "Any" })];
    if (has) for (let year = years[0]; year <= years[1]; year++) options.push(h("option", { value: year, text: year }));
    picker.replaceChildren(...options);
    if ([...picker.options].some((option) => option.value === previous)) picker.value = previous;
  }
}

export function chosenYears() {
  const d = currentDataset();
  if (!d || !Array.isArray(d.years)) return null;
  const from = $("year-from").value;
  const to = $("year-to").value;
  if (!from && !to) return null;
  return [from ? Number(from) : d.years[0], to ? Number(to) : d.years[1]];
}

export function fillQueries() {
  const groups = new Map();
  for (const [name, query] of Object.entries(QUERIES)) {
    if (!groups.has(query.group)) groups.set(query.group, h("optgroup", { label: query.group }));
    const comma = query.label.lastIndexOf(",");
    groups.get(query.group).append(fittedOption(name, query.label, comma < 0 ? 0 : query.label.length - comma));
  }
  $("query").replaceChildren(...groups.values());
  fitOptions($("query"));
  onQueryChange();
}

export function onQueryChange() {
  const query = QUERIES[$("query").value];
  $("query-hint").textContent = `${query.hint} (API: ${$("query").value})`;
  $("state-field").hidden = !query.needsState && !query.takesState;
  $("state-label").textContent = query.takesState ? "State (optional)" : "State";
  if (query.needsState) $("state").setAttribute("aria-required", "true");
  else $("state").removeAttribute("aria-required");
  const d = currentDataset();
  const noYears = query.needsYears && d && !Array.isArray(d.years);
  $("query-hint").append(noYears ? h("strong", { text: ` The data set “${d.dataset}” has no years: pick another data set.` }) : "");
  clearFieldErrors("state");
}

// The query the form asks for, checked as far as the page can: an ApiError for a field at fault.
export function formQuery() {
  const kind = $("query").value;
  const query = QUERIES[kind];
  const d = currentDataset();
  const body = { question: $("question").value };
  if (d) body.dataset = d.dataset;
  const state = $("state").value;
  if ((query.needsState || query.takesState) && state) body.state = state;
  const years = chosenYears();
  if (years) body.years = years;
  if (query.needsState && !state) throw Object.assign(new ApiError(`${query.label} needs a state: choose one.`), { field: "state" });
  if (query.needsYears && d && !Array.isArray(d.years)) {
    throw Object.assign(new ApiError(`the data set “${d.dataset}” has no YearStart/YearEnd columns: it has no trend over the years`), { field: "dataset" });
  }
  return { kind, query, body };
}

// ---- The form as a URL -------------------------------------------------------------------------

export function formToUrl() {
  const kind = $("query").value;
  const query = QUERIES[kind];
  const params = new URLSearchParams();
  params.set("dataset", $("dataset").value);
  params.set("question", $("question").value);
  params.set("query", kind);
  if ((query.needsState || query.takesState) && $("state").value) params.set("state", $("state").value);
  if ($("year-from").value) params.set("from", $("year-from").value);
  if ($("year-to").value) params.set("to", $("year-to").value);
  return `${location.pathname}?${params}`;
}

function pick(id, value) {
  const picker = $(id);
  if (value === null) return true;
  if (![...picker.options].some((option) => option.value === value)) return false;
  picker.value = value;
  return true;
}

// Puts the URL's view into the form; returns what it could not (a name the server no longer
// holds), or null when the URL names no view.
export function urlToForm(search = location.search) {
  const params = new URLSearchParams(search);
  if (!params.has("query")) return null;
  const missing = [];
  if (!pick("dataset", params.get("dataset"))) missing.push(`data set “${params.get("dataset")}”`);
  onDatasetChange();
  if (!pick("query", params.get("query"))) missing.push(`query “${params.get("query")}”`);
  onQueryChange();
  if (!pick("question", params.get("question"))) missing.push(`question “${params.get("question")}”`);
  describeQuestion();
  $("state").value = "";
  if (!pick("state", params.get("state"))) missing.push(`state “${params.get("state")}”`);
  $("year-from").value = "";
  $("year-to").value = "";
  if (!pick("year-from", params.get("from"))) missing.push(`year ${params.get("from")}`);
  if (!pick("year-to", params.get("to"))) missing.push(`year ${params.get("to")}`);
  return missing;
}
