"""Telemetry ingest under load: N simulated participants against the gunicorn-served study site.

    .venv/bin/python benchmarks/ingest.py [--participants 200] [--duration 30] [--workers 2]
        [--db URL_OR_FILE] [--port N] [--profile DIR]

Each participant records mouse samples at 60 Hz and sends one gzip batch per second (as the
page does), retrying with back-off until the server confirms it. Before the measured run the
server is warmed for ``--warmup-s`` seconds (default 2) by other participants (4 per server
thread, their batches not counted): a worker's first requests pay its imports, statement caches
and database connections (25-65 ms each), and with all participants arriving within the same
second they would queue behind them, a start-up artefact a running study does not see
(``--warmup-s 0`` measures it). The site runs under gunicorn on
127.0.0.1 (a subprocess, a fresh instance folder) against the database the site would use
(``gazepref.store.database_url``: ``--db``, else ``$GAZEPREF_DATABASE_URL``, else SQLite in the
fresh instance folder); the participants of this run are read back from that database and the
script prints which database it measured, sustained participants, batch latency p50/p99, lost
samples (generated but not stored) and duplicated samples (stored more than once).
``--profile DIR``: each gunicorn worker writes a cProfile of its request threads to DIR
(``benchmarks/profile_hooks.py``; print with ``python -m pstats``).
Target on the project's 2-core machine: 400 participants, p99 < 100 ms, 0 lost, 0 duplicated.
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
                      state: dict | None = None, database_url: str | None = None) -> list[tuple[int, str]]:
    """Create n consenting participants with one task each; returns (task id, token) pairs.
    ``study``: the study TOML (default: the site's default study); ``state``: extra entries of
    each participant's flow state (e.g. ``{"gaze": "calibrated"}``); ``database_url``: the
    database (default: the site's, :func:`gazepref.store.database_url`)."""
    overrides = {"STUDY_CONFIG": str(study)} if study is not None else {}
    if database_url:
        overrides["DATABASE_URL"] = database_url
    app = create_app(str(instance), overrides or None)
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
            out.append((p.tasks[0].id, participant_token(p)))
        s.commit()
    return out


def start_gunicorn(instance: Path, port: int, workers: int, threads: int, database_url: str | None = None,
                   profile_dir: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """gunicorn serving the site of ``instance`` (on ``database_url`` when given) in its own
    process group (so a test can kill it whole); returns once the workers answer. Started as
    docs/STUDY_SITE.md says, with the site's config module (its ``post_fork`` tells each worker
    ``threads``, which the site's per-process limits derive from; ``profile_hooks.py`` calls it too)."""
    config = "python:gazepref.capture_site.gunicorn_conf" if profile_dir is None else str(
        Path(__file__).with_name("profile_hooks.py"))
    cmd = [sys.executable, "-m", "gunicorn", "-c", config, "-w", str(workers), "-k", "gthread", "--threads",
           str(threads), "-b", f"127.0.0.1:{port}", "--backlog", "2048", "--keep-alive", "5", "--log-level", "warning"]
    environ = {**os.environ, "GAZEPREF_INSTANCE": str(instance), **(env or {})}
    if database_url:
        environ["GAZEPREF_DATABASE_URL"] = database_url
    if profile_dir is not None:
        environ["GAZEPREF_BENCH_PROFILE_DIR"] = str(profile_dir)
    cmd.append("gazepref.capture_site.app:create_app()")
    proc = subprocess.Popen(cmd, env=environ, start_new_session=True)
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
        self.acked: list[int] = []  # seqs the server confirmed
        self.patience_s = 30.0  # how long after the end a batch is still retried
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
                    self.acked.append(seq - 1)
                    break
                if time.monotonic() > end + self.patience_s:
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


def run_threads(threads) -> None:
    """Start every simulated participant, then wait for all of them."""
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def stored_times(database_url: str, tasks: list[int]) -> dict[int, np.ndarray]:
    """The stored mouse sample times of each of ``tasks`` (this run's), read back from the database."""
    engine = store.make_engine(database_url)
    try:
        with store.init_db(engine)() as s:
            return {task.id: store.read_stream(s, task, "mouse").column("t").to_numpy()
                    for task in s.scalars(select(store.Task).where(store.Task.id.in_(tasks)))}
    finally:
        engine.dispose()


def count_stored(database_url: str, tasks: list[int]) -> tuple[int, int]:
    """(stored samples, unique (task, t) samples) of ``tasks`` read back from the database."""
    times = stored_times(database_url, tasks).values()
    return sum(len(t) for t in times), sum(len(np.unique(t)) for t in times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=200)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of recording per participant")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    ap.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    ap.add_argument("--db", help="database URL or SQLite file (default: $GAZEPREF_DATABASE_URL, else SQLite "
                                 "in a fresh instance folder)")
    ap.add_argument("--port", type=int, default=0, help="port of the server on 127.0.0.1 (default: a free one)")
    ap.add_argument("--profile", type=Path, help="write each worker's cProfile to this folder")
    ap.add_argument("--warmup-s", type=float, default=2.0,
                    help="seconds of batches from other participants (4 per server thread) before the measured run "
                         "(0: measure a cold server)")
    ap.add_argument("--keep", action="store_true", help="keep the instance folder")
    args = ap.parse_args()

    instance = Path(tempfile.mkdtemp(prefix="gazepref-bench-"))
    url = store.database_url(args.db, instance=instance)
    port = args.port or free_port()
    pairs = make_participants(instance, args.participants, prefix=f"bench{os.getpid()}-{int(time.time())}-",
                              database_url=url)
    warm = make_participants(instance, min(args.participants, 4 * args.workers * args.threads),
                             prefix=f"warm{os.getpid()}-{int(time.time())}-", database_url=url) if args.warmup_s > 0 else []
    server = start_gunicorn(instance, port, args.workers, args.threads, url, args.profile)
    stats = Stats()
    try:
        if warm:  # every worker thread's first requests (imports, statement caches, connections)
            t0 = time.monotonic() + 0.2
            warmers = [Participant(port, task, token, args.warmup_s, t0 + i / len(warm), Stats())
                       for i, (task, token) in enumerate(warm)]
            run_threads(warmers)
        t0 = time.monotonic() + 1.0
        clients = [Participant(port, task, token, args.duration, t0 + i / len(pairs), stats)
                   for i, (task, token) in enumerate(pairs)]
        cpu0, client0 = cpu_seconds(server.pid), time.process_time()
        run_threads(clients)
        wall = time.monotonic() - t0
        server_cpu = cpu_seconds(server.pid) - cpu0
        client_cpu = time.process_time() - client0  # the simulated participants (this process)
    finally:
        server.terminate()
        server.wait(timeout=30)
    generated = sum(c.generated for c in clients)
    stored, unique = count_stored(url, [task for task, _ in pairs])
    lat = np.array(stats.latencies) * 1000.0
    batches = len(lat)
    p50, p99 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 99))) if batches else (float("nan"),) * 2
    offered = args.participants / BATCH_S
    kept_up = stats.late_max < BATCH_S and stats.gave_up == 0 and generated == unique
    result = {
        "database": store.safe_url(url),
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
        # the load generator shares the machine: its CPU is not the server's to use
        "client_cpu_ms_per_batch": round(1000 * client_cpu / batches, 2) if batches else None,
        "gunicorn": f"{args.workers} workers x {args.threads} threads (gthread)",
        "warmup_s": args.warmup_s,
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
