// The result table: the API's rows in its order; a column's header button sorts by that column, a
// second press reverses, a third goes back to the API's order.
import { h } from "./dom.js";

// columns: [{label, type: "text" | "number", rowHeader?}]; rows: [{cells, sortKeys, key, cls}].
// A number column's data-value (and the CSV export) holds the full-precision number.
export function resultTable(caption, columns, rows) {
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
        h("tr", { class: row.cls || null, "data-key": row.key },
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

// The table as its rows of cells, in the order shown, rows hidden by a filter left out: the header
// labels, then per row the text of text cells and the full-precision number of number cells.
export function tableCells(wrap) {
  const table = wrap.querySelector("table");
  const header = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
  const body = [...table.querySelectorAll("tbody tr")]
    .filter((tr) => !tr.hidden)
    .map((tr) => [...tr.children].map((cell) => (cell.classList.contains("num") ? cell.dataset.value : cell.textContent)));
  return [header, ...body];
}
