// Face mesh in the participant's browser ([gaze] compute = "browser"): landmarks -> a compact
// sample per picture, sent instead of the picture.
//
// The mesh is @vladmandic/human (MIT; blazeface + facemesh + iris in TF.js form, converted from
// MediaPipe's), installed by `npm ci` in capture_site/web at the version pinned there and served by
// the site under /vendor/<versions>/ (no CDN). Human gives the mesh's 468 points (MediaPipe's
// numbering); the eyes' iris (468-477) and contours come from Human's iris model run here the
// right way round (irisEyes: Human 3.3.6's own iris step mirrors the right eye, and switches an
// eye's contours between two models with the head's turn), so index i means what it means in the
// Python pipeline (gazepref.signals.eye_features). Human truncates its landmark
// coordinates to whole pixels (1 px is ~8 % of an eye's width at 320x240), so the mesh runs on the
// picture scaled up MESH_SCALE times (the same pixels, interpolated; less where that would pass
// Human's largest input, meshScale) and the points are scaled back with the truncation's
// half-pixel bias removed: 1/MESH_SCALE px steps.
//
// What the page computes is only what needs the pixels: the landmarks (the rows the server asks
// for, settings.landmarks = gazepref.signals.webcam.SAMPLE_LANDMARKS), the face centre (mean of
// the 468 mesh points), the 10x6 eye patches (the crop of eye_features.eye_patch: corners at 15 %
// from the patch edges, warped at 4x, histogram-equalised, area-averaged, 0-1), the face box's
// brightness and sharpness (webcam._sharpness). Every feature made from these (iris position,
// lids, openness, head pose, flags, the calibrated gaze) is computed by the server with the same
// Python code as the offline pipeline (GazeTracker.process_sample).

const IRIS_A = 468, IRIS_B = 473, IRIS_N = 5;
const PATCH_MARGIN = 0.15, WARP_SCALE = 4;
export const MESH_SCALE = 4;
/** Human shrinks a picture larger than this (src/image/image.ts maxSize) and gives its points in
 *  the smaller picture's pixels. */
const HUMAN_MAX_SIDE = 3840;

/** The scale a ``w`` x ``h`` picture is meshed at: :data:`MESH_SCALE`, or the largest whole
 *  number that keeps it within Human's largest input (3 for 1280 px wide pictures: at 4x their
 *  points came out at 0.75 of their place). */
export function meshScale(w, h) {
  return Math.max(1, Math.min(MESH_SCALE, Math.floor(HUMAN_MAX_SIDE / Math.max(w, h))));
}
// eyes as in eye_features.EYES: name, corner with the smaller image x, the other corner
const EYES = [["l", 362, 263], ["r", 33, 133]];

let humanPromise = null;
let workerPromise = null;

/** Load the mesh once per page: {human, backend, loadMs}. ``base``: the server's vendor URL
 * (/vendor/<versions>/, page data urls.vendor: capture_site/vendor.py). */
export function loadMesh({ base, backend = "wasm" }) {
  if (!humanPromise) humanPromise = (async () => {
    const t0 = performance.now();
    const { Human } = await import(`${base}human/dist/human.esm.js`);
    const human = new Human({
      backend,
      modelBasePath: `${base}human/models/`,
      wasmPath: `${base}tfjs-wasm/`,
      debug: false,
      warmup: "none",
      cacheSensitivity: 0, // every picture is analysed (no result reuse for similar pictures)
      filter: { enabled: false },
      face: {
        enabled: true,
        detector: { rotation: false, maxDetected: 2, return: false },
        mesh: { enabled: true },
        iris: { enabled: true }, // loads the iris model (irisEyes runs it; each picture asks for MESH_ONLY)
        attention: { enabled: false },
        description: { enabled: false }, emotion: { enabled: false }, antispoof: { enabled: false },
        liveness: { enabled: false },
      },
      body: { enabled: false }, hand: { enabled: false }, object: { enabled: false },
      gesture: { enabled: false }, segmentation: { enabled: false },
    });
    await human.load();
    await human.tf.ready();
    return { human, backend: human.tf.getBackend(), loadMs: performance.now() - t0 };
  })();
  return humanPromise;
}

