// The face mesh in a Web Worker (facemesh.js startMesh): the page sends a picture's pixels, the
// worker answers with its sample (facemesh.js faceSample, the same code as on the main thread),
// so the page's main thread is free while the picture is in the mesh. One picture at a time, in
// the order they come.

import { faceSample, loadMesh } from "./facemesh.js";

let mesh = null;
let canvas = null;
let ctx = null;
let queue = Promise.resolve();

async function answer(data) {
  if (data.type === "load") {
    mesh = await loadMesh({ base: data.base, backend: data.backend });
    return { backend: mesh.backend, loadMs: mesh.loadMs };
  }
  if (data.type === "sample") {
    if (!mesh) throw new Error("the face mesh is not loaded");
    if (!canvas || canvas.width !== data.width || canvas.height !== data.height) {
      canvas = new OffscreenCanvas(data.width, data.height);
      ctx = canvas.getContext("2d", { willReadFrequently: true });
    }
    ctx.putImageData(new ImageData(new Uint8ClampedArray(data.pixels), data.width, data.height), 0, 0);
    return { sample: await faceSample(mesh, canvas, ctx, data.landmarks, data.patchSize) };
  }
  throw new Error(`unknown request ${data.type}`);
}

self.onmessage = ({ data }) => {
  queue = queue.then(() => answer(data)).then(
    (reply) => self.postMessage({ id: data.id, ...reply }),
    (e) => self.postMessage({ id: data.id, error: String((e && e.message) || e) }),
  );
};
