"""What the browser mode costs the participant's page: the face mesh (and sample) per picture in
headless Chromium with a fake webcam playing the astronaut's face.

    .venv/bin/python benchmarks/page_mesh.py [--backend webgl wasm cpu] [--thread worker main]
        [--seconds 20] [--fps 15] [--json]

For each TF.js backend it starts the study site (browser mode, ``[gaze] fps``), opens the
calibration page (the set-up: the camera runs, samples go to the server) and reads the page's
own measurements (``GazeCapture.cost()``): median ms per picture (mesh + sample), the achieved
pictures per second, the model load time, the backend TF.js actually used and where the mesh ran
(``thread``: ``[gaze] mesh_worker``, a Web Worker or the page's main thread), and what the main
thread was kept busy meanwhile (``main_long_ms_per_s``: its tasks over 50 ms, ms a second: time
keys and clicks wait). Headless Chromium
here has no GPU: "webgl" is software WebGL (SwiftShader), so these are a slow laptop's figures
at best.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "capture_site"))

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def calibration_page(tmp: Path, gaze_lines: str, name: str, timeout_ms: int = 60_000):
    """The study site (the test study with the webcam in browser mode, ``gaze_lines`` in its
    ``[gaze]`` table) and headless Chromium with a fake webcam (the astronaut's face moving), at
    the calibration page: yields the page and the list its console lines go to."""
    from playwright.sync_api import sync_playwright

    from gazepref.capture_site.app import create_app
    from gazepref.capture_site.serving import BackgroundServer
    from gazepref.signals.synthetic_face import moving_face
    from gazetest import webcam_toml, write_y4m

    video = write_y4m(tmp / f"{name}.y4m", [moving_face(i) for i in range(40)], fps=10)
    toml = webcam_toml(tmp / f"{name}.toml", f'compute = "browser"\n{gaze_lines}')
    app = create_app(str(tmp / f"instance-{name}"), {"SECRET_KEY": "bench", "STUDY_CONFIG": str(toml)})
    args = ARGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                   f"--use-file-for-fake-video-capture={video}"]
    with sync_playwright() as pw, BackgroundServer(app) as url:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=args, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=url).new_page()
            page.set_default_timeout(timeout_ms)
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.on("pageerror", lambda e: console.append(str(e)))
            page.goto(f"/?PROLIFIC_PID={name.upper()}&STUDY_ID=S&SESSION_ID=X")
            page.click("#agree")
            page.fill("[name='age']", "30")
            page.click("#continue")
            page.click("#continue")
            yield page, console
        finally:
            browser.close()


def measure(backend: str, thread: str, seconds: float, fps: int, tmp: Path) -> dict:
    from browsertest import wait_for_function

    worker = "true" if thread == "worker" else "false"
    with calibration_page(tmp, f'mesh_backend = "{backend}"\nmesh_worker = {worker}\nfps = {fps}',
                          f"bench-{backend}-{thread}") as (page, console):
        try:
            # not page.wait_for_function: Playwright evaluates its predicate with eval in the page,
            # which the site's Content-Security-Policy refuses (tests/capture_site/browsertest.py)
            wait_for_function(page, "window.gazepref && window.gazepref.calibration.capture"
                                    " && window.gazepref.calibration.capture.samples >= 2", timeout=60_000)
        except Exception as e:
            raise SystemExit(f"the page's face mesh did not start ({e}): {console[-5:]}") from None
        page.evaluate("""() => {
          const c = window.gazepref.calibration.capture; c.meshMs.length = 0; c.samples = 0; c.startedAt = performance.now();
          window.longTaskMs = 0;
          new PerformanceObserver((l) => { for (const e of l.getEntries()) window.longTaskMs += e.duration; })
            .observe({ type: "longtask" });
        }""")
        time.sleep(seconds)
        cost = page.evaluate("window.gazepref.calibration.capture.cost()")
        cost["main_long_ms_per_s"] = page.evaluate("window.longTaskMs / ((performance.now() - "
                                                   "window.gazepref.calibration.capture.startedAt) / 1000)")
    return {"backend_asked": backend, "thread_asked": thread, **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in cost.items()},
            "fps_asked": fps}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    from gazepref.capture_site.gaze_settings import MESH_BACKENDS

    ap.add_argument("--backend", nargs="+", choices=MESH_BACKENDS, default=list(MESH_BACKENDS))
    ap.add_argument("--thread", nargs="+", choices=["worker", "main"], default=["worker", "main"])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = []
    with tempfile.TemporaryDirectory() as d:
        for b in a.backend:
            for t in a.thread:
                out.append(measure(b, t, a.seconds, a.fps, Path(d)))
                if not a.json:
                    print(out[-1], flush=True)
    if a.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