/** What the page and its mesh worker say to each other; a worker of another release (a site
 *  upgraded while the page was open fetches the new worker) refuses to load, and the page's mesh
 *  runs on its main thread. Any change to the messages or to the sample's form must bump it. */
export const MESH_PROTOCOL = 2; // 2: the eyes through irisEyes (07 Dec 2026; 1 mirrored the right eye)
/** A picture the worker has not answered in this long (or ten of its usual pictures' time, if
 *  longer) means it stopped: the mesh goes to the main thread. Its first picture with a face
 *  compiles the mesh's and the iris model's programs (seconds; software WebGL far longer): until
 *  one with a face is answered, WORKER_FIRST_SILENT_MS. A worker not loaded in WORKER_LOAD_MS
 *  (the model's ~7 MB on a slow connection, and its warm-up) is given up for the main thread. */
const WORKER_SILENT_MS = 15000;
const WORKER_FIRST_SILENT_MS = 60000;
const WORKER_LOAD_MS = 180000;
/** Pictures the worker failed on in a row before the mesh goes to the main thread (one before
 *  its first sample). */
const WORKER_FAILURES = 3;

/** The face mesh a capture uses: {sample(canvas, ctx, landmarks, patchSize) -> Promise of a
 *  faceSample, backend, loadMs, thread}. ``thread`` "worker": the mesh runs in a Web Worker
 *  (mesh_worker.js; the picture's pixels go to it, the sample comes back), so the page's main
 *  thread stays free for keys, clicks and scrolling while a picture is in the mesh (on a slow
 *  computer that is 0.4-1 s a picture); "main": on the page's main thread, where the browser has
 *  no module worker with OffscreenCanvas, the worker fails to start or to run the asked backend,
 *  or the study asks (``worker`` false: [gaze] mesh_worker). A worker that stops later (an error,
 *  no answer, failing picture after picture) hands over to the main thread (the picture it
 *  stopped on is measured there); once failed, the page's later captures use the main thread. */
export async function startMesh({ base, backend = "wasm", worker = true }) {
  if (worker && !workerFailed && typeof Worker !== "undefined" && typeof OffscreenCanvas !== "undefined") {
    try {
      return await workerMesh(base, backend);
    } catch (e) {
      workerFailed = true;
      console.warn("gazepref: the face mesh runs on the page's main thread:", e && e.message);
    }
  }
  return mainMesh(base, backend);
}

let workerFailed = false;

async function mainMesh(base, backend) {
  const mesh = await loadMesh({ base, backend });
  if (!mesh.sample) {
    mesh.thread = "main";
    mesh.sample = (canvas, ctx, landmarks, patchSize) => faceSample(mesh, canvas, ctx, landmarks, patchSize);
  }
  return mesh;
}

