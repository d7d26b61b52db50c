// Outbox: telemetry batches that survive reloads, dropped connections and dead windows.
//
// Each page load keeps each task's unsent batches in localStorage under its own key
// ("gazepref:outbox:<task>:<page load's performance.timeOrigin>"), with the token and URL needed to
// send them: two windows of one participant never write over each other's stored batches. Batches
// go one at a time, gzip-compressed (CompressionStream), and are retried with exponential
// back-off (at once when the browser says it is online again); the server drops replays (same
// task, stream, page load (origin) + seq: store.CHUNK_KEY), so sending a batch twice is harmless.
// On pagehide the rest goes out by navigator.sendBeacon (uncompressed: a beacon cannot set
// Content-Encoding) and also stays stored until a normal send is confirmed.
//
// Adoption: every page of the study (this module is loaded on every page) sends what other page
// loads left stored -- a reloaded page its predecessor's batches, a window those of a window that
// died (crashed, killed) without unloading, and the single per-task key ("gazepref:outbox:<task>")
// of the site's previous version. Each adopted batch goes exactly as stored (its own origin and
// seq, never renumbered), and is removed from its key only once the server answered it. A page
// load holds a Web Lock ("gazepref:outbox-live:<key>") on its own key while it is open; the other
// pages queue for that lock (keys found at start and, later, by "storage" events) and adopt the
// key when it is granted: when its page load is gone. Without Web Locks (or where they are
// refused) a page adopts at start only, which may send a batch that another open window sends
// too: a replay the server drops.
//
// Acknowledgements: each save rewrites the whole stored key (~50-100 ms for a 4 MB backlog), so
// while a backlog drains the acknowledged batches leave the stored copy at most once per
// ACK_SAVE_MS (and at once when none is left, or on pagehide): a reload meanwhile sends those of
// the last ACK_SAVE_MS again, replays the server drops. A new batch is stored at once.
//
// Storage bound: all stored outboxes together (every page load and task of the site in this
// browser, i.e. the participant's) stay under MAX_STORED_CHARS; a page whose batches do not fit
// stores its newest ones and keeps the oldest in memory only (still sent while it is open).

const PREFIX = "gazepref:outbox:";
const LIVE = "gazepref:outbox-live:"; // + key: the Web Lock the page load owning the key holds
const MAX_STORED_CHARS = 4_000_000; // all stored outboxes together stay inside the localStorage quota
const ACK_SAVE_MS = 1000; // how often a draining backlog's stored copy drops what was acknowledged
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
const OWN = new Map(); // key -> this page load's Outbox of a task
const ADOPTING = new Set(); // keys of other page loads this page waits for (their lock) or sends
const ACTIVE = new Set(); // the outboxes sending here (own and adopted): an "online" event retries them

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
    const box = JSON.parse(localStorage.getItem(key));
    return box && typeof box === "object" ? box : null;
  } catch {
    return null;
  }
}

/** Characters stored by the outboxes other than ``key`` (the budget they leave to it). */
function storedByOthers(key) {
  let n = 0;
  for (let i = 0; i < localStorage.length; i++) {
    const k = localStorage.key(i);
    if (k && k !== key && k.startsWith(PREFIX)) n += (localStorage.getItem(k) || "").length;
  }
  return n;
}

