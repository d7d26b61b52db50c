// Webcam capture for server-side gaze estimation.
//
// getUserMedia -> a hidden canvas downscaled to settings.width wide (the picture's aspect) -> JPEG blobs
// at settings.fps, each stamped with performance.now() (the telemetry clock: mouse samples use
// the same clock and performance.timeOrigin). Transport: a WebSocket (urls.ws) when it opens --
// the token as the first message, then one binary message per frame (4-byte length, JSON meta,
// JPEG), sent as soon as it is captured and answered with the face status; task frames are kept
// until the server says they are stored ({"stored": seq}) and sent again after a reconnect. When
// the socket cannot be opened (or is lost for good), frames are posted in batches (multipart: a
// JSON "meta" part and one "frame" part per image) every settings.batch_ms. The last few seconds
// of frames stay in memory so the calibration page can send the frames taken just before each
// click.
// When the server restarts it answers 503 with Retry-After (batches wait that long) and tells the
// socket {"reconnect": true, "retry_after_ms": n} before closing it (the page reconnects after n ms);
// a server with too many sockets waiting for their token answers a new socket the same way at once
// (close code 1013, try again later): the page tries three times, backing off, then posts batches.
//
// Browser mode (settings.compute = "browser", the default): no picture leaves the page. Each
// picture goes through the face mesh in the page (facemesh.js) and only its landmark sample is
// sent (JSON, urls.samples): set-up samples in batches answered with the face status, task
// samples through the outbox (outbox.js: stored until the server confirms, resent after a
// reload). The page measures its own cost (meshMs, fps) for the benchmark.
//
// Task pages name the calibration they record under (gaze.calibration, the step's outcome) in
// every batch and frame meta ("calibration"): a batch that reaches the server only after a later
// recalibration (retried after an outage, the outbox after a reload, a resend after a reconnect)
// is still scored with the calibration its pictures were taken under.

import { startMesh } from "./facemesh.js";
import { leaveRefused, Outbox, retryAfterMs } from "./outbox.js";

/** sessionStorage key of the task batch interval the server last asked for (``pace``). */
const PACE_KEY = "gazepref:task_batch_ms";
/** Browser mode with the face mesh on the page's main thread (facemesh.js startMesh: no Web
 *  Worker), task pages: a picture whose face mesh took longer than TASK_MESH_LONG_MS (ms) held
 *  keys and clicks that long; after such a picture the next waits until the mesh has had at most
 *  TASK_MESH_SHARE of the main thread (d ms: d * (1 / share - 1) more, at most
 *  TASK_MESH_GAP_MAX_MS). Shorter pictures (a usual computer's 30-100 ms) come at ``fps`` as
 *  before. The set-up and the calibration take every picture they can: there the participant
 *  only looks, and each dot needs its pictures. In a Web Worker the mesh holds no key or click
 *  and pictures come without a pause: tried with one (slow computers, docs/gaze.md "Off the
 *  page's main thread"), it halved the samples for keys already under 100 ms at p90. */
export const TASK_MESH_SHARE = 0.5;
export const TASK_MESH_LONG_MS = 150;
const TASK_MESH_GAP_MAX_MS = 3000;

/** Task pages, the mesh on the main thread: the pause (ms) after a picture whose face mesh took
 *  ``took`` ms (TASK_MESH_SHARE). */
export function meshPauseMs(took) {
  return took > TASK_MESH_LONG_MS ? Math.min(TASK_MESH_GAP_MAX_MS, took * (1 / TASK_MESH_SHARE - 1)) : 0;
}

export class CameraError extends Error {
  /** kind: "insecure" | "denied" | "none" | "busy" | "other" (what the page explains). */
  constructor(message, kind = "other") {
    super(message);
    this.kind = kind;
  }

  /** What the researcher's dashboard records (capture_site/setup_log.py CAMERA_ERRORS). */
  get reason() {
    return { insecure: "unsupported", none: "not-found", denied: "denied", busy: "failed" }[this.kind] || "failed";
  }
}

/** Open the camera; throws CameraError with a message for the participant. */
export async function openCamera(width, height) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new CameraError("This browser cannot use a webcam here (a secure https page is needed).", "insecure");
  }
  try {
    return await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: width * 2 }, height: { ideal: height * 2 } }, audio: false });
  } catch (e) {
    if (e && (e.name === "NotAllowedError" || e.name === "SecurityError")) {
      throw new CameraError("Camera access was denied.", "denied");
    }
    if (e && (e.name === "NotFoundError" || e.name === "OverconstrainedError")) {
      throw new CameraError("No camera was found.", "none");
    }
    if (e && (e.name === "NotReadableError" || e.name === "AbortError")) {
      throw new CameraError("The camera is in use by another program (a video call?) or could not be started.", "busy");
    }
    throw new CameraError(`The camera could not be started (${e && e.name ? e.name : e}).`);
  }
}

/** How long a page keeps its pictures (ms) for the calibration dots: the longest one dot collects
 *  them (``settle_ms`` before its click, up to three ``target_timeout_ms`` of waiting on a slow
 *  computer and up to 5 s for the last answers: calibration.js ``targetWaitMs``, ``settleMs``)
 *  and a second's slack; at least 15 s. A shorter memory dropped a slow dot's first pictures, and
 *  whether they were usable, while the dot still waited for enough of them. */
export function recentKeepMs(settings) {
  return Math.max(15000, (+settings.settle_ms || 0) + 3 * (+settings.target_timeout_ms || 0) + 6000);
}

