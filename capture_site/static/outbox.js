// Outbox: telemetry batches that survive reloads and dropped connections.
//
// Each task's unsent batches live in localStorage ("gazepref:outbox:<task>") with the token and
// URL needed to send them, so any page of the study (this module is loaded on every page)
// finishes sending them. Batches go one at a time, gzip-compressed (CompressionStream), and are
// retried with exponential back-off; the server drops replays (same task, page load + seq), so sending a
// batch twice is harmless. On pagehide the rest goes out by navigator.sendBeacon (uncompressed:
// a beacon cannot set Content-Encoding) and also stays stored until a normal send is confirmed.

const PREFIX = "gazepref:outbox:";
const MAX_STORED_CHARS = 4_000_000; // stay inside the localStorage quota
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];

/** The response's Retry-After in ms (seconds form; 0 when absent), at most a minute. */
export function retryAfterMs(resp) {
  const s = Number(resp.headers.get("Retry-After"));
  return Number.isFinite(s) && s > 0 ? Math.min(60000, s * 1000) : 0;
}

/** ``fetch(url, init)``, sent again (``tries`` in all) while the answer is 503 with ``{"retry":
 *  true}`` after its Retry-After (at least 0.5 s): a host shutting down (SIGTERM) or a database
 *  outage answers so without having done anything, and behind a load balancer the next try
 *  reaches a host that is up. For requests that are not batches of the outbox (a calibration
 *  round: the participant's minute of looking at dots is not lost to a restart). Any other
 *  answer, or the last, is returned; a network error throws as fetch does. */
export async function fetchRetrying(url, init, tries = 4) {
  for (let i = 1; ; i++) {
    const resp = await fetch(url, init);
    if (resp.status !== 503 || i >= tries) return resp;
    const body = await resp.clone().json().catch(() => null);
    if (!body || body.retry !== true) return resp;
    await new Promise((done) => setTimeout(done, Math.max(500, retryAfterMs(resp))));
  }
}

function readBox(key) {
  try {
    return JSON.parse(localStorage.getItem(key)) || null;
  } catch {
    return null;
  }
}

async function gzip(text) {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

export class Outbox {
  constructor({ task, token, url }) {
    this.key = PREFIX + task;
    const stored = readBox(this.key);
    this.box = { token, url, items: stored ? stored.items : [] };
    this.failures = 0;
    this.sending = false;
    this.timer = null;
    this.sent = 0;
    this.save();
  }

  /** Queue one batch (an object with seq) and try to send. */
  push(batch) {
    this.box.items.push({ seq: batch.seq, json: JSON.stringify(batch) });
    this.save();
    this.pump();
  }

  /** The stored copy; over the quota the oldest batches are left out of it (they stay queued in
   *  memory and are still sent while this page is open). */
  save() {
    let items = this.box.items;
    let text = JSON.stringify(this.box);
    while (text.length > MAX_STORED_CHARS && items.length > 1) {
      console.warn("gazepref: outbox over quota, the oldest batch is kept in memory only");
      items = items.slice(1);
      text = JSON.stringify({ ...this.box, items });
    }
    try {
      if (items.length) localStorage.setItem(this.key, text);
      else localStorage.removeItem(this.key);
    } catch (e) {
      console.warn("gazepref: cannot store outbox", e);
    }
  }

  get pending() {
    return this.box.items.length;
  }

  async pump() {
    if (this.sending || this.timer) return;
    this.sending = true;
    try {
      while (this.box.items.length) {
        const item = this.box.items[0];
        const outcome = await this.send(item);
        if (outcome === "retry") {
          // the server's Retry-After (429, 503 while it restarts) is a lower bound on the wait
          const wait = Math.max(BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)], this.retryAfterMs || 0);
          this.retryAfterMs = 0;
          this.failures += 1;
          this.timer = setTimeout(() => {
            this.timer = null;
            this.pump();
          }, wait);
          return;
        }
        this.failures = 0;
        if (this.box.items[0] === item) this.box.items.shift();
        this.save();
        if (outcome === "ok") this.sent += 1;
      }
    } finally {
      this.sending = false;
    }
  }

  /** "ok" (stored or a duplicate), "rejected" (malformed: never retried) or "retry". */
  async send(item) {
    try {
      const zip = typeof CompressionStream !== "undefined"; // browsers without it send plain JSON
      const body = zip ? await gzip(item.json) : item.json;
      const resp = await fetch(this.box.url, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          ...(zip ? { "Content-Encoding": "gzip" } : {}),
          "X-Participant-Token": this.box.token,
        },
        body,
        keepalive: body.length < 60000,
      });
      if (resp.ok) return "ok";
      if (resp.status === 429 || resp.status >= 500) {
        this.retryAfterMs = retryAfterMs(resp);
        return "retry";
      }
      console.warn("gazepref: batch rejected", resp.status, await resp.text());
      return "rejected";
    } catch {
      return "retry"; // offline or connection dropped
    }
  }

  /** Page is going away: hand what is left to the browser (kept stored too, replays are harmless). */
  beacon() {
    this.save();
    if (!navigator.sendBeacon) return;
    const url = this.box.url + (this.box.url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(this.box.token);
    for (const item of this.box.items) {
      if (!navigator.sendBeacon(url, new Blob([item.json], { type: "text/plain" }))) break;
    }
  }
}

/** Send what earlier pages left behind (every task's stored outbox). */
export function drainStored(except = null) {
  const boxes = [];
  for (let i = 0; i < localStorage.length; i++) {
    const key = localStorage.key(i);
    if (key && key.startsWith(PREFIX) && key !== except) boxes.push(key.slice(PREFIX.length));
  }
  return boxes.map((task) => {
    const stored = readBox(PREFIX + task);
    if (!stored || !stored.items.length) return null;
    const box = new Outbox({ task, token: stored.token, url: stored.url });
    box.pump();
    return box;
  });
}

if (!document.getElementById("page-data")) drainStored();
