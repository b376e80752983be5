// The Playground page: pick a model and a version, fill its inputs (JSON, a NumPy file or
// random data), run it, and see the outputs, the time it took and the request to copy.
import { ApiError, get, savedKey } from "../api.js";
import { clear, h, ms, notify, section, table } from "../dom.js";
import { flatten, imageLayout, parseNpy, parseNpz, pixels, preview, randomData, resolveShape, shapeOf, size } from "../tensors.js";

const NUMPY = {
  BOOL: "np.bool_", INT8: "np.int8", INT16: "np.int16", INT32: "np.int32", INT64: "np.int64",
  UINT8: "np.uint8", UINT16: "np.uint16", UINT32: "np.uint32", UINT64: "np.uint64",
  FP16: "np.float16", FP32: "np.float32", FP64: "np.float64", BYTES: "np.object_",
};
const SOURCES = [["json", "JSON"], ["file", ".npy / .npz file"], ["random", "Random data"]];
const enc = encodeURIComponent;

export function modelPath(model, version) {
  return `/v2/models/${enc(model)}${version ? `/versions/${enc(version)}` : ""}`;
}

// POST an infer body with the signed-in key: the answer, its request id, the seconds taken.
async function infer(path, body) {
  const started = performance.now();
  const response = await fetch(path, {
    method: "POST", cache: "no-store", body: JSON.stringify(body),
    headers: { Authorization: `Bearer ${savedKey()}`, "Content-Type": "application/json" },
  });
  const text = await response.text();
  const seconds = (performance.now() - started) / 1000;
  let parsed = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const message = (parsed && (parsed.message || parsed.error)) || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, String(message), parsed);
  }
  return { answer: parsed, seconds, requestId: response.headers.get("X-Request-ID") || "–" };
}

// ---- the request to copy ----
const shell = (s) => `'${String(s).replaceAll("'", "'\\''")}'`;
const pyText = (s) => JSON.stringify(String(s));

function py(v) {
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "string") return pyText(v);
  if (Number.isNaN(v)) return 'float("nan")';
  if (!Number.isFinite(v)) return v > 0 ? 'float("inf")' : 'float("-inf")';
  return String(v);
}

const pyArray = (input) => `np.array([${input.data.map(py).join(", ")}], dtype=${NUMPY[input.datatype] || "np.float32"}).reshape([${input.shape.join(", ")}])`;

function curlOf({ path, body }) {
  return [
    `curl -sf -X POST ${shell(location.origin + path)} \\`,
    `  -H "Authorization: Bearer $INFERENCE_FARM_API_KEY" -H 'Content-Type: application/json' \\`,
    `  -d ${shell(JSON.stringify(body))}`,
  ].join("\n");
}

function clientOf({ model, version, body }) {
  const feeds = body.inputs.map((input) => `            ${pyText(input.name)}: ${pyArray(input)},`);
  return [
    "import numpy as np",
    "from inference_farm.client import Client",
    "",
    "# the key comes from INFERENCE_FARM_API_KEY",
    `with Client(${pyText(location.origin)}) as client:`,
    "    outputs = client.infer(",
    `        ${pyText(model)},`,
    "        {", ...feeds, "        },",
    ...(version ? [`        version=${pyText(version)},`] : []),
    "    )",
    "    for name, value in outputs.items():",
    "        print(name, value)",
  ].join("\n");
}

