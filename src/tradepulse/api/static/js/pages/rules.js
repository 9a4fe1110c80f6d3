// The rule editor: a JSON textarea validated as you type (POST /api/v1/rules/validate),
// a dry run over the last 15 minutes (POST /api/v1/rules/dry-run), the rules list with
// enable/disable switches (PATCH), and creation (POST).

import { api, ApiError, principal } from "../api.js";
import { clock, el, shortToken } from "../format.js";

const EXAMPLE = {
  name: "volume spike",
  cooldown: 300,
  trigger: "edge",
  conditions: {
    all: [
      { metric: "window.5min.total_volume", op: ">", value: 50000 },
      { metric: "window.1min.buy_sell_ratio", op: ">=", value: 2 },
    ],
  },
};
const DEBOUNCE_MS = 300;
const DRY_RUN = { since: "15min" }; // scanned at the workers' interval
const TIMES_SHOWN = 8;

function errorList(errors) {
  return errors.map((e) => el("li", {}, el("code", {}, e.path || "$"), " ", e.message));
}

/** Where a JSON.parse error is, as "line L, column C" of the text. */
function jsonError(text, error) {
  const at = /position (\d+)/.exec(error.message);
  if (!at) return error.message;
  const before = text.slice(0, Number(at[1]));
  const line = before.split("\n").length;
  return `${error.message} (line ${line}, column ${before.length - before.lastIndexOf("\n")})`;
}

function describe(error) {
  if (error instanceof ApiError && error.status === 404) return "the rules API is not available on this server";
  if (error instanceof ApiError && error.status === 401) return "sign in to manage rules";
  const params = error.problem?.invalid_params;
  if (params?.length) return params.map((p) => `${p.name}: ${p.reason}`).join("; ");
  return error.message;
}

/** The problem's invalid_params as {path, message} (as a validation's errors). */
function problemErrors(error) {
  return (error.problem?.invalid_params || []).map((p) => ({ path: p.name, message: p.reason }));
}

/** "N alerts over S scans of T tokens", then per token its count and first times. */
function dryRunReport(result) {
  const total = Object.values(result.counts).reduce((a, b) => a + b, 0);
  const head = el("div", { id: "dryrun-summary" },
    `${total} alert(s) over ${result.scans} scans of ${result.tokens} token(s), `,
    `${clock(result.from_ms)}–${clock(result.to_ms)}`, result.truncated ? " (truncated)" : "");
  const times = {};
  for (const alert of result.alerts) (times[alert.token] ||= []).push(alert.triggered_ms);
  const rows = Object.entries(result.counts).sort((a, b) => b[1] - a[1]).map(([token, count]) => {
    const shown = (times[token] || []).slice(0, TIMES_SHOWN).map(clock).join(" ");
    const more = count > TIMES_SHOWN ? " …" : "";
    return el("tr", { "data-token": token },
      el("td", { class: "left mono", title: token }, shortToken(token)), el("td", {}, count),
      el("td", { class: "left mono small dim wrap" }, shown + more));
  });
  const table = rows.length ? el("table", { class: "grid", id: "dryrun-table" },
    el("thead", {}, el("tr", {}, el("th", { class: "left" }, "token"), el("th", {}, "alerts"),
      el("th", { class: "left" }, "times"))), el("tbody", {}, rows)) : null;
  const notes = el("ul", { class: "dim small" }, result.notes.map((n) => el("li", {}, n)));
  return table ? [head, table, notes] : [head, notes];
}

function ruleRow(rule, refresh, report) {
  const toggle = el("input", {
    type: "checkbox", checked: rule.enabled, "data-rule": rule.id, title: "enabled",
    onchange: async (event) => {
      try {
        await api(`/rules/${rule.id}`, { method: "PATCH", body: { enabled: event.target.checked } });
        refresh();
      } catch (error) {
        event.target.checked = !event.target.checked;
        report(describe(error));
      }
    },
  });
  const conditions = JSON.stringify(rule.definition?.conditions ?? {});
  return el("tr", { "data-rule": rule.id },
    el("td", {}, el("label", { class: "switch" }, toggle, el("span", {}))),
    el("td", { class: "left" }, rule.name),
    el("td", { class: "left mono small dim", title: conditions }, conditions.slice(0, 90)),
    el("td", {}, `v${rule.version}`),
    el("td", {}, rule.owner));
}