function workerMesh(base, backend) {
  if (!workerPromise) workerPromise = new Promise((resolve, reject) => {
    const worker = new Worker(new URL("mesh_worker.js", import.meta.url), { type: "module" });
    const waiting = new Map(); // request id -> {resolve, reject, timer}
    let next = 0;
    let loaded = false;
    let broken = null; // the worker's failure: every later picture goes to the main thread
    let done = 0; // pictures answered with a sample
    let faced = false; // a picture with a face answered (the models' programs compiled)
    let failedInRow = 0;
    const took = []; // ms the worker's last pictures took (its usual time: the watchdog's)
    const fail = (message) => {
      if (broken) return;
      broken = new Error(message);
      workerFailed = true;
      if (loaded) console.warn("gazepref: the face mesh goes to the page's main thread:", message);
      for (const w of waiting.values()) { clearTimeout(w.timer); w.reject(broken); }
      waiting.clear();
      worker.terminate();
      reject(broken); // (no effect once loaded)
    };
    worker.onmessage = ({ data }) => {
      const w = waiting.get(data.id);
      if (!w) return;
      waiting.delete(data.id);
      clearTimeout(w.timer);
      if (data.error) w.reject(new Error(data.error));
      else w.resolve(data);
    };
    // (a script that cannot be fetched or parsed fires this without a message)
    worker.onerror = (e) => {
      e.preventDefault();
      fail(e.message || (loaded ? "the face mesh worker stopped" : "the face mesh worker could not start"));
    };
    worker.onmessageerror = () => fail("a message of the face mesh worker could not be read");
    const ask = (msg, transfer = [], silentMs = 0) => new Promise((res, rej) => {
      if (broken) { rej(broken); return; }
      next += 1;
      const timer = silentMs ? setTimeout(() => fail(`the face mesh worker did not answer in ${Math.round(silentMs / 1000)} s`), silentMs) : 0;
      waiting.set(next, { resolve: res, reject: rej, timer });
      worker.postMessage({ ...msg, id: next }, transfer);
    });
    const mesh = { thread: "worker", backend: null, loadMs: null };
    mesh.sample = async (canvas, ctx, landmarks, patchSize) => {
      if (!broken) {
        const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
        const usual = took.length ? [...took].sort((a, b) => a - b)[took.length >> 1] : 0;
        const t0 = performance.now();
        try {
          const answer = await ask({ type: "sample", width: img.width, height: img.height, pixels: img.data.buffer,
                                     landmarks, patchSize }, [img.data.buffer], faced ? Math.max(WORKER_SILENT_MS, 10 * usual) : WORKER_FIRST_SILENT_MS);
          took.push(performance.now() - t0);
          if (took.length > 15) took.shift();
          done += 1;
          faced = faced || answer.sample.n > 0;
          failedInRow = 0;
          return answer.sample;
        } catch (e) {
          failedInRow += 1;
          if (!done || failedInRow >= WORKER_FAILURES) fail(`the face mesh worker failed on a picture: ${e.message}`);
          if (!broken) throw e; // this picture's error: the worker goes on
        }
      }
      const main = await mainMesh(base, backend);
      Object.assign(mesh, { thread: "main", backend: main.backend, loadMs: main.loadMs, sample: main.sample });
      return main.sample(canvas, ctx, landmarks, patchSize);
    };
    ask({ type: "load", base, backend, protocol: MESH_PROTOCOL }, [], WORKER_LOAD_MS).then((answer) => {
      // TF.js takes another backend where the asked one does not run (WebGL in a worker needs
      // OffscreenCanvas WebGL, which Safari has only since 17): the main thread may run it
      if (answer.backend !== backend) {
        fail(`the face mesh worker cannot run ${backend} (it would run ${answer.backend})`);
        return;
      }
      loaded = true;
      mesh.backend = answer.backend;
      mesh.loadMs = answer.loadMs;
      resolve(mesh);
    }, (e) => fail(e.message));
  });
  return workerPromise.catch((e) => { workerPromise = null; throw e; });
}

/** Grey levels of RGBA pixels as OpenCV's cvtColor RGB2GRAY (its fixed point: 15 bits). */
export function greyOf(rgba, n) {
  const g = new Uint8Array(n);
  for (let i = 0, j = 0; i < n; i++, j += 4) g[i] = (rgba[j] * 9798 + rgba[j + 1] * 19235 + rgba[j + 2] * 3735 + 16384) >> 15;
  return g;
}

function sampleBilinear(grey, w, h, x, y) {
  // BORDER_REPLICATE
  x = Math.min(Math.max(x, 0), w - 1);
  y = Math.min(Math.max(y, 0), h - 1);
  const x0 = Math.floor(x), y0 = Math.floor(y);
  const x1 = Math.min(x0 + 1, w - 1), y1 = Math.min(y0 + 1, h - 1);
  const fx = x - x0, fy = y - y0;
  const a = grey[y0 * w + x0], b = grey[y0 * w + x1], c = grey[y1 * w + x0], d = grey[y1 * w + x1];
  return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy;
}

/** cv2.equalizeHist of a Uint8Array (in place). */
function equalise(px) {
  const hist = new Array(256).fill(0);
  for (const v of px) hist[v] += 1;
  let i = 0;
  while (!hist[i]) i++;
  const total = px.length;
  const lut = new Uint8Array(256);
  if (hist[i] === total) { px.fill(i); return px; }
  const scale = 255 / (total - hist[i]);
  let sum = 0;
  for (i += 1; i < 256; i++) { sum += hist[i]; lut[i] = Math.min(255, Math.round(sum * scale)); }
  for (let k = 0; k < px.length; k++) px[k] = lut[px[k]];
  return px;
}

