// Building the page: every value is set as text, never parsed as HTML.

// h("tag#id.class", {attrs, on: {event: fn}}, ...children): children are nodes or text.
export function h(spec, props = {}, ...children) {
  const [head, ...classes] = spec.split(".");
  const [tag, id] = head.split("#");
  const node = document.createElement(tag || "div");
  if (id) node.id = id;
  if (classes.length) node.className = classes.join(" ");
  for (const [name, value] of Object.entries(props || {})) {
    if (name === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (name === "text") {
      node.textContent = value == null ? "" : String(value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else if (value !== false && value != null) {
      node.setAttribute(name, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function bytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export function ms(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  return seconds < 1 ? `${(seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1)} ms` : `${seconds.toFixed(2)} s`;
}

export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function badge(status) {
  return h(`span.badge.s-${String(status).replace(/[^a-z_-]/gi, "")}`, { text: status });
}

// A table of rows: columns are [heading, (row) => cell content].
export function table(columns, rows, { empty = "Nothing here yet.", label } = {}) {
  if (!rows.length) return h("p.empty", { text: empty });
  const head = h("thead", {}, h("tr", {}, columns.map(([title]) => h("th", { scope: "col", text: title }))));
  const body = h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row))))));
  return h("table", label ? { "aria-label": label } : {}, head, body);
}

// A modal question; resolves true when confirmed. Never window.confirm.
export function confirmAction(message, action = "Confirm") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = message;
  const ok = document.getElementById("confirm-ok");
  const cancel = document.getElementById("confirm-cancel");
  ok.textContent = action;
  return new Promise((resolve) => {
    const done = (answer) => {
      ok.removeEventListener("click", yes);
      cancel.removeEventListener("click", no);
      dialog.removeEventListener("cancel", no);
      dialog.close();
      resolve(answer);
    };
    const yes = () => done(true);
    const no = () => done(false);
    ok.addEventListener("click", yes);
    cancel.addEventListener("click", no);
    dialog.addEventListener("cancel", no);
    dialog.showModal();
  });
}

// A short message at the top of the page; kind is "info" or "error".
export function notify(message, kind = "info") {
  const box = document.getElementById("notice");
  box.replaceChildren(h(`div.msg.${kind}`, { text: message }));
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => box.replaceChildren(), kind === "error" ? 10000 : 4000);
}

export function section(title, ...children) {
  return h("section.card", {}, h("h2", { text: title }), ...children);
}