function tritonOf({ model, version, body, outputs }) {
  const ssl = location.protocol === "https:" ? ", ssl=True" : "";
  const lines = [
    "import os", "", "import numpy as np", "import tritonclient.http as httpclient", "",
    `client = httpclient.InferenceServerClient(${pyText(location.host)}${ssl})`,
    'headers = {"Authorization": "Bearer " + os.environ["INFERENCE_FARM_API_KEY"]}',
    "inputs = []",
  ];
  for (const input of body.inputs) {
    lines.push(
      `tensor = httpclient.InferInput(${pyText(input.name)}, [${input.shape.join(", ")}], ${pyText(input.datatype)})`,
      `tensor.set_data_from_numpy(${pyArray(input)}, binary_data=True)`,
      "inputs.append(tensor)",
    );
  }
  const chosen = version ? `, model_version=${pyText(version)}` : "";
  lines.push(
    `result = client.infer(${pyText(model)}, inputs${chosen}, headers=headers)`,
    `for name in [${outputs.map(pyText).join(", ")}]:`,
    "    print(name, result.as_numpy(name))",
  );
  return lines.join("\n");
}

const SNIPPETS = [["curl", "Copy as curl", curlOf], ["python", "Copy as Python client", clientOf], ["triton", "Copy as tritonclient", tritonOf]];

function copyBar(request) {
  const shown = h("pre", { id: "pg-snippet", tabindex: "0", "aria-label": "The request to copy", hidden: true });
  const copy = (kind, text) => {
    shown.textContent = text;
    shown.hidden = false;
    shown.dataset.kind = kind;
    if (!navigator.clipboard || !navigator.clipboard.writeText) return;
    navigator.clipboard.writeText(text).then(
      () => notify("Copied to the clipboard."),
      () => notify("The browser kept the clipboard closed: copy the text below."),
    );
  };
  const buttons = SNIPPETS.map(([kind, label, build]) =>
    h("button.secondary", { type: "button", dataset: { copy: kind }, text: label, on: { click: () => copy(kind, build(request)) } }));
  return [h("div.actions", {}, buttons), shown];
}

// ---- outputs ----
function picture(output) {
  const layout = imageLayout(output.shape || []);
  if (!layout || flatten(output.data || []).length !== size(output.shape)) return null;
  const { width, height } = layout;
  const label = `${output.name} as a ${width}×${height} image`;
  const canvas = h("canvas.pg-image", { width, height, role: "img", "aria-label": label, dataset: { output: output.name } });
  canvas.getContext("2d").putImageData(new ImageData(pixels(output.data, layout), width, height), 0, 0);
  return h("figure.pg-figure", {}, canvas, h("figcaption", { text: label }));
}

export function outputsTable(outputs) {
  return table([
    ["Output", (o) => o.name],
    ["Datatype", (o) => o.datatype],
    ["Shape", (o) => JSON.stringify(o.shape)],
    ["Values", (o) => h("code.pg-values", { dataset: { output: o.name }, text: preview(o.data) })],
  ], outputs || [], { label: "Outputs", empty: "The answer has no outputs." });
}

function fact(term, value, id) {
  return [h("dt", { text: term }), h("dd", { id, text: value == null ? "–" : value })];
}

function showResult(box, run, request) {
  const { answer, seconds, requestId } = run;
  const outputs = answer.outputs || [];
  clear(box).append(
    h("h2", { text: "Result" }),
    h("dl.pg-facts", {},
      fact("Latency", ms(seconds), "pg-latency"),
      fact("Model version", answer.model_version, "pg-model-version"),
      fact("Request id", requestId, "pg-request-id")),
    outputsTable(outputs),
    h("div.pg-images", {}, outputs.map(picture)),
    ...copyBar({ ...request, outputs: outputs.map((o) => o.name) }),
  );
}

// ---- inputs ----
async function fromFile(spec, file) {
  if (!file) throw new Error(`${spec.name}: choose a .npy or .npz file`);
  const buffer = await file.arrayBuffer();
  const zipped = new Uint8Array(buffer.slice(0, 2));
  if (!(zipped[0] === 0x50 && zipped[1] === 0x4b)) return parseNpy(buffer);
  const arrays = await parseNpz(buffer);
  const chosen = arrays.get(spec.name) || (arrays.size === 1 ? [...arrays.values()][0] : null);
  if (!chosen) throw new Error(`${spec.name}: the .npz file holds ${[...arrays.keys()].join(", ") || "no arrays"}, not ${spec.name}`);
  return chosen;
}