export function mount(view) {
  const editor = el("textarea", { id: "rule-editor", spellcheck: "false", rows: 16 });
  editor.value = JSON.stringify(EXAMPLE, null, 2);
  const status = el("div", { id: "rule-status", class: "dim" }, "");
  const errors = el("ul", { id: "rule-errors", class: "errors" });
  const create = el("button", { id: "rule-create", type: "button", disabled: true }, "Create rule");
  const dryRun = el("button", { id: "rule-dryrun", type: "button", disabled: true }, "Dry run (last 15 min)");
  const dryRunResult = el("div", { id: "dryrun-result", class: "small" });
  const message = el("div", { id: "rules-message", class: "dim" });
  const tbody = el("tbody");
  const table = el("table", { id: "rules-table", class: "grid" },
    el("thead", {}, el("tr", {}, el("th", {}, "on"), el("th", { class: "left" }, "name"),
      el("th", { class: "left" }, "conditions"), el("th", {}, "version"), el("th", {}, "owner"))), tbody);
  view.replaceChildren(el("div", { class: "columns" },
    el("section", { class: "panel wide" }, el("div", { class: "panel-head" }, el("h1", {}, "Rules"), message), table),
    el("section", { class: "panel" }, el("h2", {}, "New rule (JSON)"), editor, status, errors, create, " ", dryRun, dryRunResult,
      el("p", { class: "dim small" }, "Metrics: window.<window>.<statistic>, bar.<field>, ind.<name>, price. ",
        "The language is described in docs/rules.md."))));

  let closed = false;
  let timer = null;
  let generation = 0;

  async function refresh() {
    try {
      const page = await api("/rules");
      if (closed) return;
      const rules = Array.isArray(page) ? page : page.items || page.rules || [];
      tbody.replaceChildren(...rules.map((r) => ruleRow(r, refresh, (m) => { message.textContent = m; })));
      message.textContent = `${rules.length} rules`;
    } catch (error) {
      if (!closed) message.textContent = describe(error);
    }
  }

  async function validate() {
    const mine = ++generation;
    let definition;
    try {
      definition = JSON.parse(editor.value);
    } catch (error) {
      status.textContent = "not JSON";
      status.className = "bad";
      errors.replaceChildren(el("li", {}, jsonError(editor.value, error)));
      create.disabled = true;
      dryRun.disabled = true;
      return;
    }
    try {
      const result = await api("/rules/validate", { method: "POST", body: definition });
      if (closed || mine !== generation) return;
      status.textContent = result.valid ? "valid" : `${result.errors.length} error(s)`;
      status.className = result.valid ? "good" : "bad";
      errors.replaceChildren(...errorList(result.errors || []));
      create.disabled = !result.valid || !principal();
      dryRun.disabled = create.disabled;
    } catch (error) {
      if (closed || mine !== generation) return;
      status.textContent = describe(error);
      status.className = "bad";
      errors.replaceChildren();
      create.disabled = true;
      dryRun.disabled = true;
    }
  }

  async function runDry() {
    dryRun.disabled = true;
    dryRunResult.replaceChildren("running…");
    try {
      const body = { rule: JSON.parse(editor.value), ...DRY_RUN };
      const result = await api("/rules/dry-run", { method: "POST", body });
      if (closed) return;
      dryRunResult.replaceChildren(...dryRunReport(result));
    } catch (error) {
      if (closed) return;
      const found = problemErrors(error);
      dryRunResult.replaceChildren(el("div", { class: "bad" }, found.length ? "dry run refused" : describe(error)));
      if (found.length) errors.replaceChildren(...errorList(found));
    } finally {
      dryRun.disabled = create.disabled;
    }
  }

  editor.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(validate, DEBOUNCE_MS);
  });
  dryRun.addEventListener("click", runDry);
  create.addEventListener("click", async () => {
    try {
      const rule = await api("/rules", { method: "POST", body: JSON.parse(editor.value) });
      message.textContent = `created ${rule.name}`;
      refresh();
    } catch (error) {
      message.textContent = describe(error);
    }
  });
  validate();
  refresh();
  return () => { closed = true; clearTimeout(timer); };
}
