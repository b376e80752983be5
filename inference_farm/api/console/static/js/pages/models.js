// The Models page: every model with its default version and batching limits (#/models), one
// model's versions with their signature and validation outcome (#/models/<name>), and uploads
// whose status turns ready or failed live, from the change events of /v1/events.
import { ApiError, call, get, upload } from "../api.js";
import { badge, bytes, clear, confirmAction, h, ms, notify, section, table, when } from "../dom.js";

const enc = encodeURIComponent;
const modelPath = (name) => `/v1/models/${enc(name)}`;
const versionsPath = (name) => `${modelPath(name)}/versions`;
const versionPath = (name, version) => `${versionsPath(name)}/${enc(version)}`;
const fail = (error) => notify(error.message, "error");

export default {
  title: "Models",
  needs: "models:read",
  mount(root, ctx) {
    const view = { root, ctx, alive: true, timer: null, tracked: new Map(), wants: () => false, refresh: null };
    const offChange = ctx.live.on("change", (changes) => onChanges(view, changes));
    const offStatus = ctx.live.on("status", ({ connected }) => connected && catchUp(view));
    if (ctx.args[0]) detailView(view, ctx.args[0]);
    else listView(view);
    return () => {
      view.alive = false;
      clearTimeout(view.timer);
      offChange();
      offStatus();
    };
  },
};

// Live: a version's status changed; re-read what this view shows of it.
function onChanges(view, changes) {
  for (const change of [].concat(changes || [])) {
    if (!change || change.type !== "version") continue;
    const line = view.tracked.get(`${change.model}/${change.version}`);
    if (line) reread(view, line, change.model, change.version);
    if (view.wants(change)) schedule(view);
  }
}

// After a reconnect, changes may have been missed while the stream was down.
function catchUp(view) {
  schedule(view);
  for (const [key, line] of view.tracked) {
    const [model, version] = key.split("/");
    reread(view, line, model, version);
  }
}

function schedule(view) {
  clearTimeout(view.timer);
  view.timer = setTimeout(() => {
    if (view.alive && view.refresh) view.refresh().catch(fail);
  }, 100);
}

// ---- the list of models ----

function listView(view) {
  const listBox = h("div.model-list", {}, h("p.muted", { text: "Loading…" }));
  view.root.append(
    h("section.card", {}, h("h1", { text: "Models" }),
      h("p.help", { text: "Each model's default version, its batching limits and its versions. Open a model for its signature and validation outcome." })),
    section("All models", listBox),
  );
  if (view.ctx.allows("models:write")) view.root.append(uploadCard(view, null));
  view.wants = () => true;
  view.refresh = async () => {
    const models = await get("/v1/models");
    if (view.alive) clear(listBox).append(modelsTable(models));
  };
  view.refresh().catch(fail);
}

function modelsTable(models) {
  return table([
    ["Name", (m) => h("a", { href: `#/models/${enc(m.name)}`, text: m.name })],
    ["Description", (m) => m.description || "–"],
    ["Default version", (m) => defaultOf(m)],
    ["Batching", (m) => batchingOf(m)],
    ["Versions", (m) => versionBadges(m.versions || [])],
  ], models, { empty: "No models yet.", label: "Models" });
}

function versionBadges(versions) {
  if (!versions.length) return "–";
  return h("ul.version-badges", {}, versions.map((v) => h("li", {}, h("span.mono", { text: v.version }), " ", badge(v.status))));
}

function defaultOf(model) {
  if (model.default_version) return h("span", {}, h("span.mono", { text: model.default_version }), " ", h("span.badge.pinned", { text: "pinned" }));
  if (model.serving_version) return h("span", {}, h("span.mono", { text: model.serving_version }), h("span.muted", { text: " (highest ready, not pinned)" }));
  return h("span.muted", { text: "none ready" });
}

function batchingOf(model) {
  const size = model.max_batch_size == null ? "farm default" : String(model.max_batch_size);
  const delay = model.max_queue_delay_ms == null ? "farm default" : `${model.max_queue_delay_ms} ms`;
  return `batch ≤ ${size}, wait ≤ ${delay}`;
}

// ---- one model ----

function detailView(view, name) {
  const { root, ctx } = view;
  const write = ctx.allows("models:write");
  const head = h("section.card.model-head", {}, h("h1", { text: name }));
  const settings = h("div");
  const versionsBox = h("div.versions", {}, h("p.muted", { text: "Loading…" }));
  root.append(head, settings, section("Versions", versionsBox));
  if (write) root.append(uploadCard(view, name));
  let built = false;
  view.wants = (change) => change.model === name;
  view.refresh = async () => {
    let model;
    let versions;
    try {
      [model, versions] = await Promise.all([get(modelPath(name)), get(versionsPath(name))]);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      if (view.alive) gone(head, versionsBox, settings, name, error);
      return;
    }
    if (!view.alive) return;
    renderHead(view, head, model);
    if (write && !built) settings.replaceWith((built = settingsCard(view, model)));
    clear(versionsBox).append(...(versions.length
      ? versions.map((v) => versionCard(view, model, v))
      : [h("p.empty", { text: "No versions: upload one." })]));
  };
  view.refresh().catch(fail);
}