export class GazeCapture {
  /**
   * @param {object} opts stream (MediaStream), token, url (frames endpoint), wsUrl (the frames
   *   WebSocket path; none: batches only), settings ({fps, width, height, batch_ms, task_batch_ms}), phase
   *   ("setup" | "task"), task, nextSeq, calibration (task pages: the id of the calibration in
   *   force, sent with every task batch and frame), onStatus(face, response) called after each answered
   *   batch or frame, onCameraStop() called once if the camera stops sending pictures (unplugged,
   *   taken by another program, permission withdrawn), onCameraMute(muted) called when the camera
   *   pauses its pictures (muted: another program took it, a privacy switch or shutter; true) and
   *   when they come back (false), video (optional element).
   */
  constructor({ stream, token, url, wsUrl = null, settings, phase = "setup", task = null, nextSeq = 0, calibration = null, onStatus = () => {}, onCameraStop = () => {}, onCameraMute = () => {}, onRefused = leaveRefused, video = null, urls = {} }) {
    this.stream = stream;
    this.token = token;
    this.browser = settings.compute === "browser";
    this.url = this.browser ? urls.samples : url;
    this.vendor = urls.vendor; // the face mesh's base URL, with the package versions (capture_site/vendor.py)
    this.wsUrl = !this.browser && wsUrl && typeof WebSocket !== "undefined" ? wsUrl : null;
    this.meshMs = []; // browser mode: ms per picture of the face mesh and sample (the last 100)
    this.nextGrabAt = 0; // browser mode, task pages: no picture before (TASK_MESH_SHARE)
    this.lastGrabAt = -Infinity; // browser mode: when the last picture began (performance.now())
    this.meshErrors = 0; // browser mode: pictures the face mesh failed on (the first is logged)
    this.holding = false; // settle(): no picture taken meanwhile
    this.samples = 0;
    // "connecting" (frames wait), "ws" (frames go out one by one), "reconnecting", "http" (batches)
    this.transport = this.wsUrl ? "connecting" : "http";
    this.socket = null;
    this.unstored = new Map(); // task frames sent on the socket, not yet stored: seq -> frame
    this.unanswered = 0;
    this.retries = 0;
    this.settings = settings;
    this.phase = phase;
    this.task = task;
    this.calibration = calibration;
    this.seqKey = task === null ? null : `gazepref:gazeseq:${task}`;
    this.seq = Math.max(nextSeq || 0, this.seqKey ? +(localStorage.getItem(this.seqKey) || 0) : 0);
    this.onStatus = onStatus;
    this.onCameraStop = onCameraStop;
    this.onCameraMute = onCameraMute;
    this.onRefused = onRefused;
    this.cameraStopped = false;
    this.cameraPaused = false; // muted, as last said to onCameraMute
    this.video = video || document.createElement("video");
    this.video.muted = true;
    this.video.playsInline = true;
    this.video.srcObject = stream;
    this.canvas = document.createElement("canvas");
    this.canvas.width = settings.width;
    this.canvas.height = settings.height;
    // browser mode reads every picture back (getImageData): the context must be made for that at
    // once, as a canvas keeps the options of its first getContext and ignores later ones
    this.ctx = this.canvas.getContext("2d", this.browser ? { willReadFrequently: true } : {});
    this.pending = []; // frames not yet sent: {t, blob}
    this.recent = []; // frames of the last few seconds (calibration)
    this.usable = new Set(); // times of recent frames the server found usable (face, eyes open)
    this.lastAnswer = 0; // performance.now() of the last face status from the server
    this.inflight = new Set();
    this.sent = 0;
    this.lastSendFailure = -Infinity; // (performance.now() of the last batch that failed to reach the server)
    this.lastFace = null;
    this.timers = [];
    this.paused = false;
  }

  async start() {
    await this.video.play().catch(() => {});
    if (this.browser) {
      this.mesh = await startMesh({ base: this.vendor, backend: this.settings.mesh_backend || "wasm",
                                    worker: this.settings.mesh_worker !== false });
      if (this.phase === "task") {
        this.outbox = new Outbox({ task: `gaze-${this.task}`, token: this.token, url: this.url });
        this.outbox.onRefused = () => this.refused();
      }
    }
    // a track fires "ended" when the camera goes (unplugged, taken, permission withdrawn), but not
    // when track.stop() ends it; the stream's "inactive" (Chromium, Safari) comes for both, at once,
    // so no picture of a dead camera is sent; "mute" / "unmute" when it pauses its pictures and
    // sends them again; a check once a second catches browsers firing none of these
    for (const track of this.stream.getVideoTracks()) {
      track.addEventListener("ended", () => this.cameraLost());
      track.addEventListener("mute", () => this.checkCamera());
      track.addEventListener("unmute", () => this.checkCamera());
    }
    this.stream.addEventListener("inactive", () => this.cameraLost());
    const frameMs = 1000 / this.settings.fps;
    this.startedAt = performance.now();
    if (this.wsUrl) this.connect();
    this.frameMs = frameMs;
    this.timers.push(setInterval(() => this.grab(), frameMs));
    this.timers.push(setInterval(() => this.checkCamera(), 1000));
    // browser mode, task phase: the samples are posted less often (task_batch_ms): nothing waits for
    // their answers (the face status is known here), and each request costs the server more than a
    // sample; while the server is short of CPU its answers ask for longer intervals (gaze_pacing.py)
    if (this.browser && this.phase === "task") {
      // the interval the server last asked for (this tab's earlier task pages), else the study's
      this.taskBatchMs = this.settings.task_batch_ms || this.settings.batch_ms;
      try { this.pace({ batch_ms: Number(sessionStorage.getItem(PACE_KEY)) }, false); } catch { /* no storage */ }
      if (this.outbox) this.outbox.onAnswer = (answer) => this.pace(answer);
      let last = this.taskBatchMs;
      this.paceDelays = [];
      const next = () => {
        // a new interval starts at a random point of its first one: pages told to slow down at
        // the same moment would otherwise post in step (their phases spread over the old interval)
        const ms = this.taskBatchMs === last ? last : this.taskBatchMs * (0.25 + 0.75 * Math.random());
        last = this.taskBatchMs;
        this.paceDelays.push(Math.round(ms)); // the last few, for a look from the console or a test
        if (this.paceDelays.length > 50) this.paceDelays.shift();
        this.paceTimer = setTimeout(() => {
          if (this.stopped) return;
          if (this.transport === "http") this.send();
          next();
        }, ms);
      };
      next();
    } else {
      this.timers.push(setInterval(() => { if (this.transport === "http") this.send(); }, this.settings.batch_ms));
    }
  }

