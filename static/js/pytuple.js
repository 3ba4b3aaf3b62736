// Python's str() of a tuple of strings: "('Ohio', 'Age (years)', '18 - 24')". Each item is a Python
// string literal: single quotes, or double quotes when the text holds a single quote (and no double
// one), with backslash escapes. Items may hold commas, brackets and quotes, so this is a small
// parser, not a split. Returns the list of strings, or null if the text is not such a tuple.

const SIMPLE_ESCAPES = { "\\": "\\", "'": "'", '"': '"', n: "\n", r: "\r", t: "\t", a: "\x07", b: "\b", f: "\f", v: "\v", 0: "\0" };

export function parsePyTuple(text) {
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