/** The eye patch of eye_features._patch: ``pw`` x ``ph`` values 0-1, row-major. */
export function eyePatch(grey, w, h, a, b, pw = 10, ph = 6) {
  const bw = pw * WARP_SCALE, bh = ph * WARP_SCALE;
  const dx = b[0] - a[0], dy = b[1] - a[1];
  const width = Math.hypot(dx, dy);
  if (!(width > 0)) return new Array(pw * ph).fill(NaN);
  const ux = dx / width, uy = dy / width, nx = -uy, ny = ux;
  const mx = (a[0] + b[0]) / 2, my = (a[1] + b[1]) / 2;
  // similarity: patch (u, v) -> image; the corners land at (margin, centre) and (1 - margin, centre)
  const span = bw * (1 - 2 * PATCH_MARGIN);
  const s = width / span; // image px per warped px
  const big = new Uint8Array(bw * bh);
  for (let v = 0; v < bh; v++) {
    for (let u = 0; u < bw; u++) {
      const du = (u - bw / 2) * s, dv = (v - bh / 2) * s;
      const x = mx + ux * du + nx * dv, y = my + uy * du + ny * dv;
      big[v * bw + u] = Math.round(sampleBilinear(grey, w, h, x, y));
    }
  }
  equalise(big);
  const out = new Array(pw * ph);
  const k = WARP_SCALE * WARP_SCALE;
  for (let v = 0; v < ph; v++) {
    for (let u = 0; u < pw; u++) {
      let sum = 0;
      for (let yy = 0; yy < WARP_SCALE; yy++) for (let xx = 0; xx < WARP_SCALE; xx++) sum += big[(v * WARP_SCALE + yy) * bw + u * WARP_SCALE + xx];
      out[v * pw + u] = Math.round(Math.round(sum / k) / 255 * 10000) / 10000;
    }
  }
  return out;
}

/** Area-average resize (cv2.INTER_AREA for shrinking) of a w x h float image to dw x dh. */
function areaResize(src, w, h, dw, dh) {
  const out = new Float64Array(dw * dh);
  const sx = w / dw, sy = h / dh;
  for (let j = 0; j < dh; j++) {
    const y0 = j * sy, y1 = y0 + sy;
    for (let i = 0; i < dw; i++) {
      const x0 = i * sx, x1 = x0 + sx;
      let sum = 0, area = 0;
      for (let y = Math.floor(y0); y < Math.min(Math.ceil(y1), h); y++) {
        const wy = Math.min(y + 1, y1) - Math.max(y, y0);
        for (let x = Math.floor(x0); x < Math.min(Math.ceil(x1), w); x++) {
          const wx = Math.min(x + 1, x1) - Math.max(x, x0);
          sum += src[y * w + x] * wx * wy;
          area += wx * wy;
        }
      }
      out[j * dw + i] = sum / area;
    }
  }
  return out;
}

