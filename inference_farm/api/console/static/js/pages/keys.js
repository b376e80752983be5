// The Keys page: list, create and revoke API keys. A new key's secret is shown once, kept
// only in this page's memory, and gone when the page is left or reloaded.
import { ApiError, call, get } from "../api.js";
import { badge, clear, confirmAction, h, notify, section, table, when } from "../dom.js";

const SCOPES = ["infer", "jobs", "models:read", "models:write", "keys:admin", "metrics", "admin"];
// The optional numeric fields of POST /v1/keys: [field, label, input attributes].
const NUMBERS = [
  ["expires_in_days", "Expires in (days)", { min: 1, max: 36500, step: 1 }],
  ["rate_per_second", "Rate limit (requests/s)", { min: 0, step: "any" }],
  ["burst", "Burst", { min: 1, step: 1 }],
  ["max_queued_jobs", "Max queued jobs", { min: 1, step: 1 }],
];

function messageOf(error) {
  return error instanceof ApiError ? error.message : String((error && error.message) || error);
}

function statusOf(key) {
  if (key.revoked_at) return "revoked";
  if (key.expires_at && new Date(key.expires_at).getTime() <= Date.now()) return "expired";
  return "active";
}

function limits(key) {
  const parts = [];
  if (key.rate_per_second != null) parts.push(`${key.rate_per_second}/s`);
  if (key.burst != null) parts.push(`burst ${key.burst}`);
  if (key.max_queued_jobs != null) parts.push(`≤ ${key.max_queued_jobs} queued`);
  return parts.length ? parts.join(", ") : "farm defaults";
}

function field(id, label, input, help) {
  return h("div.field", {}, h("label", { for: id, text: label }), input,
    help ? h("p.help", { id: `${id}-help`, text: help }) : null);
}

function buildForm(onCreated) {
  const name = h("input", { id: "key-name", name: "name", required: true, maxlength: 128, autocomplete: "off" });
  const boxes = SCOPES.map((scope) => h("input", { type: "checkbox", name: "scopes", value: scope, id: `scope-${scope.replace(":", "-")}` }));
  const models = h("input", { id: "key-models", name: "models", autocomplete: "off", "aria-describedby": "key-models-help" });
  const numbers = NUMBERS.map(([key, , attrs]) => h("input", { type: "number", id: `key-${key}`, name: key, ...attrs }));
  const error = h("p.error", { role: "alert" });
  const submit = h("button", { type: "submit", text: "Create key" });
  const form = h("form.key-form", { "aria-label": "Create a key" },
    field("key-name", "Name", name),
    h("fieldset.scopes", {}, h("legend", { text: "Scopes" }),
      boxes.map((box) => h("label.scope", { for: box.id }, box, box.value))),
    field("key-models", "Models allowed (optional)", models, "Model names separated by commas or spaces; empty: every model."),
    h("div.fields", {}, numbers.map((input, i) => field(input.id, NUMBERS[i][1], input))),
    h("p.help", { text: "Empty fields take the farm's defaults: no expiry, the configured limits." }),
    h("div.actions", {}, submit),
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const body = { name: name.value.trim(), scopes: boxes.filter((b) => b.checked).map((b) => b.value) };
    if (!body.scopes.length) {
      error.textContent = "Choose at least one scope.";
      return;
    }
    const allowed = models.value.split(/[\s,]+/).filter(Boolean);
    if (allowed.length) body.models = allowed;
    numbers.forEach((input, i) => {
      if (input.value !== "") body[NUMBERS[i][0]] = Number(input.value);
    });
    submit.disabled = true;
    try {
      const created = await call("POST", "/v1/keys", { json: body });
      form.reset();
      onCreated(created);
    } catch (failure) {
      error.textContent = `Creating the key failed: ${messageOf(failure)}`;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

async function copy(text, code) {
  if (navigator.clipboard && navigator.clipboard.writeText) {
    try {
      await navigator.clipboard.writeText(text);
      notify("The secret is on the clipboard.");
      return;
    } catch (error) {
      notify(`Copying failed: ${messageOf(error)}; select the secret and copy it by hand.`, "error");
    }
  } else {
    notify("No clipboard here: select the secret and copy it by hand.");
  }
  const range = document.createRange();
  range.selectNodeContents(code);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

function secretCard(created, onDismiss) {
  const code = h("code.mono", { id: "new-secret", text: created.secret });
  return h("section.card.secret-box", { "aria-labelledby": "secret-title" },
    h("h2", { id: "secret-title", text: `Secret of the new key “${created.name}”` }),
    h("p", { text: "Shown this once: copy it now. It is stored nowhere, and it is gone when you leave or reload this page." }),
    code,
    h("div.actions", {},
      h("button", { type: "button", text: "Copy", on: { click: () => copy(created.secret, code) } }),
      h("button.secondary", { type: "button", text: "Done", on: { click: onDismiss } })));
}

function keysTable(keys, me, onRevoke) {
  return table(
    [["Name", (k) => h("span.key-label", { text: k.name })],
      ["Prefix", (k) => h("span.mono", { text: k.prefix })],
      ["Scopes", (k) => (k.scopes || []).join(", ")],
      ["Models", (k) => (k.models ? k.models.join(", ") : "every model")],
      ["Limits", limits],
      ["Created", (k) => when(k.created_at)],
      ["Expires", (k) => (k.expires_at ? when(k.expires_at) : "never")],
      ["Last used", (k) => when(k.last_used_at)],
      ["Status", (k) => badge(statusOf(k))],
      ["Action", (k) => (k.revoked_at ? "–" : h("button.danger", {
        type: "button", text: "Revoke", "aria-label": `Revoke key ${k.name} (${k.prefix})`,
        dataset: { keyId: k.id }, on: { click: () => onRevoke(k) },
      }))]],
    keys, { empty: "No keys.", label: "API keys" },
  );
}

export default {
  title: "Keys",
  needs: "keys:admin",
  mount(root, ctx) {
    let alive = true;
    const secretSlot = h("div.secret-slot");
    const list = h("div.key-list", {}, h("p.muted", { text: "loading…" }));
    const dismiss = () => clear(secretSlot);

    async function load() {
      try {
        const keys = await get("/v1/keys");
        if (alive) clear(list).append(keysTable(keys, ctx.me, revoke));
      } catch (error) {
        if (!alive) return;
        clear(list).append(h("p.error", { text: `The keys could not be listed: ${messageOf(error)}` }));
        notify(messageOf(error), "error");
      }
    }

    async function revoke(key) {
      const own = ctx.me && key.id === ctx.me.id ? " It is the key this console is signed in with." : "";
      const sure = await confirmAction(`Revoke the key “${key.name}” (${key.prefix})? It stops working at once.${own}`, "Revoke");
      if (!sure) return;
      try {
        await call("DELETE", `/v1/keys/${encodeURIComponent(key.id)}`);
        notify(`Revoked the key “${key.name}”.`);
      } catch (error) {
        notify(`Revoking failed: ${messageOf(error)}`, "error");
      }
      if (alive) await load();
    }

    const created = (record) => {
      clear(secretSlot).append(secretCard(record, dismiss));
      load();
    };
    root.append(h("div.keys", {},
      h("section.card", {}, h("h1", { text: "Keys" }),
        h("p.help", { text: "API keys: their secrets are never listed; a new key's secret is shown once." })),
      secretSlot,
      section("Create a key", buildForm(created)),
      section("All keys", list)));
    load();
    return () => {
      alive = false;
      clear(secretSlot); // the secret lives nowhere else
    };
  },
};
