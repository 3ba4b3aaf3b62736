// Le Stats Sportif: the page for analysts. Plain JavaScript, no framework, no build step, no network
// beyond this server's own API (works offline). Charts are hand-written SVG.
"use strict";

/* ------------------------------------------------------------------------------------------- */
/* Facts about the 9 CDC questions and the 9 queries                                            */
/* ------------------------------------------------------------------------------------------- */

// The exact question texts (as in compute/queries.py), their topic, a short label and which
// direction is better. A question an uploaded file adds that is not here goes to "Other".
const QUESTIONS = new Map([
  ["Percent of adults aged 18 years and older who have obesity",
    { id: "Q036", topic: "weight", short: "Obesity", better: "lower" }],
  ["Percent of adults aged 18 years and older who have an overweight classification",
    { id: "Q037", topic: "weight", short: "Overweight", better: "lower" }],
  ["Percent of adults who achieve at least 150 minutes a week of moderate-intensity aerobic physical activity or 75 minutes a week of vigorous-intensity aerobic activity (or an equivalent combination)",
    { id: "Q043", topic: "activity", short: "Aerobic activity, 150+ min a week", better: "higher" }],
  ["Percent of adults who achieve at least 150 minutes a week of moderate-intensity aerobic physical activity or 75 minutes a week of vigorous-intensity aerobic physical activity and engage in muscle-strengthening activities on 2 or more days a week",
    { id: "Q044", topic: "activity", short: "Aerobic 150+ min and muscle strengthening", better: "higher" }],
  ["Percent of adults who achieve at least 300 minutes a week of moderate-intensity aerobic physical activity or 150 minutes a week of vigorous-intensity aerobic activity (or an equivalent combination)",
    { id: "Q045", topic: "activity", short: "Aerobic activity, 300+ min a week", better: "higher" }],
  ["Percent of adults who engage in muscle-strengthening activities on 2 or more days a week",
    { id: "Q046", topic: "activity", short: "Muscle strengthening, 2+ days a week", better: "higher" }],
  ["Percent of adults who engage in no leisure-time physical activity",
    { id: "Q047", topic: "activity", short: "No leisure-time physical activity", better: "lower" }],
  ["Percent of adults who report consuming fruit less than one time daily",
    { id: "Q018", topic: "food", short: "Fruit less than once a day", better: "lower" }],
  ["Percent of adults who report consuming vegetables less than one time daily",
    { id: "Q019", topic: "food", short: "Vegetables less than once a day", better: "lower" }],
]);

const TOPICS = [
  ["weight", "Obesity and weight"],
  ["activity", "Physical activity"],
  ["food", "Fruits and vegetables"],
  ["other", "Other"],
];

// shape: how the result is drawn. value: "mean" (a percentage) or "diff" (national mean minus a
// state's mean, in percentage points).
const QUERIES = {
  states_mean: { group: "Every state", label: "Mean per state", shape: "states", value: "mean",
    hint: "The mean of every state, lowest first." },
  best5: { group: "Every state", label: "The 5 best states", shape: "states", value: "mean",
    hint: "The five states with the best mean, best first." },
  worst5: { group: "Every state", label: "The 5 worst states", shape: "states", value: "mean",
    hint: "The five states with the worst mean, worst first." },
  diff_from_mean: { group: "Every state", label: "Difference from the national mean, per state", shape: "states", value: "diff",
    hint: "National mean minus each state's mean, largest first: a positive number means the state is below the national mean." },
  mean_by_category: { group: "Every state", label: "Mean by category, per state", shape: "bycat", value: "mean",
    hint: "The mean of every state for each segment (age, income, ...)." },
  state_mean: { group: "One state", label: "Mean of one state", shape: "single", value: "mean", needsState: true,
    hint: "The mean of the chosen state." },
  state_diff_from_mean: { group: "One state", label: "Difference from the national mean, one state", shape: "single", value: "diff", needsState: true,
    hint: "National mean minus the chosen state's mean, in percentage points." },
  state_mean_by_category: { group: "One state", label: "Mean by category, one state", shape: "statecat", value: "mean", needsState: true,
    hint: "The chosen state's mean for each segment (age, income, ...)." },
  global_mean: { group: "National", label: "National mean", shape: "single", value: "mean",
    hint: "The mean over every row of the question (not a mean of state means)." },
};

