// The rule editor: a JSON textarea validated as you type (POST /api/v1/rules/validate),
// the rules list with enable/disable switches (PATCH), and creation (POST).

import { api, ApiError, principal } from "../api.js";
import { el } from "../format.js";

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
  const message = el("div", { id: "rules-message", class: "dim" });
  const tbody = el("tbody");
  const table = el("table", { id: "rules-table", class: "grid" },
    el("thead", {}, el("tr", {}, el("th", {}, "on"), el("th", { class: "left" }, "name"),
      el("th", { class: "left" }, "conditions"), el("th", {}, "version"), el("th", {}, "owner"))), tbody);
  view.replaceChildren(el("div", { class: "columns" },
    el("section", { class: "panel wide" }, el("div", { class: "panel-head" }, el("h1", {}, "Rules"), message), table),
    el("section", { class: "panel" }, el("h2", {}, "New rule (JSON)"), editor, status, errors, create,
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
      return;
    }
    try {
      const result = await api("/rules/validate", { method: "POST", body: definition });
      if (closed || mine !== generation) return;
      status.textContent = result.valid ? "valid" : `${result.errors.length} error(s)`;
      status.className = result.valid ? "good" : "bad";
      errors.replaceChildren(...errorList(result.errors || []));
      create.disabled = !result.valid || !principal();
    } catch (error) {
      if (closed || mine !== generation) return;
      status.textContent = describe(error);
      status.className = "bad";
      errors.replaceChildren();
      create.disabled = true;
    }
  }

  editor.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(validate, DEBOUNCE_MS);
  });
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
