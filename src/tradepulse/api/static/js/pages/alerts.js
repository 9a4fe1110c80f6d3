// The alert feed page.

import { principal } from "../api.js";
import { markSeen, onAlerts } from "../alerts.js";
import { clock, compact, el, shortToken } from "../format.js";

function values(alert) {
  return Object.entries(alert.values || {}).map(([metric, value]) =>
    el("span", { class: "chip" }, `${metric} = ${typeof value === "number" ? compact(value) : value}`));
}

function item(alert) {
  return el("li", { class: "alert", "data-id": alert.id },
    el("span", { class: "time" }, clock(alert.triggered_ms)),
    el("span", { class: "rule" }, alert.rule_name),
    el("a", { href: `#/token/${encodeURIComponent(alert.token)}`, class: "mono", title: alert.token }, shortToken(alert.token)),
    el("span", { class: "values" }, values(alert)));
}

export function mount(view) {
  const list = el("ul", { id: "alert-feed", class: "feed" });
  const note = el("span", { class: "dim" });
  view.replaceChildren(el("section", { class: "panel" },
    el("div", { class: "panel-head" }, el("h1", {}, "Alerts"), note), list));
  let pending = false;
  function markSeenSoon() {
    if (pending) return;
    pending = true;
    queueMicrotask(() => { pending = false; markSeen(); });
  }
  return onAlerts((alerts) => {
    markSeenSoon(); // shown here: not unseen
    note.textContent = principal() ? `${alerts.length} alerts (live)` : "sign in to receive your rules' alerts";
    list.replaceChildren(...alerts.map(item));
  });
}