const NATIONAL = "National";
const WAIT_S = 5;

/* ------------------------------------------------------------------------------------------- */
/* Small helpers                                                                                */
/* ------------------------------------------------------------------------------------------- */

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

function s(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
}

function svgTitle(text) {
  return s("title", { text });
}

const numberFormat = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const countFormat = new Intl.NumberFormat("en-US");

function fmt(value, kind = "mean") {
  const text = numberFormat.format(Math.abs(value) < 0.005 ? 0 : value); // never "-0.00"
  return kind === "diff" && value > 0 ? `+${text}` : text;
}

function unitOf(kind, question) {
  if (kind === "diff") return " points";
  return QUESTIONS.has(question) ? " %" : "";
}

function headerWithUnit(label, kind, question) {
  const unit = unitOf(kind, question).trim();
  return unit ? `${label} (${unit})` : label;
}

function shortQuestion(question) {
  const known = QUESTIONS.get(question);
  return known ? known.short : question;
}

// Python's str() of a tuple of strings: "('Ohio', 'Age (years)', '18 - 24')". Each item is a Python
// string literal: single quotes, or double quotes when the text holds a single quote (and no double
// one), with backslash escapes. Items may hold commas, brackets and quotes, so this is a small
// parser, not a split. Returns the list of strings, or null if the text is not such a tuple.
const SIMPLE_ESCAPES = { "\\": "\\", "'": "'", '"': '"', n: "\n", r: "\r", t: "\t", a: "\x07", b: "\b", f: "\f", v: "\v", 0: "\0" };

function parsePyTuple(text) {
  let i = 0;
  const items = [];
  if (text[i++] !== "(") return null;
  for (;;) {
    while (text[i] === " ") i++;
    if (text[i] === ")" && items.length === 0) { i++; break; }
    const quote = text[i];
    if (quote !== "'" && quote !== '"') return null;
    i++;
    let item = "";
    while (i < text.length && text[i] !== quote) {
      if (text[i] !== "\\") { item += text[i++]; continue; }
      const code = text[i + 1];
      if (code in SIMPLE_ESCAPES) { item += SIMPLE_ESCAPES[code]; i += 2; continue; }
      const digits = { x: 2, u: 4, U: 8 }[code];
      const hex = digits ? text.slice(i + 2, i + 2 + digits) : "";
      if (!digits || hex.length !== digits || !/^[0-9a-fA-F]+$/.test(hex)) return null;
      item += String.fromCodePoint(parseInt(hex, 16));
      i += 2 + digits;
    }
    if (text[i++] !== quote) return null;
    items.push(item);
    while (text[i] === " ") i++;
    if (text[i] === ",") {
      i++;
      while (text[i] === " ") i++;
      if (text[i] === ")") { i++; break; } // a 1-tuple: ('a',)
      continue;
    }
    if (text[i] === ")") { i++; break; }
    return null;
  }
  return i === text.length ? items : null;
}

/* ------------------------------------------------------------------------------------------- */
/* The API                                                                                      */
/* ------------------------------------------------------------------------------------------- */

class ApiError extends Error {
  constructor(reason, httpStatus = 0) {
    super(reason);
    this.reason = reason;
    this.httpStatus = httpStatus;
  }
}

class Superseded extends Error {}

async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(`cannot reach the server (${error.message})`);
  }
  let reply = null;
  try {
    reply = await response.json();
  } catch {
    throw new ApiError(`the server answered ${response.status} ${response.statusText} without JSON`, response.status);
  }
  if (!response.ok || (reply && reply.status === "error")) {
    const reason = reply && typeof reply.reason === "string" ? reply.reason : `HTTP ${response.status}`;
    throw new ApiError(reason, response.status);
  }
  return reply;
}

// Every field that can be at fault, and where its reason goes.
const FIELDS = {
  dataset: { control: "dataset", error: "dataset-error" },
  file: { control: "file", error: "file-error" },
  question: { control: "question", error: "question-error" },
  state: { control: "state", error: "state-error" },
  years: { control: "year-from", also: ["year-to"], error: "years-error", container: "years-field" },
  submit: { control: "submit", error: "submit-error" },
};

