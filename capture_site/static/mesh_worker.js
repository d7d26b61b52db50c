// The face mesh in a Web Worker (facemesh.js startMesh): the page sends a picture's pixels, the
// worker answers with its sample (facemesh.js faceSample, the same code as on the main thread),
// so the page's main thread is free while the picture is in the mesh. One picture at a time, in
// the order they come.

import { MESH_PROTOCOL, faceSample, loadMesh } from "./facemesh.js";

let mesh = null;
let canvas = null;
let ctx = null;
let queue = Promise.resolve();

function sampleOf(width, height, pixels, landmarks, patchSize) {
  if (!canvas || canvas.width !== width || canvas.height !== height) {
    canvas = new OffscreenCanvas(width, height);
    ctx = canvas.getContext("2d", { willReadFrequently: true });
    if (!ctx) throw new Error("no 2d OffscreenCanvas in this worker");
  }
  ctx.putImageData(new ImageData(new Uint8ClampedArray(pixels), width, height), 0, 0);
  return faceSample(mesh, canvas, ctx, landmarks, patchSize);
}

async function answer(data) {
  if (data.type === "load") {
    if (data.protocol !== MESH_PROTOCOL) { // a page of another release than this worker's
      throw new Error(`the page speaks protocol ${data.protocol}, this worker ${MESH_PROTOCOL}`);
    }
    const t0 = performance.now();
    mesh = await loadMesh({ base: data.base, backend: data.backend });
    // one blank picture through what is the worker's own (a 2d OffscreenCanvas, its pixels, the
    // face detector on an OffscreenCanvas): what fails only in a worker fails now, and the page
    // keeps the main thread (the mesh and iris models run on a face only: a failure there is
    // caught at the first picture); loadMs counts it
    await sampleOf(32, 24, new Uint8ClampedArray(32 * 24 * 4).fill(255).buffer, [], [10, 6]);
    return { backend: mesh.backend, loadMs: performance.now() - t0 };
  }
  if (data.type === "sample") {
    if (!mesh) throw new Error("the face mesh is not loaded");
    return { sample: await sampleOf(data.width, data.height, data.pixels, data.landmarks, data.patchSize) };
  }
  throw new Error(`unknown request ${data.type}`);
}

self.onmessage = ({ data }) => {
  queue = queue.then(() => answer(data)).then(
    (reply) => self.postMessage({ id: data.id, ...reply }),
    (e) => self.postMessage({ id: data.id, error: String((e && e.message) || e) }),
  );
};
