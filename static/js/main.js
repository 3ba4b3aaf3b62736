// Le Stats Sportif: the page for analysts. Plain ES modules loaded by the browser, no framework, no
// build step, no network beyond this server's own API (works offline). This module wires the form
// to the API: it runs a query, its side jobs (the national mean, the context map), and draws them.
import { ApiError, Superseded, adminToken, api, setAdminToken, submitJob, waitJob } from "./api.js";
import { $, countFormat, h } from "./dom.js";
import { QUERIES } from "./facts.js";
import { clearFieldErrors, fieldForReason, showFieldError } from "./fields.js";
import {
  currentDataset, describeQuestion, fillQueries, fitOptionsOnResize, formQuery, formToUrl, loadDatasets, markStuckSubmitRow, onDatasetChange,
  onQueryChange, urlToForm,
} from "./form.js";
import { parsePyTuple } from "./pytuple.js";
import { clearResult, renderResult, view } from "./results.js";

let run = 0; // bumps on every run, so an older run's late replies are dropped

// The job status line (an aria-live region). data-phase and data-job-id say the same for scripts:
// submitting, refused, running, done or error.
function setStatus(phase, jobId, ...parts) {
  const box = $("job-status");
  box.dataset.phase = phase;
  if (jobId) box.dataset.jobId = jobId;
  else delete box.dataset.jobId;
  box.replaceChildren(...parts.filter((part) => part !== null && part !== undefined));
}

// Side jobs a view needs besides its own, started with it: {name: [kind, body]}.
function sideJobs(kind, query, body) {
  const nationwide = { ...body };
  delete nationwide.state;
  const jobs = {};
  // The national mean line of the per-state charts (and the comparison of a state's mean) is the
  // API's own national mean (every row pooled). The "National" location in the data is a different
  // number (the CDC's national estimate) and is drawn like any other location, when present.
  if (query.value === "mean" && (query.shape === "states" || kind === "state_mean")) jobs.national = ["global_mean", nationwide];
  if (kind === "state_mean") jobs.statesMean = ["states_mean", nationwide];
  if (kind === "trend" && body.state) jobs.nationalTrend = ["trend", nationwide];
  return jobs;
}

// A side job's data, or null if it failed: the view is drawn without it.
async function sideResult(started, current) {
  try {
    return await waitJob(await started, current);
  } catch (error) {
    if (error instanceof Superseded) throw error;
    return null;
  }
}

function refuse(field, reason) {
  clearResult();
  showFieldError(field, reason, { focus: true });
  setStatus("refused", null, `Refused: ${reason}`);
}

// Runs the form's query. `push`: record the view in the history (not when it came from the URL).
async function runQuery({ push }) {
  clearFieldErrors("question", "state", "years", "submit", "dataset");
  const mine = ++run;
  const current = () => mine === run;
  let asked;
  try {
    asked = formQuery();
  } catch (error) {
    refuse(error.field, error.reason);
    return;
  }
  const { kind, query, body } = asked;
  const url = formToUrl();
  if (push && url !== `${location.pathname}${location.search}`) history.pushState(null, "", url);

  const results = $("result");
  results.setAttribute("aria-busy", "true");
  setStatus("submitting", null, `Submitting: ${query.label}…`);
  let jobId;
  try {
    jobId = await submitJob(kind, body);
  } catch (error) {
    if (!current()) return;
    refuse(fieldForReason(error.reason), error.reason);
    results.removeAttribute("aria-busy");
    return;
  }
  const side = Object.entries(sideJobs(kind, query, body)).map(([name, [sideKind, sideBody]]) => [name, submitJob(sideKind, sideBody)]);
  for (const [, started] of side) started.catch(() => null);

  setStatus("running", jobId, h("span", { class: "job-id", text: jobId }), " ", h("span", { class: "badge running", text: "running" }), ` ${query.label}…`);
  const started = performance.now();
  try {
    const data = await waitJob(jobId, current);
    const extra = {};
    for (const [name, sideStarted] of side) extra[name] = await sideResult(sideStarted, current);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const national = extra.national ? extra.national.global_mean : null;
    const context = { kind, query, jobId, question: body.question, state: body.state, dataset: body.dataset, years: body.years || null, national, statesMean: extra.statesMean, nationalTrend: extra.nationalTrend };
    const count = renderResult(data, context);
    setStatus("done", jobId,
      h("span", { class: "job-id", text: jobId }), " ",
      h("span", { class: "badge done", text: "done" }),
      ` in ${seconds} s: ${count}.`,
    );
  } catch (error) {
    if (error instanceof Superseded) return;
    clearResult();
    showFieldError("submit", error.reason);
    setStatus("error", jobId, h("span", { class: "job-id", text: jobId }), " ", h("span", { class: "badge failed", text: "error" }), ` ${error.reason}`);
  } finally {
    if (current()) results.removeAttribute("aria-busy");
  }
}

