"""Bytes the webcam pages download, as they are and gzip-compressed by the site
(capture_site/compressed.py): the face mesh under /vendor/ and the site's own /static/ files.

    .venv/bin/python benchmarks/vendor_compression.py [--mbit 1.5] [--json]

Asks a study site (Flask test client, a temporary instance folder) for each file twice, without
and with ``Accept-Encoding: gzip``, and prints the bytes that went out per file and per file type,
the total of what a browser-mode webcam page fetches (the library, the three models' .json and
.bin, the SIMD wasm binary) and the time that takes at ``--mbit`` megabits per second. The first
request of each file also times the one-off compression.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "capture_site"))

#: what the webcam page fetches (facemesh.js loadMesh; Chromium picks the SIMD wasm binary)
PAGE = ["human/dist/human.esm.js", *(f"human/models/{m}.{e}" for m in ("blazeface", "facemesh", "iris")
                                     for e in ("json", "bin")), "tfjs-wasm/tfjs-backend-wasm-simd.wasm"]
OTHER = ["tfjs-wasm/tfjs-backend-wasm.wasm", "tfjs-wasm/tfjs-backend-wasm-threaded-simd.wasm"]


def measure() -> list[dict]:
    from gazepref.capture_site import vendor
    from gazepref.capture_site.app import create_app
    from sitetest import STUDY_TOML

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(str(Path(tmp) / "instance"), {"SECRET_KEY": "bench", "STUDY_CONFIG": str(STUDY_TOML)})
        client = app.test_client()
        with app.test_request_context():
            base = vendor.base_url()
        static = sorted(p.name for p in (Path(vendor.__file__).parent / "static").iterdir())
        urls = [(base + p, "vendor", p in PAGE) for p in PAGE + OTHER]
        urls += [(f"/static/{name}", "static", False) for name in static]
        for url, where, page in urls:
            t0 = time.perf_counter()
            packed = client.get(url, headers={"Accept-Encoding": "gzip"})
            first_s = time.perf_counter() - t0
            plain = client.get(url)
            assert packed.status_code == plain.status_code == 200, url
            rows.append({"url": url, "where": where, "page": page, "type": Path(url).suffix,
                         "identity_bytes": len(plain.data), "sent_bytes": len(packed.data),
                         "gzip": packed.headers.get("Content-Encoding") == "gzip",
                         "first_request_s": round(first_s, 3)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mbit", type=float, default=1.5, help="link speed for the download times (Mbit/s)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = measure()
    page = [r for r in rows if r["page"]]
    before, after = sum(r["identity_bytes"] for r in page), sum(r["sent_bytes"] for r in page)
    static_before = sum(r["identity_bytes"] for r in rows if r["where"] == "static")
    static_after = sum(r["sent_bytes"] for r in rows if r["where"] == "static")
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        by_type[f'{r["where"]} {r["type"]}'][0] += r["identity_bytes"]
        by_type[f'{r["where"]} {r["type"]}'][1] += r["sent_bytes"]
    seconds = lambda n: n * 8 / (args.mbit * 1e6)  # noqa: E731
    summary = {"webcam_page_identity_bytes": before, "webcam_page_sent_bytes": after,
               "webcam_page_identity_s": round(seconds(before), 1), "webcam_page_sent_s": round(seconds(after), 1),
               "static_identity_bytes": static_before, "static_sent_bytes": static_after, "mbit": args.mbit}
    if args.json:
        print(json.dumps({"files": rows, "by_type": by_type, "summary": summary}, indent=1))
        return
    print(f"{'file':58s} {'identity':>10s} {'sent':>10s} {'saved':>6s}  gzip  first request")
    for r in rows:
        saved = 1 - r["sent_bytes"] / r["identity_bytes"]
        print(f'{r["url"][-58:]:58s} {r["identity_bytes"]:10d} {r["sent_bytes"]:10d} {saved:6.1%}  '
              f'{"yes" if r["gzip"] else "no ":4s}  {r["first_request_s"]:.3f} s')
    print("\nper type (all files of the type):")
    for kind, (a, b) in sorted(by_type.items()):
        print(f"  {kind:14s} {a:10d} -> {b:10d}  {1 - b / a:6.1%} saved")
    print(f"\nwebcam page (vendor): {before} -> {after} bytes ({1 - after / before:.1%} less): "
          f"{seconds(before):.1f} s -> {seconds(after):.1f} s at {args.mbit} Mbit/s")
    print(f"site's /static/ files: {static_before} -> {static_after} bytes")


if __name__ == "__main__":
    main()
