// The Jobs page: jobs filtered and paged, their status kept live from /v1/events, one job's
// timings, error and result at #/jobs/<id>, and cancelling.
import { call, get } from "../api.js";
import { badge, clear, confirmAction, h, ms, notify, section, when } from "../dom.js";
import { outputsTable } from "./playground.js";

const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled", "expired"];
const ENDED = new Set(["succeeded", "failed", "cancelled", "expired"]);
const COLUMNS = ["Job", "Model", "Version", "Status", "Priority", "Created", "Actions"];
const enc = encodeURIComponent;
const rank = (status) => (ENDED.has(status) ? 2 : status === "running" ? 1 : 0);

// The job changes in one "change" event (a list of changes, or one).
const jobChanges = (data) => [].concat(data || []).filter((c) => c && c.type === "job");

async function cancel(id, after) {
  const sure = await confirmAction(`Cancel job ${id}? A queued job never runs; a running job's result is discarded.`, "Cancel job");
  if (!sure) return;
  try {
    const job = await call("DELETE", `/v1/jobs/${enc(id)}`);
    notify(`Job ${id} is ${job.status}.`);
    after(job);
  } catch (error) {
    notify(error.message, "error");
  }
}

function cancelButton(id, after) {
  return h("button.danger", { type: "button", dataset: { cancel: id }, "aria-label": `Cancel job ${id}`, text: "Cancel", on: { click: () => cancel(id, after) } });
}

// ---- the list ----
function control(label, node) {
  return h("div", {}, h("label", { for: node.id, text: label }), node);
}

function filtersForm(filters, apply) {
  const status = h("select", { id: "jobs-status", name: "status" }, h("option", { value: "", text: "any" }), STATUSES.map((s) => h("option", { value: s, text: s })));
  const model = h("input", { id: "jobs-model", type: "text", name: "model", autocomplete: "off" });
  const batch = h("input", { id: "jobs-batch", type: "text", name: "batch_id", autocomplete: "off" });
  const limit = h("select", { id: "jobs-limit", name: "limit" }, [25, 50, 100, 200].map((n) => h("option", { value: n, text: n, selected: n === filters.limit })));
  const submit = (event) => {
    event.preventDefault();
    apply({ status: status.value, model: model.value.trim(), batch_id: batch.value.trim(), limit: Number(limit.value), offset: 0 });
  };
  return h("form.jobs-filters", { "aria-label": "Filters", on: { submit } },
    control("Status", status), control("Model", model), control("Batch id", batch), control("Per page", limit),
    h("div", {}, h("button", { type: "submit", text: "Apply" })));
}

