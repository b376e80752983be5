// The Overview page: the farm's health at a glance, from the live snapshots. Each part is
// shown only when the key's snapshot carries it (see the README's "Live events").
import { sparkline } from "../charts.js";
import { badge, clear, h, ms, section, table } from "../dom.js";

const WAITING = "waiting for the first snapshot…";

function rate(value) {
  return value == null || !Number.isFinite(value) ? "–" : `${value.toFixed(value < 10 ? 2 : 1)}/s`;
}

// An "age" in seconds as a short phrase.
function age(seconds) {
  if (seconds == null || !Number.isFinite(Number(seconds))) return "–";
  return `${Number(seconds).toFixed(1)} s ago`;
}

function partError(part) {
  return part && !Array.isArray(part) && typeof part.error === "string" ? part.error : null;
}

function readiness(snapshot) {
  const checks = Object.entries(snapshot.checks || {});
  return section(
    "Readiness",
    h("p.readiness", {}, badge(snapshot.ready ? "ready" : "not ready"), " ",
      snapshot.ready ? "Every check passed." : "Some check failed."),
    table([["Check", ([name]) => name], ["Outcome", ([, value]) => (value === "ok" ? badge("ok") : h("span.error", { text: value }))]],
      checks, { empty: "No checks reported.", label: "Readiness checks" }),
  );
}

function metric(key, name, value, values) {
  return h("div.metric", { dataset: { metric: key } },
    h("span.metric-name", { text: name }),
    h("span.stat", { text: value }),
    sparkline(values, { label: `${name} over the last 15 minutes` }));
}

function traffic(live) {
  const points = live.rates();
  const last = points[points.length - 1] || {};
  const pick = (field) => points.map((p) => p[field]);
  return section(
    "Traffic",
    h("div.grid.metrics", {},
      metric("rps", "Requests/s", rate(last.rps), pick("rps")),
      metric("eps", "Errors/s", rate(last.eps), pick("eps")),
      metric("p50", "p50 latency", ms(last.p50), pick("p50")),
      metric("p99", "p99 latency", ms(last.p99), pick("p99"))),
    points.length ? null : h("p.help", { text: "Rates need two snapshots." }),
    h("p.help", { text: "This API process's inference requests, REST and gRPC." }),
  );
}

function queues(snapshot, history) {
  const error = partError(snapshot.queues);
  if (error) return section("Queues", h("p.error", { text: `Queues could not be read: ${error}` }));
  const names = Object.keys(snapshot.queues || {}).sort();
  const trend = (name) => history.map((s) => (s.queues && typeof s.queues[name] === "number" ? s.queues[name] : null));
  return section("Queues", table(
    [["Model", (name) => name],
      ["Depth", (name) => h("span.stat-small", { text: snapshot.queues[name] })],
      ["Last 15 minutes", (name) => sparkline(trend(name), { label: `queue depth of ${name}` })]],
    names, { empty: "No models yet.", label: "Queue depth per model" },
  ));
}

function workers(snapshot) {
  const error = partError(snapshot.workers);
  if (error) return section("Workers", h("p.error", { text: `Workers could not be read: ${error}` }));
  const listed = snapshot.workers || [];
  return section(
    "Workers",
    h("p", {}, h("span.stat", { dataset: { metric: "workers" }, text: listed.length }), " ",
      listed.length === 1 ? "worker" : "workers"),
    table([["Hostname", (w) => w.hostname], ["Device", (w) => w.device || "–"],
      ["Heartbeat", (w) => age(w.heartbeat_age_s)]],
    listed, { empty: "No live worker.", label: "Workers" }),
  );
}

function jobs(snapshot) {
  const error = partError(snapshot.jobs);
  if (error) return section("Jobs", h("p.error", { text: `Jobs could not be read: ${error}` }));
  const counts = Object.entries(snapshot.jobs || {}).sort(([a], [b]) => a.localeCompare(b));
  return section("Jobs", table([["Status", ([status]) => badge(status)], ["Jobs", ([, n]) => n]],
    counts, { empty: "No jobs yet.", label: "Jobs by status" }));
}

function render(body, live) {
  const snapshot = live.latest;
  if (!snapshot) {
    clear(body).append(h("p.waiting", { text: WAITING }));
    return;
  }
  const parts = [readiness(snapshot)];
  if ("api" in snapshot) parts.push(traffic(live));
  if ("queues" in snapshot) parts.push(queues(snapshot, live.history));
  if ("workers" in snapshot) parts.push(workers(snapshot));
  if ("jobs" in snapshot) parts.push(jobs(snapshot));
  const at = new Date(snapshot.at * 1000).toLocaleTimeString();
  clear(body).append(h("p.help.as-of", { text: `As of ${at}.` }), ...parts);
}

export default {
  title: "Overview",
  needs: null,
  mount(root, ctx) {
    const body = h("div.overview", { "aria-live": "off" });
    root.append(h("section.card", {}, h("h1", { text: "Overview" }),
      h("p.help", { text: "The farm as its latest snapshot shows it; this page follows the live stream." })), body);
    render(body, ctx.live);
    const off = ctx.live.on("snapshot", () => render(body, ctx.live));
    return off;
  },
};