// The view the URL names, if any: put into the form and run. A name the server no longer holds is
// said next to the run button, and nothing runs.
function runFromUrl() {
  const missing = urlToForm();
  if (missing === null) {
    run++;
    clearResult();
    setStatus("idle", null, "Choose a question and a query, then run it.");
    return;
  }
  if (missing.length) {
    run++;
    refuse("submit", `This link's view cannot be shown: the server has no ${missing.join(", no ")}.`);
    return;
  }
  runQuery({ push: false });
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
    const reply = await api("POST", "/api/datasets", form, { admin: true });
    input.value = "";
    $("upload-status").textContent =
      `Uploaded ${file.name} as the data set “${reply.dataset}”: ${countFormat.format(reply.rows)} rows, ` +
      `${reply.questions.length} questions, ${reply.states.length} states.`;
    await loadDatasets(reply.dataset);
  } catch (error) {
    $("upload-status").textContent = "";
    if (error.httpStatus === 403) $("admin").open = true;
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
    await api("DELETE", `/api/datasets/${encodeURIComponent(d.dataset)}`, undefined, { admin: true });
    $("upload-status").textContent = `Deleted the data set “${d.dataset}”.`;
    await loadDatasets("default");
    $("dataset").focus();
  } catch (error) {
    if (error.httpStatus === 404) await loadDatasets("default"); // already gone: show what is left
    if (error.httpStatus === 403) $("admin").open = true;
    showFieldError("dataset", error.reason, { focus: true });
  }
}

function start() {
  fillQueries();
  fitOptionsOnResize();
  markStuckSubmitRow();
  $("dataset").addEventListener("change", onDatasetChange);
  $("question").addEventListener("change", () => { clearFieldErrors("question"); describeQuestion(); });
  $("query").addEventListener("change", onQueryChange);
  $("state").addEventListener("change", () => clearFieldErrors("state"));
  $("year-from").addEventListener("change", () => clearFieldErrors("years"));
  $("year-to").addEventListener("change", () => clearFieldErrors("years"));
  $("file").addEventListener("change", () => clearFieldErrors("file"));
  $("query-form").addEventListener("submit", (event) => { event.preventDefault(); runQuery({ push: true }); });
  $("upload-form").addEventListener("submit", upload);
  $("delete-dataset").addEventListener("click", deleteDataset);
  $("admin-token").value = adminToken();
  $("admin-token").addEventListener("input", () => setAdminToken($("admin-token").value.trim()));
  window.addEventListener("popstate", runFromUrl);
  let resizeTimer = 0;
  let lastWidth = window.innerWidth;
  window.addEventListener("resize", () => {
    if (window.innerWidth === lastWidth) return;
    lastWidth = window.innerWidth;
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => view.redraw && view.redraw(), 150);
  });
  loadDatasets().then(() => {
    runFromUrl();
    document.body.setAttribute("data-ready", "true");
  });
}

// For the browser test and for people in the console.
window.LeStats = { parsePyTuple, fieldForReason, ApiError, QUERIES };

start();
