// Telemetry recorder: mouse, events, scroll, layout and visibility on one clock.
//
// Clock: performance.now() (ms since performance.timeOrigin, which is sent with every batch as
// the epoch anchor). Rows are buffered per stream, column-major, and cut into a batch about once
// a second; batches carry a sequence number and go through the Outbox.
//
// Seq: each page load numbers its batches 0, 1, 2 ... from the server's next seq of the task
// (nothing kept in localStorage): the server's chunk key (task, stream, page load's origin, seq)
// makes a batch a replay only of its own page load's, so another tab or an earlier page load of
// the task may use the same numbers, and a gap in one page load's seqs is a lost batch.

import { leaveRefused, Outbox } from "./outbox.js";
import { measureElements, measureWords } from "./layout.js";

const COLUMNS = {
  mouse: ["t", "x", "y", "buttons"],
  events: ["t", "type", "target", "x", "y", "detail"],
  scroll: ["t", "target", "scroll_x", "scroll_y"],
  layout: ["t", "target", "kind", "index", "char_start", "char_end", "x", "y", "w", "h", "turn"],
  visibility: ["t", "state"],
};
const FLUSH_MS = 1000;
// word boxes are measured again once a resize has settled: dragging a window edge fires ~60
// resizes a second, and every word of two long answers each time would overflow a batch
const WORDS_SETTLE_MS = 150;
// a batch is cut early when its layout rows reach this (the server takes 20000 rows per stream)
const MAX_LAYOUT_ROWS = 5000;

const round = (v) => Math.round(v * 100) / 100;
const CARET_MS = 1000;
/** The ``target`` of a click or caret row made while another window records (setActive): the
 *  gaze calibration from clicks leaves it out (signals/calibration.py NOT_RECORDING_TARGETS). */
const NOT_RECORDING_TARGET = "other-window";

/** Viewport position of the caret in a textarea or text input: a hidden copy of the field with
 *  the text up to the caret and a marker after it (the usual mirror technique). */
function caretPoint(el) {
  if (typeof el.selectionStart !== "number") return null;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  const mirror = document.createElement("div");
  for (const p of ["boxSizing", "width", "fontFamily", "fontSize", "fontWeight", "fontStyle", "letterSpacing",
                   "lineHeight", "paddingTop", "paddingRight", "paddingBottom", "paddingLeft", "borderTopWidth",
                   "borderRightWidth", "borderBottomWidth", "borderLeftWidth", "textIndent", "tabSize"]) {
    mirror.style[p] = style[p];
  }
  Object.assign(mirror.style, { position: "fixed", left: `${box.left}px`, top: `${box.top}px`, visibility: "hidden",
                                whiteSpace: el instanceof HTMLTextAreaElement ? "pre-wrap" : "pre",
                                overflowWrap: "break-word", borderStyle: "solid", overflow: "hidden" });
  mirror.textContent = el.value.slice(0, el.selectionStart);
  const mark = document.createElement("span");
  mark.textContent = "\u200b";
  mirror.appendChild(mark);
  document.body.appendChild(mirror);
  const r = mark.getBoundingClientRect();
  mirror.remove();
  const x = r.left - el.scrollLeft, y = r.top + r.height / 2 - el.scrollTop;
  return x >= box.left - 1 && x <= box.right + 1 && y >= box.top - 1 && y <= box.bottom + 1 ? { x, y } : null;
}

export class Recorder {
  /**
   * @param {object} opts task, token, ingestUrl, nextSeq (server's next sequence number: this
   *   page load's first),
   *   targets() -> {target name: element} of tracked elements, panes() -> {target: scrollable
   *   response element}, turn() -> index of the turn on screen (or null), onRefused() called
   *   once when the server refuses the participant's token (default :func:`leaveRefused`).
   */
  constructor({ task, token, ingestUrl, nextSeq, targets, panes, turn, onRefused = leaveRefused }) {
    this.task = task;
    this.targets = targets;
    this.panes = panes;
    this.turn = turn;
    this.origin = performance.timeOrigin;
    this.seq = nextSeq || 0;
    this.outbox = new Outbox({ task, token, url: ingestUrl });
    this.outbox.onRefused = () => this.refused();
    this.onRefused = onRefused;
    this.buffers = {};
    this.lastT = {};
    this.lastElements = "";
    for (const s of Object.keys(COLUMNS)) this.reset(s);
    this.pendingMove = null;
    // click and caret rows with a point made while this window records: the gaze batches say
    // how many (webcam.js taskMeta ``clicks``), so the server reads the task's stored clicks only
    // when one it has not read may be there (gaze_drift.needs_update)
    this.calibrationSamples = 0;
    this.pendingScroll = new Map();
    this.layoutPending = null;
    this.listen();
    this.timer = setInterval(() => this.flush(), FLUSH_MS);
  }

