// The live table of the top tokens (WebSocket channel tokens:top; sorted by the server).

import { live } from "../ws.js";
import { compact, el, pct, price, shortToken, signClass, clock } from "../format.js";

const COLUMNS = [
  ["trade_count", "trades", "trades (hover a cell for buys / sells)"],
  ["total_volume", "vol $", "volume in USD"],
  ["unique_wallets", "wallets", "unique wallets"],
  ["price_change_pct", "chg", "price change"],
];
const LIMIT = 25;
let sort = "-window.5min.total_volume";

function headers(windows, table) {
  const [sortStat, descending] = [sort.replace(/^-/, ""), sort.startsWith("-")];
  const top = el("tr", {}, el("th", { rowspan: 2 }, "#"), el("th", { rowspan: 2, class: "left" }, "token"),
    el("th", { rowspan: 2 }, "price $"),
    windows.map((w) => el("th", { colspan: COLUMNS.length, class: "group" }, w)));
  const sub = el("tr", {}, windows.map((w) => COLUMNS.map(([stat, label, title]) => {
    const key = `window.${w}.${stat}`;
    const mark = key === sortStat ? (descending ? " ▼" : " ▲") : "";
    return el("th", {
      class: `sortable${mark ? " sorted" : ""}`, title: `${title} in ${w}; click to sort`,
      "data-sort": key,
      onclick: () => {
        sort = key === sortStat && descending ? key : `-${key}`;
        live.resubscribe("tokens:top", { sort, limit: LIMIT });
        table.dataset.sort = sort;
        table.tHead.replaceChildren(...headers(windows, table));
      },
    }, label + mark);
  })));
  return [top, sub];
}

function cell(stats, stat) {
  if (!stats) return el("td", { class: "dim" }, "–");
  if (stat === "trade_count") {
    return el("td", { title: `${stats.buy_count} buys / ${stats.sell_count} sells` },
      compact(stats.trade_count));
  }
  if (stat === "price_change_pct") {
    return el("td", { class: signClass(stats.price_change_pct) }, pct(stats.price_change_pct));
  }
  return el("td", {}, compact(stats[stat]));
}

/** The row of one token; cells whose text changed since ``previous`` (texts by column) flash. */
function row(item, index, windows, previous) {
  const first = item.windows[windows[0]];
  const tr = el("tr", { "data-token": item.token },
    el("td", { class: "dim" }, index + 1),
    el("td", { class: "left" }, el("a", { href: `#/token/${encodeURIComponent(item.token)}`, title: item.token },
      shortToken(item.token))),
    el("td", {}, first ? price(first.end_price) : "–"),
    windows.map((w) => COLUMNS.map(([stat]) => cell(item.windows[w], stat))));
  if (previous) {
    [...tr.children].forEach((td, i) => {
      if (i > 1 && previous[i] !== undefined && previous[i] !== td.textContent) td.classList.add("flash");
    });
  }
  return tr;
}

export function mount(view) {
  const table = el("table", { id: "tokens-table", class: "grid", "data-frames": "0", "data-sort": sort });
  const status = el("span", { id: "tokens-updated", class: "dim" }, "waiting for data…");
  view.replaceChildren(el("section", { class: "panel" },
    el("div", { class: "panel-head" }, el("h1", {}, "Top tokens"), status),
    el("div", { class: "scroll" }, table)));
  let windows = null;
  const previous = new Map();
  const off = live.subscribe("tokens:top", (frame) => {
    const items = frame.data.items;
    if (!windows && items.length) {
      windows = Object.keys(items[0].windows);
      table.append(el("thead", {}, headers(windows, table)), el("tbody"));
    }
    if (!windows) return;
    const rows = items.map((item, i) => row(item, i, windows, previous.get(item.token)));
    rows.forEach((tr) => previous.set(tr.dataset.token, [...tr.children].map((td) => td.textContent)));
    table.tBodies[0].replaceChildren(...rows);
    table.dataset.frames = String(Number(table.dataset.frames) + 1);
    status.textContent = `${items.length} tokens · updated ${clock(Date.now())}`;
  }, { sort, limit: LIMIT });
  return off;
}