function gone(head, versionsBox, settings, name, error) {
  clear(head).append(h("h1", { text: name }), h("p.error", { text: error.message }), backLink());
  clear(versionsBox);
  clear(settings);
}

const backLink = () => h("p", {}, h("a", { href: "#/models", text: "All models" }));

function renderHead(view, head, model) {
  const facts = h("dl.facts", {},
    fact("Description", model.description || "–"),
    fact("Default version", defaultOf(model)),
    fact("Batching", batchingOf(model)),
    fact("Created", when(model.created_at)),
    fact("Updated", when(model.updated_at)));
  clear(head).append(h("h1", { text: model.name }), facts, backLink());
  if (view.ctx.allows("models:write")) head.append(modelActions(view, model));
}

function fact(term, value) {
  return h("div", {}, h("dt", { text: term }), h("dd", {}, value));
}

// A button that runs action, showing an API error if it fails.
function button(label, action, kind = "secondary") {
  const node = h(`button.${kind}`, { type: "button", text: label });
  node.addEventListener("click", async () => {
    node.disabled = true;
    try {
      await action();
    } catch (error) {
      fail(error);
    } finally {
      node.disabled = false;
    }
  });
  return node;
}

function modelActions(view, model) {
  const name = model.name;
  const repository = (what) => call("POST", `/v2/repository/models/${enc(name)}/${what}`);
  return h("div.actions", {},
    button("Load", async () => { await repository("load"); notify(`Loading ${name} on every worker that serves it.`); }),
    button("Unload", async () => { await repository("unload"); notify(`Unloaded ${name} from every worker.`); }),
    button("Delete model", async () => {
      const sure = await confirmAction(`Delete the model ${name} with all its versions? Workers evict them and their files are removed.`, "Delete model");
      if (!sure) return;
      await call("DELETE", modelPath(name));
      notify(`Deleted the model ${name}.`);
      view.ctx.navigate("#/models");
    }, "danger"));
}

// ---- settings: description and batching limits ----

function settingsCard(view, model) {
  const description = h("textarea.plain", { id: "model-description", name: "description" });
  description.value = model.description || "";
  const size = numberInput("max-batch-size", model.max_batch_size, { min: 1, max: 4096, step: 1 });
  const delay = numberInput("max-queue-delay", model.max_queue_delay_ms, { min: 0, max: 1000, step: "any" });
  const save = (body, message) => async (event) => {
    event.preventDefault();
    try {
      await call("PATCH", modelPath(model.name), { json: body() });
      notify(message);
      schedule(view);
    } catch (error) {
      fail(error);
    }
  };
  const describe = h("form.settings", { "aria-label": "Description", on: { submit: save(() => ({ description: description.value }), "Saved the description.") } },
    h("label", { for: "model-description", text: "Description" }), description,
    h("div.actions", {}, h("button", { type: "submit", text: "Save description" })));
  const limits = h("form.settings", { "aria-label": "Batching limits", on: { submit: save(() => ({ max_batch_size: numberOf(size), max_queue_delay_ms: numberOf(delay) }), "Saved the batching limits.") } },
    h("label", { for: "max-batch-size", text: "Max batch size (rows)" }), size,
    h("label", { for: "max-queue-delay", text: "Max queue delay (ms)" }), delay,
    h("p.help", { text: "Leave a field empty for the farm's default." }),
    h("div.actions", {}, h("button", { type: "submit", text: "Save batching limits" })));
  return section("Settings", h("div.settings-grid", {}, describe, limits));
}

function numberInput(id, value, range) {
  const node = h("input", { id, name: id, type: "number", inputmode: "decimal", ...range });
  node.value = value == null ? "" : String(value);
  return node;
}

const numberOf = (input) => (input.value.trim() === "" ? null : Number(input.value));

// ---- one version ----

function versionCard(view, model, v) {
  const pinned = model.default_version === v.version;
  const serving = model.serving_version === v.version;
  const card = h("article.version", { "aria-label": `Version ${v.version}` },
    h("h3", {}, h("span.mono", { text: v.version }), " ", badge(v.status),
      pinned ? h("span.badge.pinned", { text: "default, pinned" }) : serving ? h("span.badge.serving", { text: "default" }) : null),
    v.description ? h("p.description", { text: v.description }) : null,
    h("dl.facts", {},
      fact("Size", bytes(v.size_bytes)),
      fact("Memory", bytes(v.memory_bytes)),
      fact("Load time", v.load_time_ms == null ? "–" : ms(v.load_time_ms / 1000)),
      fact("Format", v.archive_entry ? `${v.artifact_format} (${v.archive_entry})` : v.artifact_format || "–"),
      fact("Batchable", v.batchable ? "yes" : "no"),
      fact("Warmup samples", v.warmup ? "yes" : "no"),
      fact("Uploaded", when(v.created_at))),
    signature(v));
  if (v.warnings && v.warnings.length) card.append(h("h4", { text: "Warnings" }), h("ul.warnings", {}, v.warnings.map((w) => h("li", { text: w }))));
  if (v.error) card.append(h("h4", { text: "Error" }), h("pre.error", { text: v.error }));
  if (view.ctx.allows("models:write")) card.append(versionActions(view, model, v, pinned));
  return card;
}

