// The Workers page: each worker as its heartbeats show it (live), and on demand the
// details GET /v1/workers gathers by asking the workers over the broker.
import { ApiError, get } from "../api.js";
import { bytes, clear, h, notify, section, table, when } from "../dom.js";

const WAITING = "waiting for the first snapshot…";

// Flower's address as a link target: only an absolute http(s) URL, else null.
export function safeHttpUrl(text) {
  if (!text) return null;
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function age(seconds) {
  return seconds == null || !Number.isFinite(Number(seconds)) ? "–" : `${Number(seconds).toFixed(1)} s ago`;
}

function fact(name, value) {
  return [h("dt", { text: name }), h("dd", {}, value)];
}

function queueList(names) {
  if (!names || !names.length) return h("span.muted", { text: "none" });
  return h("ul.queue-list", {}, names.map((q) => h("li.mono", { text: typeof q === "string" ? q : `${q.name} (${q.depth})` })));
}

function counters(cache) {
  const entries = Object.entries(cache || {});
  if (!entries.length) return h("span.muted", { text: "none yet" });
  return entries.map(([name, value], i) => [i ? ", " : "", `${name} ${value}`]);
}

function gpu(memory) {
  return memory && memory.total ? `${bytes(memory.used)} of ${bytes(memory.total)}` : null;
}

function sessions(list, label) {
  return table(
    [["Model", (s) => s.name], ["Version", (s) => s.version], ["Bytes", (s) => bytes(s.bytes)]],
    list || [], { empty: "No session loaded.", label },
  );
}

function workerCard(worker) {
  const memory = gpu(worker.gpu_memory);
  return h("section.card.worker", { dataset: { hostname: worker.hostname } },
    h("h2.mono", { text: worker.hostname }),
    h("dl.worker-facts", {},
      fact("Device", h("span.device", { text: worker.device || "–" })),
      fact("Heartbeat", age(worker.heartbeat_age_s)),
      fact("PID", worker.pid ?? "–"),
      fact("Metrics port", worker.metrics_port ?? "–"),
      fact("Queues", queueList(worker.queues)),
      fact("Loaded", bytes(worker.loaded_bytes ?? 0)),
      fact("Cache", counters(worker.cache)),
      memory ? fact("GPU memory", memory) : null),
    h("h3", { text: "Loaded sessions" }),
    h("div.sessions", {}, sessions(worker.sessions, `Sessions loaded on ${worker.hostname}`)));
}

function renderLive(box, snapshot) {
  if (!snapshot) {
    clear(box).append(h("p.waiting", { text: WAITING }));
    return;
  }
  const listed = snapshot.workers;
  if (listed && !Array.isArray(listed) && listed.error) {
    clear(box).append(h("p.error", { text: `Workers could not be read: ${listed.error}` }));
    return;
  }
  if (!Array.isArray(listed) || !listed.length) {
    clear(box).append(h("p.empty", { text: "No live worker: none has sent a heartbeat lately." }));
    return;
  }
  clear(box).append(...listed.map(workerCard));
}

function detailsTable(listed) {
  return table(
    [["Hostname", (w) => h("span.mono", { text: w.hostname })],
      ["Device", (w) => w.device || "–"],
      ["PID", (w) => w.pid ?? "–"],
      ["Queues (depth)", (w) => queueList(w.queues)],
      ["Sessions", (w) => (w.sessions || []).map((s, i) => [i ? ", " : "", `${s.name} ${s.version}`])],
      ["Loaded", (w) => bytes(w.loaded_bytes ?? 0)],
      ["Cache", (w) => counters(w.cache)],
      ["Last heartbeat", (w) => when(w.last_heartbeat)],
      ["Metrics port", (w) => w.metrics_port ?? "–"]],
    listed, { empty: "No worker answered.", label: "Workers as they answered" },
  );
}

async function refreshDetails(box, button) {
  button.disabled = true;
  clear(box).append(h("p.muted", { text: "asking the workers…" }));
  try {
    const answer = await get("/v1/workers");
    clear(box).append(h("p.help", { text: `Asked at ${new Date().toLocaleTimeString()}.` }), detailsTable(answer.workers || []));
  } catch (error) {
    const message = error instanceof ApiError ? error.message : String(error.message || error);
    clear(box).append(h("p.error", { text: `The workers could not be asked: ${message}` }));
    notify(message, "error");
  } finally {
    button.disabled = false;
  }
}

function header(ctx, details) {
  const flower = safeHttpUrl(ctx.flowerUrl);
  const button = h("button.secondary", { type: "button", text: "Details", "aria-describedby": "details-help" });
  button.addEventListener("click", () => refreshDetails(details, button));
  return h("section.card", {},
    h("h1", { text: "Workers" }),
    h("div.workers-head", {},
      button,
      h("span.help", { id: "details-help", text: "Asks every worker over the broker (GET /v1/workers)." }),
      flower ? h("a.flower", { href: flower, target: "_blank", rel: "noopener noreferrer", text: "Open Flower" }) : null));
}

export default {
  title: "Workers",
  needs: "models:read",
  mount(root, ctx) {
    const details = h("div.details", {}, h("p.help", { text: "Press Details to ask the workers." }));
    const live = h("div.live-workers");
    root.append(h("div.workers", {}, header(ctx, details),
      section("Details from the workers", details),
      live));
    renderLive(live, ctx.live.latest);
    return ctx.live.on("snapshot", (snapshot) => renderLive(live, snapshot));
  },
};
