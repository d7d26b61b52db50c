"""Telemetry ingest under load: N simulated participants against the gunicorn-served study site.

    .venv/bin/python benchmarks/ingest.py [--participants 200] [--duration 30] [--workers 2]

Each participant records mouse samples at 60 Hz and sends one gzip batch per second (as the
page does), retrying with back-off until the server confirms it. The site runs under gunicorn on
127.0.0.1 (a subprocess, a fresh instance folder with SQLite). Afterwards the database is read
back and the script prints: sustained participants, batch latency p50/p99, lost samples
(generated but not stored) and duplicated samples (stored more than once).
Target on the project's 2-core machine: 200 participants, p99 < 100 ms, 0 lost, 0 duplicated.
"""
from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select

from gazepref import store
from gazepref.capture_site.app import create_app
from gazepref.capture_site.security import participant_token

HZ = 60
BATCH_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_participants(instance: Path, n: int, study: Path | None = None, prefix: str = "bench",
                      state: dict | None = None) -> list[tuple[int, str]]:
    """Create n consenting participants with one task each; returns (task id, token) pairs.
    ``study``: the study TOML (default: the site's default study); ``state``: extra entries of
    each participant's flow state (e.g. ``{"gaze": "calibrated"}``)."""
    app = create_app(str(instance), {"STUDY_CONFIG": str(study)} if study is not None else None)
    sessions = app.extensions["gazepref"].sessions
    out = []
    with sessions() as s, app.test_request_context():
        st = s.scalars(select(store.Study)).one()
        for i in range(n):
            p = store.Participant(study_id=st.id, pseudonym=f"{prefix}{i:05d}", platform="bench", consent=True,
                                  state={"steps": ["task:0", "done"], "pos": 0, **(state or {})})
            p.tasks.append(store.Task(index=0, kind="pairwise", topic="bench", answers={}))
            s.add(p)
            s.flush()
            out.append((p.tasks[0].id, participant_token(p.id)))
        s.commit()
    return out


def start_gunicorn(instance: Path, port: int, workers: int, threads: int) -> subprocess.Popen:
    # this interpreter's gunicorn (not the script's shebang: a copied venv may point elsewhere)
    cmd = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", "gthread", "--threads", str(threads), "-b", f"127.0.0.1:{port}",
           "--backlog", "2048", "--keep-alive", "5", "--log-level", "warning",
           "gazepref.capture_site.app:create_app()"]
    proc = subprocess.Popen(cmd, env={**os.environ, "GAZEPREF_INSTANCE": str(instance)})
    deadline = time.monotonic() + 90
    ready = 0
    while time.monotonic() < deadline and ready < 4 * workers * threads:
        try:  # the socket opens before the workers have loaded the app: wait for real answers
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/admin/login")
            ready += conn.getresponse().status == 200
            conn.close()
        except (OSError, http.client.HTTPException):
            if proc.poll() is not None:
                raise SystemExit(f"gunicorn exited with {proc.returncode}")
            time.sleep(0.2)
    if ready < 4 * workers * threads:
        proc.terminate()
        raise SystemExit("gunicorn did not start in 90 s")
    return proc