async function gzip(text) {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const locksUsable = () => typeof navigator !== "undefined" && !!navigator.locks && typeof navigator.locks.request === "function";

export class Outbox {
  /**
   * This page load's outbox of ``task`` (one per task and page load: asking again gives the same
   * one, its token and url updated), stored under its own key. ``adopt`` ({key, stored}) is for
   * :func:`adoptStored` only: an outbox another page load left, sent as stored.
   */
  constructor({ task, token, url, adopt = null }) {
    this.failures = 0;
    this.sending = false;
    this.timer = null;
    this.sent = 0;
    if (adopt) {
      this.key = adopt.key;
      this.adopted = true;
      this.acked = new Set(); // the stored items (their JSON) the server answered
      this.box = { token: adopt.stored.token, url: adopt.stored.url, items: adopt.stored.items.slice() };
      this.drained = new Promise((resolve) => { this.onDrained = resolve; });
      return;
    }
    const key = `${PREFIX}${task}:${performance.timeOrigin}`;
    const mine = OWN.get(key);
    if (mine) {
      Object.assign(mine.box, { token, url });
      return mine; // (a constructor may return another object: this page load's outbox of the task)
    }
    this.key = key;
    this.box = { task, token, url, items: [] };
    OWN.set(key, this);
    ACTIVE.add(this);
    if (locksUsable()) { // held while this page is open: other pages adopt the key once it is let go
      try {
        navigator.locks.request(LIVE + key, () => new Promise(() => {})).catch(() => {});
      } catch { /* refused: adopted at start only */ }
    }
    adoptStored(); // what earlier page loads or dead windows left
  }

  /** Queue one batch (an object with seq) and try to send. Set ``onAnswer`` (a function) to
   *  see the server's answer to each batch stored, ``onRefused`` to hear of a batch of this page
   *  refused for its token (401: the participant withdrew elsewhere or was deleted). */
  push(batch) {
    this.box.items.push({ seq: batch.seq, json: JSON.stringify(batch) });
    this.save();
    this.pump();
  }

  /** The stored copy; over the quota (all stored outboxes together) the oldest batches are left
   *  out of it (they stay queued in memory and are still sent while this page is open). An
   *  adopted outbox removes from its stored key the batches the server answered (the key when
   *  none is left), leaving any other. */
  save() {
    clearTimeout(this.ackSave);
    this.ackSave = null;
    if (this.adopted) {
      const stored = readBox(this.key);
      if (!stored) return;
      const items = Array.isArray(stored.items) ? stored.items.filter((i) => !this.acked.has(i.json)) : [];
      try {
        if (!items.length) localStorage.removeItem(this.key);
        else if (items.length !== stored.items.length) localStorage.setItem(this.key, JSON.stringify({ ...stored, items }));
      } catch (e) {
        console.warn("gazepref: cannot store outbox", e);
      }
      return;
    }
    let items = this.box.items;
    let text = JSON.stringify(this.box);
    const budget = items.length ? MAX_STORED_CHARS - storedByOthers(this.key) : MAX_STORED_CHARS;
    while (text.length > budget && items.length > 1) {
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

  /** After an acknowledgement: the stored copy drops the acknowledged batches within ACK_SAVE_MS
   *  (at once when none is left), one rewrite for all acknowledged meanwhile. */
  saveAcked() {
    if (!this.box.items.length) this.save();
    else if (!this.ackSave) this.ackSave = setTimeout(() => this.save(), ACK_SAVE_MS);
  }

  get pending() {
    return this.box.items.length;
  }

  /** Drop every batch queued here, stored copy included: the server refuses this page's token
   *  (401), and each would be refused in turn (also by a later page's adoption). */
  dropAll() {
    this.box.items = [];
    this.save();
  }

  /** Try again now (the browser is online again), not at the end of the back-off. */
  retryNow() {
    if (!this.timer) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.pump();
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
        if (outcome === "refused" && !this.adopted && this.onRefused) this.onRefused(); // (this page's token)
        if (outcome === "refused" && this.adopted) {
          // 401 to a stored outbox: its token is refused (the participant withdrew or was
          // deleted, a forged token), and every batch of the key has it: the rest goes too,
          // unsent (a 403 names one batch's task or calibration: that batch only)
          console.warn("gazepref: stored outbox refused, its", this.box.items.length, "batches dropped");
          for (const i of this.box.items) this.acked.add(i.json);
          this.box.items = [];
          this.save();
          break;
        }
        if (this.box.items[0] === item) this.box.items.shift();
        if (this.adopted) this.acked.add(item.json);
        this.saveAcked();
        if (outcome === "ok") this.sent += 1;
      }
      if (this.adopted) {
        ACTIVE.delete(this);
        this.onDrained();
      }
    } finally {
      this.sending = false;
    }
  }

  /** "ok" (stored or a duplicate), "rejected" (malformed: never retried), "refused" (401: the
   *  token, never retried) or "retry". */
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
      if (resp.ok) {
        if (this.onAnswer) resp.json().then((answer) => this.onAnswer(answer)).catch(() => {});
        return "ok";
      }
      if (resp.status === 429 || resp.status >= 500) {
        this.retryAfterMs = retryAfterMs(resp);
        return "retry";
      }
      console.warn("gazepref: batch rejected", resp.status, await resp.text());
      return resp.status === 401 ? "refused" : "rejected";
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

/** Send the batches stored under another page load's ``key`` (or the former per-task key) as they
 *  are, until none is left there; batches stored there meanwhile (a page load thought gone that
 *  was not) are sent too, in a next round. */
async function drainKey(key) {
  for (let round = 0; round < 3; round++) {
    const stored = readBox(key);
    const items = stored && Array.isArray(stored.items) ? stored.items.filter((i) => i && typeof i.json === "string") : [];
    if (!items.length || !stored.url || !stored.token) {
      if (stored && !items.length) localStorage.removeItem(key); // nothing to send in it
      return;
    }
    const box = new Outbox({ adopt: { key, stored: { ...stored, items } } });
    ACTIVE.add(box);
    box.pump();
    await box.drained;
  }
}

/** Adopt ``key`` (another page load's stored outbox) once no page load holds it. */
function adopt(key) {
  if (OWN.has(key) || ADOPTING.has(key)) return;
  ADOPTING.add(key);
  const done = () => ADOPTING.delete(key);
  if (!locksUsable()) {
    drainKey(key).finally(done);
    return;
  }
  let granted = false;
  navigator.locks.request(LIVE + key, () => { granted = true; return drainKey(key); })
    .catch(() => (granted ? null : drainKey(key))) // Web Locks refused (SecurityError): as without them
    .finally(done);
}

let watching = false;

/** Send what other page loads left stored: every stored outbox of the site except this page
 *  load's own (each once its page load is gone, see the top of this file); with Web Locks also
 *  those that appear later ("storage" events: another window's page load, which may die). */
export function adoptStored() {
  const keys = [];
  for (let i = 0; i < localStorage.length; i++) {
    const key = localStorage.key(i);
    if (key && key.startsWith(PREFIX)) keys.push(key);
  }
  keys.forEach(adopt);
  if (watching) return;
  watching = true;
  addEventListener("online", () => { for (const box of [...ACTIVE]) box.retryNow(); });
  if (locksUsable()) {
    addEventListener("storage", (e) => {
      if (e.key === null) return; // (storage cleared)
      if (e.key.startsWith(PREFIX) && e.newValue !== null) adopt(e.key);
    });
  }
}

if (!document.getElementById("page-data")) adoptStored();

/** The server no longer knows the participant (a 401: they withdrew in another tab or window, or
 *  the researchers deleted their data): the page has stopped recording (a webcam capture has let
 *  go of the camera, the telemetry recorder keeps no more rows); the page is loaded again, and
 *  the server shows where the participant stands (the withdrawn page). At most once a minute a
 *  tab, noted in its sessionStorage: a token the server refuses on a fresh page too, or a tab
 *  without storage (no way to tell a loop), is not reloaded. Returns whether it reloads. */
export function leaveRefused() {
  const key = "gazepref:refused-reload";
  try {
    if (Date.now() - (+sessionStorage.getItem(key) || 0) < 60000) return false;
    sessionStorage.setItem(key, String(Date.now()));
  } catch {
    return false;
  }
  location.reload();
  return true;
}