function fromJson(spec, text, dims, freeCount) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`${spec.name}: the JSON is not valid: ${error.message}`);
  }
  const data = flatten(value);
  const nested = shapeOf(value);
  const shape = nested.length === spec.shape.length ? nested : resolveShape(spec.shape, data.length, freeCount === 1 ? [] : dims);
  return { shape, data };
}

function example(spec) {
  const shape = spec.shape.map((d) => (d < 0 ? 1 : d));
  if (size(shape) > 64) return "[]";
  const zero = spec.datatype === "BOOL" ? false : spec.datatype === "BYTES" ? "" : 0;
  const build = (dims) => (dims.length ? Array.from({ length: dims[0] }, () => build(dims.slice(1))) : zero);
  return JSON.stringify(build(shape));
}

function inputField(spec, index) {
  const id = `pg-in-${index}`;
  const free = spec.shape.map((d, i) => [d, i]).filter(([d]) => d < 0);
  const json = h("textarea", { id: `${id}-json`, dataset: { input: spec.name }, spellcheck: "false", text: example(spec) });
  const file = h("input", { id: `${id}-file`, type: "file", accept: ".npy,.npz", dataset: { input: spec.name } });
  const dims = free.map(([, i]) => h("input.pg-dim", { id: `${id}-dim-${i}`, type: "number", min: 1, value: 1, dataset: { input: spec.name } }));
  const panels = {
    json: h("div", {}, h("label", { for: json.id, text: `Values of ${spec.name} (JSON, nested or flat)` }), json),
    file: h("div", { hidden: true }, h("label", { for: file.id, text: `NumPy file for ${spec.name}` }), file),
  };
  let source = "json";
  const choose = (value) => {
    source = value;
    for (const [name, panel] of Object.entries(panels)) panel.hidden = name !== value;
  };
  const radios = SOURCES.map(([value, label]) => h("label.pg-radio", {},
    h("input", { type: "radio", name: `${id}-source`, value, checked: value === "json", dataset: { input: spec.name }, on: { change: () => choose(value) } }),
    ` ${label}`));
  const dimRow = free.length ? h("div.pg-dims", {},
    h("p.help", { text: "Free dims: their sizes, for random data and flat JSON." }),
    free.map(([, i], k) => h("span", {}, h("label", { for: dims[k].id, text: `${spec.name}: size of dim ${i}` }), dims[k]))) : null;
  const node = h("fieldset.pg-input", {},
    h("legend", { text: `${spec.name} · ${spec.datatype} · [${spec.shape.join(", ")}]` }),
    h("div.pg-sources", { role: "radiogroup", "aria-label": `Source of ${spec.name}` }, radios),
    panels.json, panels.file, dimRow);
  const value = async () => {
    const sizes = dims.map((d) => Math.max(1, Math.floor(Number(d.value) || 1)));
    let shape;
    let data;
    if (source === "json") ({ shape, data } = fromJson(spec, json.value, sizes, free.length));
    else if (source === "file") ({ shape, data } = await fromFile(spec, file.files[0]));
    else {
      shape = resolveShape(spec.shape, 0, sizes);
      data = randomData(spec.datatype, size(shape));
    }
    return { name: spec.name, datatype: spec.datatype, shape, data };
  };
  return { node, value };
}

// A form of the model's inputs from its metadata; or, without metadata, the body as JSON.
function inputsForm(meta) {
  if (!meta) {
    const raw = h("textarea", { id: "pg-raw", spellcheck: "false", text: '{"inputs": []}' });
    const node = h("div", {}, h("label", { for: "pg-raw", text: "Request body (JSON, Open Inference Protocol)" }), raw);
    return { node, body: async () => JSON.parse(raw.value) };
  }
  const fields = meta.inputs.map(inputField);
  return { node: h("div", {}, fields.map((f) => f.node)), body: async () => ({ inputs: await Promise.all(fields.map((f) => f.value())) }) };
}

