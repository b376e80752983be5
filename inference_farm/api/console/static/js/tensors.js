// Tensors in the browser: NumPy's .npy and .npz files, JSON arrays, random data of a shape,
// previews of long values and pictures of image-shaped outputs.

// NumPy's type codes (kind + item size) as Open Inference Protocol datatypes.
const CODES = {
  b1: ["BOOL", Uint8Array], i1: ["INT8", Int8Array], i2: ["INT16", Int16Array],
  i4: ["INT32", Int32Array], i8: ["INT64", BigInt64Array], u1: ["UINT8", Uint8Array],
  u2: ["UINT16", Uint16Array], u4: ["UINT32", Uint32Array], u8: ["UINT64", BigUint64Array],
  f2: ["FP16", Uint16Array], f4: ["FP32", Float32Array], f8: ["FP64", Float64Array],
};
const MAGIC = "\x93NUMPY";

export const size = (shape) => shape.reduce((n, d) => n * d, 1);

// A half-precision float's bits as a number.
function half(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

function header(text) {
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(text);
  if (!descr || !fortran || !shape) throw new Error("not a NumPy header: descr, fortran_order and shape expected");
  const dims = shape[1].split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  return { descr: descr[1], fortran: fortran[1] === "True", shape: dims };
}

// C order from Fortran order: the element at C index i sits at its Fortran offset.
function cOrder(values, shape) {
  const out = new Array(values.length);
  const index = shape.map(() => 0);
  for (let i = 0; i < values.length; i += 1) {
    let offset = 0;
    let stride = 1;
    for (let k = 0; k < shape.length; k += 1) {
      offset += index[k] * stride;
      stride *= shape[k];
    }
    out[i] = values[offset];
    for (let k = shape.length - 1; k >= 0; k -= 1) {
      index[k] += 1;
      if (index[k] < shape[k]) break;
      index[k] = 0;
    }
  }
  return out;
}

// An .npy file's bytes → { datatype, descr, shape, data (flat, C order, plain numbers) }.
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  if (String.fromCharCode(...bytes.slice(0, 6)) !== MAGIC) throw new Error("not a .npy file (no \\x93NUMPY magic)");
  const major = bytes[6];
  const length = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const meta = header(new TextDecoder("latin1").decode(bytes.slice(start, start + length)));
  const order = meta.descr[0];
  const code = meta.descr.slice(1);
  if (!"<|".includes(order) || !CODES[code]) throw new Error(`unsupported NumPy dtype ${meta.descr}: little-endian bool, int, uint or float expected`);
  const [datatype, Typed] = CODES[code];
  const count = size(meta.shape);
  const from = start + length;
  const raw = buffer.slice(from, from + count * Typed.BYTES_PER_ELEMENT);
  if (raw.byteLength < count * Typed.BYTES_PER_ELEMENT) throw new Error(`the .npy file is short: ${count} elements of ${meta.descr} expected`);
  let data = Array.from(new Typed(raw));
  if (datatype === "FP16") data = data.map(half);
  else if (datatype === "BOOL") data = data.map((v) => v !== 0);
  else if (datatype === "INT64" || datatype === "UINT64") data = data.map(Number);
  if (meta.fortran) data = cOrder(data, meta.shape);
  return { datatype, descr: meta.descr, shape: meta.shape, data };
}

// Sizes and offset of a zip entry, from its zip64 extra field where the 32-bit ones are full.
function zip64(view, at, end, entry) {
  while (at + 4 <= end) {
    const id = view.getUint16(at, true);
    const length = view.getUint16(at + 2, true);
    if (id === 1) {
      let p = at + 4;
      for (const field of ["size", "compressed", "offset"]) {
        if (entry[field] === 0xffffffff) {
          entry[field] = Number(view.getBigUint64(p, true));
          p += 8;
        }
      }
    }
    at += 4 + length;
  }
}

function entries(buffer) {
  const view = new DataView(buffer);
  let end = buffer.byteLength - 22;
  while (end >= 0 && view.getUint32(end, true) !== 0x06054b50) end -= 1;
  if (end < 0) throw new Error("not an .npz file (no zip directory found)");
  const count = view.getUint16(end + 10, true);
  let at = view.getUint32(end + 16, true);
  const found = [];
  for (let i = 0; i < count; i += 1) {
    if (view.getUint32(at, true) !== 0x02014b50) throw new Error("the .npz file's zip directory is damaged");
    const entry = {
      method: view.getUint16(at + 10, true), compressed: view.getUint32(at + 20, true),
      size: view.getUint32(at + 24, true), offset: view.getUint32(at + 42, true),
    };
    const nameLength = view.getUint16(at + 28, true);
    const extraLength = view.getUint16(at + 30, true);
    entry.name = new TextDecoder().decode(new Uint8Array(buffer, at + 46, nameLength));
    zip64(view, at + 46 + nameLength, at + 46 + nameLength + extraLength, entry);
    found.push(entry);
    at += 46 + nameLength + extraLength + view.getUint16(at + 32, true);
  }
  return found;
}