  /** The server's answer to a task batch: ``batch_ms``, when to post the next one, kept within the
   *  study's task_batch_ms and task_batch_max_ms (and 60 samples a batch), and remembered for this
   *  tab's next task page (``keep``). */
  pace(answer, keep = true) {
    const ms = Number(answer && answer.batch_ms);
    if (!Number.isFinite(ms) || ms <= 0) return;
    const s = this.settings;
    const base = s.task_batch_ms || s.batch_ms;
    const most = Math.min(s.task_batch_max_ms || base, Math.floor(60000 / s.fps));
    this.taskBatchMs = Math.max(base, Math.min(most, ms));
    if (keep) {
      try { sessionStorage.setItem(PACE_KEY, String(this.taskBatchMs)); } catch { /* storage refused: not kept */ }
    }
  }

  /** Another window of the participant records from now on (webcam.js startTaskGaze): take no
   *  more pictures, let go of the camera at once, send what was captured (the socket's frames until
   *  stored, the outbox; at most ~6 s), then stop. */
  async handOver() {
    this.handedOver = true;
    this.paused = true;
    for (const track of this.stream.getTracks()) track.stop();
    await Promise.race([this.flush(), new Promise((r) => setTimeout(r, 6000))]).catch(() => {});
    this.stop();
  }

  stop() {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    clearTimeout(this.dueTimer);
    clearTimeout(this.paceTimer);
    clearTimeout(this.reconnectTimer); // no socket may open after the camera stopped
    this.stopped = true;
    if (this.socket) this.socket.close();
    for (const track of this.stream.getTracks()) track.stop();
  }

  // ------------------------------------------------------------------ WebSocket

  /** Open the socket; authenticate with the token (first message, never in the URL). */
  connect() {
    const url = new URL(this.wsUrl, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this.socketLost(null);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.socket = ws;
    let ready = false;
    const giveUp = setTimeout(() => { if (!ready) ws.close(); }, 3000);
    ws.onopen = () => ws.send(JSON.stringify({ token: this.token }));
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (!ready) {
        clearTimeout(giveUp);
        if (msg.reconnect) { // the server is busy (too many sockets wait for their token) or restarting:
          // try again after retry_after_ms (it closes this socket); after three tries, HTTP batches
          this.reconnectAfterMs = msg.retry_after_ms || 0;
          this.transport = "reconnecting";
          return;
        }
        if (!msg.ok) {
          ws.close();
          // the participant is gone (withdrawn, deleted: api.UNKNOWN_PARTICIPANT); another refusal (a
          // token message that came too late to a busy server) leaves the pictures to HTTP batches
          if (msg.status === 401 && msg.error === "unknown participant") { this.refused(msg); return; }
          console.warn("gazepref: frames socket refused", msg.error);
          this.useHttp();
          return;
        }
        ready = true;
        this.transport = "ws";
        this.unanswered = 0; // (the reconnect count is reset by the first frame answered, not here)
        // frames not yet stored first (the server answers those it has as duplicates), then the waiting ones
        const again = [...this.unstored.values()];
        const waiting = this.pending.splice(0);
        for (const f of again) this.sendFrame(f);
        for (const f of waiting) this.sendFrame(f);
        return;
      }
      this.answer(msg);
    };
    ws.onclose = () => { clearTimeout(giveUp); if (this.socket === ws) this.socketLost(ready); };
  }

  /** The socket closed: reconnect (three tries), else go on with HTTP batches. */
  socketLost(wasReady) {
    this.socket = null;
    if (this.stopped || this.transport === "http") return;
    if (wasReady || this.transport === "reconnecting") {
      if (this.retries < 3) {
        this.transport = "reconnecting";
        this.retries += 1;
        const delay = Math.max(500 * 2 ** this.retries, this.reconnectAfterMs || 0);
        this.reconnectAfterMs = 0;
        this.reconnectTimer = setTimeout(() => { if (!this.stopped) this.connect(); }, delay);
        return;
      }
    }
    this.useHttp();
  }

  /** From now on HTTP batches; frames the socket did not confirm as stored go with them. */
  useHttp() {
    this.transport = "http";
    const unstored = [...this.unstored.values()].map((f) => ({ t: f.t, blob: f.blob }));
    this.unstored.clear();
    this.pending = unstored.concat(this.pending).sort((a, b) => a.t - b.t);
  }

