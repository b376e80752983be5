// The live farm: /v1/events read with fetch, its snapshots kept for about 15 minutes, and
// rates and latency quantiles drawn from the differences of the API's counters.
import { ApiError, openEvents } from "./api.js";

const HISTORY_S = 15 * 60;

export class Live {
  constructor({ onSignedOut } = {}) {
    this.listeners = new Map();
    this.history = []; // snapshots, oldest first
    this.latest = null;
    this.hello = null;
    this.onSignedOut = onSignedOut;
    this.controller = null;
    this.stopped = false;
  }

  // fn(data) for each event of kind ("snapshot", "change", "hello", "status"); returns an off().
  on(kind, fn) {
    if (!this.listeners.has(kind)) this.listeners.set(kind, new Set());
    this.listeners.get(kind).add(fn);
    return () => this.listeners.get(kind).delete(fn);
  }

  emit(kind, data) {
    for (const fn of this.listeners.get(kind) || []) {
      try {
        fn(data);
      } catch (error) {
        console.warn("console: a listener failed", error);
      }
    }
  }

  start() {
    this.stopped = false;
    this.loop();
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async loop() {
    let wait = 1000;
    while (!this.stopped) {
      this.controller = new AbortController();
      try {
        const reader = await openEvents(this.controller.signal);
        this.emit("status", { connected: true });
        wait = 1000;
        await this.read(reader);
      } catch (error) {
        if (this.stopped) return;
        if (error instanceof ApiError && error.status === 401) {
          this.signedOut(error.message);
          return;
        }
      }
      if (this.stopped) return;
      this.emit("status", { connected: false });
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait = Math.min(wait * 2, 15000);
    }
  }

  async read(reader) {
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        this.dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  dispatch(block) {
    let kind = "message";
    let data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) kind = line.slice(7);
      else if (line.startsWith("data: ")) data += line.slice(6);
    }
    if (!data) return;
    const parsed = JSON.parse(data);
    if (kind === "snapshot") this.keep(parsed);
    if (kind === "hello") this.hello = parsed;
    if (kind === "error" && parsed.status === 401) {
      this.signedOut(parsed.message);
      return;
    }
    this.emit(kind, parsed);
  }

  keep(snapshot) {
    this.latest = snapshot;
    this.history.push(snapshot);
    const oldest = snapshot.at - HISTORY_S;
    while (this.history.length && this.history[0].at < oldest) this.history.shift();
  }

  signedOut(message) {
    this.stop();
    if (this.onSignedOut) this.onSignedOut(message);
  }

  // One point per pair of snapshots: requests/s, errors/s, p50 and p99 (seconds).
  rates() {
    const points = [];
    for (let i = 1; i < this.history.length; i += 1) {
      const before = this.history[i - 1].api;
      const after = this.history[i].api;
      const span = this.history[i].at - this.history[i - 1].at;
      if (!before || !after || span <= 0) continue;
      const requests = after.requests - before.requests;
      if (requests < 0) continue; // the API restarted: counters began again
      const errors = after.client_errors + after.server_errors - before.client_errors - before.server_errors;
      const counts = after.latency_counts.map((c, j) => c - before.latency_counts[j]);
      points.push({
        at: this.history[i].at,
        rps: requests / span,
        eps: Math.max(0, errors) / span,
        p50: quantile(after.latency_le, counts, 0.5),
        p99: quantile(after.latency_le, counts, 0.99),
      });
    }
    return points;
  }
}

// The q-quantile of a cumulative histogram (bounds le, counts one longer: +Inf last), by
// linear interpolation within its bucket, as Prometheus's histogram_quantile does.
export function quantile(le, counts, q) {
  const total = counts[counts.length - 1];
  if (!total) return null;
  const rank = q * total;
  for (let i = 0; i < le.length; i += 1) {
    if (counts[i] >= rank) {
      const lower = i ? le[i - 1] : 0;
      const below = i ? counts[i - 1] : 0;
      const inBucket = counts[i] - below;
      return inBucket ? lower + ((le[i] - lower) * (rank - below)) / inBucket : le[i];
    }
  }
  return le[le.length - 1];
}