/** Python's round(): halves to the even neighbour (Math.round takes them up). */
function roundHalfEven(v) {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function variance(a) {
  let m = 0;
  for (const v of a) m += v;
  m /= a.length;
  let s = 0;
  for (const v of a) s += (v - m) * (v - m);
  return s / a.length;
}

/** webcam._sharpness: the least sharp of 4 directions' second-difference variance over the
 *  variance of the box at 64 px wide (diagonal steps scaled by 1/2). */
export function sharpness(grey, w, box) {
  const [x0, y0, x1, y1] = box;
  const bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  if (bw < 4 || bh < 4) return NaN;
  const crop = new Float64Array(bw * bh);
  for (let y = 0; y < bh; y++) for (let x = 0; x < bw; x++) crop[y * bw + x] = grey[(y0 + y) * w + x0 + x];
  const dw = 64, dh = Math.max(4, roundHalfEven(64 * bh / bw));
  const small = areaResize(crop, bw, bh, dw, dh);
  const v = variance(small);
  if (!(v > 1e-6)) return 0;
  const at = (x, y) => { // BORDER_REFLECT_101
    x = x < 0 ? -x : x >= dw ? 2 * dw - 2 - x : x;
    y = y < 0 ? -y : y >= dh ? 2 * dh - 2 - y : y;
    return small[y * dw + x];
  };
  const d = new Float64Array(dw * dh);
  let least = Infinity;
  for (const [dy, dx, k] of [[0, 1, 1], [1, 0, 1], [1, 1, 0.5], [1, -1, 0.5]]) {
    for (let y = 0; y < dh; y++) {
      for (let x = 0; x < dw; x++) {
        d[y * dw + x] = (at(x + dx, y + dy) + at(x - dx, y - dy) - 2 * small[y * dw + x]) * k;
      }
    }
    least = Math.min(least, variance(d));
  }
  return least / v;
}

const r2 = (v) => Math.round(v * 100) / 100;
const r4 = (v) => Math.round(v * 10000) / 10000;

/** The 478 points (MediaPipe numbering) of each face in ``result`` (of a picture ``scale`` times
 *  larger than the one the points are for), the largest face first: the mesh's 468, and the irises
 *  (468-477) unknown (NaN) until :func:`irisEyes` puts them in. */
export function meshes(result, scale = 1) {
  const faces = (result.face || []).filter((f) => f.mesh && f.mesh.length >= 468);
  faces.sort((p, q) => q.box[2] * q.box[3] - p.box[2] * p.box[3]);
  return faces.map((f) => {
    const pts = f.mesh.slice(0, 468).map((p) => [(p[0] + 0.5) / scale, (p[1] + 0.5) / scale]);
    for (let i = 468; i < 478; i++) pts.push([NaN, NaN]);
    return pts;
  });
}

/** What each picture asks of Human: the mesh without its iris step (loaded, not run: the page runs
 *  the iris model itself, :func:`irisEyes`). */
const MESH_ONLY = { face: { iris: { enabled: false } } };

/** The iris model's points (of its 71 eye points) that replace each eye contour (the order of
 *  :data:`EYE_CONTOURS`; src/face/facemeshcoords.ts ``irisIndices``); its points 71-75 are the
 *  iris (centre first). */
const IRIS_MODEL_CONTOURS = [
  [9, 10, 11, 12, 13, 14, 15], [0, 1, 2, 3, 4, 5, 6, 7, 8], [25, 26, 27, 28, 29, 30, 31],
  [16, 17, 18, 19, 20, 21, 22, 23, 24], [41, 42, 43, 44, 45, 46, 47], [32, 33, 34, 35, 36, 37, 38, 39, 40],
  [54, 55, 56, 57, 58, 59, 60, 61, 62], [63, 64, 65, 66, 67, 68, 69, 70], [48, 49, 50, 51, 52, 53],
];
const IRIS_MODEL_IRIS = 71;
/** Each eye's contours (MediaPipe numbering, src/face/facemeshcoords.ts ``rightEyeUpper0`` ...
 *  ``leftEyebrowLower``: upper lid 0, lower lid 0 (corner to corner), upper 1, lower 1, upper 2,
 *  lower 2, lower 3, brow upper, brow lower), its corners (Human's eye box) and
 *  the first of its 5 iris points; ``flip``: the iris model is made for the right eye's
 *  orientation, so the left eye is mirrored for it (and its answer back). */
export const EYE_CONTOURS = {
  right: {
    flip: false, corners: [33, 133], iris: IRIS_A, contours: [
      [246, 161, 160, 159, 158, 157, 173], [33, 7, 163, 144, 145, 153, 154, 155, 133],
      [247, 30, 29, 27, 28, 56, 190], [130, 25, 110, 24, 23, 22, 26, 112, 243],
      [113, 225, 224, 223, 222, 221, 189], [226, 31, 228, 229, 230, 231, 232, 233, 244],
      [143, 111, 117, 118, 119, 120, 121, 128, 245], [156, 70, 63, 105, 66, 107, 55, 193], [35, 124, 46, 53, 52, 65]],
  },
  left: {
    flip: true, corners: [263, 362], iris: IRIS_B, contours: [
      [466, 388, 387, 386, 385, 384, 398], [263, 249, 390, 373, 374, 380, 381, 382, 362],
      [467, 260, 259, 257, 258, 286, 414], [359, 255, 339, 254, 253, 252, 256, 341, 463],
      [342, 445, 444, 443, 442, 441, 413], [446, 261, 448, 449, 450, 451, 452, 453, 464],
      [372, 340, 346, 347, 348, 349, 350, 357, 465], [383, 300, 293, 334, 296, 336, 285, 417],
      [265, 353, 276, 283, 282, 295]],
  },
};

/** Both eyes through Human's iris model as it is made to be used (tfjs-models' facemesh,
 *  MediaPipe's iris graph): each eye's box (its corners' box enlarged 2.3 times and squared, as
 *  Human's) cut from the ``big`` canvas (the picture at ``scale``) turned so that the eye's corner
 *  line is level (as MediaPipe's graph; Human's boxes are not turned: the left iris of a head
 *  rolled 25 deg moved 2x as far as the server's), the left one mirrored (the model is made for
 *  the right eye's orientation) and its answer mirrored back and turned back, and the model's
 *  iris and eye contours put in ``pts`` for both eyes, always.
 *
 *  Human 3.3.6's own iris step (off: :data:`MESH_ONLY`, so the model runs once a picture, as
 *  before) mirrors both eyes and mirrors back only the left eye's answer (src/face/iris.ts), so the
 *  right iris came out mirrored about the eye's middle (over synthetic calibration sessions its
 *  horizontal position correlated -0.90 with the Python mesh's, the left +0.96; a frontal face
 *  hid it, its iris near the middle and its corners swapped too); and it puts the model's contours
 *  in for a frontal face only, for one eye's lids when the head is turned (a depth difference of
 *  the mesh), so a corner came from one model or the other from one picture to the next (~2 px
 *  apart at 320 x 240, a fifth of an eye's width in the iris position). MediaPipe's refined mesh
 *  (the Python pipeline's) refines both eyes always. */
async function irisEyes(mesh, pts, scale) {
  const model = mesh.human.models && mesh.human.models.models && mesh.human.models.models.iris;
  if (!model || !model.executor || !model.inputs[0].shape) throw new Error("the iris model is not loaded");
  const size = model.inputs[0].shape[2] > 0 ? model.inputs[0].shape[2] : 64;
  if (!mesh.eye) {
    mesh.eye = typeof document !== "undefined" ? document.createElement("canvas") : new OffscreenCanvas(1, 1);
    mesh.eye.width = 2 * size;
    mesh.eye.height = size;
    mesh.eyeCtx = mesh.eye.getContext("2d", { willReadFrequently: true });
  }
  const ctx = mesh.eyeCtx;
  const boxes = [];
  Object.values(EYE_CONTOURS).forEach((eye, e) => {
    const [[ax, ay], [bx, by]] = eye.corners.map((i) => pts[i]);
    const side = 2.3 * scale * Math.max(Math.abs(ax - bx), Math.abs(ay - by));
    const cx = ((ax + bx) / 2) * scale, cy = ((ay + by) / 2) * scale;
    // the corner line levelled, as MediaPipe's iris graph does (its angle from the left corner)
    const angle = ax <= bx ? Math.atan2(by - ay, bx - ax) : Math.atan2(ay - by, ax - bx);
    const cos = Math.cos(angle), sin = Math.sin(angle), k = side / size, sf = eye.flip ? -1 : 1;
    boxes.push({ eye, side, cx, cy, cos, sin });
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(e * size, 0, size, size);
    ctx.beginPath();
    ctx.rect(e * size, 0, size, size);
    ctx.clip();
    // the big canvas's point (x, y) -> the cell: rotated by -angle about the eye, scaled to the cell
    // (mirrored for the left eye)
    ctx.setTransform(sf * cos / k, -sin / k, sf * sin / k, cos / k,
                     e * size + size / 2 - sf * (cos * cx + sin * cy) / k, size / 2 + (sin * cx - cos * cy) / k);
    if (side > 0) ctx.drawImage(mesh.big, 0, 0);
    ctx.restore();
  });
  if (!boxes.every((b) => b.side > 0)) throw new Error("an eye without a size");
  const tf = mesh.human.tf;
  const pixels = ctx.getImageData(0, 0, 2 * size, size);
  const input = tf.tidy(() => { // [2, size, size, 3]: the two eyes side by side, cut apart (Human's tf: no chained ops)
    const both = tf.div(tf.cast(tf.browser.fromPixels(pixels), "float32"), 255);
    return tf.stack([tf.slice(both, [0, 0, 0], [size, size, 3]), tf.slice(both, [0, size, 0], [size, size, 3])]);
  });
  const out = model.execute(input);
  tf.dispose(input);
  const data = await (Array.isArray(out) ? out[0] : out).data();
  tf.dispose(out);
  const per = data.length / 2;
  boxes.forEach(({ eye, side, cx, cy, cos, sin }, e) => {
    const at = (i) => { // the cell's point back on the big canvas, then in the picture's pixels
      const u = data[e * per + 3 * i] / size, v = data[e * per + 3 * i + 1] / size;
      const px = ((eye.flip ? 1 - u : u) - 0.5) * side, py = (v - 0.5) * side;
      return [(cx + cos * px - sin * py) / scale, (cy + sin * px + cos * py) / scale];
    };
    for (let k = 0; k < IRIS_N; k++) pts[eye.iris + k] = at(IRIS_MODEL_IRIS + k);
    eye.contours.forEach((c, j) => c.forEach((i, m) => { pts[i] = at(IRIS_MODEL_CONTOURS[j][m]); }));
  });
}

/** webcam.image_sample's face box: the landmarks' bounds clipped to the picture, whole pixels,
 *  [x0, y0, x1, y1] inclusive. */
export function faceBox(pts, w, h) {
  let lx = Infinity, ly = Infinity, hx = -Infinity, hy = -Infinity;
  for (const [x, y] of pts) { lx = Math.min(lx, x); ly = Math.min(ly, y); hx = Math.max(hx, x); hy = Math.max(hy, y); }
  const clip = (v, hi) => Math.trunc(Math.min(Math.max(v, 0), hi));
  return [clip(lx, w - 1), clip(ly, h - 1), clip(hx, w - 1), clip(hy, h - 1)];
}

/** webcam.image_sample's brightness and clipped share of ``box``: the mean grey level and the
 *  share of pixels at webcam.SATURATED (250) or above (the OVEREXPOSED flag's measure). */
export function boxLevels(grey, w, box) {
  let sum = 0, count = 0, sat = 0;
  for (let y = box[1]; y <= box[3]; y++) {
    for (let x = box[0]; x <= box[2]; x++) { const v = grey[y * w + x]; sum += v; count++; if (v >= 250) sat++; }
  }
  return { mean: sum / count, saturated: sat / count };
}

/**
 * One sample of the picture on ``canvas`` (its 2-D context ``ctx``): {w, h, n, b, s, o, c, lm, p}
 * (see gazepref.capture_site.gaze_samples). ``landmarks``: the indices to send.
 */
export async function faceSample(mesh, canvas, ctx, landmarks, patchSize = [10, 6]) {
  const w = canvas.width, h = canvas.height;
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const grey = greyOf(rgba, w * h);
  if (!mesh.big) { // (a Web Worker has no document: mesh_worker.js)
    mesh.big = typeof document !== "undefined" ? document.createElement("canvas") : new OffscreenCanvas(1, 1);
    mesh.bigCtx = mesh.big.getContext("2d");
  }
  const scale = meshScale(w, h);
  if (mesh.big.width !== w * scale || mesh.big.height !== h * scale) {
    mesh.big.width = w * scale;
    mesh.big.height = h * scale;
  }
  mesh.bigCtx.drawImage(canvas, 0, 0, w * scale, h * scale);
  const result = await mesh.human.detect(mesh.big, MESH_ONLY);
  const faces = meshes(result, scale);
  if (!faces.length) {
    let m = 0;
    for (const v of grey) m += v;
    return { w, h, n: 0, b: r2(m / grey.length) };
  }
  const pts = faces[0];
  await irisEyes(mesh, pts, scale);
  let cx = 0, cy = 0;
  for (let i = 0; i < 468; i++) { cx += pts[i][0]; cy += pts[i][1]; }
  const box = faceBox(pts, w, h);
  const levels = boxLevels(grey, w, box);
  const p = [];
  for (const [, a, b] of EYES) p.push(...eyePatch(grey, w, h, pts[a], pts[b], patchSize[0], patchSize[1]));
  return {
    w, h, n: Math.min(faces.length, 2), b: r2(levels.mean), s: r4(sharpness(grey, w, box)), o: r4(levels.saturated),
    c: [r2(cx / 468), r2(cy / 468)],
    lm: landmarks.flatMap((i) => [r2(pts[i][0]), r2(pts[i][1])]),
    p: p.map(r4),
  };
}
