// Number and time formatting shared by the pages.

const UNITS = [[1e9, "B"], [1e6, "M"], [1e3, "k"]];

/** 1234 -> "1.2k", 2.5e6 -> "2.5M"; small values as they are. */
export function compact(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  for (const [limit, suffix] of UNITS) {
    if (Math.abs(value) >= limit) return `${(value / limit).toFixed(1)}${suffix}`;
  }
  if (Number.isInteger(value) || Math.abs(value) >= 10) return value.toFixed(0);
  return value.toFixed(2);
}

const SUBSCRIPT = "₀₁₂₃₄₅₆₇₈₉";

/** A price of any magnitude with 4 significant digits; 4 or more zeros after the point
 * are written as a subscript count (0.0000004321 -> "0.0₆4321"). */
export function price(value) {
  if (value === null || value === undefined) return "–";
  if (value === 0) return "0";
  const digits = Math.max(2, 3 - Math.floor(Math.log10(Math.abs(value))));
  const text = value.toFixed(Math.min(digits, 20));
  const zeros = /^(-?)0\.(0{4,})(\d+)$/.exec(text);
  if (!zeros) return text;
  const count = String(zeros[2].length).split("").map((d) => SUBSCRIPT[Number(d)]).join("");
  return `${zeros[1]}0.0${count}${zeros[3]}`;
}

/** "+12.3%" / "-4.0%". */
export function pct(value) {
  if (value === null || value === undefined) return "–";
  const shown = value.toFixed(1);
  if (Number(shown) === 0) return "0.0%"; // not "-0.0%"
  return `${value > 0 ? "+" : ""}${shown}%`;
}

/** CSS class of a signed value. */
export function signClass(value) {
  return value > 0 ? "up" : value < 0 ? "down" : "flat";
}

/** "7xKX…pump" for long addresses. */
export function shortToken(token) {
  return token.length <= 14 ? token : `${token.slice(0, 5)}…${token.slice(-4)}`;
}

/** Local wall time of epoch ms as HH:MM:SS. */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

/** Decimal places that show a price of this magnitude with 4 significant digits. */
export function precisionFor(value) {
  if (!value) return 2;
  return Math.min(12, Math.max(2, 3 - Math.floor(Math.log10(Math.abs(value)))));
}

/** An element with attributes and children (strings become text nodes). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