class Participant(threading.Thread):
    def __init__(self, port: int, task: int, token: str, duration: float, start_at: float, stats: Stats):
        super().__init__(daemon=True)
        self.port, self.task, self.token = port, task, token
        self.duration, self.start_at, self.stats = duration, start_at, stats
        self.origin = time.time() * 1000.0
        self.generated = 0
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> int:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            self.conn.request("POST", "/api/ingest", body=body, headers={
                "Content-Type": "application/json", "Content-Encoding": "gzip", "X-Participant-Token": self.token})
            resp = self.conn.getresponse()
            resp.read()
            if resp.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return resp.status
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            return 0

    def run(self) -> None:
        rng = random.Random(self.task)
        seq, t_page = 0, 0.0
        next_at = self.start_at
        end = self.start_at + self.duration
        while next_at < end:
            time.sleep(max(0.0, next_at - time.monotonic()))
            n = int(HZ * BATCH_S)
            t = [round(t_page + i * 1000.0 / HZ, 2) for i in range(n)]
            t_page += 1000.0 * BATCH_S
            x = [round(rng.uniform(0, 1280), 1) for _ in range(n)]
            y = [round(rng.uniform(0, 900), 1) for _ in range(n)]
            body = gzip.compress(json.dumps({"task": self.task, "seq": seq, "origin": self.origin, "streams": {
                "mouse": {"t": t, "x": x, "y": y, "buttons": [0] * n}}}).encode(), compresslevel=6)
            self.generated += n
            seq += 1
            backoff = 0.25
            while True:
                sent = time.monotonic()
                status = self.post(body)
                self.stats.record(time.monotonic() - sent, status)
                if status == 200:
                    break
                if time.monotonic() > end + 30:
                    self.stats.gave_up += 1
                    break
                time.sleep(backoff)
                backoff = min(backoff * 2, 4.0)
            next_at += BATCH_S
            self.stats.late_max = max(self.stats.late_max, time.monotonic() - next_at)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors: dict[int, int] = {}
        self.gave_up = 0
        self.late_max = 0.0

    def record(self, seconds: float, status: int) -> None:
        with self.lock:
            if status == 200:
                self.latencies.append(seconds)
            else:
                self.errors[status] = self.errors.get(status, 0) + 1


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children, from /proc (Linux; 0 elsewhere)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for p in [pid, *map(int, children)]:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    except OSError:
        return 0.0
    return total


def count_stored(instance: Path) -> tuple[int, int]:
    """(stored samples, unique (task, t) samples) read back from the database."""
    sessions = store.init_db(store.make_engine(store.sqlite_url(instance / "gazepref.sqlite")))
    stored = unique = 0
    with sessions() as s:
        for task in s.scalars(select(store.Task)):
            t = store.read_stream(s, task, "mouse").column("t").to_numpy()
            stored += len(t)
            unique += len(np.unique(t))
    return stored, unique


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=200)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of recording per participant")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    ap.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    ap.add_argument("--keep", action="store_true", help="keep the instance folder")
    args = ap.parse_args()

    instance = Path(tempfile.mkdtemp(prefix="gazepref-bench-"))
    port = free_port()
    pairs = make_participants(instance, args.participants)
    server = start_gunicorn(instance, port, args.workers, args.threads)
    stats = Stats()
    try:
        t0 = time.monotonic() + 1.0
        clients = [Participant(port, task, token, args.duration, t0 + i / len(pairs), stats)
                   for i, (task, token) in enumerate(pairs)]
        cpu0 = cpu_seconds(server.pid)
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        wall = time.monotonic() - t0
        server_cpu = cpu_seconds(server.pid) - cpu0
    finally:
        server.terminate()
        server.wait(timeout=30)
    generated = sum(c.generated for c in clients)
    stored, unique = count_stored(instance)
    lat = np.array(stats.latencies) * 1000.0
    batches = len(lat)
    p50, p99 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 99))) if batches else (float("nan"),) * 2
    offered = args.participants / BATCH_S
    kept_up = stats.late_max < BATCH_S and stats.gave_up == 0 and generated == unique
    result = {
        "participants": args.participants,
        # all kept up (no backlog, nothing lost), or else the throughput the server managed
        "sustained_participants": args.participants if kept_up else int(batches / wall * BATCH_S),
        "duration_s": round(wall, 1),
        "batches": batches,
        "batches_per_s": round(batches / wall, 1),
        "offered_batches_per_s": offered,
        "latency_p50_ms": round(p50, 1),
        "latency_p99_ms": round(p99, 1),
        "latency_max_ms": round(float(lat.max()), 1) if batches else None,
        "max_lag_behind_schedule_s": round(stats.late_max, 2),
        "errors": stats.errors,
        "samples_generated": generated,
        "samples_stored": stored,
        "lost_samples": generated - unique,
        "duplicated_samples": stored - unique,
        "server_cpu_ms_per_batch": round(1000 * server_cpu / batches, 2) if batches else None,
        "gunicorn": f"{args.workers} workers x {args.threads} threads (gthread), SQLite WAL",
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 1),
    }
    width = max(map(len, result))
    for k, v in result.items():
        print(f"{k:<{width}}  {v}")
    if args.keep:
        print(f"instance kept at {instance}")
    else:
        shutil.rmtree(instance, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