// ---- the page ----
function modelControl(ctx) {
  if (!ctx.allows("models:read")) {
    const names = ctx.me.models || [];
    const list = h("datalist", { id: "pg-models" }, names.map((n) => h("option", { value: n })));
    return [h("input", { id: "pg-model", type: "text", name: "model", list: "pg-models", autocomplete: "off" }), list];
  }
  return [h("select", { id: "pg-model", name: "model" })];
}

async function fillModels(select, wanted) {
  const models = await get("/v1/models");
  clear(select).append(h("option", { value: "", text: models.length ? "Choose a model" : "No models yet" }),
    ...models.map((m) => h("option", { value: m.name, text: m.name })));
  if (wanted && models.some((m) => m.name === wanted)) select.value = wanted;
}

function mountPage(root, ctx) {
  const [model, list] = modelControl(ctx);
  const version = h("select", { id: "pg-version", name: "version" }, h("option", { value: "", text: "served version" }));
  const form = h("form.pg-form", { "aria-label": "Inputs" });
  const result = h("section.card.pg-result", { "aria-live": "polite" });
  const state = { meta: null, inputs: null, model: "" };
  const load = async (fresh) => {
    state.model = model.value.trim();
    clear(form);
    if (!state.model) return;
    let meta = null;
    try {
      meta = await get(modelPath(state.model, fresh ? "" : version.value));
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 403)) throw error;
      form.append(h("p.help", { text: `No metadata: ${error.message}. Write the request yourself.` }));
    }
    if (fresh) {
      clear(version).append(h("option", { value: "", text: "served version" }), ...(meta?.versions || []).map((v) => h("option", { value: v, text: v })));
      if (ctx.args[1] && meta?.versions?.includes(ctx.args[1])) version.value = ctx.args[1];
    }
    state.inputs = inputsForm(meta);
    form.append(state.inputs.node, h("div.actions", {}, h("button", { id: "pg-run", type: "submit", text: "Run" })));
  };
  const guarded = (fresh) => load(fresh).catch((error) => {
    form.append(h("p.error", { role: "alert", text: error.message }));
    notify(error.message, "error");
  });
  model.addEventListener("change", () => guarded(true));
  version.addEventListener("change", () => guarded(false));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(state, version.value, result);
  });
  const pick = h("div.pg-pick", {},
    h("div", {}, h("label", { for: "pg-model", text: "Model" }), model, list),
    h("div", {}, h("label", { for: "pg-version", text: "Version" }), version));
  root.append(h("section.card", {}, h("h1", { text: "Playground" }), pick), section("Inputs", form), result);
  result.append(h("h2", { text: "Result" }), h("p.empty", { text: "Run the model to see its outputs." }));
  return { model, load: guarded };
}

async function run(state, version, box) {
  const button = document.getElementById("pg-run");
  if (button) button.disabled = true;
  try {
    const body = await state.inputs.body();
    const request = { model: state.model, version, path: `${modelPath(state.model, version)}/infer`, body };
    showResult(box, await infer(request.path, body), request);
  } catch (error) {
    clear(box).append(h("h2", { text: "Result" }), h("p.error", { role: "alert", id: "pg-error", text: error.message }));
    notify(error.message, "error");
  } finally {
    if (button) button.disabled = false;
  }
}

export default {
  title: "Playground",
  needs: "infer",
  mount(root, ctx) {
    const { model, load } = mountPage(root, ctx);
    const wanted = ctx.args[0] || "";
    if (model.tagName === "SELECT") {
      fillModels(model, wanted).then(() => model.value && load(true)).catch((error) => notify(error.message, "error"));
    } else if (wanted) {
      model.value = wanted;
      load(true);
    }
    return null;
  },
};
