// Exports of a result: the table as CSV, the chart as SVG or PNG, and a link to the job's raw JSON.
// Everything is made in the page (no server round trip) from what is shown.
import { jobUrl } from "./api.js";
import { SVG_NS, h } from "./dom.js";
import { tableCells } from "./table.js";

// RFC 4180: fields with a comma, quote or line end are quoted, quotes doubled; CRLF between rows.
export function toCsv(rows) {
  const field = (value) => (/[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value);
  return rows.map((row) => row.map((value) => field(String(value))).join(",")).join("\r\n") + "\r\n";
}

function download(name, blob) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

const STYLED = ["fill", "stroke", "stroke-width", "stroke-dasharray", "opacity", "font-family", "font-size", "font-weight", "font-style", "font-variant-numeric"];

// A standalone copy of a chart: the page's CSS does not travel with a file, so each element's
// computed style is written into it; several charts (the panels of a result) are stacked.
export function standaloneSvg(svgs) {
  let y = 0;
  let width = 0;
  const root = document.createElementNS(SVG_NS, "svg");
  for (const svg of svgs) {
    const box = svg.viewBox.baseVal;
    const clone = svg.cloneNode(true);
    const originals = [svg, ...svg.querySelectorAll("*")];
    [clone, ...clone.querySelectorAll("*")].forEach((node, index) => {
      const style = getComputedStyle(originals[index]);
      node.setAttribute("style", STYLED.map((name) => `${name}:${style.getPropertyValue(name)}`).join(";"));
      node.removeAttribute("class");
      node.removeAttribute("tabindex");
    });
    clone.setAttribute("x", "0");
    clone.setAttribute("y", String(y));
    clone.setAttribute("width", String(box.width));
    clone.setAttribute("height", String(box.height));
    root.append(clone);
    y += box.height;
    width = Math.max(width, box.width);
  }
  root.setAttribute("xmlns", SVG_NS);
  root.setAttribute("width", String(width));
  root.setAttribute("height", String(y));
  root.setAttribute("viewBox", `0 0 ${width} ${y}`);
  root.setAttribute("style", `background:${getComputedStyle(document.body).backgroundColor}`);
  return root;
}

function svgText(svgs) {
  return `<?xml version="1.0" encoding="UTF-8"?>\n${new XMLSerializer().serializeToString(standaloneSvg(svgs))}\n`;
}

async function pngBlob(svgs, scale = 2) {
  const svg = standaloneSvg(svgs);
  const width = Number(svg.getAttribute("width"));
  const height = Number(svg.getAttribute("height"));
  const url = URL.createObjectURL(new Blob([svgText(svgs)], { type: "image/svg+xml" }));
  try {
    const image = new Image();
    image.src = url;
    await image.decode();
    const canvas = h("canvas", { width: width * scale, height: height * scale });
    const context = canvas.getContext("2d");
    context.fillStyle = getComputedStyle(document.body).backgroundColor;
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.drawImage(image, 0, 0, canvas.width, canvas.height);
    return await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  } finally {
    URL.revokeObjectURL(url);
  }
}

// The bar under a result. table: the table's wrapper; charts: [{slug, label, get: () => the SVGs
// shown now}]; name: the files' base name.
export function exportBar({ table, charts = [], jobId, name }) {
  const button = (id, text, action) => {
    const node = h("button", { type: "button", class: "secondary small", id, text });
    node.addEventListener("click", action);
    return node;
  };
  return h("div", { class: "exports", role: "group", "aria-label": "Export this result" },
    table ? button("export-csv", "Table as CSV", () => download(`${name}.csv`, new Blob([toCsv(tableCells(table))], { type: "text/csv" }))) : null,
    charts.flatMap(({ slug, label, get }) => [
      button(`export-${slug}-svg`, `${label} as SVG`, () => download(`${name}-${slug}.svg`, new Blob([svgText(get())], { type: "image/svg+xml" }))),
      button(`export-${slug}-png`, `${label} as PNG`, async () => download(`${name}-${slug}.png`, await pngBlob(get()))),
    ]),
    jobId ? h("a", { id: "export-json", href: jobUrl(jobId), target: "_blank", rel: "noopener" }, `Raw JSON of ${jobId}`) : null,
  );
}