function listView(root, ctx) {
  let filters = { status: "", model: "", batch_id: "", limit: 50, offset: 0 };
  let total = 0;
  const rows = new Map(); // job id → { tr, job }
  const body = h("tbody");
  const summary = h("p.muted", { id: "jobs-summary", "aria-live": "polite" });
  const prev = h("button.secondary", { type: "button", text: "Previous page", on: { click: () => page(-1) } });
  const next = h("button.secondary", { type: "button", text: "Next page", on: { click: () => page(1) } });

  const row = (job) => {
    const tr = h("tr", { dataset: { jobId: job.job_id, status: job.status } },
      h("td", {}, h("a.mono", { href: `#/jobs/${enc(job.job_id)}`, text: job.job_id })),
      h("td", { text: job.model }), h("td", { text: job.version ?? "–" }),
      h("td.jobs-status", {}, badge(job.status)), h("td", { text: job.priority }),
      h("td", { text: when(job.created_at) }),
      h("td.jobs-actions", {}, ENDED.has(job.status) ? null : cancelButton(job.job_id, (j) => setStatus(j.job_id, j.status))));
    rows.set(job.job_id, { tr, job });
    return tr;
  };
  const setStatus = (id, status) => {
    const known = rows.get(id);
    if (!known || rank(status) < rank(known.job.status)) return;
    known.job.status = status;
    known.tr.dataset.status = status;
    known.tr.querySelector(".jobs-status").replaceChildren(badge(status));
    if (ENDED.has(status)) known.tr.querySelector(".jobs-actions").replaceChildren();
  };
  const showSummary = () => {
    const shown = rows.size;
    summary.textContent = shown ? `${filters.offset + 1}–${filters.offset + shown} of ${total}` : `none of ${total}`;
    prev.disabled = filters.offset === 0;
    next.disabled = filters.offset + shown >= total;
    if (!shown) body.replaceChildren(h("tr.jobs-empty", {}, h("td", { colspan: COLUMNS.length, text: "No jobs match these filters." })));
  };
  const query = () => new URLSearchParams(Object.entries(filters).filter(([, v]) => v !== ""));
  let generation = 0; // a change of filters or page makes answers to earlier queries stale
  const reload = async () => {
    const mine = ++generation;
    const found = await get(`/v1/jobs?${query()}`);
    if (mine !== generation) return;
    rows.clear();
    total = found.total;
    body.replaceChildren(...found.jobs.map(row));
    showSummary();
  };
  const guarded = () => reload().catch((error) => notify(error.message, "error"));
  const page = (step) => {
    filters = { ...filters, offset: Math.max(0, filters.offset + step * filters.limit) };
    guarded();
  };
  // Jobs this page has not shown yet: the first page again, its new jobs added on top.
  let refreshing = null;
  let again = false;
  const merge = (found) => {
    total = found.total;
    for (const job of found.jobs) setStatus(job.job_id, job.status);
    const fresh = found.jobs.filter((job) => !rows.has(job.job_id));
    if (!fresh.length) return showSummary();
    body.querySelector(".jobs-empty")?.remove();
    body.prepend(...fresh.map(row));
    while (rows.size > filters.limit) {
      const last = body.lastElementChild;
      rows.delete(last.dataset.jobId);
      last.remove();
    }
    showSummary();
  };
  const refreshTop = async () => {
    if (filters.offset !== 0) return;
    if (refreshing) {
      again = true;
      return;
    }
    try {
      do {
        again = false;
        const mine = generation;
        refreshing = get(`/v1/jobs?${query()}`);
        const found = await refreshing;
        if (mine === generation) merge(found);
      } while (again);
    } finally {
      refreshing = null;
    }
  };
  const off = ctx.live.on("change", (data) => {
    for (const change of jobChanges(data)) {
      if (rows.has(change.id)) setStatus(change.id, change.status);
      else refreshTop().catch((error) => notify(error.message, "error"));
    }
  });

  const apply = (chosen) => {
    filters = chosen;
    guarded();
  };
  const jobsTable = h("table", { "aria-label": "Jobs" }, h("thead", {}, h("tr", {}, COLUMNS.map((t) => h("th", { scope: "col", text: t })))), body);
  root.append(
    h("section.card", {}, h("h1", { text: "Jobs" }), filtersForm(filters, apply)),
    section("Jobs, newest first", h("div.jobs-scroll", {}, jobsTable), h("div.actions.jobs-pager", {}, prev, summary, next)),
  );
  guarded();
  return off;
}

// ---- one job ----
function fact(term, value) {
  return [h("dt", { text: term }), h("dd", {}, value == null || value === "" ? "–" : value)];
}

const between = (from, to) => (from && to ? ms((new Date(to) - new Date(from)) / 1000) : "–");

function showJob(box, job, reload) {
  const facts = h("dl.jobs-facts", {},
    fact("Status", badge(job.status)), fact("Model", job.model), fact("Version", job.version),
    fact("Priority", String(job.priority)), fact("Attempts", String(job.attempts)), fact("Batch", job.batch_id),
    fact("Created", when(job.created_at)), fact("Started", when(job.started_at)), fact("Finished", when(job.finished_at)),
    fact("Waited in the queue", between(job.created_at, job.started_at)), fact("Ran for", between(job.started_at, job.finished_at)));
  const parts = [facts];
  if (job.error) parts.push(h("p", {}, h("strong", { text: "Error: " }), h("span.error", { id: "job-error", text: job.error })));
  if (!ENDED.has(job.status)) parts.push(h("div.actions", {}, cancelButton(job.job_id, reload)));
  const result = [];
  if (job.result) {
    result.push(h("p", { text: `Answered by version ${job.result.model_version ?? "–"}.` }), outputsTable(job.result.outputs));
  } else if (job.result_expired) {
    result.push(h("p.muted", { text: job.message || "The result has expired." }));
  } else {
    result.push(h("p.muted", { text: job.status === "succeeded" ? "No result." : "No result: the job has not succeeded." }));
  }
  clear(box).append(section("Status and timings", ...parts), section("Result", ...result));
}

function detailView(root, ctx, id) {
  const box = h("div");
  root.append(h("section.card", {}, h("p", {}, h("a", { href: "#/jobs", text: "← All jobs" })), h("h1", {}, "Job ", h("span.mono", { text: id }))), box);
  const load = () => get(`/v1/jobs/${enc(id)}`).then(
    (job) => showJob(box, job, load),
    (error) => clear(box).append(h("p.error", { role: "alert", text: error.message })),
  );
  load();
  return ctx.live.on("change", (data) => {
    if (jobChanges(data).some((c) => c.id === id)) load();
  });
}

export default {
  title: "Jobs",
  needs: "jobs",
  mount(root, ctx) {
    return ctx.args[0] ? detailView(root, ctx, ctx.args[0]) : listView(root, ctx);
  },
};
