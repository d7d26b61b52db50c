// The webcam step: camera set-up (face indicator), a calibration round and a validation round.
//
// Each target appears; the participant looks at it and clicks it. The frames of the last
// settle_ms before the click (the eyes have settled by then) go to the server with the target,
// one request per round. A failed validation is retried (settings.attempts rounds in all); then
// the step is submitted. No camera: "optional" studies go on mouse-only, "required" ones stop.

import { CameraError, GazeCapture, openCamera, showFace } from "./webcam.js";

const gaze = JSON.parse(document.getElementById("gaze-data").textContent);
const S = gaze.settings;
const $ = (sel) => document.querySelector(sel);
const ui = {
  status: $("#face-status"), error: $("#camera-error"), start: $("#start-calibration"),
  result: $("#calibration-result"), stage: $("#calibration-stage"), target: $("#target"),
  stageStatus: $("#stage-status"), cont: $("#continue"), outcome: $("#outcome"), setup: $("#setup"),
};
const state = { capture: null, attempts: 0, rounds: [], busy: false };

function fail(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function noCamera(message, reason = "failed") {
  // kept for the researcher's dashboard (why participants stop); best effort
  if (gaze.urls.camera_error) {
    fetch(gaze.urls.camera_error, { method: "POST", headers: { "X-Participant-Token": gaze.token, "Content-Type": "application/json" },
                                    body: JSON.stringify({ reason }) }).catch(() => {});
  }
  ui.status.hidden = true;
  ui.start.hidden = true;
  if (gaze.mode === "optional") {
    fail(`${message} The study continues without eye tracking (mouse only).`);
    ui.outcome.value = "no-camera";
    ui.cont.hidden = false;
  } else {
    fail(`${message} This study needs a webcam, so it cannot go on. Please return the study on your platform.`);
  }
  state.noCamera = true;
}

/** The 5/9/13-point grids of gazepref.signals.calibration.target_grid. */
function grid(n, w, h, margin = 0.1) {
  const lo = margin, mid = 0.5, hi = 1 - margin, q1 = (lo + mid) / 2, q3 = (mid + hi) / 2;
  const g9 = [];
  for (const fy of [lo, mid, hi]) for (const fx of [lo, mid, hi]) g9.push([fx, fy]);
  const layouts = { 5: [[mid, mid], [lo, lo], [hi, lo], [lo, hi], [hi, hi]], 9: g9,
                    13: g9.concat([[q1, q1], [q3, q1], [q1, q3], [q3, q3]]) };
  return layouts[n].map(([fx, fy]) => [fx * w, fy * h]);
}

function waitClick(x, y, key) {
  return new Promise((resolve) => {
    ui.target.dataset.key = key; // "<round kind>:<index>" (tests wait for it)
    ui.target.hidden = false;
    ui.target.style.left = `${x}px`;
    ui.target.style.top = `${y}px`;
    const shown = performance.now();
    const onClick = (e) => {
      const t = e.timeStamp || performance.now();
      if (t - shown < 300) return; // too quick: the eyes cannot have settled
      ui.target.removeEventListener("click", onClick);
      resolve(t);
    };
    ui.target.addEventListener("click", onClick);
  });
}

async function runRound(kind, points) {
  const targets = [];
  const frames = [];
  for (const [i, [x, y]] of points.entries()) {
    const tClick = await waitClick(x, y, `${kind}:${i}`);
    await new Promise((r) => setTimeout(r, 150)); // the frame taken at the click is encoded
    const fs = state.capture.framesBetween(tClick - S.settle_ms, tClick + 50);
    targets.push({ x, y, t: fs.map((f) => f.t) });
    frames.push(...fs);
  }
  ui.target.hidden = true; // while the server fits
  const body = new FormData();
  body.append("meta", JSON.stringify({ kind, viewport: [innerWidth, innerHeight], targets }));
  frames.forEach((f, i) => body.append("frame", f.blob, `f${i}.jpg`));
  const resp = await fetch(gaze.urls.round, { method: "POST", headers: { "X-Participant-Token": gaze.token }, body });
  const payload = await resp.json().catch(() => ({}));
  return { ok: resp.ok, status: resp.status, payload };
}

async function calibrate() {
  if (state.busy) return;
  state.busy = true;
  ui.result.hidden = true;
  ui.stage.hidden = false;
  state.attempts += 1;
  let message = "";
  let done = false;
  try {
    const cal = await runRound("calibration", grid(S.calibration_points, innerWidth, innerHeight));
    state.rounds.push({ kind: "calibration", ...cal });
    if (!cal.ok) {
      message = `Calibration failed: ${cal.payload.error || cal.status}.`;
    } else {
      const val = await runRound("validation", cal.payload.validation_targets);
      state.rounds.push({ kind: "validation", ...val });
      if (val.ok && val.payload.passed) {
        message = `Calibration done (accuracy about ${Math.round(val.payload.accuracy_px)} px).`;
        done = true;
      } else if (val.ok) {
        const acc = val.payload.accuracy_px === null ? "unknown" : `${Math.round(val.payload.accuracy_px)} px`;
        message = `The check was not precise enough (${acc}).`;
        done = state.attempts >= S.attempts; // go on with what we have after the last attempt
      } else {
        message = `Validation failed: ${val.payload.error || val.status}.`;
      }
    }
  } finally {
    ui.stage.hidden = true;
    state.busy = false;
  }
  ui.result.textContent = done ? `${message} Press Continue.` : `${message} Please try again: sit still and look at each dot.`;
  ui.result.hidden = false;
  if (done) {
    ui.outcome.value = "calibrated";
    ui.cont.hidden = false;
    ui.start.hidden = true;
    state.capture.stop();
  } else {
    ui.start.textContent = "Try again";
  }
}

async function main() {
  let stream;
  try {
    stream = await openCamera(S.width, S.height);
  } catch (e) {
    noCamera(e instanceof CameraError ? e.message : String(e), e instanceof CameraError ? e.reason : "failed");
    return;
  }
  state.capture = new GazeCapture({
    stream, token: gaze.token, url: gaze.urls.frames, wsUrl: gaze.urls.ws, settings: S, phase: "setup",
    video: $("#camera-preview"),
    onStatus: (face) => {
      showFace(ui.status, face);
      showFace(ui.stageStatus, face);
      if (face && face.ok) ui.start.disabled = false;
    },
  });
  await state.capture.start();
  ui.start.addEventListener("click", calibrate);
}

window.gazepref = { calibration: state };
main();