// Which field a query's 400 reason is about. Quoted values (a question's text, a state's name) are
// taken out first, so a question that happens to contain "state" does not mislead; then the quoted
// field name ('state', 'years', ...) decides what is left.
function fieldForReason(reason) {
  const bare = reason.replace(/'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"/g, "");
  if (/\byears?\b|yearstart|yearend/i.test(bare)) return "years";
  if (/\bstates?\b/i.test(bare)) return "state";
  if (/\bquestions?\b/i.test(bare)) return "question";
  if (/\bdata ?sets?\b/i.test(bare)) return "dataset";
  const quoted = reason.match(/'(question|state|years|dataset)'/);
  return quoted ? quoted[1] : "submit";
}

function showFieldError(field, reason, { focus = false } = {}) {
  const spec = FIELDS[field];
  const box = $(spec.error);
  box.textContent = reason;
  box.hidden = false;
  const control = $(spec.control);
  for (const id of [spec.control, ...(spec.also || [])]) $(id).setAttribute("aria-invalid", "true");
  if (spec.container) $(spec.container).classList.add("invalid");
  if (focus && !control.closest("[hidden]")) control.focus();
}

function clearFieldErrors(...fields) {
  for (const field of fields.length ? fields : Object.keys(FIELDS)) {
    const spec = FIELDS[field];
    $(spec.error).hidden = true;
    $(spec.error).textContent = "";
    for (const id of [spec.control, ...(spec.also || [])]) $(id).removeAttribute("aria-invalid");
    if (spec.container) $(spec.container).classList.remove("invalid");
  }
}

/* ------------------------------------------------------------------------------------------- */
/* Data sets                                                                                    */
/* ------------------------------------------------------------------------------------------- */

const state = {
  datasets: [], // as GET /api/datasets lists them
  run: 0, // bumps on every submit, so an older run's late replies are dropped
  render: null, // redraws the current result's charts (on resize)
};

function currentDataset() {
  return state.datasets.find((d) => d.dataset === $("dataset").value) || state.datasets[0] || null;
}

function baseName(path) {
  return String(path || "").split(/[\\/]/).pop();
}

async function loadDatasets(select) {
  let reply;
  try {
    reply = await api("GET", "/api/datasets");
  } catch (error) {
    showFieldError("dataset", `cannot list the data sets: ${error.reason}`);
    return;
  }
  clearFieldErrors("dataset");
  state.datasets = Array.isArray(reply.datasets) ? reply.datasets : [];
  const picker = $("dataset");
  const previous = select || picker.value;
  picker.replaceChildren(
    ...state.datasets.map((d) =>
      h("option", { value: d.dataset, text: d.removable ? `${d.dataset} (uploaded${d.source ? `: ${baseName(d.source)}` : ""})` : `${d.dataset} (${baseName(d.source) || "loaded at start"})` }),
    ),
  );
  if (state.datasets.some((d) => d.dataset === previous)) picker.value = previous;
  onDatasetChange();
}

function onDatasetChange() {
  const d = currentDataset();
  clearFieldErrors("dataset", "question", "state", "years");
  if (!d) {
    $("dataset-info").textContent = "No data set is loaded.";
    return;
  }
  const years = Array.isArray(d.years) ? `, years ${d.years[0]}–${d.years[1]}` : ", no years";
  $("dataset-info").textContent =
    `${countFormat.format(d.rows)} rows, ${d.questions.length} questions, ${d.states.length} states${years}.` +
    (d.removable ? "" : " Loaded at start; it cannot be deleted.");
  $("delete-dataset").hidden = !d.removable;
  $("delete-dataset").textContent = `Delete the data set “${d.dataset}”`;
  fillQuestions(d.questions);
  fillStates(d.states);
  fillYears(d.years);
}

function fillQuestions(questions) {
  const picker = $("question");
  const previous = picker.value;
  const groups = new Map(TOPICS.map(([topic, label]) => [topic, h("optgroup", { label })]));
  for (const question of questions) {
    const known = QUESTIONS.get(question);
    const option = h("option", { value: question, title: question, text: known ? `${known.short} (${known.id})` : question });
    groups.get(known ? known.topic : "other").append(option);
  }
  picker.replaceChildren(...[...groups.values()].filter((group) => group.children.length));
  if (questions.includes(previous)) picker.value = previous;
  describeQuestion();
}

function describeQuestion() {
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

function chosenYears() {
  const d = currentDataset();
  if (!d || !Array.isArray(d.years)) return null;
  const from = $("year-from").value;
  const to = $("year-to").value;
  if (!from && !to) return null;
  return [from ? Number(from) : d.years[0], to ? Number(to) : d.years[1]];
}

async function upload(event) {
  event.preventDefault();
  clearFieldErrors("file");
  const input = $("file");
  const file = input.files[0];
  if (!file) {
    showFieldError("file", "Choose a CSV file first.", { focus: true });
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  const button = $("upload-button");
  button.disabled = true;
  $("upload-status").textContent = `Uploading ${file.name}…`;
  try {
    const reply = await api("POST", "/api/datasets", form);
    input.value = "";
    $("upload-status").textContent =
      `Uploaded ${file.name} as the data set “${reply.dataset}”: ${countFormat.format(reply.rows)} rows, ` +
      `${reply.questions.length} questions, ${reply.states.length} states.`;
    await loadDatasets(reply.dataset);
  } catch (error) {
    $("upload-status").textContent = "";
    showFieldError("file", error.reason, { focus: true });
  } finally {
    button.disabled = false;
  }
}

async function deleteDataset() {
  const d = currentDataset();
  if (!d || !d.removable) return;
  if (!window.confirm(`Delete the data set “${d.dataset}” (${countFormat.format(d.rows)} rows)? This cannot be undone.`)) return;
  clearFieldErrors("dataset");
  try {
    await api("DELETE", `/api/datasets/${encodeURIComponent(d.dataset)}`);
    $("upload-status").textContent = `Deleted the data set “${d.dataset}”.`;
    await loadDatasets("default");
    $("dataset").focus();
  } catch (error) {
    if (error.httpStatus === 404) await loadDatasets("default"); // already gone: show what is left
    showFieldError("dataset", error.reason, { focus: true });
  }
}

/* ------------------------------------------------------------------------------------------- */
/* Queries and jobs                                                                             */
/* ------------------------------------------------------------------------------------------- */

function fillQueries() {
  const groups = new Map();
  for (const [name, query] of Object.entries(QUERIES)) {
    if (!groups.has(query.group)) groups.set(query.group, h("optgroup", { label: query.group }));
    groups.get(query.group).append(h("option", { value: name, text: query.label }));
  }
  $("query").replaceChildren(...groups.values());
  onQueryChange();
}

function onQueryChange() {
  const query = QUERIES[$("query").value];
  $("query-hint").textContent = `${query.hint} (API: ${$("query").value})`;
  $("state-field").hidden = !query.needsState;
  if (!query.needsState) clearFieldErrors("state");
}

// The job status line (an aria-live region). data-phase and data-job-id say the same for scripts:
// submitting, refused, running, done or error.
function setStatus(phase, jobId, ...parts) {
  const box = $("job-status");
  box.dataset.phase = phase;
  if (jobId) box.dataset.jobId = jobId;
  else delete box.dataset.jobId;
  box.replaceChildren(...parts.filter((part) => part !== null && part !== undefined));
}

async function submitJob(kind, body) {
  const reply = await api("POST", `/api/${kind}`, body);
  return reply.job_id;
}

async function waitJob(jobId, run) {
  for (;;) {
    if (run !== state.run) throw new Superseded();
    const reply = await api("GET", `/api/get_results/${encodeURIComponent(jobId)}?wait=${WAIT_S}`);
    if (run !== state.run) throw new Superseded();
    if (reply.status === "done") return reply.data;
    if (reply.status !== "running") throw new ApiError(`unexpected job status ${JSON.stringify(reply.status)}`);
  }
}

async function runQuery(event) {
  event.preventDefault();
  clearFieldErrors("question", "state", "years", "submit", "dataset");
  const run = ++state.run;
  const kind = $("query").value;
  const query = QUERIES[kind];
  const d = currentDataset();
  const body = { question: $("question").value };
  if (d) body.dataset = d.dataset;
  if (query.needsState && $("state").value) body.state = $("state").value;
  const years = chosenYears();
  if (years) body.years = years;

  const results = $("result");
  results.setAttribute("aria-busy", "true");
  setStatus("submitting", null, `Submitting: ${query.label}…`);
  let jobId;
  try {
    jobId = await submitJob(kind, body);
  } catch (error) {
    if (run !== state.run) return;
    const field = fieldForReason(error.reason);
    showFieldError(field, error.reason, { focus: true });
    setStatus("refused", null, `Refused: ${error.reason}`);
    results.removeAttribute("aria-busy");
    return;
  }

  // The national mean line of the per-state charts (and the comparison of a state's mean) comes from
  // a second job, global_mean over the same question, data set and years: it is the API's own
  // national mean (every row pooled). The "National" location in the data is a different number
  // (the CDC's national estimate) and is drawn as a bar like any other location, when present.
  const wantsNational = query.value === "mean" && (query.shape === "states" || kind === "state_mean");
  let nationalJob = null;
  if (wantsNational) {
    const nationalBody = { ...body };
    delete nationalBody.state;
    nationalJob = submitJob("global_mean", nationalBody).catch((error) => error);
  }

  setStatus("running", jobId, h("span", { class: "job-id", text: jobId }), " ", h("span", { class: "badge running", text: "running" }), ` ${query.label}…`);
  const started = performance.now();
  try {
    const data = await waitJob(jobId, run);
    let national = null;
    let nationalId = null;
    if (nationalJob) {
      nationalId = await nationalJob;
      if (!(nationalId instanceof Error)) {
        try {
          national = (await waitJob(nationalId, run)).global_mean;
        } catch (error) {
          if (error instanceof Superseded) throw error;
        }
      } else {
        nationalId = null;
      }
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const context = { kind, query, question: body.question, state: body.state, dataset: body.dataset, years, national };
    const count = renderResult(data, context);
    setStatus("done", jobId,
      h("span", { class: "job-id", text: jobId }), " ",
      h("span", { class: "badge done", text: "done" }),
      ` in ${seconds} s: ${count}.`,
      nationalId ? h("span", { class: "note", text: ` National mean from ${nationalId}.` }) : null,
    );
  } catch (error) {
    if (error instanceof Superseded) return;
    showFieldError("submit", error.reason);
    setStatus("error", jobId, h("span", { class: "job-id", text: jobId }), " ", h("span", { class: "badge failed", text: "error" }), ` ${error.reason}`);
  } finally {
    if (run === state.run) results.removeAttribute("aria-busy");
  }
}

/* ------------------------------------------------------------------------------------------- */
/* Results: the table                                                                           */
/* ------------------------------------------------------------------------------------------- */

// columns: [{label, type: "text" | "number" | "note", rowHeader?}]; rows: [{cells: [...], key, value, cls}]
// The rows start in the API's order (already sorted by the API); a column's header button sorts by
// that column, a second press reverses, a third goes back to the API's order.
function resultTable(caption, columns, rows) {
  const tbody = h("tbody");
  const headers = columns.map((column, index) => {
    const button = h("button", { type: "button", class: "sort", text: column.label });
    const th = h("th", { scope: "col", class: column.type === "number" ? "num" : null }, button);
    button.addEventListener("click", () => sortBy(index, th));
    return th;
  });
  let sorted = { index: -1, direction: 0 };

  function sortBy(index, th) {
    const direction = sorted.index === index ? (sorted.direction + 1) % 3 : 1; // 1 asc, 2 desc, 0 API order
    sorted = { index, direction };
    for (const other of headers) other.removeAttribute("aria-sort");
    const order = rows.map((row, position) => ({ row, position }));
    if (direction) {
      const type = columns[index].type;
      order.sort((a, b) => {
        const x = a.row.sortKeys[index];
        const y = b.row.sortKeys[index];
        const c = type === "number" ? x - y : String(x).localeCompare(String(y));
        return (direction === 1 ? c : -c) || a.position - b.position;
      });
      th.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
    }
    fill(order.map((item) => item.row));
  }

  function fill(list) {
    tbody.replaceChildren(
      ...list.map((row) =>
        h("tr", { class: row.cls || null, "data-key": row.key, hidden: row.hidden || null },
          row.cells.map((cell, index) => {
            const column = columns[index];
            if (column.rowHeader) return h("th", { scope: "row", text: cell });
            if (column.type === "number") return h("td", { class: "num", "data-value": String(row.sortKeys[index]), text: cell });
            return h("td", {}, breakable(cell));
          }),
        ),
      ),
    );
  }

  fill(rows);
  const table = h("table", { class: "result-table" }, h("caption", {}, h("span", { class: "caption-text", text: caption })), h("thead", {}, h("tr", {}, headers)), tbody);
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": `Table: ${caption}` }, table);
}

// Text with a line-break opportunity after each "/" ("Race/Ethnicity"), so narrow tables fit.
function breakable(text) {
  const parts = String(text ?? "").split("/");
  return parts.flatMap((part, index) => (index < parts.length - 1 ? [`${part}/`, h("wbr")] : [part]));
}

/* ------------------------------------------------------------------------------------------- */
/* Results: the charts                                                                          */
/* ------------------------------------------------------------------------------------------- */

function niceStep(span, count) {
  const raw = span / Math.max(count, 1);
  const power = 10 ** Math.floor(Math.log10(raw));
  const scaled = raw / power;
  return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 2.5 ? 2.5 : scaled <= 5 ? 5 : 10) * power;
}

function scale(values, width, ticks) {
  let lo = Math.min(0, ...values);
  let hi = Math.max(0, ...values);
  if (lo === hi) hi = lo + 1;
  const step = niceStep(hi - lo, ticks);
  lo = Math.floor(lo / step) * step;
  hi = Math.ceil(hi / step) * step;
  const marks = [];
  for (let tick = lo; tick <= hi + step / 2; tick += step) marks.push(Number(tick.toFixed(10)));
  return { lo, hi, marks, x: (value) => ((value - lo) / (hi - lo)) * width };
}

// Text widths, measured with the page's own font, so labels are cut only when they must be.
const measureContext = document.createElement("canvas").getContext("2d");

function textWidth(text, size = 12, weight = 400) {
  measureContext.font = `${weight} ${size}px ${getComputedStyle(document.body).fontFamily}`;
  return measureContext.measureText(text).width;
}

function widest(texts, size = 12, weight = 400) {
  return Math.max(0, ...texts.map((text) => textWidth(text, size, weight)));
}

// The text cut with an ellipsis to fit in `width` pixels.
function fit(text, width, size = 12, weight = 400) {
  if (textWidth(text, size, weight) <= width) return text;
  let lo = 0;
  let hi = text.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (textWidth(`${text.slice(0, mid)}…`, size, weight) <= width) lo = mid;
    else hi = mid - 1;
  }
  return `${text.slice(0, lo).trimEnd()}…`;
}

function axis(sc, left, top, bottom, kind) {
  return s("g", { class: "axis", "aria-hidden": "true" },
    sc.marks.map((tick) =>
      s("g", {},
        s("line", { class: tick === 0 ? "zero" : "grid", x1: left + sc.x(tick), x2: left + sc.x(tick), y1: top, y2: bottom }),
        s("text", { x: left + sc.x(tick), y: bottom + 14, "text-anchor": "middle", text: kind === "diff" && tick > 0 ? `+${tick}` : String(tick) }),
      ),
    ),
  );
}

// Horizontal bars, one per entry, in the API's order. entries: [{key, value, cls, note}]
function stateBars({ entries, kind, national, width, label }) {
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
    svg.append(
      s("g", { class: `row ${entry.cls || ""}` },
        s("text", { class: "label", x: labelW - 6, y: y + rowH / 2 + 4, "text-anchor": "end", text: fit(entry.key, labelW - 8, 12, ["best", "worst", "high", "low"].includes(entry.cls) ? 700 : 400) }),
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

const CATEGORY_COLOURS = 6;

// Grouped horizontal bars: a heading per category, a bar per segment. groups: [{category, items: [{segment, value, key}]}]
function categoryBars({ groups, width, max, label, colours, segmentWidth, valueWidth }) {
  const rowH = 17;
  const barH = 12;
  const headH = 20;
  // The widths are shared by every panel of a result, so their bars start and scale alike.
  const labelW = Math.ceil(Math.min(segmentWidth + 12, Math.max(110, width * 0.45)));
  const valueW = Math.ceil(valueWidth + 14);
  const plotW = Math.max(60, width - labelW - valueW - 8);
  const sc = scale([0, max], plotW, Math.max(2, Math.floor(plotW / 60)));
  let y = 6;
  const body = [];
  for (const group of groups) {
    const colour = colours.get(group.category);
    body.push(s("text", { class: "group-label", x: 2, y: y + 14, text: fit(group.category, width - 4, 12, 700) }));
    y += headH;
    for (const item of group.items) {
      const describe = `${group.category}, ${item.segment}: ${fmt(item.value)}`;
      body.push(
        s("g", { class: `row colour-${colour}` },
          s("text", { class: "label", x: labelW - 6, y: y + rowH / 2 + 4, "text-anchor": "end", text: fit(item.segment, labelW - 8) }),
          s("rect", { class: "bar", x: labelW, y: y + (rowH - barH) / 2, width: Math.max(1, sc.x(item.value)), height: barH, "data-key": item.key, "data-value": item.value, "aria-label": describe }, svgTitle(describe)),
          s("text", { class: "value", x: width - 4, y: y + rowH / 2 + 4, "text-anchor": "end", text: fmt(item.value) }),
        ),
      );
      y += rowH;
    }
    y += 4;
  }
  const height = y + 18;
  const svg = s("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  svg.append(svgTitle(label), axis(sc, labelW, 4, y - 4, "mean"), ...body);
  return svg;
}

function legend(items) {
  return h("ul", { class: "legend", "aria-hidden": "true" },
    items.map(([cls, text]) => h("li", {}, h("span", { class: `swatch ${cls}` }), text)),
  );
}

function chartWidth(container) {
  return Math.max(300, Math.floor(container.clientWidth || 600));
}

/* ------------------------------------------------------------------------------------------- */
/* Results: per shape                                                                           */
/* ------------------------------------------------------------------------------------------- */

function describeFilter(context) {
  const parts = [`on the data set “${context.dataset}”`];
  if (context.years) parts.push(`years ${context.years[0]}–${context.years[1]}`);
  return parts.join(", ");
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
        ...(nationalValue !== null && nationalValue !== undefined ? [["line", query.value === "diff" ? "national mean (difference 0)" : "national mean, all rows"]] : []),
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
  result.append(figure, table);
  draw();
  state.render = draw;
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
  result.append(figure, table);
  state.render = null;
  return kind === "global_mean" ? "1 figure" : `1 state`;
}

// mean_by_category: {"('<state>', '<category>', '<segment>')": mean}; state_mean_by_category:
// {state: {"('<category>', '<segment>')": mean}}. Both become rows of (state, category, segment).
function categoryRows(data, context) {
  const rows = [];
  const pairs = context.kind === "mean_by_category"
    ? Object.entries(data).map(([key, value]) => [key, parsePyTuple(key), value])
    : Object.entries(data).flatMap(([stateName, inner]) =>
      Object.entries(inner).map(([key, value]) => {
        const tuple = parsePyTuple(key);
        return [key, tuple ? [stateName, ...tuple] : null, value];
      }));
  for (const [key, tuple, value] of pairs) {
    const [stateName, category, segment] = tuple && tuple.length === 3 ? tuple : ["?", "?", key];
    rows.push({ key, state: stateName, category, segment, value });
  }
  return rows;
}

function renderCategories(data, context, result) {
  const { kind, query, question } = context;
  const rows = categoryRows(data, context);
  const caption = `${query.label}: ${shortQuestion(question)} (${describeFilter(context)})`;
  // A colour per category, by name order, so a category keeps its colour from one result to the next.
  const colours = new Map([...new Set(rows.map((row) => row.category))].sort().map((category, index) => [category, index % CATEGORY_COLOURS]));
  const segmentWidth = widest([...new Set(rows.map((row) => row.segment))]);
  const valueWidth = widest(rows.map((row) => fmt(row.value)));
  const max = Math.max(0, ...rows.map((row) => row.value));

  // state -> category -> items, in the API's order
  const byState = new Map();
  for (const row of rows) {
    if (!byState.has(row.state)) byState.set(row.state, new Map());
    const categories = byState.get(row.state);
    if (!categories.has(row.category)) categories.set(row.category, []);
    categories.get(row.category).push(row);
  }

  const many = byState.size > 1;
  const panels = h("div", many
    ? { class: "panels", tabindex: "0", role: "region", "aria-label": `Charts, one per state (${byState.size}); scroll for more` }
    : { class: "panels single" });
  const panelList = [...byState].map(([stateName, categories]) => {
    const box = h("div", { class: "chart-box" });
    const panel = h("section", { class: "chart-panel", "data-state": stateName, "aria-label": stateName }, h("h3", { text: stateName }), box);
    const groups = [...categories].map(([category, items]) => ({ category, items }));
    return { stateName, panel, box, groups };
  });
  panels.append(...panelList.map((p) => p.panel));

  const draw = () => {
    // Every panel as wide as its grid cell (they are all equal), so text is drawn at its real size.
    const visible = panelList.find((p) => !p.panel.hidden) || panelList[0];
    const width = chartWidth(visible.box);
    for (const { stateName, box, groups } of panelList) {
      const count = groups.reduce((n, g) => n + g.items.length, 0);
      box.replaceChildren(
        categoryBars({
          groups,
          width,
          max,
          colours,
          segmentWidth,
          valueWidth,
          label: `Grouped bar chart of ${stateName}, ${count} segments in ${groups.length} categories: ${groups.map((g) => `${g.category}: ${g.items.map((i) => `${i.segment} ${fmt(i.value)}`).join(", ")}`).join("; ")}.`,
        }),
      );
    }
  };

  const tableBox = resultTable(caption, [
    { label: "State", type: "text", rowHeader: true },
    { label: "Category", type: "text" },
    { label: "Segment", type: "text" },
    { label: headerWithUnit("Mean", "mean", question), type: "number" },
  ], rows.map((row) => ({ key: row.key, cells: [row.state, row.category, row.segment, fmt(row.value)], sortKeys: [row.state, row.category, row.segment, row.value] })));

  const figure = h("figure", { class: "chart-figure" },
    panels,
    h("figcaption", {},
      legend([...colours].map(([category, colour]) => [`colour-${colour}`, category])),
      h("span", { class: "note", text: "The same numbers are in the table." }),
    ),
  );

  // With every state, the chart and the table are long: a filter narrows both to one state.
  if (kind === "mean_by_category" && byState.size > 1) {
    const filter = h("select", { id: "category-state-filter" },
      h("option", { value: "", text: `All ${byState.size} states` }),
      [...byState.keys()].map((name) => h("option", { value: name, text: name })),
    );
    filter.addEventListener("change", () => {
      for (const p of panelList) p.panel.hidden = Boolean(filter.value) && p.stateName !== filter.value;
      for (const tr of tableBox.querySelectorAll("tbody tr")) {
        const row = rows.find((r) => r.key === tr.dataset.key);
        tr.hidden = Boolean(filter.value) && row && row.state !== filter.value;
      }
    });
    result.append(h("div", { class: "field inline" }, h("label", { for: "category-state-filter", text: "Show" }), filter));
  }
  result.append(figure, tableBox);
  draw();
  state.render = draw;
  return `${rows.length} segments in ${byState.size} ${byState.size === 1 ? "state" : "states"}`;
}

function renderResult(data, context) {
  const result = $("result");
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
    state.render = null;
    return "no values";
  }
  switch (context.query.shape) {
    case "states": return renderStates(data, context, result);
    case "single": return renderSingle(data, context, result);
    default: return renderCategories(data, context, result);
  }
}

/* ------------------------------------------------------------------------------------------- */
/* Start                                                                                        */
/* ------------------------------------------------------------------------------------------- */

function start() {
  fillQueries();
  $("dataset").addEventListener("change", onDatasetChange);
  $("question").addEventListener("change", () => { clearFieldErrors("question"); describeQuestion(); });
  $("query").addEventListener("change", onQueryChange);
  $("state").addEventListener("change", () => clearFieldErrors("state"));
  $("year-from").addEventListener("change", () => clearFieldErrors("years"));
  $("year-to").addEventListener("change", () => clearFieldErrors("years"));
  $("file").addEventListener("change", () => clearFieldErrors("file"));
  $("query-form").addEventListener("submit", runQuery);
  $("upload-form").addEventListener("submit", upload);
  $("delete-dataset").addEventListener("click", deleteDataset);
  let resizeTimer = 0;
  let lastWidth = window.innerWidth;
  window.addEventListener("resize", () => {
    if (window.innerWidth === lastWidth) return;
    lastWidth = window.innerWidth;
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => state.render && state.render(), 150);
  });
  loadDatasets().then(() => document.body.setAttribute("data-ready", "true"));
}

// For the browser test and for people in the console.
window.LeStats = { parsePyTuple, fieldForReason };

start();
