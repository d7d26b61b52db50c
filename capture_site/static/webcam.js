// Webcam capture for server-side gaze estimation.
//
// getUserMedia -> a hidden canvas downscaled to settings.width x settings.height -> JPEG blobs
// at settings.fps, each stamped with performance.now() (the telemetry clock: mouse samples use
// the same clock and performance.timeOrigin). Frames are posted in batches (multipart: a JSON
// "meta" part and one "frame" part per image) every settings.batch_ms; the answer carries the
// face status shown to the participant. The last few seconds of frames stay in memory so the
// calibration page can send the frames taken just before each click.

export class CameraError extends Error {}

/** Open the camera; throws CameraError with a message for the participant. */
export async function openCamera(width, height) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new CameraError("This browser cannot use a webcam here (a secure https page is needed).");
  }
  try {
    return await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: width * 2 }, height: { ideal: height * 2 } }, audio: false });
  } catch (e) {
    if (e && (e.name === "NotAllowedError" || e.name === "SecurityError")) {
      throw new CameraError("Camera access was denied.");
    }
    if (e && (e.name === "NotFoundError" || e.name === "OverconstrainedError")) {
      throw new CameraError("No camera was found.");
    }
    throw new CameraError(`The camera could not be started (${e && e.name ? e.name : e}).`);
  }
}

export class GazeCapture {
  /**
   * @param {object} opts stream (MediaStream), token, url (frames endpoint), settings
   *   ({fps, width, height, batch_ms}), phase ("setup" | "task"), task, nextSeq,
   *   onStatus(face, response) called after each answered batch, video (optional element).
   */
  constructor({ stream, token, url, settings, phase = "setup", task = null, nextSeq = 0, onStatus = () => {}, video = null }) {
    this.stream = stream;
    this.token = token;
    this.url = url;
    this.settings = settings;
    this.phase = phase;
    this.task = task;
    this.seqKey = task === null ? null : `gazepref:gazeseq:${task}`;
    this.seq = Math.max(nextSeq || 0, this.seqKey ? +(localStorage.getItem(this.seqKey) || 0) : 0);
    this.onStatus = onStatus;
    this.video = video || document.createElement("video");
    this.video.muted = true;
    this.video.playsInline = true;
    this.video.srcObject = stream;
    this.canvas = document.createElement("canvas");
    this.canvas.width = settings.width;
    this.canvas.height = settings.height;
    this.ctx = this.canvas.getContext("2d");
    this.pending = []; // frames not yet sent: {t, blob}
    this.recent = []; // frames of the last few seconds (calibration)
    this.inflight = new Set();
    this.sent = 0;
    this.lastFace = null;
    this.timers = [];
    this.paused = false;
  }

  async start() {
    await this.video.play().catch(() => {});
    const frameMs = 1000 / this.settings.fps;
    this.timers.push(setInterval(() => this.grab(), frameMs));
    this.timers.push(setInterval(() => this.send(), this.settings.batch_ms));
  }

  stop() {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const track of this.stream.getTracks()) track.stop();
  }

  grab() {
    if (this.video.readyState < 2 || this.grabbing) return;
    const t = performance.now();
    this.ctx.drawImage(this.video, 0, 0, this.canvas.width, this.canvas.height);
    this.grabbing = true;
    this.canvas.toBlob((blob) => {
      this.grabbing = false;
      if (!blob) return;
      const frame = { t: Math.round(t * 100) / 100, blob };
      this.recent.push(frame);
      while (this.recent.length && this.recent[0].t < t - 5000) this.recent.shift();
      if (!this.paused) this.pending.push(frame);
    }, "image/jpeg", 0.8);
  }

  /** Frames taken in [from, to] on the telemetry clock (kept for ~5 s). */
  framesBetween(from, to) {
    return this.recent.filter((f) => f.t >= from && f.t <= to);
  }

  send() {
    if (!this.pending.length) return Promise.resolve();
    const frames = this.pending.splice(0, 30);
    const meta = { phase: this.phase, t: frames.map((f) => f.t) };
    if (this.phase === "task") {
      Object.assign(meta, { task: this.task, seq: this.seq++, origin: performance.timeOrigin });
      localStorage.setItem(this.seqKey, String(this.seq));
    }
    const p = this.post(meta, frames).finally(() => this.inflight.delete(p));
    this.inflight.add(p);
    return p;
  }

  async post(meta, frames, tries = 3) {
    const body = new FormData();
    body.append("meta", JSON.stringify(meta));
    frames.forEach((f, i) => body.append("frame", f.blob, `f${i}.jpg`));
    for (let attempt = 0; attempt < tries; attempt++) {
      try {
        const resp = await fetch(this.url, { method: "POST", headers: { "X-Participant-Token": this.token }, body });
        const payload = await resp.json().catch(() => ({}));
        if (resp.ok) {
          this.sent += frames.length;
          this.lastFace = payload.face;
          this.onStatus(payload.face, payload);
          return payload;
        }
        if (resp.status !== 429 && resp.status < 500) {
          console.warn("gazepref: frames rejected", resp.status, payload.error);
          return payload;
        }
      } catch (e) { /* network: retry */ }
      await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
    }
    return null;
  }

  /** On pagehide: the buffered frames by sendBeacon (token in the query: no headers). */
  beacon() {
    if (!this.pending.length || !navigator.sendBeacon) return;
    const frames = this.pending.splice(0, 30);
    const meta = { phase: this.phase, t: frames.map((f) => f.t) };
    if (this.phase === "task") {
      Object.assign(meta, { task: this.task, seq: this.seq++, origin: performance.timeOrigin });
      localStorage.setItem(this.seqKey, String(this.seq));
    }
    const body = new FormData();
    body.append("meta", JSON.stringify(meta));
    frames.forEach((f, i) => body.append("frame", f.blob, `f${i}.jpg`));
    navigator.sendBeacon(`${this.url}?token=${encodeURIComponent(this.token)}`, body);
  }

  /** Send what is buffered and wait for every request in flight. */
  async flush() {
    this.send();
    await Promise.all([...this.inflight]);
  }
}

/** Show a face status object in an element (green when the face is well placed). */
export function showFace(el, face) {
  if (!el || !face) return;
  el.textContent = face.message || (face.ok ? "Face well placed." : "No face found.");
  el.classList.toggle("ok", !!face.ok);
  el.classList.toggle("bad", !face.ok);
}

/** Task pages: stream frames for the task; warn while tracking is lost. */
export async function startTaskGaze(gaze) {
  const warning = document.createElement("p");
  warning.className = "face-status bad gaze-warning";
  warning.id = "gaze-warning";
  warning.hidden = true;
  warning.setAttribute("role", "status");
  document.body.appendChild(warning);
  let stream;
  try {
    stream = await openCamera(gaze.settings.width, gaze.settings.height);
  } catch (e) {
    warning.textContent = `${e.message} Gaze is not recorded; please go on.`;
    warning.hidden = false;
    return null;
  }
  let lost = 0;
  const capture = new GazeCapture({
    stream, token: gaze.token, url: gaze.urls.frames, settings: gaze.settings, phase: "task",
    task: gaze.task, nextSeq: gaze.next_seq,
    onStatus: (face) => {
      lost = face && face.found ? 0 : lost + 1;
      warning.hidden = lost < 2; // lost for about a second
      if (!warning.hidden) warning.textContent = "Eye tracking lost: please face the camera.";
    },
  });
  await capture.start();
  addEventListener("pagehide", () => capture.beacon());
  return capture;
}
