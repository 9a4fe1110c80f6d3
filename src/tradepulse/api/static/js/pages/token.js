// One token: candles and volume (lightweight-charts), every window's statistics and the
// indicators, live through the WebSocket channel token:<addr>.

import { api, ApiError } from "../api.js";
import { live } from "../ws.js";
import { clock, compact, el, pct, precisionFor, price, signClass } from "../format.js";

const CHARTS = "/vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";
const TIMEFRAMES = { "1m": 60, "5m": 300, "15m": 900, "1h": 3600 };
const STATS = [
  ["trade_count", "trades", compact], ["buy_count", "buys", compact], ["sell_count", "sells", compact],
  ["total_volume", "volume $", compact], ["buy_volume", "buy vol $", compact],
  ["sell_volume", "sell vol $", compact], ["unique_wallets", "wallets", compact],
  ["unique_buyers", "buyers", compact], ["unique_sellers", "sellers", compact],
  ["start_price", "open", price], ["end_price", "last", price], ["high_price", "high", price],
  ["low_price", "low", price], ["vwap", "vwap", price], ["price_change_pct", "change", pct],
];
const UP = "#3fb950";
const DOWN = "#f85149";

function statsTable(windows) {
  const names = Object.keys(windows);
  return el("table", { class: "grid compact", id: "window-stats" },
    el("thead", {}, el("tr", {}, el("th", { class: "left" }, ""), names.map((w) => el("th", {}, w)))),
    el("tbody", {}, STATS.map(([key, label, fmt]) => el("tr", {},
      el("th", { class: "left" }, label),
      names.map((w) => {
        const value = windows[w][key];
        return el("td", { class: key === "price_change_pct" ? signClass(value) : "" }, fmt(value));
      })))));
}

function indicatorList(indicators) {
  if (!indicators) return el("p", { class: "dim" }, "no indicators yet (they follow the first final bar)");
  const entries = Object.entries(indicators).filter(([k]) => k !== "bar_open_ms");
  return el("dl", { class: "kv", id: "indicators" }, entries.map(([k, v]) => [
    el("dt", {}, k),
    el("dd", { class: v === null ? "dim" : "" }, v === null ? "warming up" : k.startsWith("price_change")
      ? pct(v) : k.startsWith("vwap") ? price(v) : compact(v)),
  ]));
}

function toCandle(c) {
  return { time: c.open_ms / 1000, open: c.open, high: c.high, low: c.low, close: c.close };
}

function toVolume(c) {
  return { time: c.open_ms / 1000, value: c.volume_usd, color: c.close >= c.open ? `${UP}80` : `${DOWN}80` };
}

class TokenChart {
  constructor(lib, container) {
    this.container = container;
    this.chart = lib.createChart(container, {
      autoSize: true,
      layout: { background: { color: "#0d1117" }, textColor: "#8b949e", fontSize: 11 },
      grid: { vertLines: { color: "#161b22" }, horzLines: { color: "#161b22" } },
      rightPriceScale: { borderColor: "#30363d" },
      timeScale: { borderColor: "#30363d", timeVisible: true, secondsVisible: false },
      crosshair: { mode: lib.CrosshairMode.Normal },
    });
    this.candles = this.chart.addSeries(lib.CandlestickSeries, {
      upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN,
    });
    this.candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.28 } });
    this.volume = this.chart.addSeries(lib.HistogramSeries, { priceFormat: { type: "volume" }, priceScaleId: "vol" });
    this.chart.priceScale("vol").applyOptions({ scaleMargins: { top: 0.78, bottom: 0 } });
    this.last = null; // the last candle, with the volumes of its final and forming bars
  }

  load(candles, tfSeconds) {
    this.tf = tfSeconds;
    const last = candles[candles.length - 1];
    const digits = precisionFor(last ? last.close : 0);
    this.candles.applyOptions({ priceFormat: { type: "price", precision: digits, minMove: 10 ** -digits } });
    this.candles.setData(candles.map(toCandle));
    this.volume.setData(candles.map(toVolume));
    this.bars = candles.length;
    this.container.dataset.candles = String(candles.length);
    this.last = last ? { ...toCandle(last), base: last.volume_usd, formingOpen: null, formingVolume: 0 } : null;
    this.chart.timeScale().fitContent();
  }

  /** Merge the forming 1-minute bar into the last candle of the timeframe: ``base`` is
   * the USD volume of the bucket's final bars, the forming bar's is added on top. */
  forming(bar) {
    if (!bar || !this.tf) return;
    const time = Math.floor(bar.open_ms / 1000 / this.tf) * this.tf;
    let c = this.last;
    if (c && time < c.time) return;
    if (!c || time > c.time) {
      c = { time, open: bar.open, high: bar.high, low: bar.low, close: bar.close, base: 0, formingOpen: null, formingVolume: 0 };
      this.bars += 1;
      this.container.dataset.candles = String(this.bars);
    }
    if (c.formingOpen !== null && c.formingOpen !== bar.open_ms) c.base += c.formingVolume;
    c.formingOpen = bar.open_ms;
    c.formingVolume = bar.volume_usd;
    c.high = Math.max(c.high, bar.high);
    c.low = Math.min(c.low, bar.low);
    c.close = bar.close;
    this.last = c;
    this.candles.update({ time: c.time, open: c.open, high: c.high, low: c.low, close: c.close });
    this.volume.update(toVolume({ open_ms: c.time * 1000, volume_usd: c.base + c.formingVolume, open: c.open, close: c.close }));
  }

  remove() {
    this.chart.remove();
  }
}

