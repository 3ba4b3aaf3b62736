// Small helpers to build HTML and SVG, format numbers and measure text.

export const $ = (id) => document.getElementById(id);
export const SVG_NS = "http://www.w3.org/2000/svg";

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
}

function build(node, attrs, children) {
  setAttrs(node, attrs);
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function svgTitle(text) {
  return s("title", { text });
}

const numberFormat = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
export const countFormat = new Intl.NumberFormat("en-US");

export function fmt(value, kind = "mean") {
  const text = numberFormat.format(Math.abs(value) < 0.005 ? 0 : value); // never "-0.00"
  return kind === "diff" && value > 0 ? `+${text}` : text;
}

// Text widths, measured with the page's own font, so labels are cut only when they must be.
const measureContext = document.createElement("canvas").getContext("2d");

export function textWidth(text, size = 12, weight = 400) {
  measureContext.font = `${weight} ${size}px ${getComputedStyle(document.body).fontFamily}`;
  return measureContext.measureText(text).width;
}

export function widest(texts, size = 12, weight = 400) {
  return Math.max(0, ...texts.map((text) => textWidth(text, size, weight)));
}

// The text cut with an ellipsis to fit in `width` pixels.
export function fit(text, width, size = 12, weight = 400) {
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

// An SVG text that fits `width`; when cut, its <title> holds the whole text (shown on hover).
export function fittedText(attrs, text, width, size = 12, weight = 400) {
  const shown = fit(text, width, size, weight);
  const node = s("text", { ...attrs, text: shown });
  if (shown !== text) {
    node.setAttribute("data-full", text);
    node.append(svgTitle(text));
  }
  return node;
}
