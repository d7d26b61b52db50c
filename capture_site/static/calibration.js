// The webcam step: camera set-up (face indicator), calibration and validation rounds.
//
// Set-up: the indicator shows the server's advice on the latest frame (too far/near, off-centre,
// dark, several faces, ...) and only while answers keep coming: without a fresh answer it says
// it is waiting for the picture (it never stays green over a frozen or black preview). After
// settings.setup_timeout_s without a green indicator the page offers a way on (start anyway;
// optional studies: continue without eye tracking).
//
// Rounds: each dot appears; the participant looks at it and clicks it. The dot stays until the
// frames since the eyes settled (300 ms after it appeared; at most settle_ms before the click)
// hold settings.min_frames frames the server found usable (face found, eyes open). A dot that
// gets too few within target_timeout_ms ends the round early ("frame-starved"); the server
// refuses such a round and the attempt is repeated. The server keeps count of the attempts and
// decides the step's outcome (best attempt; or a failed calibration and the study's fallback);
// the participant sees good / fair / poor, never pixels.

import { fetchRetrying, leaveRefused } from "./outbox.js";
import { CameraError, GazeCapture, openCamera, showFace, startTaskGaze } from "./webcam.js";

const gaze = JSON.parse(document.getElementById("gaze-data").textContent);
const S = gaze.settings;
const $ = (sel) => document.querySelector(sel);
const ui = {
  status: $("#face-status"), error: $("#camera-error"), start: $("#start-calibration"),
  result: $("#calibration-result"), stage: $("#calibration-stage"), target: $("#target"),
  stageStatus: $("#stage-status"), cont: $("#continue"), outcome: $("#outcome"), setup: $("#setup"),
  progress: $("#stage-progress"), bar: $("#stage-bar"), instructions: $("#stage-instructions"),
  wayOn: $("#setup-way-on"), skip: $("#skip-camera"), retry: $("#retry-camera"), box: $("#camera-box"),
  help: $("#setup-help"), stageHelp: $("#stage-help"),
};
const SCRIPT_START = performance.now();
const state = { capture: null, attempts: 0, rounds: [], busy: false, done: false, passedSetup: false,
                started: setupStarted(), lastOk: -Infinity, lastBad: -Infinity, lastHidden: -Infinity,
                lastStopped: -Infinity, lastPaused: -Infinity, pendingCheck: null,
                firstAnswer: null, limitFrom: null, wayOnOffered: false };
// the page out of sight (another tab or program in front): the capture takes no picture meanwhile
// (GazeCapture.grab), so a dot then shown gets none of the participant looking at it; nor does the
// set-up's time limit for the way on run meanwhile (nobody could get the face well placed)
document.addEventListener("visibilitychange", () => {
  const now = performance.now();
  if (document.visibilityState === "hidden") {
    state.lastHidden = now;
  } else if (state.lastHidden > -Infinity && !state.wayOnOffered && state.limitFrom !== null) {
    const away = now - state.lastHidden;
    state.started += away;
    if (state.lastOk > -Infinity) state.lastOk += away;
  }
});
// the window changed size, or the page its zoom, while a round's dots were shown: the dots were
// placed in the window as it was (the rest of the round would be off screen or elsewhere on it,
// and a calibration maps the eyes to the page's CSS px as they were): the round ends at once,
// not sent, no attempt spent (calibrate says why)
const viewNow = () => [innerWidth, innerHeight, devicePixelRatio];
const sameView = (a, b) => a && b && a.every((v, i) => v === b[i]);
addEventListener("resize", () => {
  if (state.roundView && !sameView(state.roundView, viewNow()) && state.abortDot) state.abortDot("resized");
});
const STALE_MS = 2500; // no face status for this long: the indicator says so
// "Start calibration" follows the live indicator: it stays on through a face status that turns red
// for less than this (a turn of the head, a face a little off centre, an answer late by up to
// STALE_MS), not for a face gone, a dark picture, several faces or a stopped camera (off at once)
const OK_GRACE_MS = STALE_MS + 500;
// browser mode: how long the first face status may take once the face model is loaded (its first
// pictures compile the model's programs: seconds on a slow computer)
const FIRST_ANSWER_MS = 20000;

/** When the participant first reached this set-up (performance.now() time), kept across reloads
 *  of the tab (sessionStorage, per step), so a reload does not restart the time limit of the way on. */
function setupStarted() {
  const now = performance.now();
  const step = document.querySelector('input[name="step"]');
  // (per participant and step: another session in this tab, a pilot, starts its own)
  const key = `gazepref:setup-started:${String(gaze.token || "").slice(0, 12)}:${step ? step.value : ""}`;
  try {
    const first = Number(sessionStorage.getItem(key));
    const ago = Date.now() - first;
    if (first > 0 && ago >= 0 && ago < 3600 * 1000) return now - ago; // within the hour: the same visit
    sessionStorage.setItem(key, String(Date.now()));
  } catch (e) { /* storage off: this page load's start */ }
  return now;
}

