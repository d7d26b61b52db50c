"""What the telemetry outbox (``capture_site/static/outbox.js``) costs the participant's page when
a backlog drains: after the network was away, up to the shared 4 MB bound of stored batches.

    .venv/bin/python benchmarks/outbox_drain.py [--mb 0.1 1 4] [--batch-kb 4] [--json]

In headless Chromium (a page serving only outbox.js), for each backlog size the page stores that
many batches (about ``--batch-kb`` each, like a second of telemetry) in its outbox, then drains it
against a server that acknowledges at once (``fetch`` answered in the page: no network, so the
figures are the page's own work). Printed per size: the batches, ms of drain per acknowledgement,
the long tasks (> 50 ms) and their total ms, the localStorage bytes written during the drain, and
the ms of one ``push`` onto the full backlog (the browser offline: what every new batch costs).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORIGIN = "http://outbox.bench"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGE = """<!doctype html><div id="page-data"></div><script type="module">
import { Outbox } from "/static/outbox.js"; window.Outbox = Outbox; window.ready = true;
</script>"""

MEASURE = """async ([n, kb]) => {
  const longs = [];
  new PerformanceObserver((l) => longs.push(...l.getEntries())).observe({ type: "longtask", buffered: false });
  let written = 0;
  const setItem = Storage.prototype.setItem;
  Storage.prototype.setItem = function (k, v) { written += String(v).length; return setItem.call(this, k, v); };
  const online = window.fetch;
  let acks = 0;
  window.fetch = () => Promise.reject(new TypeError("offline"));
  const box = new Outbox({ task: 1, token: "tok", url: "/api/ingest" });
  const row = "x".repeat(kb * 1024 - 60);
  // the backlog: stored while offline (each push stores it; the first send fails and backs off)
  for (let i = 0; i < n; i++) box.push({ task: 1, seq: i, origin: performance.timeOrigin, streams: { pad: row } });
  await new Promise((r) => setTimeout(r, 50));
  const stored = (localStorage.getItem(box.key) || "").length;
  const t0 = performance.now();
  box.push({ task: 1, seq: n, origin: performance.timeOrigin, streams: { pad: row } });
  const pushMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 100));
  written = 0; longs.length = 0;
  window.fetch = () => { acks += 1; return Promise.resolve(new Response("{}", { status: 200 })); };
  const start = performance.now();
  box.retryNow();
  while (box.pending || localStorage.getItem(box.key) !== null) await new Promise((r) => setTimeout(r, 5));
  const drainMs = performance.now() - start;
  await new Promise((r) => setTimeout(r, 100)); // (long tasks are reported a little later)
  Storage.prototype.setItem = setItem;
  window.fetch = online;
  return { batches: n + 1, stored_mb: stored / 1e6, ms_per_ack: drainMs / acks, drain_ms: drainMs,
           long_tasks: longs.length, long_task_ms: longs.reduce((s, e) => s + e.duration, 0),
           written_mb: written / 1e6, push_ms_offline: pushMs };
}"""


def measure(mb: float, kb: int) -> dict:
    from playwright.sync_api import sync_playwright

    n = max(1, round(mb * 1e6 / (kb * 1024)))
    js = (ROOT / "capture_site" / "static" / "outbox.js").read_text()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)
        page = browser.new_page()
        page.route(f"{ORIGIN}/", lambda r: r.fulfill(body=PAGE, content_type="text/html"))
        page.route(f"{ORIGIN}/static/outbox.js", lambda r: r.fulfill(body=js, content_type="text/javascript"))
        page.goto(f"{ORIGIN}/")
        page.wait_for_function("window.ready === true")
        out = page.evaluate(MEASURE, [n, kb])
        browser.close()
    return {"backlog_mb": mb, **{k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, nargs="+", default=[0.1, 1.0, 4.0])
    ap.add_argument("--batch-kb", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = []
    for mb in a.mb:
        out.append(measure(mb, a.batch_kb))
        if not a.json:
            print(out[-1], flush=True)
    if a.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
