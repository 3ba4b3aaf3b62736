// Field errors: the API's reason (or the page's own check) shown next to the field at fault.
import { $ } from "./dom.js";

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
export function fieldForReason(reason) {
  const bare = reason.replace(/'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"/g, "");
  if (/\byears?\b|yearstart|yearend/i.test(bare)) return "years";
  if (/\bstates?\b/i.test(bare)) return "state";
  if (/\bquestions?\b/i.test(bare)) return "question";
  if (/\bdata ?sets?\b/i.test(bare)) return "dataset";
  const quoted = reason.match(/'(question|state|years|dataset)'/);
  return quoted ? quoted[1] : "submit";
}

export function showFieldError(field, reason, { focus = false } = {}) {
  const spec = FIELDS[field];
  const box = $(spec.error);
  box.textContent = reason;
  box.hidden = false;
  const control = $(spec.control);
  for (const id of [spec.control, ...(spec.also || [])]) $(id).setAttribute("aria-invalid", "true");
  if (spec.container) $(spec.container).classList.add("invalid");
  if (focus && !control.closest("[hidden]")) control.focus();
}

export function clearFieldErrors(...fields) {
  for (const field of fields.length ? fields : Object.keys(FIELDS)) {
    const spec = FIELDS[field];
    $(spec.error).hidden = true;
    $(spec.error).textContent = "";
    for (const id of [spec.control, ...(spec.also || [])]) $(id).removeAttribute("aria-invalid");
    if (spec.container) $(spec.container).classList.remove("invalid");
  }
}
