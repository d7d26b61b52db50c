"""Faults under load: kill the server (and, on PostgreSQL, the database) mid-load, restart it,
and check that every acknowledged telemetry sample is stored, and stored once.

    .venv/bin/python benchmarks/faults.py [--db sqlite|postgresql] [--participants 40]
        [--duration 30] [--server-kills 2] [--db-kills 1] [--json]

Simulated participants send a mouse batch a second (``benchmarks/ingest.py``'s clients: retry
with back-off until the server answers 200). Meanwhile the whole gunicorn process group is
killed with SIGKILL ``--server-kills`` times and started again on the same port; with
``--db postgresql`` (a throwaway cluster this script starts, so it may kill it) every postgres
process of the cluster is also killed with SIGKILL ``--db-kills`` times and the cluster started
again (crash recovery). Afterwards every batch a client saw acknowledged must be stored whole,
and no sample twice. Prints a summary (``--json``: one JSON object); exit status 1 when a check
fails. ``tests/benchmarks/test_faults.py`` runs a short version on both databases.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import (  # noqa: E402  (benchmarks/ingest.py)
    BATCH_S,
    HZ,
    Participant,
    Stats,
    free_port,
    make_participants,
    start_gunicorn,
    stored_times,
)

from gazepref import store  # noqa: E402


class ThrowawayPostgres:
    """A PostgreSQL cluster of Debian's server binaries in a temporary folder, which this script
    may kill (SIGKILL to every process of the cluster) and start again. As root it runs as the
    ``postgres`` user (``runuser``)."""

    def __init__(self) -> None:
        import glob

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise SystemExit("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
        self.bindir = Path(bins[-1]).parent
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.base = Path(tempfile.mkdtemp(prefix="gazepref-faults-pg-"))
        if self.as_pg:
            shutil.chown(self.base, "postgres")
        self.data, self.port = self.base / "data", free_port()
        subprocess.run([*self.as_pg, str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "gp"],
                       check=True, capture_output=True)
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://gp@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        done = subprocess.run([*self.as_pg, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60",
                               "-l", str(self.base / "log"),
                               "-o", f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1", "start"],
                              capture_output=True, text=True)
        if done.returncode:
            log = (self.base / "log").read_text(errors="replace")[-2000:] if (self.base / "log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {done.stdout}{done.stderr}\n{log}")

    def kill(self) -> int:
        """SIGKILL every process of the cluster (a crash); returns how many there were. The
        postmaster is stopped first (SIGSTOP) so it forks no backend while its children are read."""
        try:
            master = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(master, signal.SIGSTOP)
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        except (OSError, ValueError, IndexError):
            return 0
        pids = [*map(int, children), master]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        # the killed postmaster may linger as a zombie for a while (a container's init reaps
        # late): its lock files would name a "running" server; nothing of the cluster runs any more
        if not any(_alive(p) for p in pids):
            (self.data / "postmaster.pid").unlink(missing_ok=True)
            (self.base / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)
        return len(pids)

    def stop(self) -> None:
        subprocess.run([*self.as_pg, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_server(proc: subprocess.Popen) -> None:
    """SIGKILL gunicorn's whole process group (master and workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def expected_times(seq: int) -> np.ndarray:
    """The sample times of batch ``seq`` as the clients make them."""
    n = int(HZ * BATCH_S)
    return np.array([round(seq * 1000.0 * BATCH_S + i * 1000.0 / HZ, 2) for i in range(n)])


def run(db: str = "sqlite", participants: int = 40, duration: float = 30.0, server_kills: int = 2,
        db_kills: int = 1, workers: int = 2, threads: int = 8) -> dict:
    """One fault run; returns the summary (``ok``: every check passed)."""
    pg = ThrowawayPostgres() if db == "postgresql" else None
    instance = Path(tempfile.mkdtemp(prefix="gazepref-faults-"))
    url = pg.url if pg is not None else store.sqlite_url(instance / store.SQLITE_NAME)
    db_kills = db_kills if pg is not None else 0
    port = free_port()
    events: list[dict] = []
    server = None
    try:
        pairs = make_participants(instance, participants, prefix="faults", database_url=url)
        server = start_gunicorn(instance, port, workers, threads, url)
        stats = Stats()
        t0 = time.monotonic() + 1.0
        clients = [Participant(port, task, token, duration, t0 + i / len(pairs), stats)
                   for i, (task, token) in enumerate(pairs)]
        for c in clients:
            c.patience_s = 90.0  # retries outlast the restarts
            c.start()
        # faults spread over the middle of the run: server, database, server, ...
        order = _interleave(server_kills, db_kills)
        for k, fault in enumerate(order):
            at = t0 + duration * (k + 1) / (len(order) + 1)
            time.sleep(max(0.0, at - time.monotonic()))
            began = time.monotonic()
            if fault == "server":
                kill_server(server)
                server = start_gunicorn(instance, port, workers, threads, url)
                events.append({"fault": "server SIGKILL", "at_s": round(began - t0, 1),
                               "down_s": round(time.monotonic() - began, 1)})
            else:
                n = pg.kill()
                time.sleep(0.5)  # requests meet a dead database for a moment
                pg.start()
                events.append({"fault": f"postgres SIGKILL ({n} processes)", "at_s": round(began - t0, 1),
                               "down_s": round(time.monotonic() - began, 1)})
        for c in clients:
            c.join()
            if c.conn is not None:  # the participant is done: gunicorn's stopping workers would wait
                c.conn.close()      # 2 s for a request on a kept-alive connection left open
                c.conn = None
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        server = None
        stored = stored_times(url, [task for task, _ in pairs])
    finally:
        if server is not None:  # a failure on the way: leave no server behind
            kill_server(server)
        if pg is not None:
            pg.stop()
        shutil.rmtree(instance, ignore_errors=True)

    acked = missing = duplicated = extra = 0
    for c in clients:
        t = stored.get(c.task, np.array([]))
        uniq, counts = np.unique(t, return_counts=True)
        duplicated += int((counts > 1).sum())
        want = np.concatenate([expected_times(s) for s in c.acked]) if c.acked else np.array([])
        acked += len(want)
        missing += int(len(np.setdiff1d(want, uniq)))
        extra += int(len(np.setdiff1d(uniq, want)))  # stored, but the acknowledgement was lost
    summary = {
        "database": store.safe_url(url), "participants": participants, "duration_s": duration,
        "faults": events, "acknowledged_samples": acked, "acknowledged_missing": missing,
        "duplicated_samples": duplicated, "stored_unacknowledged_samples": extra,
        "gave_up_batches": stats.gave_up, "errors_by_status": stats.errors,
        "samples_generated": sum(c.generated for c in clients),
    }
    summary["ok"] = missing == 0 and duplicated == 0 and stats.gave_up == 0 and acked > 0
    return summary


def _interleave(server_kills: int, db_kills: int) -> list[str]:
    """server, database, server, database, ... then the rest of either."""
    out = []
    for k in range(max(server_kills, db_kills)):
        if k < server_kills:
            out.append("server")
        if k < db_kills:
            out.append("database")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--participants", type=int, default=40)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of recording per participant")
    ap.add_argument("--server-kills", type=int, default=2)
    ap.add_argument("--db-kills", type=int, default=1, help="PostgreSQL kills (ignored for SQLite)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    summary = run(args.db, args.participants, args.duration, args.server_kills, args.db_kills, args.workers,
                  args.threads)
    if args.json:
        print(json.dumps(summary))
    else:
        width = max(map(len, summary))
        for k, v in summary.items():
            print(f"{k:<{width}}  {v}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
