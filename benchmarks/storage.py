"""Rows vs columnar chunks for high-rate sample streams (the choice behind gazepref.store).

Simulates P participants sending 60 Hz mouse samples (+ 15 Hz gaze with 12 eye features) in
one-second batches for S seconds, stores them in SQLite (WAL) both ways, and prints write time,
database size and the time to read one task's stream back as an Arrow table.

    .venv/bin/python benchmarks/storage.py [--participants 20] [--seconds 120]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, insert, select

from gazepref import store


def batches(p: int, seconds: int, rng: np.random.Generator):
    """Realistic streams: integer-pixel mouse paths (random walk), jittered 60 Hz clock, smooth
    gaze and eye features (what compresses, compresses)."""
    mx, my = 800.0, 450.0
    for sec in range(seconds):
        t = sec * 1000 + np.arange(60) * (1000 / 60) + rng.normal(0, 0.3, 60)
        mx_path = np.clip(mx + np.cumsum(rng.integers(-6, 7, 60)), 0, 1600)
        my_path = np.clip(my + np.cumsum(rng.integers(-4, 5, 60)), 0, 900)
        mx, my = float(mx_path[-1]), float(my_path[-1])
        mouse = pa.table({"t": t, "x": mx_path.astype(float), "y": my_path.astype(float)})
        tg = sec * 1000 + np.arange(15) * (1000 / 15) + rng.normal(0, 2, 15)
        gaze = {"t": tg, "x": 800 + 300 * np.sin(tg / 900), "y": 450 + 200 * np.cos(tg / 1300)}
        gaze |= {f"eye_f{i}": np.round(np.sin(tg / (500 + 37 * i)) + rng.normal(0, 0.01, 15), 4) for i in range(12)}
        yield sec, {"mouse": mouse, "gaze": pa.table(gaze)}


def run_chunks(path: str, participants: int, seconds: int) -> dict:
    Session = store.init_db(store.make_engine(store.sqlite_url(path)))
    rng = np.random.default_rng(0)
    with Session() as db:
        study = store.Study(slug="b", name="b", salt="x")
        tasks = [store.Task(participant=store.Participant(study=study, pseudonym=f"p{i}", consent=True),
                            kind="pairwise") for i in range(participants)]
        db.add_all(tasks)
        db.commit()
        t0 = time.perf_counter()
        n = 0
        for task in tasks:
            for seq, streams in batches(task.id, seconds, rng):
                for name, tb in streams.items():
                    db.add(store.make_chunk(task.id, name, seq, tb))
                    n += tb.num_rows
                db.commit()  # one transaction per batch, as the ingest endpoint does
        write = time.perf_counter() - t0
        t0 = time.perf_counter()
        tb = store.read_stream(db, tasks[0], "mouse")
        read = time.perf_counter() - t0
        t0 = time.perf_counter()
        total = sum(store.read_stream(db, task, name).num_rows for task in tasks for name in ("mouse", "gaze"))
        read_all = time.perf_counter() - t0
    return {"samples": n, "write_s": write, "read_task_s": read, "read_all_s": read_all, "read_rows": total}


def run_rows(path: str, participants: int, seconds: int) -> dict:
    engine = store.make_engine(store.sqlite_url(path))
    md = MetaData()
    cols = [Column("id", Integer, primary_key=True), Column("task_id", Integer, index=True),
            Column("stream", String(16)), Column("t", Float), Column("x", Float), Column("y", Float)]
    cols += [Column(f"eye_f{i}", Float) for i in range(12)]
    samples = Table("samples", md, *cols)
    md.create_all(engine)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    n = 0
    for task in range(1, participants + 1):
        for _seq, streams in batches(task, seconds, rng):
            with engine.begin() as conn:
                for name, tb in streams.items():
                    rows = [dict(r, task_id=task, stream=name) for r in tb.to_pylist()]
                    conn.execute(insert(samples), rows)
                    n += len(rows)
    write = time.perf_counter() - t0
    t0 = time.perf_counter()
    with engine.connect() as conn:
        res = conn.execute(select(samples.c.t, samples.c.x, samples.c.y)
                           .where(samples.c.task_id == 1, samples.c.stream == "mouse").order_by(samples.c.t)).all()
        tb = pa.table({"t": [r[0] for r in res], "x": [r[1] for r in res], "y": [r[2] for r in res]})
    read = time.perf_counter() - t0
    t0 = time.perf_counter()
    total = 0
    with engine.connect() as conn:
        for task in range(1, participants + 1):
            for name in ("mouse", "gaze"):
                q = select(*[c for c in samples.c if c.name not in ("id", "task_id", "stream")]).where(
                    samples.c.task_id == task, samples.c.stream == name).order_by(samples.c.t)
                res = conn.execute(q).all()
                total += pa.Table.from_pylist([r._asdict() for r in res]).num_rows
    read_all = time.perf_counter() - t0
    return {"samples": n, "write_s": write, "read_task_s": read, "read_all_s": read_all, "read_rows": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=120)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        print(f"{args.participants} participants x {args.seconds} s (60 Hz mouse + 15 Hz gaze with 12 eye features)")
        print(f"{'layout':<8} {'samples':>9} {'write s':>8} {'samples/s':>10} {'MB':>7} {'read 1 task ms':>15} "
              f"{'read all s':>11}")
        for name, fn in (("chunks", run_chunks), ("rows", run_rows)):
            path = os.path.join(d, f"{name}.sqlite")
            r = fn(path, args.participants, args.seconds)
            size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s)) / 1e6
            print(f"{name:<8} {r['samples']:>9} {r['write_s']:>8.2f} {r['samples'] / r['write_s']:>10.0f} "
                  f"{size:>7.1f} {r['read_task_s'] * 1000:>15.1f} {r['read_all_s']:>11.2f}")


if __name__ == "__main__":
    main()