function signature(v) {
  const sig = v.signature || {};
  if (!sig.inputs && !sig.outputs) return h("p.muted", { text: v.status === "pending" ? "Signature: known once validated." : "No signature." });
  const columns = [
    ["Name", (t) => h("span.mono", { text: t.name })],
    ["Datatype", (t) => t.datatype],
    ["Shape", (t) => h("span.mono", { text: `[${(t.shape || []).join(", ")}]` })],
    ["Kind", (t) => t.kind || "tensor"],
  ];
  return h("div.signature", {},
    h("h4", { text: "Inputs" }), table(columns, sig.inputs || [], { empty: "None.", label: `Inputs of ${v.version}` }),
    h("h4", { text: "Outputs" }), table(columns, sig.outputs || [], { empty: "None.", label: `Outputs of ${v.version}` }));
}

function versionActions(view, model, v, pinned) {
  const name = model.name;
  const pin = (version) => async () => {
    await call("PATCH", modelPath(name), { json: { default_version: version } });
    notify(version ? `Pinned ${name} to ${version}.` : `Unpinned ${name}: the highest ready version is served.`);
    schedule(view);
  };
  const retire = async () => {
    const sure = await confirmAction(`Retire version ${v.version} of ${name}? It stops being served and workers evict it.`, "Retire");
    if (!sure) return;
    await call("DELETE", versionPath(name, v.version));
    notify(`Retired ${name} ${v.version}.`);
    schedule(view);
  };
  return h("div.actions", {},
    pinned ? button(`Unpin ${v.version}`, pin(null)) : v.status === "ready" ? button(`Pin ${v.version} as default`, pin(v.version)) : null,
    button(`Retire ${v.version}`, retire, "danger"));
}

// ---- uploads ----

function uploadCard(view, model) {
  const field = (id, label, input, help) => [h("label", { for: id, text: label }), input, help ? h("p.help", { text: help }) : null];
  const name = model ? null : h("input", { id: "upload-model", name: "model", required: true, autocomplete: "off", maxlength: 64 });
  const file = h("input", { id: "upload-file", name: "file", type: "file", required: true, accept: ".onnx,.zip,.tar,.gz,.tgz" });
  const version = h("input", { id: "upload-version", name: "version", autocomplete: "off", maxlength: 32 });
  const description = h("input", { id: "upload-description", name: "description", autocomplete: "off" });
  const warmup = h("input", { id: "upload-warmup", name: "warmup", type: "file", accept: ".npz,.json" });
  const progress = h("progress", { id: "upload-progress", max: 1, value: 0, "aria-label": "Upload progress", hidden: true });
  const results = h("ul.upload-results", { "aria-live": "polite" });
  const submit = h("button", { type: "submit", text: "Upload" });
  const send = async (event) => {
    event.preventDefault();
    const target = model || name.value.trim();
    const data = new FormData();
    data.append("file", file.files[0]);
    if (version.value.trim()) data.append("version", version.value.trim());
    data.append("description", description.value);
    if (warmup.files[0]) data.append("warmup", warmup.files[0]);
    submit.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    try {
      const record = await upload(versionsPath(target), data, (part) => { progress.value = part; });
      progress.value = 1;
      event.target.reset();
      const line = h("li");
      results.prepend(line);
      track(view, line, record);
      notify(`Uploaded ${record.model} ${record.version}: validating on a worker.`);
      schedule(view);
    } catch (error) {
      fail(error);
    } finally {
      submit.disabled = false;
    }
  };
  const form = h("form.upload", { "aria-label": model ? "Upload a version" : "Upload a model", on: { submit: send } },
    name ? field("upload-model", "Model name", name, "Letters, digits, -, _ and .; a new name creates the model.") : null,
    field("upload-file", "Model file", file, "An .onnx file, or a .zip / .tar[.gz] archive of one with its external data."),
    field("upload-version", "Version (optional)", version, "Semantic, such as 1.2.0; empty: the next patch."),
    field("upload-description", "Version description (optional)", description),
    field("upload-warmup", "Warmup samples (optional)", warmup, ".npz or an infer request in JSON."),
    h("div.actions", {}, submit), progress);
  return section(model ? "Upload a version" : "Upload a model", form, results);
}

// An uploaded version's line, kept current as its status changes.
function track(view, line, record) {
  view.tracked.set(`${record.model}/${record.version}`, line);
  showUpload(line, record);
  reread(view, line, record.model, record.version);
}

function reread(view, line, model, version) {
  get(versionPath(model, version))
    .then((record) => view.alive && showUpload(line, record))
    .catch(fail);
}

function showUpload(line, record) {
  clear(line).append(
    h("a.mono", { href: `#/models/${enc(record.model)}`, text: `${record.model} ${record.version}` }), " ",
    badge(record.status),
    record.error ? h("span.error", { text: ` ${record.error}` }) : null);
  line.dataset.status = record.status;
}
