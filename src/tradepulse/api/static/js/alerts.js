// The alert feed: the WebSocket channel "alerts" while signed in (kept for the whole
// page, whatever view is shown), seeded with GET /api/v1/alerts each time the server
// confirms the subscription (first connect and every reconnect), so an alert stored while
// the socket was (re)connecting is not missed; alerts are de-duplicated by id.

import { api, principal, onAuthChange } from "./api.js";
import { live } from "./ws.js";

const KEEP = 200;
const alerts = []; // newest first
const listeners = new Set();
let unseen = 0;
let off = null;

function add(alert, { fresh }) {
  if (alerts.some((a) => a.id === alert.id)) return;
  alerts.unshift(alert);
  alerts.sort((a, b) => b.triggered_ms - a.triggered_ms);
  alerts.length = Math.min(alerts.length, KEEP);
  if (fresh) unseen += 1;
  listeners.forEach((fn) => fn(alerts, unseen));
}

async function seed() {
  try {
    const page = await api("/alerts?limit=50");
    (page.items || page.alerts || []).forEach((a) => add(a, { fresh: false }));
  } catch {
    // the alerts API is optional: the feed then starts with the live alerts
  }
}

function follow(who) {
  if (off) off();
  off = null;
  if (!who) return;
  const unconfirm = live.onSubscribed("alerts", seed);
  const unsubscribe = live.subscribe("alerts", (frame) => add(frame.data, { fresh: true }));
  off = () => { unconfirm(); unsubscribe(); };
  seed();
}

export function startAlerts() {
  follow(principal());
  onAuthChange(follow);
}

export function onAlerts(fn) {
  listeners.add(fn);
  fn(alerts, unseen);
  return () => listeners.delete(fn);
}

export function markSeen() {
  if (unseen === 0) return;
  unseen = 0;
  listeners.forEach((fn) => fn(alerts, unseen));
}