async function contents(buffer, entry) {
  const view = new DataView(buffer);
  const local = entry.offset;
  const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
  const packed = buffer.slice(start, start + entry.compressed);
  if (entry.method === 0) return packed;
  if (entry.method !== 8) throw new Error(`${entry.name}: zip compression method ${entry.method} is not supported (stored or deflated only)`);
  const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
  return new Response(stream).arrayBuffer();
}

// An .npz file's bytes → Map of array name (without .npy) → parsed array.
export async function parseNpz(buffer) {
  const arrays = new Map();
  for (const entry of entries(buffer)) {
    if (!entry.name.endsWith(".npy")) continue;
    arrays.set(entry.name.slice(0, -4), parseNpy(await contents(buffer, entry)));
  }
  return arrays;
}

// A nested array's shape (from its first elements) and its values in C order.
export function shapeOf(value) {
  const shape = [];
  for (let v = value; Array.isArray(v); v = v[0]) shape.push(v.length);
  return shape;
}

export function flatten(value) {
  return Array.isArray(value) ? value.flat(Infinity) : [value];
}

// The shape to send for count values given the declared shape: free dims (-1) come from
// dims (their sizes, in order); a single free dim left unset is worked out from count.
export function resolveShape(declared, count, dims = []) {
  let free = 0;
  const shape = declared.map((d) => (d < 0 ? (dims[free++] ?? null) : d));
  const unknown = shape.filter((d) => d == null).length;
  if (unknown === 1) {
    const known = size(shape.filter((d) => d != null));
    shape[shape.indexOf(null)] = known ? count / known : 0;
  }
  return shape.map((d) => (d == null ? 1 : d));
}

// Random values of an Open Inference Protocol datatype: floats in [0, 1), small integers.
export function randomData(datatype, count) {
  const pick = {
    BOOL: () => Math.random() < 0.5,
    BYTES: () => Math.random().toString(36).slice(2, 8),
  }[datatype] || (datatype.startsWith("FP") ? () => Number(Math.random().toFixed(6)) : () => Math.floor(Math.random() * 10));
  return Array.from({ length: count }, pick);
}

// The first max values as text, and how many were left out.
export function preview(data, max = 32) {
  const values = flatten(data ?? []);
  const shown = values.slice(0, max).map((v) => (typeof v === "string" ? JSON.stringify(v) : String(v)));
  const more = values.length - shown.length;
  return `[${shown.join(", ")}${more > 0 ? `, … ${more} more` : ""}]`;
}

// {height, width, channels, planar} when shape looks like a picture, else null.
export function imageLayout(shape) {
  let dims = [...shape];
  while (dims.length > 2 && dims[0] === 1) dims = dims.slice(1);
  const big = (a, b) => a >= 8 && b >= 8 && a * b <= 4096 * 4096;
  if (dims.length === 2 && big(dims[0], dims[1])) return { height: dims[0], width: dims[1], channels: 1, planar: true };
  if (dims.length !== 3) return null;
  if ([1, 3, 4].includes(dims[0]) && big(dims[1], dims[2])) return { height: dims[1], width: dims[2], channels: dims[0], planar: true };
  if ([1, 3, 4].includes(dims[2]) && big(dims[0], dims[1])) return { height: dims[0], width: dims[1], channels: dims[2], planar: false };
  return null;
}

// Pixels (RGBA bytes) of values laid out as layout, scaled into 0–255.
export function pixels(data, layout) {
  const values = flatten(data).map(Number);
  let low = Infinity;
  let high = -Infinity;
  for (const v of values) {
    if (v < low) low = v;
    if (v > high) high = v;
  }
  const scale = low >= 0 && high <= 1 ? (v) => v * 255 : low >= 0 && high <= 255 ? (v) => v : (v) => ((v - low) / (high - low || 1)) * 255;
  const { height, width, channels, planar } = layout;
  const rgba = new Uint8ClampedArray(height * width * 4);
  const at = (p, c) => (planar ? values[c * height * width + p] : values[p * channels + c]);
  for (let p = 0; p < height * width; p += 1) {
    const rgb = channels === 1 ? [0, 0, 0].map(() => at(p, 0)) : [0, 1, 2].map((c) => at(p, c));
    rgba.set([...rgb.map(scale), channels === 4 ? scale(at(p, 3)) : 255], p * 4);
  }
  return rgba;
}