/** Whether the calibration can start: the face was well placed a moment ago, or the way on is
 *  offered, and the camera sends pictures. */
function canStart() {
  const cap = state.capture;
  if (!cap || cap.cameraStopped || cap.cameraPaused) return false;
  // well placed a moment ago, and no dark picture, lost face or second face since
  return faceWellPlaced(okGrace(cap)) || state.wayOnOffered;
}

/** How long a well-placed face counts after its status (a slow computer's statuses come seconds apart). */
const okGrace = (cap) => Math.max(OK_GRACE_MS, staleMs(cap) + 500);

/** The face was well placed a moment ago (within ``grace`` ms), with no dark picture, lost face or
 *  second face since. */
function faceWellPlaced(grace) {
  return state.lastOk > state.lastBad && performance.now() - state.lastOk < grace;
}

const REALLOW = `<ul>
<li><b>Chrome / Edge:</b> click the camera (or lock) icon at the left of the address bar, choose
<i>Allow</i> for the camera, then press <i>Try the camera again</i>.</li>
<li><b>Firefox:</b> click the crossed-out camera icon in the address bar, remove the block
(<i>Blocked temporarily</i> / <i>Blocked</i>), then press <i>Try the camera again</i> and allow it.</li>
<li><b>Safari:</b> menu <i>Safari &gt; Settings for This Website</i> (or <i>Settings &gt; Websites &gt; Camera</i>),
set the camera to <i>Allow</i>, then press <i>Try the camera again</i>.</li>
<li>On a Mac, also check <i>System Settings &gt; Privacy &amp; Security &gt; Camera</i> for your browser.</li></ul>`;
const HINTS = {
  none: "Is a webcam connected and switched on? Laptops with a camera cover or a camera key: open or switch it on.",
  busy: "Close other programs that use the camera (video calls), then try again.",
  insecure: "Please open the study link again exactly as you were given it (it must start with https).",
};

function fail(message, html = "") {
  ui.error.textContent = message;
  if (html) ui.error.insertAdjacentHTML("beforeend", html);
  ui.error.hidden = false;
}

function noCamera(error) {
  const message = error instanceof CameraError ? error.message : String(error);
  const kind = error instanceof CameraError ? error.kind : "other";
  // kept for the researcher's dashboard (why participants stop); best effort
  if (gaze.urls.camera_error) {
    fetch(gaze.urls.camera_error, { method: "POST", headers: { "X-Participant-Token": gaze.token, "Content-Type": "application/json" },
                                    body: JSON.stringify({ reason: error instanceof CameraError ? error.reason : "failed" }) }).catch(() => {});
  }
  ui.status.hidden = true;
  ui.start.hidden = true;
  ui.help.hidden = true;
  ui.box.classList.add("off"); // no empty black preview pushing the way on (the buttons) below the fold
  const hint = kind === "denied" ? "" : ` ${HINTS[kind] || ""}`;
  const how = kind === "denied" ? REALLOW : "";
  if (kind !== "insecure") ui.retry.hidden = false;
  if (gaze.mode === "optional") {
    fail(`${message}${hint} You can also continue without eye tracking (mouse only).`, how);
    ui.outcome.value = "no-camera";
    ui.cont.hidden = false;
  } else {
    fail(`${message}${hint} This study needs a webcam; without one it cannot go on.`, how);
    ui.outcome.value = "no-camera"; // the server ends the session with the study's screen-out page
    ui.cont.textContent = "Leave the study";
    ui.cont.hidden = false;
    // leaving is final (the platform's screen-out page): asked once more, unlike Try again beside it
    if (!ui.cont.dataset.confirm) {
      ui.cont.dataset.confirm = "1";
      ui.cont.addEventListener("click", (e) => {
        if (ui.outcome.value === "no-camera" && !window.confirm(
          "Leave the study? Without a working webcam you cannot take part, and you cannot come back to it later.")) {
          e.preventDefault();
        }
      });
    }
  }
  state.noCamera = kind;
}