async function loadCharts() {
  try {
    return await import(CHARTS);
  } catch {
    return null;
  }
}

export function mount(view, addr) {
  const chartBox = el("div", { id: "chart", class: "chart", "data-candles": "0" });
  const tfBar = el("div", { class: "tabs", id: "timeframes" });
  const headline = el("div", { class: "headline" }, el("h1", { class: "mono" }, addr));
  const statsBox = el("div", { id: "stats-box" }, el("p", { class: "dim" }, "waiting for statistics…"));
  const indBox = el("div", { id: "ind-box" });
  const barBox = el("div", { id: "bar-box", class: "dim small" });
  view.replaceChildren(
    el("section", { class: "panel" }, el("div", { class: "panel-head" }, headline, tfBar), chartBox,
      el("div", { class: "dim small", id: "chart-note" }, "")),
    el("div", { class: "columns" },
      el("section", { class: "panel wide" }, el("h2", {}, "Windows"), statsBox),
      el("section", { class: "panel" }, el("h2", {}, "Indicators"), indBox, el("h2", {}, "Forming bar"), barBox)));

  let chart = null;
  let tf = "1m";
  let closed = false;
  const note = view.querySelector("#chart-note");

  async function showCandles() {
    tfBar.replaceChildren(...Object.keys(TIMEFRAMES).map((name) =>
      el("button", { type: "button", class: name === tf ? "active" : "", "data-tf": name,
        onclick: () => { tf = name; showCandles(); } }, name)));
    try {
      const page = await api(`/tokens/${encodeURIComponent(addr)}/candles?tf=${tf}`);
      if (closed || !chart) return;
      chart.load(page.candles, TIMEFRAMES[tf]);
      note.textContent = page.candles.length ? `${page.candles.length} candles of ${tf} (final bars; the last one live)`
        : "no final bar yet: the first appears a minute after the token's first trade";
    } catch (error) {
      note.textContent = `candles unavailable: ${error.message}`;
    }
  }

  loadCharts().then((lib) => {
    if (closed) return;
    if (!lib) {
      chartBox.replaceChildren(el("p", { class: "warn" }, "The chart library is missing: run make install (npm ci)."));
      return;
    }
    chart = new TokenChart(lib, chartBox);
    showCandles();
  });

  const off = live.subscribe(`token:${addr}`, (frame) => {
    const d = frame.data;
    const first = Object.values(d.windows)[0];
    headline.replaceChildren(el("h1", { class: "mono", title: addr }, addr),
      first ? el("span", { class: "price" }, `$${price(first.end_price)}`) : null,
      first ? el("span", { class: signClass(first.price_change_pct) }, `${pct(first.price_change_pct)} ${Object.keys(d.windows)[0]}`) : null,
      el("span", { class: "dim small" }, `updated ${d.last_update ? clock(Date.parse(d.last_update)) : "–"}`));
    statsBox.replaceChildren(statsTable(d.windows));
    indBox.replaceChildren(indicatorList(d.indicators));
    barBox.textContent = d.bar ? `${clock(d.bar.open_ms)} · O ${price(d.bar.open)} H ${price(d.bar.high)} L ${price(d.bar.low)} C ${price(d.bar.close)} · ${d.bar.trades} trades · $${compact(d.bar.volume_usd)}` : "none (no trade this minute)";
    if (chart && d.bar) chart.forming(d.bar);
  });
  api(`/tokens/${encodeURIComponent(addr)}`).catch((error) => {
    if (!closed && error instanceof ApiError && error.status === 404) {
      statsBox.replaceChildren(el("p", { class: "warn" }, `${addr} has no live statistics`));
    }
  });
  return () => {
    closed = true;
    off();
    if (chart) chart.remove();
  };
}