  /** Send one frame on the socket (in capture order: the server takes a task frame whose seq is
   *  not above the last it stored for a duplicate). */
  sendFrame(frame) {
    if (frame.seq === undefined) {
      if (this.phase === "task") {
        frame.seq = this.seq++;
        localStorage.setItem(this.seqKey, String(this.seq));
      } else {
        this.frameNo = (this.frameNo || 0) + 1;
        frame.seq = this.frameNo;
      }
    }
    const meta = { phase: this.phase, seq: frame.seq, t: frame.t };
    if (this.phase === "task") {
      Object.assign(meta, this.taskMeta());
      this.unstored.set(frame.seq, frame);
    }
    const head = new TextEncoder().encode(JSON.stringify(meta));
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, head.length);
    const ws = this.socket;
    const bytes = new Blob([len, head, frame.blob]).arrayBuffer();
    this.sending = (this.sending || Promise.resolve()).then(async () => {
      const data = await bytes;
      if (ws.readyState !== WebSocket.OPEN) return; // kept in unstored: sent again after a reconnect
      this.unanswered += 1;
      ws.send(data);
    });
  }

  /** What every task batch and frame says besides its seq and times: the task, the page's clock
   *  origin and the calibration the pictures are taken under (left out when the page has none). */
  taskMeta() {
    const meta = { task: this.task, origin: performance.timeOrigin };
    if (this.calibration !== null && this.calibration !== undefined) meta.calibration = this.calibration;
    // the click and caret rows this page has made for the gaze correction (telemetry.js): the
    // server looks for stored clicks only while it has read fewer of this page's
    const recorder = window.gazepref && window.gazepref.recorder;
    if (recorder && Number.isInteger(recorder.calibrationSamples)) meta.clicks = recorder.calibrationSamples;
    return meta;
  }

  answer(msg) {
    if (msg.reconnect) { // the server is restarting: reconnect after it said, keep what is unstored
      this.retries = 0;
      this.reconnectAfterMs = msg.retry_after_ms || 0;
      return;
    }
    if (msg.stored !== undefined) {
      for (const seq of [...this.unstored.keys()]) if (seq <= msg.stored) this.unstored.delete(seq);
      return;
    }
    this.unanswered = Math.max(0, this.unanswered - 1);
    if (msg.status === 401) { this.refused(msg); return; } // the participant is gone: no more pictures
    if (!msg.error) this.retries = 0; // the socket works: a later loss may reconnect again
    if (msg.error || msg.duplicate) { // not stored (an error) or stored before (a resend)
      if (msg.error) console.warn("gazepref: frame rejected", msg.status, msg.error);
      if (this.phase === "task") this.unstored.delete(msg.seq);
      return;
    }
    this.sent += 1;
    this.noteUsable(msg.usable);
    if (msg.face) {
      this.lastFace = msg.face;
      this.lastAnswer = performance.now();
      this.onStatus(msg.face, msg);
    }
  }

  /** Browser mode: the landmark sample of the current picture (the picture stays here). */
  async grabSample() {
    this.grabbing = true;
    try {
      const t = performance.now();
      const thread = this.mesh.thread;
      this.ctx.drawImage(this.video, 0, 0, this.canvas.width, this.canvas.height);
      const sample = await this.mesh.sample(this.canvas, this.ctx, this.settings.landmarks, this.settings.patch_size);
      const took = performance.now() - t;
      if (this.mesh.thread === thread) { // (not the picture a stopped worker handed over: a model load)
        this.meshMs.push(took);
        if (thread === "main") this.nextGrabAt = performance.now() + meshPauseMs(took); // (task pages)
        if (this.meshMs.length > 100) this.meshMs.shift();
      }
      if (!this.firstMeshAt) this.firstMeshAt = performance.now(); // (the model's warm-up is over)
      this.samples += 1;
      const frame = { t: Math.round(t * 100) / 100, sample: { t: Math.round(t * 100) / 100, ...sample } };
      this.remember(frame);
      if (this.paused) return;
      this.pending.push(frame);
      if (this.phase === "task") { // the face status is known here: no answer to wait for
        this.lastAnswer = performance.now();
        // a picture without a face: a dark one (covered lens, dark room) is said apart, as the
        // set-up's indicator does (the server's TOO_DARK: grey level below settings.too_dark)
        const dark = sample.n === 0 && Number.isFinite(sample.b) && sample.b < this.settings.too_dark;
        this.onStatus({ found: sample.n > 0, code: sample.n > 0 ? "found" : dark ? "dark" : "no-face" }, {});
      }
    } finally {
      this.grabbing = false;
      // the next picture when it is due (1 / fps after this one began), not at the interval's
      // next tick: with the mesh in its worker a picture done just after a tick waited for the
      // next one (at 70 ms a picture and 15 asked, 8.5 pictures/s were taken of the 14 it could
      // measure). Not on the main thread: the tick missed meanwhile comes at once by itself, and
      // a timer set at once after each slow picture left no turn for a click (a test's click on a
      // calibration dot waited 90 s)
      if (!this.stopped && this.mesh && this.mesh.thread === "worker") {
        clearTimeout(this.dueTimer);
        this.dueTimer = setTimeout(() => this.grab(), Math.max(0, this.lastGrabAt + this.frameMs - performance.now()));
      }
    }
  }

  /** The median time (ms) the face mesh took a picture here, over the last ``n`` (all: null
   *  before the first): how slow this computer is for it now (the calibration's waits stretch with
   *  the recent ones: another program starting slows a computer within seconds). */
  meshMedianMs(n = 100) {
    const s = this.meshMs.slice(-n).sort((a, b) => a - b);
    return s.length ? s[s.length >> 1] : null;
  }

  /** Calibration: the pictures taken so far, sent and answered now, within ``maxMs``: no new
   *  picture is taken meanwhile (on a slow computer each would hold the main thread, and the
   *  answers' handling with it); the picture in the face mesh finishes, the waiting samples or
   *  frames are sent, and the requests in flight (and, over a socket, the frames sent) are
   *  answered. At a dot's deadline a slow computer's last pictures are still on their way. */
  async settle(maxMs) {
    const until = performance.now() + maxMs;
    const tick = () => new Promise((r) => setTimeout(r, 20));
    this.holding = true;
    try {
      while (this.grabbing && performance.now() < until) await tick();
      if (this.transport === "http") this.send();
      const left = Math.max(0, until - performance.now());
      await Promise.race([Promise.all([...this.inflight]), new Promise((r) => setTimeout(r, left))]);
      while (this.unanswered > 0 && performance.now() < until) await tick();
    } finally {
      this.holding = false;
    }
  }

  /** The page's own cost so far: {ms_per_frame (median), fps, frames, backend}. */
  cost() {
    const since = this.startedAt ? (performance.now() - this.startedAt) / 1000 : NaN;
    return { ms_per_frame: this.meshMedianMs(), fps: this.samples / since, frames: this.samples,
             backend: this.mesh ? this.mesh.backend : null, load_ms: this.mesh ? this.mesh.loadMs : null,
             thread: this.mesh ? this.mesh.thread : null };
  }

  /** The camera stopped (not by the page): no more pictures; say so once. The one place that
   *  decides it: the tracks' "ended" or the stream's "inactive" event, else checkCamera. */
  cameraLost() {
    if (this.cameraStopped || this.stopped || this.handedOver) return;
    this.cameraStopped = true;
    this.onCameraStop();
  }

  /** The camera's state, on its tracks' events and once a second (for browsers, and stops, that
   *  fire none): every video track ended, it stopped (cameraLost); else a change of muted (no
   *  pictures for now, see cameraMuted) goes to onCameraMute, once each way. */
  checkCamera() {
    if (this.cameraStopped || this.stopped || this.handedOver) return;
    const tracks = this.stream.getVideoTracks();
    if (tracks.length && tracks.every((t) => t.readyState === "ended")) { this.cameraLost(); return; }
    const muted = this.cameraMuted;
    if (muted === this.cameraPaused) return;
    this.cameraPaused = muted;
    this.onCameraMute(muted);
  }

  /** The camera is there but sends no pictures for now (muted: covered by a privacy shutter,
   *  held by another program, the system paused it); it may come back, unlike cameraStopped. */
  get cameraMuted() {
    const tracks = this.stream.getVideoTracks();
    return tracks.length > 0 && tracks.every((t) => t.muted);
  }

  /** The canvas keeps the camera picture's shape: ``settings.width`` wide and as high as the
   *  picture's aspect ratio makes it (a 16:9 camera: 320 x 180). Drawn into a fixed 4:3 canvas, a
   *  camera that delivers 16:9 (browsers that do not crop to the size asked, e.g. Firefox) was
   *  squashed sideways by a quarter, which distorts every landmark-based measure (head pose,
   *  iris offsets, eye patches). Both modes send the picture's own size (samples' w, h; the JPEG). */
  fitCanvas() {
    const vw = this.video.videoWidth, vh = this.video.videoHeight;
    if (!vw || !vh) return;
    const w = this.settings.width, h = Math.max(16, Math.round(w * vh / vw));
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
  }

  grab() {
    // a muted camera's video shows its last picture (or black): nothing of the participant to send
    if (this.stopped || this.cameraStopped || this.cameraPaused || this.handedOver || this.video.readyState < 2 || this.grabbing) return;
    // a page out of sight (another tab or program in front, a second tab of the task): the
    // participant looks elsewhere; a task page's words under the gaze would be made up, and a
    // calibration dot would take pictures of eyes that do not look at it
    if (document.visibilityState === "hidden") return;
    // a task page keeps a main-thread face mesh to at most half of the main thread on a slow
    // computer (0.4 s or more a picture): back to back they left typing and clicks waiting
    if (this.browser && this.phase === "task" && performance.now() < this.nextGrabAt) return;
    if (this.holding) return; // settle(): the answers of the pictures taken first
    // not yet due (the interval's tick and the one set when the last picture was done both come;
    // a timer may fire up to a few ms before its time as performance.now() reads it)
    if (this.browser && performance.now() < this.lastGrabAt + this.frameMs - 4) return;
    this.fitCanvas();
    if (this.browser) {
      this.lastGrabAt = performance.now();
      this.grabSample().catch((e) => { // (the next picture is tried as usual)
        if (!this.meshErrors++) console.warn("gazepref: the face mesh failed on a picture:", e && e.message);
      });
      return;
    }
    const t = performance.now();
    this.ctx.drawImage(this.video, 0, 0, this.canvas.width, this.canvas.height);
    this.grabbing = true;
    this.canvas.toBlob((blob) => {
      this.grabbing = false;
      if (!blob) return;
      const frame = { t: Math.round(t * 100) / 100, blob };
      this.remember(frame);
      if (this.paused) return;
      if (this.transport === "ws" && this.socket && this.socket.readyState === WebSocket.OPEN) this.sendFrame(frame);
      else this.pending.push(frame);
    }, "image/jpeg", 0.8);
  }

  /** Keeps ``frame`` among the recent ones, for a calibration dot's :meth:`framesBetween`, and
   *  forgets those older than :func:`recentKeepMs` (and whether they were usable); task pages
   *  have no dots and keep none. */
  remember(frame) {
    if (this.phase === "task") return;
    this.recent.push(frame);
    const keepMs = recentKeepMs(this.settings);
    while (this.recent.length && this.recent[0].t < frame.t - keepMs) this.usable.delete(this.recent.shift().t);
  }

  /** Frames taken in [from, to] on the telemetry clock (kept :func:`recentKeepMs`). */
  framesBetween(from, to) {
    return this.recent.filter((f) => f.t >= from && f.t <= to);
  }

  /** Set-up answers: the times of the frames (of a batch or one WebSocket frame) the server found usable. */
  noteUsable(usable) {
    if (Array.isArray(usable)) for (const t of usable) this.usable.add(t);
  }

  /** Of ``frames``, how many the server found usable so far. */
  usableCount(frames) {
    return frames.filter((f) => this.usable.has(f.t)).length;
  }

  send() {
    if (!this.pending.length) return Promise.resolve();
    if (this.browser) return this.sendSamples();
    const frames = this.pending.splice(0, 30);
    const meta = { phase: this.phase, t: frames.map((f) => f.t) };
    if (this.phase === "task") {
      Object.assign(meta, this.taskMeta(), { seq: this.seq++ });
      localStorage.setItem(this.seqKey, String(this.seq));
    }
    const p = this.post(meta, frames).finally(() => this.inflight.delete(p));
    this.inflight.add(p);
    return p;
  }

  /** Browser mode: the waiting samples; task samples through the outbox (kept until stored),
   *  set-up samples posted and answered with the face status and the usable times. */
  sendSamples() {
    const frames = this.pending.splice(0, 60);
    const batch = { phase: this.phase, samples: frames.map((f) => f.sample) };
    if (this.phase === "task") {
      Object.assign(batch, this.taskMeta(), { seq: this.seq++ });
      localStorage.setItem(this.seqKey, String(this.seq));
      this.outbox.push(batch);
      return Promise.resolve();
    }
    const p = (async () => {
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          const resp = await fetch(this.url, { method: "POST", headers: { "Content-Type": "application/json", "X-Participant-Token": this.token }, body: JSON.stringify(batch) });
          const payload = await resp.json().catch(() => ({}));
          if (resp.ok) return this.answered(payload, frames.length);
          if (resp.status === 401) return this.refused(payload);
          if (resp.status !== 429 && resp.status < 500) { console.warn("gazepref: samples rejected", resp.status, payload.error); return payload; }
          this.lastSendFailure = performance.now(); // (the server busy or restarting)
        } catch (e) { this.lastSendFailure = performance.now(); /* network: retry */ }
        await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      }
      return null;
    })().finally(() => this.inflight.delete(p));
    this.inflight.add(p);
    return p;
  }

  /** A batch of ``n`` pictures or samples the server answered: counts, the usable times for the
   *  calibration dots, the face status. */
  answered(payload, n) {
    this.sent += n;
    this.noteUsable(payload.usable);
    this.lastFace = payload.face;
    this.lastAnswer = performance.now();
    this.onStatus(payload.face, payload);
    return payload;
  }

  /** The server refused the participant's token (401: they withdrew elsewhere, their data was
   *  deleted): no more pictures, the camera let go at once, and ``onRefused`` (the page: loaded
   *  again, :func:`leaveRefused`), once. Returns ``payload``. */
  refused(payload = {}) {
    if (this.refusedAt === undefined && !this.stopped) {
      this.refusedAt = performance.now();
      console.warn("gazepref: the server no longer knows this participant; the camera is off", payload.error || "");
      this.stop();
      this.onRefused();
    }
    return payload;
  }

  /** POST one batch; on a network error, 429 or 5xx try again with back-off: task frames (data)
   *  for as long as the page is open (the server's (task, page load, seq) key makes a repeat harmless), set-up
   *  frames (only the face status) three times. */
  async post(meta, frames, tries = meta.phase === "task" ? Infinity : 3) {
    const body = new FormData();
    body.append("meta", JSON.stringify(meta));
    frames.forEach((f, i) => body.append("frame", f.blob, `f${i}.jpg`));
    let wait = 0;
    for (let attempt = 0; attempt < tries; attempt++) {
      try {
        const resp = await fetch(this.url, { method: "POST", headers: { "X-Participant-Token": this.token }, body });
        const payload = await resp.json().catch(() => ({}));
        if (resp.ok) return this.answered(payload, frames.length);
        if (resp.status === 401) return this.refused(payload);
        if (resp.status !== 429 && resp.status < 500) {
          console.warn("gazepref: frames rejected", resp.status, payload.error);
          return payload;
        }
        wait = retryAfterMs(resp); // the server restarting (503) or busy (429) says how long
        this.lastSendFailure = performance.now();
      } catch (e) { this.lastSendFailure = performance.now(); /* network: retry */ }
      await new Promise((r) => setTimeout(r, Math.max(wait, Math.min(10000, 500 * (attempt + 1)))));
      wait = 0;
    }
    return null;
  }

  /** On pagehide: the buffered frames by sendBeacon (token in the query: no headers). */
  beacon() {
    if (this.browser) {
      if (this.phase === "task" && this.outbox) { if (this.pending.length) this.sendSamples(); this.outbox.beacon(); }
      return;
    }
    if (!this.pending.length || !navigator.sendBeacon) return;
    const frames = this.pending.splice(0, 30);
    const meta = { phase: this.phase, t: frames.map((f) => f.t) };
    if (this.phase === "task") {
      Object.assign(meta, this.taskMeta(), { seq: this.seq++ });
      localStorage.setItem(this.seqKey, String(this.seq));
    }
    const body = new FormData();
    body.append("meta", JSON.stringify(meta));
    frames.forEach((f, i) => body.append("frame", f.blob, `f${i}.jpg`));
    navigator.sendBeacon(`${this.url}?token=${encodeURIComponent(this.token)}`, body);
  }

  /** Send what is buffered and wait for every request in flight (socket: until the frames
   *  sent are answered and stored, at most ~5 s). */
  async flush() {
    if (this.transport === "http") this.send();
    await Promise.all([...this.inflight]);
    for (let i = 0; i < 100 && this.outbox && this.outbox.pending > 0; i++) await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 50 && this.transport !== "http" && (this.unanswered > 0 || this.unstored.size > 0); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Show a face status object in an element (green when the face is well placed); ``face.code``
 *  goes to data-code (what tests and styles read). Returns whether the text changed (only then
 *  can the element's size change). */
export function showFace(el, face) {
  if (!el || !face) return false;
  const text = face.message || (face.ok ? "Face well placed." : "No face found.");
  // a live region (role=status): set only on a change, else a screen reader repeats it with every frame
  const changed = el.textContent !== text;
  if (changed) el.textContent = text;
  el.dataset.code = face.code || (face.ok ? "ok" : "no-face");
  el.classList.toggle("ok", !!face.ok);
  el.classList.toggle("bad", !face.ok);
  el.classList.remove("idle");
  return changed;
}

/** How long a window behind the "another window" notice, used again, waits for a lock that is
 *  being let go (startTaskGaze). */
const CLAIM_WAIT_MS = 3000;

/** One window records: the name of the Web Lock (per participant) that the task page recording
 *  gaze holds (navigator.locks: every page of the site in this browser sees it). */
export function recorderLockName(token) {
  return `gazepref:gaze-recorder:${token}`;
}

/** Task pages: record gaze in one window of the participant at a time (a Web Lock per participant,
 *  :func:`recorderLockName`). The page that holds the lock records (:func:`recordTaskGaze`); a page
 *  that finds it held (the study open in another window or tab, both visible side by side) opens
 *  no camera and shows a notice over the page: continue in the other window, or "Use this window",
 *  which takes the lock over (steal): the other window then stops recording, sends what it has,
 *  lets go of the camera and shows the notice itself. A page behind the notice takes the lock when
 *  it is used again (focused, its tab shown) and no window holds it (the other window closed or
 *  left the task), and records from then on; it does not queue for the lock (the window in use
 *  lets go of it for a moment at each page it loads). Without Web Locks (browsers
 *  before 2022), or where they refuse (SecurityError), every page records, as before.
 *
 *  ``onCapture(capture)`` is called with the recording GazeCapture (null when it stops here);
 *  ``onActive(active)`` with whether this window is the one recording (the notice hidden). Returns
 *  the first capture (null: not recording here, yet). ``record()`` opens the camera and starts the
 *  capture (default: :func:`recordTaskGaze`); the calibration page passes its own (calibration.js:
 *  it takes the same lock, so a window calibrating and a stale task window never both record). */
export async function startTaskGaze(gaze, { onCapture = () => {}, onActive = () => {}, record = () => recordTaskGaze(gaze) } = {}) {
  if (!navigator.locks) {
    const capture = await record();
    onCapture(capture);
    return capture;
  }
  const name = recorderLockName(gaze.token);
  const notice = otherWindowNotice();
  let capture = null;
  let first = null;
  const firstDone = new Promise((r) => { first = r; });

  const show = (other) => {
    notice.hidden = !other;
    const main = document.querySelector("main");
    if (main) main.inert = other;
    if (other) notice.querySelector("button").focus({ preventScroll: true });
    onActive(!other);
  };
  let held = 0; // counts the times this window got and lost the lock: which holding is current
  // holds the lock from the callback's start until the page goes or the lock is taken over
  const holding = async (lock) => {
    if (!lock) return "taken"; // (ifAvailable: another window holds it)
    const mine = ++held;
    show(false);
    const started = await record();
    if (mine !== held) { // taken over while the camera opened (a prompt, the face mesh loading)
      if (started) await started.handOver(); // its camera is let go at once, nothing recorded
      return "taken";
    }
    capture = started;
    onCapture(capture);
    first(capture);
    return new Promise(() => {}); // held while this page is open (released when it goes)
  };
  let unlocked = false; // recording without the lock (Web Locks refused)
  const lost = async (e) => {
    if (e && e.name !== "AbortError") { // not taken over: Web Locks refuse here (a SecurityError where
      // the browser keeps no storage for the site): record as a browser without them does, rather
      // than keep the task behind the notice for good
      if (unlocked || capture) return;
      unlocked = true;
      console.warn("gazepref: Web Locks refused, recording without them", e);
      show(false);
      capture = await record();
      onCapture(capture);
      first(capture);
      return;
    }
    held += 1; // (a capture still starting in holding is handed over when it comes)
    // taken over by another window: stop here first (no picture is taken from now on), then send
    // what was captured and let go of the camera
    const stopping = capture;
    capture = null;
    onCapture(null);
    show(true);
    const warning = document.getElementById("gaze-warning");
    if (warning) warning.hidden = true; // (this window's camera warnings no longer apply)
    if (stopping) await stopping.handOver();
  };
  // A window behind the notice does not wait in the lock's queue: the window in use releases the
  // lock for a moment each time it loads its next page (or reloads), and a queued window would
  // take the recording then, the page in use coming back behind the notice. It takes a free lock
  // when it is used again (focused, or its tab shown): the recording window was closed or left
  // the study; else its notice stays.
  // (The wait, briefly: closing the recording window puts this one in front before the closed
  // page has let go of its lock.)
  let claiming = false;
  const claim = () => {
    if (notice.hidden || document.visibilityState !== "visible" || claiming || unlocked) return;
    claiming = true;
    let granted = false;
    const giveUp = new AbortController();
    const timer = setTimeout(() => giveUp.abort(), CLAIM_WAIT_MS);
    navigator.locks.request(name, { signal: giveUp.signal }, (lock) => {
      granted = true;
      clearTimeout(timer);
      return holding(lock);
    }).catch((e) => { if (granted) return lost(e); }).finally(() => { claiming = false; });
  };
  addEventListener("focus", claim);
  document.addEventListener("visibilitychange", claim);
  notice.querySelector("button").addEventListener("click", () => {
    navigator.locks.request(name, { steal: true }, holding).catch(lost);
  });
  navigator.locks.request(name, { ifAvailable: true }, holding).then((outcome) => {
    if (outcome === "taken") { show(true); first(null); }
  }, lost);
  return firstDone;
}

/** The notice a window shows while another window of the participant records (hidden until then). */
function otherWindowNotice() {
  const box = document.createElement("div");
  box.className = "other-window";
  box.id = "other-window";
  box.hidden = true;
  box.setAttribute("role", "alertdialog");
  box.setAttribute("aria-modal", "true");
  box.setAttribute("aria-labelledby", "other-window-text");
  const text = document.createElement("p");
  text.id = "other-window-text";
  text.textContent = "This study is open in another window. Please continue there, or use this window "
    + "instead (the other window then stops).";
  const button = document.createElement("button");
  button.type = "button";
  button.id = "use-this-window";
  button.textContent = "Use this window";
  box.append(text, button);
  // the page under the notice is inert, its "Withdraw from the study" too: the notice offers it
  // (withdrawing needs no camera, nor this window to take the recording over)
  const withdraw = document.getElementById("withdraw-link");
  if (withdraw) {
    const line = document.createElement("p");
    const link = document.createElement("a");
    link.id = "other-window-withdraw";
    link.href = withdraw.href;
    link.textContent = withdraw.textContent;
    line.append(link);
    box.append(line);
  }
  document.body.appendChild(box);
  return box;
}

/** Record the task's gaze in this page: open the camera and stream frames for the task; warn while
 *  the face is lost, while the camera sends no pictures (muted: it comes back by itself) and (for
 *  good) when the camera itself stopped: that needs a reload, not facing the camera. */
/** Tell the task page's telemetry that the camera stopped, paused (muted) or came back: an
 *  ``events`` row of that type, so a gap in the gaze reads as what it was (chat.js listens). */
function cameraEvent(type) {
  dispatchEvent(new CustomEvent("gazepref:camera", { detail: type }));
}

export async function recordTaskGaze(gaze) {
  let warning = document.getElementById("gaze-warning");
  if (!warning) {
    warning = document.createElement("p");
    warning.className = "face-status bad gaze-warning";
    warning.id = "gaze-warning";
    warning.setAttribute("role", "status");
    document.body.appendChild(warning);
  }
  warning.hidden = true;
  let stream;
  try {
    stream = await openCamera(gaze.settings.width, gaze.settings.height);
  } catch (e) {
    warning.textContent = `${e.message} Gaze is not recorded; please go on.`;
    warning.hidden = false;
    return null;
  }
  let seen = performance.now();
  let misses = 0; // pictures without a face in a row
  const capture = new GazeCapture({
    stream, token: gaze.token, url: gaze.urls.frames, wsUrl: gaze.urls.ws, settings: gaze.settings, phase: "task", urls: gaze.urls,
    task: gaze.task, nextSeq: gaze.next_seq, calibration: gaze.calibration,
    onStatus: (face) => {
      if (capture.cameraStopped || capture.cameraPaused || capture.handedOver) return; // its warning stays
      const now = performance.now();
      misses = face && face.found ? 0 : misses + 1;
      if (face && face.found) seen = now;
      // lost for about a second (answers come per frame or batch) and in two pictures or more: on
      // a slow computer one picture without a face (pictures paused, TASK_MESH_SHARE) spans a second
      warning.hidden = now - seen < 1000 || misses < 2;
      if (!warning.hidden) {
        const dark = face && face.code === "dark"; // the picture is (nearly) black: no face to find
        const text = dark ? "Eye tracking lost: the camera picture is dark. Is the camera covered, or the room dark? "
          + "Uncover it and turn on a light in front of you." : "Eye tracking lost: please face the camera.";
        if (warning.textContent !== text) warning.textContent = text; // a live region: set once, not per frame
        warning.dataset.code = dark ? "dark" : "face-lost";
      }
    },
    onCameraStop: () => {
      cameraEvent("camera-stopped");
      warning.textContent = "The camera stopped (unplugged, covered, or taken by another program?), so eye tracking "
        + "is off. Please reload the page to turn the camera back on: what you typed or chose is kept.";
      warning.dataset.code = "camera-stopped";
      warning.hidden = false;
    },
    onCameraMute: (muted) => {
      cameraEvent(muted ? "camera-muted" : "camera-back");
      if (!muted) { // the picture is back: so is eye tracking (the face-lost warning starts afresh)
        seen = performance.now();
        warning.hidden = true;
        return;
      }
      warning.textContent = "The camera is sending no picture right now, so eye tracking is paused. Another program "
        + "(a video call?) may be using it, or its privacy switch or cover is closed: please close other programs that "
        + "use the camera and check the camera's switch. Eye tracking goes on by itself when the picture comes back.";
      warning.dataset.code = "camera-muted";
      warning.hidden = false;
    },
  });
  try {
    await capture.start();
  } catch (e) { // browser mode: the face mesh could not be loaded
    warning.textContent = "Eye tracking could not start in this browser. Gaze is not recorded; please go on.";
    warning.hidden = false;
    console.warn("gazepref: face mesh", e);
    return null;
  }
  addEventListener("pagehide", () => capture.beacon());
  return capture;
}