/** The 5/9/13-point grids of gazepref.signals.calibration.target_grid. */
export function grid(n, w, h, margin = 0.1) {
  const lo = margin, mid = 0.5, hi = 1 - margin, q1 = (lo + mid) / 2, q3 = (mid + hi) / 2;
  const g9 = [];
  for (const fy of [lo, mid, hi]) for (const fx of [lo, mid, hi]) g9.push([fx, fy]);
  const layouts = { 5: [[mid, mid], [lo, lo], [hi, lo], [lo, hi], [hi, hi]], 9: g9,
                    13: g9.concat([[q1, q1], [q3, q1], [q1, q3], [q3, q3]]) };
  return layouts[n].map(([fx, fy]) => [fx * w, fy * h]);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function showProgress(kind, i, n) {
  const what = kind === "calibration" ? "Calibration" : "Check";
  ui.progress.textContent = `${what}: dot ${i + 1} of ${n}`;
  ui.bar.style.width = `${Math.round((100 * i) / n)}%`;
  ui.instructions.textContent = kind === "calibration"
    ? "Look at the red dot and click it (or press Enter). Keep your head still and keep looking at the dot until it moves."
    : "Once more, to check the calibration: look at each dot and click it (or press Enter).";
}

const CLEAR_PX = 16; // free space kept around the dot

function near(el, dot) {
  const r = el.getBoundingClientRect();
  return r.left < dot.right + CLEAR_PX && dot.left - CLEAR_PX < r.right
    && r.top < dot.bottom + CLEAR_PX && dot.top - CLEAR_PX < r.bottom;
}

/** Keep the instructions with the progress bar, and the face status, off the dot: each moves to
 *  its other place (above the centre instead of below it; the top instead of the bottom) while
 *  the dot is near its usual one, and hides only if the dot is near both. (The 13-point grid
 *  puts dots right under the instructions' usual place.) */
function keepClear() {
  if (ui.stage.hidden || ui.target.hidden) return;
  const dot = ui.target.getBoundingClientRect();
  for (const el of [ui.stageHelp, ui.stageStatus]) {
    el.classList.remove("alt");
    el.style.visibility = "";
    if (!near(el, dot)) continue;
    el.classList.add("alt");
    if (near(el, dot)) el.style.visibility = "hidden";
  }
}

/** Put the dot of ``key`` ("<round kind>:<index>") at (x, y), the stage's texts out of its way. */
export function placeDot(x, y, key) {
  ui.target.dataset.key = key; // (tests wait for it)
  ui.target.classList.remove("waiting");
  ui.target.hidden = false;
  ui.target.style.left = `${x}px`;
  ui.target.style.top = `${y}px`;
  // the dot has the keyboard focus: Enter or Space "clicks" it (the round keeps the dot's own
  // position, never a click's point)
  if (document.activeElement !== ui.target) ui.target.focus({ preventScroll: true });
  keepClear();
}

/** Of a dot's ``frames`` (time order), the ones sent when there are more than ``cap``: the
 *  latest usable ones (``usable``: a Set of their times), at most ``cap``, then the latest others
 *  up to ``cap`` in all; in time order. */
export function keptFrames(frames, usable, cap) {
  if (frames.length <= cap) return frames;
  const ok = frames.filter((f) => usable.has(f.t)).slice(-cap);
  const fill = cap - ok.length;
  const rest = fill > 0 ? frames.filter((f) => !usable.has(f.t)).slice(-fill) : [];
  return ok.concat(rest).sort((a, b) => a.t - b.t);
}

/** How long (ms after the click) a dot waits for min_frames usable pictures: the study's
 *  target_timeout_ms, longer where the page's face mesh needs it (min_frames + 2 pictures at its
 *  median time, browser mode), at most three times the study's. */
function targetWaitMs(capture) {
  const mesh = recentMeshMs(capture);
  const need = mesh ? (S.min_frames + 2) * mesh + (S.batch_ms || 500) : 0;
  return Math.min(3 * S.target_timeout_ms, Math.max(S.target_timeout_ms, need));
}

/** How long a dot's deadline waits for the pictures still on their way (:meth:`settle`): the
 *  picture in the mesh, a batch's round trip and its handling. */
function settleMs(capture) {
  const mesh = recentMeshMs(capture);
  return Math.min(5000, Math.max(1500, 3 * (mesh || 0) + 1000));
}

/** The page's time a picture now (ms; null before the first): the median of the last few (a
 *  computer's speed changes within seconds), browser mode; null in server mode. */
const recentMeshMs = (capture) => capture.meshMedianMs(7);

/** The indicator turns to "Waiting for the camera picture" after this long without a face status:
 *  STALE_MS, or four of the page's pictures and a batch where the face mesh is slow. */
function staleMs(capture) {
  const mesh = recentMeshMs(capture);
  return Math.min(15000, Math.max(STALE_MS, mesh ? 4 * mesh + (S.batch_ms || 500) : 0));
}

/** A computer is slow for the face mesh from this median time a picture (ms): fewer than ~4
 *  pictures a second; a repeated round then says so. */
const SLOW_MESH_MS = 250;

/** Show the dot; resolve with its frames once clicked and holding min_frames usable frames
 *  (``starved``: too few within target_timeout_ms of the click). */
function collectTarget(x, y, key) {
  return new Promise((resolve) => {
    placeDot(x, y, key);
    const shown = performance.now();
    let ended = false;
    const end = (result) => {
      if (ended) return;
      ended = true;
      state.abortDot = null;
      ui.target.removeEventListener("click", onClick);
      resolve(result);
    };
    // (the window resized: the dot ends at once, its pictures left out)
    state.abortDot = (why) => end({ frames: [], usable: 0, seen: 0, starved: true, interrupted: why });
    const onClick = async (e) => {
      const tClick = e.timeStamp || performance.now();
      if (tClick - shown < 300) return; // too quick: the eyes cannot have settled
      ui.target.removeEventListener("click", onClick);
      const from = Math.max(shown + 300, tClick - S.settle_ms);
      await sleep(150); // the frame taken at the click is encoded
      if (ended) return; // (ended meanwhile: a resize; the dot and the texts are another round's now)
      let frames = state.capture.framesBetween(from, tClick + 50);
      let waited = false;
      // Keep the dot until enough frames of it are usable (the server's answers come a little
      // later than the frames); a stalled camera or server ends the wait. A slow computer
      // (browser mode: the face mesh takes long a picture) gets the time its pictures need.
      const cap = state.capture;
      const limit = targetWaitMs(cap);
      // (a stopped camera ends the wait; a muted one may come back within it, as Chromium's
      // does after a driver's hiccup)
      while (cap.usableCount(frames) < S.min_frames && performance.now() - tClick < limit && !cap.cameraStopped) {
        if (ended) return;
        if (!waited) {
          waited = true;
          ui.target.classList.add("waiting");
          ui.instructions.textContent = "Keep looking at the dot…";
          keepClear();
        }
        await sleep(100);
        frames = state.capture.framesBetween(from, performance.now());
      }
      if (cap.usableCount(frames) < S.min_frames && !cap.cameraStopped) {
        // the last pictures may still be on their way to the server or in its answer (a slow
        // computer): their answers decide, not the moment the wait ran out; the dot is judged on
        // the pictures taken until then (none is taken meanwhile)
        const deadline = performance.now();
        await cap.settle(settleMs(cap));
        frames = cap.framesBetween(from, deadline);
      }
      const usable = state.capture.usableCount(frames);
      const seen = frames.length; // the server counts those not sent as the point's data loss
      const starved = usable < S.min_frames;
      // starved because the camera stopped or paused, the page was out of sight while the dot
      // waited, or the pictures' samples could not reach the server (the connection dropped: their
      // answers make a picture usable): not the participant's eyes, so the round is not sent and
      // spends no attempt
      const interrupted = !starved ? null
        : cap.cameraStopped || state.lastStopped >= shown ? "stopped"
          : cap.cameraPaused || state.lastPaused >= shown ? "paused"
            : document.visibilityState === "hidden" || state.lastHidden >= shown ? "hidden"
              : cap.lastSendFailure >= shown ? "offline" : null;
      end({ frames: keptFrames(frames, state.capture.usable, S.target_frames), usable, seen, starved, interrupted });
    };
    ui.target.addEventListener("click", onClick);
  });
}

async function runRound(kind, points, view) {
  const targets = [];
  const frames = [];
  let starved = false;
  // the window as the round's dots are placed in: the check's dots were placed by the server in
  // the window of the calibration round (``view``), which must still be the window now
  state.roundView = view || viewNow();
  if (!sameView(state.roundView, viewNow())) return { interrupted: "resized" };
  for (const [i, [x, y]] of points.entries()) {
    showProgress(kind, i, points.length);
    const got = await collectTarget(x, y, `${kind}:${i}`);
    targets.push({ x, y, t: got.frames.map((f) => f.t), seen: got.seen });
    frames.push(...got.frames);
    // another window took the camera over during the round (its dots then starve, and this window
    // is hidden): the round is not sent, so it spends no attempt; this page reloads if it gets the
    // camera back
    if (state.capture && state.capture.handedOver) return { handedOver: true };
    if (got.interrupted === "refused") return { refused: true }; // (refusedHere said why)
    if (got.interrupted) return { interrupted: got.interrupted }; // not sent: no attempt spent (calibrate says why)
    if (got.starved) { starved = true; break; } // the server refuses the round: no need to go on
  }
  if (!sameView(state.roundView, viewNow())) return { interrupted: "resized" }; // (during the last dot's wait)
  ui.bar.style.width = "100%";
  ui.target.hidden = true; // while the server fits
  ui.instructions.textContent = "One moment…";
  const meta = { kind, viewport: state.roundView.slice(0, 2), targets };
  let init;
  if (S.compute === "browser") { // the targets' landmark samples, never pictures
    meta.samples = frames.map((f) => f.sample);
    const cap = state.capture; // how the face mesh ran meanwhile (stored with the round for researchers)
    if (cap && cap.mesh) meta.mesh = { thread: cap.mesh.thread, backend: cap.mesh.backend, ms_per_picture: cap.meshMedianMs(7) };
    init = { method: "POST", headers: { "Content-Type": "application/json", "X-Participant-Token": gaze.token }, body: JSON.stringify(meta) };
  } else {
    const body = new FormData();
    body.append("meta", JSON.stringify(meta));
    frames.forEach((f, i) => body.append("frame", f.blob, `f${i}.jpg`));
    init = { method: "POST", headers: { "X-Participant-Token": gaze.token }, body };
  }
  let resp;
  try {
    resp = await fetchRetrying(gaze.urls.round, init);
  } catch {
    // the connection dropped (fetch throws on a network error): not sent again by itself (had it
    // reached the server, a copy would be a second round); said, and Try again repeats it (a
    // check alone: its calibration round may be stored, calibrate keeps it pending)
    return { interrupted: "network" };
  }
  const payload = await resp.json().catch(() => ({}));
  // the participant withdrew in another window, or their data was deleted: the camera goes off and
  // the page is loaded again (the server shows where they stand)
  if (resp.status === 401 && state.capture) {
    state.capture.refused(payload);
    return { refused: true };
  }
  return { ok: resp.ok, status: resp.status, payload, starved };
}

const QUALITY = { good: "good", fair: "fair, usable", poor: "poor" };

function outcomeMessage(outcome) {
  if (outcome.passed) return `Calibration done: the eye tracking works ${outcome.quality === "good" ? "well" : "well enough"} (quality: ${QUALITY[outcome.quality]}).`;
  const base = "The eye tracking could not be calibrated well enough on this computer.";
  if (outcome.fallback === "screen-out") return `${base} This study needs it, so it cannot go on.`;
  if (outcome.fallback === "record-uncalibrated") {
    return `${base} That is fine: the study goes on; the camera will be on again during the tasks.`;
  }
  return `${base} That is fine: the study goes on without it.`;
}

function finish(outcome) {
  state.done = true;
  state.outcome = outcome;
  ui.result.textContent = `${outcomeMessage(outcome)} Press Continue.`;
  ui.result.hidden = false;
  ui.outcome.value = outcome.passed ? "calibrated" : "failed";
  ui.cont.hidden = false;
  ui.start.hidden = true;
  ui.wayOn.hidden = true;
  ui.retry.hidden = true; // (the camera's trouble, if any, no longer matters: it is off now)
  if (ui.skip) ui.skip.hidden = true;
  if (state.capture) state.capture.stop();
  // the camera is off now: no preview, no indicator that could claim a face, no set-up help
  ui.box.classList.add("off");
  ui.help.hidden = true;
  $("#setup-tips").hidden = true;
  // the tasks use the camera again only with a calibration or the record-uncalibrated fallback
  const again = outcome.passed || outcome.fallback === "record-uncalibrated";
  statusOff(again ? "Camera off until the task." : "Camera off: the tasks do not use it.");
}

/** The indicator once the camera is off for this page: ``text``, grey. */
function statusOff(text) {
  ui.status.textContent = text;
  ui.status.dataset.code = "off";
  ui.status.classList.remove("ok", "bad");
  ui.status.classList.add("idle");
}

async function calibrate() {
  if (state.busy || state.done) return;
  state.busy = true;
  ui.result.hidden = true;
  ui.stage.hidden = false;
  pageInert(true);
  state.attempts += 1;
  let message = "";
  let outcome = null;
  let interrupted = null; // why a round was not sent (the camera stopped or paused, the page out of sight): no attempt
  // the server has moved on from what this page knows (a round whose answer was lost reached it and
  // decided the step, or checked the attempt): its 409 without an outcome; the page is loaded again
  let behind = false;
  const isBehind = (round) => !round.ok && round.status === 409 && !(round.payload && round.payload.outcome);
  try {
    // a check that was cut short: its calibration round is stored and fitted, so only the check is
    // repeated (another calibration round would count towards the step's rounds, which the server
    // bounds: gaze_attempts.MAX_ROUNDS_PER_ATTEMPT)
    const pending = state.pendingCheck;
    state.pendingCheck = null;
    const calView = pending ? pending.view : viewNow();
    const cal = pending ? { ok: true, payload: { validation_targets: pending.targets } }
      : await runRound("calibration", grid(S.calibration_points, innerWidth, innerHeight), calView);
    if (cal.handedOver || cal.refused) { state.attempts -= 1; return; }
    if (cal.interrupted) {
      interrupted = cal.interrupted;
    } else if (isBehind(cal)) {
      behind = true;
    } else {
      if (!pending) state.rounds.push({ kind: "calibration", ok: cal.ok, status: cal.status, starved: cal.starved, payload: cal.payload });
      if (!cal.ok) {
        outcome = cal.payload.outcome || null;
        message = cal.payload.starved && cal.payload.starved.length
          ? "The camera sent too few clear pictures of your eyes while a dot was shown."
          : `Calibration failed (${cal.payload.error || cal.status}).`;
      } else {
        const val = await runRound("validation", cal.payload.validation_targets, calView);
        if (val.handedOver || val.refused) { state.attempts -= 1; return; } // the calibration round is stored; a reload starts afresh
        // (the calibration round is stored, unchecked: it counts for nothing, gaze_attempts.spent)
        if (val.interrupted) {
          interrupted = val.interrupted;
          // the check again, in the calibration's window; a window resized since gets a new
          // calibration (its CSS px are no longer the calibration's), as a reloaded page does
          if (val.interrupted !== "resized") state.pendingCheck = { targets: cal.payload.validation_targets, view: calView };
        } else if (isBehind(val)) {
          behind = true;
        } else {
          state.rounds.push({ kind: "validation", ok: val.ok, status: val.status, starved: val.starved, payload: val.payload });
          outcome = val.payload.outcome || null;
          if (val.ok && !val.payload.passed) {
            message = val.payload.starved && val.payload.starved.length // (no face at a dot: its word says nothing)
              ? "The camera sent too few clear pictures of your eyes while a dot of the check was shown."
              : `The check showed the calibration is ${QUALITY[val.payload.quality] || "poor"}.`;
          } else if (!val.ok) message = `The check failed (${val.payload.error || val.status}).`;
        }
      }
    }
  } finally {
    ui.stage.hidden = true;
    pageInert(false);
    state.roundView = null;
    state.abortDot = null;
    state.busy = false;
  }
  if (outcome) {
    finish(outcome);
    ui.cont.focus(); // the dot that had the focus is gone with the stage
    return;
  }
  if (behind) {
    state.attempts -= 1;
    showResult("The study already has this calibration (its answer did not reach this page). The page will now show where you are.");
    ui.start.hidden = true;
    setTimeout(() => location.reload(), 1500);
    return;
  }
  if (interrupted) {
    state.attempts -= 1;
    state.rounds.push({ kind: "interrupted" });
    showResult(interruptedMessage(interrupted));
    if (!ui.start.disabled) ui.start.scrollIntoView({ block: "nearest" });
    return;
  }
  const mesh = state.capture ? recentMeshMs(state.capture) : null;
  const slow = S.compute === "browser" && mesh >= SLOW_MESH_MS
    ? ` This computer takes ${(mesh / 1000).toFixed(1)} s to read each camera picture: closing other programs and browser tabs helps.`
    : "";
  showResult(`${message}${slow} Let's try again: sit still, make sure your face is lit, and keep looking at each dot until it moves.`);
  ui.start.scrollIntoView({ block: "nearest" });
}

/** While the dots are shown, the page under them takes no focus or click (``inert``): a Tab from
 *  the dot went to the links and buttons hidden under the stage (Enter then opened the withdrawal
 *  page in the middle of a round). */
function pageInert(on) {
  // (within the page's main part: the notices webcam.js puts beside it, "another window records"
  // with its "Use this window", and the small-window page, stay usable)
  const top = ui.stage.closest("main") || document.body;
  for (let el = ui.stage; el !== top && el.parentElement; el = el.parentElement) {
    for (const other of el.parentElement.children) {
      if (other !== el && other.tagName !== "SCRIPT") other.inert = on;
    }
  }
}

/** Why a calibration ended without being counted (no attempt spent): the camera ``stopped`` or
 *  ``paused``, the page was out of sight (``hidden``) while a dot waited for pictures, or the
 *  window changed size or zoom (``resized``) during a round. */
function interruptedMessage(why) {
  const base = "This calibration was stopped and not counted:";
  if (why === "resized") {
    return `${base} the window changed size (or the page its zoom) while the dots were shown. Keep the window as it is now, then press Try again.`;
  }
  if (why === "stopped") {
    return `${base} the camera stopped sending pictures. Close other programs that use the camera, then press Try the camera again.`;
  }
  if (why === "network") { // (it may have arrived: a round the server has already is told by its answer to the next)
    return "The connection to the study dropped while this calibration was being sent, so it may not have arrived. Check your internet connection, then press Try again.";
  }
  if (why === "offline") {
    return `${base} the connection to the study dropped while a dot was shown. Check your internet connection, then press Try again.`;
  }
  if (why === "paused") {
    return `${base} the camera paused its pictures. Uncover it or close the other program; when its picture is back, press Try again.`;
  }
  return `${base} this page was out of sight while a dot was shown. Press Try again, and keep looking at each dot until it moves.`;
}

/** The round's result under the set-up, seen: why it failed must not be left below the fold; it
 *  and Try again (right below it) are scrolled into view, and the focus starts at it (as at a
 *  server's error messages), so a screen reader reads it first and Tab goes on to Try again. */
function showResult(text) {
  ui.result.textContent = text;
  ui.result.hidden = false;
  ui.start.textContent = "Try again";
  ui.result.tabIndex = -1;
  ui.result.scrollIntoView({ block: "nearest" });
  ui.result.focus({ preventScroll: true });
}

/** The indicator follows the live picture: stale answers (no frame for a while) turn it grey; a
 *  stopped camera or a muted one (no pictures for now: a privacy shutter, another program; it
 *  may come back) is said so (GazeCapture.checkCamera decides both). */
function refreshIndicator() {
  if (state.done || !state.capture) return;
  const cap = state.capture;
  // (counted from the watch's start, or the first picture through the face mesh, until the first
  // answer: the eye tracker has just loaded. Browser mode, while pictures come and none has been
  // through the mesh yet, the status says it is starting: its first runs are slow; a camera
  // sending nothing or a server not answering is said after the usual wait)
  const first = !cap.lastAnswer && S.compute === "browser" && cap.video.readyState >= 2 && !cap.meshMs.length;
  const stale = performance.now() - Math.max(cap.lastAnswer || 0, state.watchSince || 0, cap.firstMeshAt || 0) > (
    first ? FIRST_ANSWER_MS : staleMs(cap));
  const ended = cap.cameraStopped || cap.cameraPaused;
  if (stale || ended) {
    // the dot screen's status stays short (it must not cover a dot); the set-up's says what to do
    const text = ended ? "The camera stopped sending pictures. Is it covered or used by another program?"
      : "Waiting for the camera picture…";
    const setupText = !ended ? text : cap.cameraStopped
      ? "The camera stopped sending pictures (unplugged, or taken by another program?). Close other programs that use the camera, then press Try the camera again."
      : `${text} Uncover it or close the other program; if the picture does not come back, press Try the camera again.`;
    const moved = ui.stageStatus.textContent !== text;
    for (const [el, said] of [[ui.status, setupText], [ui.stageStatus, text]]) {
      if (el.textContent !== said) el.textContent = said; // a live region: only a change is news
      el.dataset.code = ended ? "stopped" : "no-frame";
      el.classList.remove("ok", "idle");
      el.classList.add("bad");
    }
    if (moved) keepClear(); // a longer status must not cover the dot either
  }
  if (cap.cameraStopped || cap.cameraPaused) cameraGone(cap.cameraStopped);
  else if (!ui.retry.dataset.stopped && !ui.retry.hidden) { // a muted camera's picture is back
    ui.retry.hidden = true;
    if (ui.skip && !state.wayOnOffered) ui.skip.hidden = true;
  }
  if (!state.busy) ui.start.disabled = !canStart();
  // the way on: the time limit without a well-placed face, from the set-up's start or the last
  // moment the face was well placed (it may have passed once, then the light changed), counting
  // only once the eye tracker answers (not while the camera starts or the face model loads, a
  // minute or more on a slow connection, when nobody could place the face), or should have: a
  // tracker started FIRST_ANSWER_MS ago without an answer (a server that does not answer) counts
  // from then, so the way on comes all the same; once offered, it stays (its words only while the
  // face is not well placed)
  if (state.limitFrom === null) {
    const from = state.firstAnswer !== null ? state.firstAnswer
      : performance.now() - state.watchSince > FIRST_ANSWER_MS ? state.watchSince + FIRST_ANSWER_MS : null;
    if (from === null) return;
    state.limitFrom = from;
    state.started += from - SCRIPT_START; // (this page's camera start and model load: not counted)
  }
  const since = Math.max(state.started, state.lastOk);
  if (!state.busy && S.setup_timeout_s > 0 && performance.now() - since > S.setup_timeout_s * 1000) showWayOn();
  else if (state.wayOnOffered && ui.wayOn.hidden && !faceWellPlaced(okGrace(cap))) sayWayOn(true);
}

/** The way on's words and the Start button's label: "Start calibration anyway" with "the picture is
 *  still not ideal" while the face is not well placed; the plain label once it is (the words said
 *  the opposite of the green indicator). The way on stays offered either way. */
function sayWayOn(notIdeal) {
  ui.wayOn.hidden = !notIdeal;
  ui.start.textContent = notIdeal ? "Start calibration anyway" : state.attempts ? "Try again" : "Start calibration";
}

/** The camera sends no pictures (``stopped``: for good, unplugged or taken by another program;
 *  else muted, it may come back): no calibration can work, so Start is off, and Try the camera
 *  again (a reload) is offered, in optional studies also going on without eye tracking. */
function cameraGone(stopped) {
  if (state.done) return;
  ui.start.disabled = true;
  ui.retry.hidden = false;
  if (stopped) ui.retry.dataset.stopped = "1";
  if (ui.skip) ui.skip.hidden = false;
}

/** The server no longer takes this participant's data and the page was not loaded again: the
 *  calibration cannot go on here; reloading shows where the participant stands. */
function refusedHere() {
  state.done = true;
  if (state.abortDot) state.abortDot("refused"); // a round in progress ends (its page inert no more)
  ui.stage.hidden = true;
  ui.start.hidden = true;
  ui.wayOn.hidden = true;
  if (ui.skip) ui.skip.hidden = true;
  ui.box.classList.add("off");
  statusOff("Camera off.");
  ui.retry.hidden = false; // (a reload)
  ui.retry.textContent = "Reload the page";
  showResult("The study no longer records for you on this page (you may have left the study in another window). Reload the page to see where you stand.");
}

function watchIndicator() {
  state.watchSince = performance.now();
  setInterval(refreshIndicator, 500);
}

function showWayOn() {
  if (state.wayOnOffered || state.done) return;
  state.wayOnOffered = true;
  sayWayOn(true);
  ui.start.disabled = !canStart();
  if (ui.skip) ui.skip.hidden = false;
}

async function main() {
  ui.retry.addEventListener("click", () => location.reload());
  // the camera works but the face check did not pass in time: said apart from no camera (dashboard)
  if (ui.skip) ui.skip.addEventListener("click", () => { ui.outcome.value = "skipped"; });
  if (gaze.outcome) { // the page was reloaded after the step's outcome: show it, no camera
    finish(gaze.outcome);
    return;
  }
  // One window of the participant uses the camera: this page takes the task pages' Web Lock
  // (webcam.js startTaskGaze, same notice and "Use this window"), so a window calibrating and a
  // stale task window never record at once. Taken back after another window took over (its camera
  // let go), the page loads afresh: the set-up and any round in progress start again.
  let started = false;
  await startTaskGaze(gaze, {
    record: async () => {
      if (started) {
        location.reload();
        return null;
      }
      started = true;
      return startCamera();
    },
  });
}

/** Open the camera and start the set-up's capture (state.capture; null: no camera or no face mesh). */
async function startCamera() {
  let stream;
  try {
    stream = await openCamera(S.width, S.height);
  } catch (e) {
    noCamera(e);
    return null;
  }
  if (gaze.urls.camera_started) { // supersedes an earlier camera error on the dashboard (allowed on retry)
    fetch(gaze.urls.camera_started, { method: "POST", headers: { "X-Participant-Token": gaze.token } }).catch(() => {});
  }
  state.capture = new GazeCapture({
    stream, token: gaze.token, url: gaze.urls.frames, wsUrl: gaze.urls.ws, settings: S, phase: "setup", urls: gaze.urls,
    video: $("#camera-preview"),
    onStatus: (face) => {
      // (an answer on its way when the camera stopped or paused must not turn the indicator green
      // over a frozen or black preview: refreshIndicator says the camera's state)
      if (state.done || (state.capture && (state.capture.cameraStopped || state.capture.cameraPaused))) return;
      showFace(ui.status, face);
      // the stage's status moves off the dot only when its text (so its size) changed: not per answer
      if (showFace(ui.stageStatus, face)) keepClear();
      if (state.firstAnswer === null) state.firstAnswer = performance.now(); // the way on's time limit (refreshIndicator)
      if (face && ["dark", "no-face", "several"].includes(face.code)) state.lastBad = performance.now(); // not a flicker
      if (face && face.ok) {
        state.lastOk = performance.now();
        if (!state.passedSetup && !state.wayOnOffered) {
          state.passedSetup = true;
          ui.start.textContent = state.attempts ? "Try again" : "Start calibration";
        }
        if (state.wayOnOffered && !ui.wayOn.hidden && !state.busy) sayWayOn(false); // green: not "not ideal"
      }
      if (!state.busy) ui.start.disabled = !canStart();
    },
    // at once, not at the next tick; a dot shown meanwhile did not get its pictures (collectTarget)
    onCameraStop: () => { state.lastStopped = performance.now(); refreshIndicator(); },
    onCameraMute: () => { state.lastPaused = performance.now(); refreshIndicator(); }, // (paused, or back)
    // the participant withdrew in another window, or was deleted: the page is loaded again (the
    // withdrawn page); where it is not (a second time within a minute, no storage), it says so
    onRefused: () => { if (!leaveRefused()) refusedHere(); },
  });
  if (S.compute === "browser") { // the camera is on (its picture shows); the face model (~7 MB) may take a while
    ui.status.textContent = "Camera on. Loading the eye tracker (on a slow connection this can take a minute)…";
    ui.status.dataset.code = "loading";
    ui.status.classList.remove("ok", "bad");
    ui.status.classList.add("idle");
  }
  try {
    await state.capture.start();
  } catch (e) { // browser mode: the face mesh could not be loaded
    console.warn("gazepref: face mesh", e);
    noCamera(new CameraError("Eye tracking cannot run in this browser (its face model could not be loaded)."));
    return null;
  }
  if (S.compute === "browser" && ui.status.dataset.code === "loading") {
    ui.status.textContent = "Camera on. Starting the eye tracker…"; // its first pictures are on their way
    ui.status.dataset.code = "starting";
  }
  ui.start.addEventListener("click", calibrate);
  watchIndicator();
  return state.capture;
}

window.gazepref = { calibration: state, keptFrames };
main();