  reset(stream) {
    this.buffers[stream] = Object.fromEntries(COLUMNS[stream].map((c) => [c, []]));
  }

  /** Whether this window is the participant's recording one: in a study with gaze only one window
   *  records (webcam.js startTaskGaze); while another does, this one shows a notice over the task
   *  and keeps only its events and visibility rows (an event "other-window" / "this-window" marks
   *  each change), so the task's mouse, scroll and layout rows are those of the window in use. */
  setActive(active) {
    if (!!this.inactive === !active) return; // (a page starts active: no row for that)
    this.inactive = !active;
    this.event(active ? "this-window" : "other-window");
    if (active) this.scheduleLayout(true); // the boxes as they are now (none kept meanwhile)
  }

  /** The server refused a batch for the participant's token (401: they withdrew in another
   *  window, or their data was deleted): the page records nothing more (its rows would only be
   *  refused, one request a second) and ``onRefused`` is called, once. */
  refused() {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.sampleFlush);
    for (const s of Object.keys(COLUMNS)) this.reset(s);
    this.outbox.dropAll(); // (its other batches would be refused one by one, and beaconed at pagehide)
    console.warn("gazepref: the server no longer knows this participant; nothing more is recorded here");
    this.onRefused();
  }

  /** Append one row; times never go backwards within a stream. */
  add(stream, row) {
    if (this.stopped) return;
    if (this.inactive && stream !== "events" && stream !== "visibility") return;
    const t = Math.max(row.t, this.lastT[stream] || 0);
    this.lastT[stream] = t;
    const buf = this.buffers[stream];
    for (const c of COLUMNS[stream]) {
      let v = c === "t" ? round(t) : row[c];
      if (typeof v === "number" && c !== "index" && c !== "char_start" && c !== "char_end" && c !== "turn" && c !== "buttons") v = round(v);
      buf[c].push(v === undefined ? null : v);
    }
    if (stream === "layout" && buf.t.length >= MAX_LAYOUT_ROWS) this.flush();
  }

  event(type, target = "window", detail = null, x = null, y = null) {
    // a click or the caret in a window that is not recording (another window of the participant
    // records the gaze): not a point the recorded gaze looked at, never a calibration sample
    if (this.inactive && (type === "click" || type === "caret")) target = NOT_RECORDING_TARGET;
    this.add("events", { t: performance.now(), type, target, x, y, detail: detail === null ? null : String(detail) });
    // a calibration sample (a click with its point, the caret) goes at once, not with the next
    // second's rows: the server corrects the gaze batches that follow it with it (gaze_drift.py),
    // which it can only do once the click is stored, as a replay of the task does
    if ((type === "click" || type === "caret") && x !== null && !this.inactive) {
      this.calibrationSamples += 1;
      if (!this.sampleFlush) this.sampleFlush = setTimeout(() => { this.sampleFlush = null; this.flush(); }, 0);
    }
  }

  targetOf(node) {
    const el = node && node.closest ? node.closest("[data-target]") : null;
    return el ? el.dataset.target : "window";
  }

  listen() {
    addEventListener("mousemove", (e) => {
      if (!this.pendingMove) requestAnimationFrame(() => this.takeMove());
      this.pendingMove = e; // coalesced: one sample per animation frame
    }, { passive: true });
    // a click from the keyboard (Enter or Space on a button, arrows in a radio group) or from a
    // script has detail 0 and the point (0, 0): no point at all, so that it never pairs with the
    // gaze as a place the participant looked at (gaze calibration from clicks)
    addEventListener("click", (e) => {
      const pointer = e.detail > 0;
      this.event("click", this.targetOf(e.target), e.target.id || e.target.tagName.toLowerCase(),
                 pointer ? e.clientX : null, pointer ? e.clientY : null);
    }, true);
    addEventListener("scroll", (e) => this.onScroll(e), { capture: true, passive: true });
    addEventListener("input", (e) => this.caret(e.target), true);
    addEventListener("resize", () => {
      this.event("resize", "window", `${innerWidth}x${innerHeight}`);
      this.relayoutSoon();
    });
    addEventListener("copy", () => this.event("copy", this.targetOf(document.getSelection().anchorNode?.parentElement), String(document.getSelection()).length));
    document.addEventListener("selectionchange", () => {
      clearTimeout(this.selTimer);
      this.selTimer = setTimeout(() => {
        const sel = document.getSelection();
        const n = String(sel).length;
        if (n) this.event("select", this.targetOf(sel.anchorNode?.parentElement), n);
      }, 300);
    });
    for (const type of ["focus", "blur"]) {
      addEventListener(type, (e) => {
        if (e.target === window) {
          this.add("visibility", { t: performance.now(), state: type });
          this.event(type);
        }
      });
    }
    document.addEventListener("visibilitychange", () => {
      this.add("visibility", { t: performance.now(), state: document.visibilityState });
      if (document.visibilityState === "hidden") this.flush();
    });
    addEventListener("pagehide", () => {
      this.flush();
      this.outbox.beacon();
    });
    document.addEventListener("mouseenter", (e) => this.hover(e, "hover_enter"), true);
    document.addEventListener("mouseleave", (e) => this.hover(e, "hover_leave"), true);
    // the answers re-wrap whenever the page's width changes (a scrollbar appearing, not only a resize)
    new ResizeObserver(() => this.relayoutSoon()).observe(document.body);
    this.add("visibility", { t: performance.now(), state: document.visibilityState });
  }

  /** While typing: the caret's viewport position (an "events" row of type "caret", at most one
   *  a second per field): a point the participant looks at, which the webcam's continuous
   *  calibration uses. */
  caret(el) {
    if (!el || !(el instanceof HTMLTextAreaElement || (el instanceof HTMLInputElement && el.type === "text"))) return;
    const now = performance.now();
    this.lastCaret = this.lastCaret || new WeakMap();
    if (now - (this.lastCaret.get(el) ?? -Infinity) < CARET_MS) return;
    const at = caretPoint(el);
    if (!at) return;
    this.lastCaret.set(el, now);
    this.event("caret", this.targetOf(el), el.id || el.tagName.toLowerCase(), at.x, at.y);
  }

  takeMove() {
    const e = this.pendingMove;
    this.pendingMove = null;
    if (e) this.add("mouse", { t: e.timeStamp, x: e.clientX, y: e.clientY, buttons: e.buttons });
  }

  hover(e, type) {
    // mouseenter/mouseleave (captured at the document) fire for each response pane and paragraph
    const el = e.target;
    if (!el.matches || !el.matches(".response-text, .response-text > [data-paragraph]")) return;
    const pane = el.closest(".response-text");
    const target = el === pane ? pane.dataset.target : `${pane.dataset.target}/p${el.dataset.paragraph}`;
    this.event(type, target, null, e.clientX, e.clientY);
  }

  onScroll(e) {
    const el = e.target === document ? document.scrollingElement : e.target;
    const target = e.target === document ? "window" : this.targetOf(el);
    if (!this.pendingScroll.size) requestAnimationFrame(() => this.takeScroll());
    this.pendingScroll.set(target, el);
  }

  takeScroll() {
    const t = performance.now();
    for (const [target, el] of this.pendingScroll) {
      this.add("scroll", { t, target, scroll_x: el.scrollLeft, scroll_y: el.scrollTop });
    }
    const windowScrolled = this.pendingScroll.has("window");
    this.pendingScroll.clear();
    if (windowScrolled) this.recordElements(t);
  }

  /** Element boxes (only when they changed since the last snapshot). */
  recordElements(t = performance.now()) {
    const rows = measureElements(t, this.targets(), this.turn());
    const key = JSON.stringify(rows.map((r) => [r.target, r.x, r.y, r.w, r.h]));
    if (key === this.lastElements) return;
    this.lastElements = key;
    for (const r of rows) this.add("layout", r);
  }

  /** Word boxes of every visible response, plus element boxes. */
  recordLayout() {
    const t = performance.now();
    this.lastElements = "";
    this.recordElements(t);
    for (const [target, el] of Object.entries(this.panes())) {
      if (el && el.isConnected && !el.closest("[hidden]")) {
        for (const r of measureWords(t, target, el, this.turn())) this.add("layout", r);
        this.add("scroll", { t, target, scroll_x: el.scrollLeft, scroll_y: el.scrollTop });
      }
    }
  }

  /** Element boxes at the next frame; word boxes once the size has settled. */
  relayoutSoon() {
    this.scheduleLayout(false);
    clearTimeout(this.wordsTimer);
    this.wordsTimer = setTimeout(() => this.scheduleLayout(true), WORDS_SETTLE_MS);
  }

  scheduleLayout(words) {
    this.layoutWords = this.layoutWords || words;
    if (this.layoutPending) return;
    this.layoutPending = requestAnimationFrame(() => {
      this.layoutPending = null;
      if (this.layoutWords) this.recordLayout();
      else this.recordElements();
      this.layoutWords = false;
    });
  }

  /** Cut the buffered rows into one batch and queue it. */
  flush() {
    if (this.stopped) return;
    const streams = {};
    for (const s of Object.keys(COLUMNS)) {
      if (this.buffers[s].t.length) {
        streams[s] = this.buffers[s];
        this.reset(s);
      }
    }
    if (!Object.keys(streams).length) return;
    const batch = { task: this.task, seq: this.seq++, origin: this.origin, streams };
    this.outbox.push(batch);
  }
}
