// The dashboard shell: hash routes, sign-in, WebSocket status, the alert badge.
//   #/                 top tokens           #/alerts   alert feed
//   #/token/<addr>     one token            #/rules    rule editor
//   #token=<jwt>       sign in with this token (the link `tradepulse demo` prints)

import { onAuthChange, principal, signIn, signOut } from "./api.js";
import { onAlerts, startAlerts } from "./alerts.js";
import { clock } from "./format.js";
import { live } from "./ws.js";
import * as alertsPage from "./pages/alerts.js";
import * as rulesPage from "./pages/rules.js";
import * as tokenPage from "./pages/token.js";
import * as tokensPage from "./pages/tokens.js";

const $ = (id) => document.getElementById(id);
let unmount = null;

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  if (hash.startsWith("token=")) {
    signIn(decodeURIComponent(hash.slice(6)));
    history.replaceState(null, "", location.pathname + "#/");
    return route();
  }
  if (unmount) unmount();
  const view = $("view");
  const [, page, arg] = hash.split("/");
  let name = "tokens";
  if (page === "token" && arg) {
    name = "token";
    unmount = tokenPage.mount(view, decodeURIComponent(arg));
  } else if (page === "alerts") {
    name = "alerts";
    unmount = alertsPage.mount(view);
  } else if (page === "rules") {
    name = "rules";
    unmount = rulesPage.mount(view);
  } else {
    unmount = tokensPage.mount(view);
  }
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === name));
  document.title = `tradepulse · ${name === "token" ? arg.slice(0, 8) : name}`;
}

function showWho(who) {
  $("who").textContent = who ? `signed in as ${who.user}${who.admin ? " (admin)" : ""}` : "not signed in";
  $("who").classList.toggle("signed", Boolean(who));
  $("signin-toggle").hidden = Boolean(who);
  $("signout-button").hidden = !who;
  $("signin-form").hidden = true;
}

function setupAuth() {
  $("signin-toggle").addEventListener("click", () => {
    $("signin-form").hidden = false;
    $("signin-toggle").hidden = true;
    $("token-input").focus();
  });
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    signIn(value);
    $("token-input").value = "";
    if (!principal()) $("who").textContent = "that is not a valid, unexpired token";
  });
  $("signout-button").addEventListener("click", signOut);
  onAuthChange((who) => {
    showWho(who);
    live.reconnect(); // the socket carries the token
  });
  showWho(principal());
}

function start() {
  setupAuth();
  live.onStatus((status) => {
    $("ws-status").textContent = status;
    $("ws-status").className = `status ${status}`;
  });
  live.onError((frame) => {
    if (frame.code !== "unauthorized" || !principal()) return;
    signOut(); // the market stays readable without a token
    $("who").textContent = `token refused: ${frame.message}`;
  });
  live.connect();
  startAlerts();
  onAlerts((_alerts, unseen) => {
    $("alert-count").hidden = unseen === 0;
    $("alert-count").textContent = String(unseen);
  });
  setInterval(() => { $("clock").textContent = clock(Date.now()); }, 1000);
  window.addEventListener("hashchange", route);
  route();
}

start();
