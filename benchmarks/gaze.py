"""Webcam gaze under load: K simulated participants stream to the served site the landmark
samples the page computes (``--compute browser``, the default, as the site's) or camera pictures
(``--compute server``).

    .venv/bin/python benchmarks/gaze.py [--compute browser|server] [--participants 5 10 20]
                                        [--duration 20] [--fps 10] [--transport ws|http]
                                        [--batch-ms 100] [--workers 2] [--threads N] [--shed-ms 0]
                                        [--keep-stale] [--uncalibrated] [--batch-max-ms N]
                                        [--fixed-batches] [--json]

``--json`` prints a list with one object per K: at least ``participants``, ``compute``,
``sustained``, ``p99_ms`` and ``lost`` (plus the mode's own figures below; browser mode also the
machine's 1-minute load average before the run and after it, ``load_average_1min_before``,
``load_average_1min``: other work on the machine decides whether 200 participants are sustained;
for a K after the first, the load before still holds some of the previous K's run).

``--compute browser`` (the site's default mode): each participant posts, every ``--batch-ms``
(default 1000, the page's in the task phase: ``[gaze] task_batch_ms``), the JSON samples (gzip, as the page's outbox) of the pictures it
"took" at ``--fps`` (default 15) to ``POST /api/gaze/samples``; the samples are the astronaut's
moving face run through the Python Face Mesh once beforehand (what the page would send). The
server turns each batch into gaze rows (:meth:`GazeTracker.process_samples`) and stores the
task's rows. Each participant has a calibration in force (:func:`calibration_model`, as after a
study's calibration step), so every sample's gaze is predicted as in a study's task phase;
``--uncalibrated`` leaves it out (rows without gaze: what runs before 06 Dec 2026 measured).
Each batch holds what the page's timer would put in it and is sent after the previous one
is answered, late if need be, never merged with the next (the page's outbox queues them). The run
is a window of a study under way: each page sends the batches its timer makes within
``--duration``, and what it takes after its last one belongs to the next window (not offered, not
counted as lost). A page also sends what it holds when its task ends; for a study's participants
that happens at independent moments minutes apart (~1-2 a second for 200), but a run's tasks would
all end in its last interval: until 08 Dec 2026 every client sent that partial batch there, on top
of the regular ones (half again the steady load for seconds; p99 0.3-1.3 s on a quiet machine
whose steady p99 was 40-100 ms), and the warm-up's 200 did it at one instant, just before the
measured run. As the
page, the clients follow the server's answers: each says when to post the next batch
(``batch_ms``: longer while the server is short of CPU, capture_site/gaze_pacing.py), within
``--batch-ms`` and ``--batch-max-ms`` (the study's ``task_batch_ms`` and ``task_batch_max_ms``,
written into the benchmark's study); ``--fixed-batches`` posts every ``--batch-ms`` regardless, as
runs before 06 Dec 2026 did. The JSON reports the intervals used (``interval_ms``: median, max).
The samples' JSON is encoded beforehand; a batch's body is put together and gzipped when sent (the
page's work; the clients' CPU figure counts it). ``p99_ms``: feature -> gaze, from the batch
leaving the page to the answer with its stored rows; ``capture_p99_ms`` adds the wait for the batch
(sample taken -> stored: up to the interval in force, ``--batch-ms`` or, paced, up to
``--batch-max-ms``; the page's batching, not the server's, sets it). ``lost``: samples
offered and not stored. Sustained: nothing lost, no errors, ``p99_ms`` < 100 ms. What the page
itself costs is measured by benchmarks/page_mesh.py (headless Chromium).

``--compute server``:

Each participant streams the frames it "captured" (a face from ``skimage.data.astronaut()`` that
moves and scales). ``--transport ws`` (the default): one WebSocket per participant
(``/api/gaze/ws``, ``simple_websocket.Client``), each frame sent when it is captured and answered
when processed. ``--transport http``: the frames of the last ``--batch-ms`` posted to ``POST
/api/gaze/frames`` (multipart, as the page's fallback does). The server runs every frame through
the participant's GazeTracker and stores the rows as gaze chunks. The site runs under gunicorn
on 127.0.0.1 (a subprocess, a fresh SQLite instance per K). For each K the script prints: server
CPU ms per frame (and the clients' own, on the same machine), frames processed per second
against those offered, frame->gaze latency p50/p99 (from the frame's capture to the answer
carrying its row; with batching it includes the wait for the batch), request latency p99 (ws:
send -> answer), dropped frames (frames the server stored unprocessed because it was behind:
over the WebSocket, by default, a frame overtaken by a newer one of the same participant while
others queue for the pipeline, see docs/gaze.md; ``--keep-stale`` processes every frame; with
``--shed-ms``, frames reached later than that) and whether K participants were sustained (>= 95%
of frames processed, no errors, frame->gaze p99 < 200 ms over the processed frames) or at least
kept up (the same, but only the request p99 below max(200 ms, batch)).
Also printed: the bare pipeline's CPU ms per frame measured just before (the machine's speed
drifts) and, per K, ``cpu_bound_participants``: how many participants the cores could serve at
that run's server + client CPU per frame.
Target in issue 4: 30 participants at 10 fps, p99 < 200 ms on the 2-core machine.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from ingest import cpu_seconds, free_port, make_participants, run_threads, start_gunicorn  # noqa: E402  (benchmarks/ingest.py)
import gzip  # noqa: E402

DEFAULT_STUDY = Path(__file__).resolve().parents[1] / "capture_site" / "default_study.toml"


def astronaut_frames(n: int = 40) -> list[bytes]:
    """JPEGs (320x240, quality 80) of the astronaut's face drifting and scaling."""
    from gazepref.signals.synthetic_face import jpeg, moving_face

    return [jpeg(moving_face(i, n), quality=80) for i in range(n)]


def pipeline_cpu_ms(frames: list[bytes], seconds: float = 3.0) -> float:
    """CPU ms per frame of the bare pipeline (one video-mode tracker in this process) right now:
    this VM's speed drifts by tens of percent within minutes, so each report carries its own."""
    from gazepref.signals.webcam import GazeTracker

    with GazeTracker() as tracker:
        for i, f in enumerate(frames):  # warm-up
            tracker.process_jpeg(f, 100.0 * i)
        n, c0, end = 0, time.process_time(), time.monotonic() + seconds
        while time.monotonic() < end:
            tracker.process_jpeg(frames[n % len(frames)], 100.0 * (len(frames) + n))
            n += 1
        return round(1000.0 * (time.process_time() - c0) / n, 2)


def astronaut_samples(frames: list[bytes]) -> list[dict]:
    """The page's samples (capture_site/gaze_samples.py) of ``frames``, from the Python Face Mesh."""
    import cv2

    from gazepref.signals.eye_features import EYES
    from gazepref.signals.face_mesh import FaceMeshRunner
    from gazepref.signals.frame_decode import decode_jpeg
    from gazepref.signals.webcam import SAMPLE_LANDMARKS, image_sample

    out = []
    runner = FaceMeshRunner()
    for data in frames:
        img = decode_jpeg(data)
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        s = image_sample(grey, runner.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)), (10, 6))
        d = {"w": s.width, "h": s.height, "n": s.count, "b": round(s.brightness, 2)}
        if s.pts is not None:
            d |= {"s": round(s.sharpness, 4), "c": [round(v, 2) for v in s.centre],
                  "lm": [round(float(v), 2) for i in SAMPLE_LANDMARKS for v in s.pts[i]],
                  "p": [round(float(v), 4) for e in EYES for v in s.patches[e.name]]}
        out.append(d)
    runner.close()
    return out


def calibration_model(samples: list[dict]) -> bytes:
    """A fitted calibration (its stored bytes) for the astronaut's samples, as a participant's
    calibration round leaves: :func:`gazepref.signals.gaze_session.calibrate` on 16 targets of a
    1280 x 800 screen, 6 samples each, the targets following the samples' line of sight and iris
    (plus fixation noise) so the model keeps the eye and head columns a real round's does. The
    participants of the browser-mode runs have it in force, so each sample is scored (predicted
    gaze x/y) as a study's task samples are."""
    from gazepref.capture_site.gaze_samples import parse_samples
    from gazepref.signals.gaze_session import calibrate
    from gazepref.signals.webcam import GazeTracker

    faces, times = parse_samples([{"t": 66.7 * i, **samples[i % len(samples)]} for i in range(96)], 96)
    rows = GazeTracker().process_samples(faces, times)
    rng = np.random.default_rng(0)
    sx = np.array([r["sight_x_cm"] for r in rows])
    iu = np.array([r["eye_l_iris_u"] for r in rows])
    points = []
    for k in range(16):
        part = slice(6 * k, 6 * k + 6)
        x = 640 + 40 * (sx[part].mean() - sx.mean()) + 2000 * (iu[part].mean() - iu.mean()) + rng.normal(0, 40)
        y = 400 + 300 * ((k % 4) - 1.5) + rng.normal(0, 40)
        points.append(((x, y), rows[part]))
    return calibrate(points).to_bytes()


#: the [gaze] line of a benchmark study whose participants record without calibration
#: (:func:`calibrate_participants` with no model)
UNCALIBRATED_FALLBACK = 'calibration_fallback = "record-uncalibrated"\n'


def calibrate_participants(instance: Path, study: Path, pairs: list[tuple[int, str]], model: bytes | None) -> None:
    """Store ``model`` as the calibration in force of each participant of ``pairs`` (task, token);
    None: a failed calibration's outcome, whose task gaze a study with :data:`UNCALIBRATED_FALLBACK`
    records without an estimate (the site takes task gaze only under a calibration in force)."""
    from sqlalchemy import select

    from gazepref import store
    from gazepref.capture_site.app import create_app

    app = create_app(str(instance), {"STUDY_CONFIG": str(study)})
    with app.extensions["gazepref"].sessions() as s:
        ids = s.scalars(select(store.Task.participant_id).where(store.Task.id.in_([t for t, _ in pairs]))).all()
        if model is None:
            s.add_all(store.Calibration(participant_id=pid, kind="outcome", model=None,
                                        result={"passed": False, "fallback": "record-uncalibrated"}) for pid in ids)
        else:
            s.add_all(store.Calibration(participant_id=pid, kind="calibration", result={}, model=model) for pid in ids)
        s.commit()


def post_json(client, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    """POST ``body`` on ``client``'s kept-alive connection (``client.conn``, opened on demand to
    ``client.port``, with its participant token); (0, {}) and a closed connection on failure."""
    try:
        if client.conn is None:
            client.conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=30)
        client.conn.request("POST", path, body=body, headers={**headers, "X-Participant-Token": client.token})
        resp = client.conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    except (OSError, http.client.HTTPException, ValueError):
        if client.conn is not None:
            client.conn.close()
        client.conn = None
        return 0, {}


class SampleClient(threading.Thread):
    """One browser-mode participant: the samples taken since the last batch, gzip JSON, as the
    page's outbox sends them (a failed batch is sent again, as the outbox does), a batch every
    ``batch_ms`` or as often as the server's answers ask (``batch_ms`` in the answer,
    capture_site/gaze_pacing.py; within the study's bounds, as capture_site/static/webcam.js
    ``pace``): the next batch is due one interval after this one is formed, the interval known
    then (this batch's own answer comes later, as in the page), the first of a new interval at a
    random point of it (as the page: pages slowed down together would post in step).
    ``--fixed-batches`` ignores the answers.

    The samples' JSON is encoded when the client is made (only the time differs from one picture
    to the next); a batch's body is put together and gzipped when it is sent (the page's work, on
    the participant's computer, which the client's CPU figure counts). ``start_at`` is set before
    :meth:`run`."""

    def __init__(self, port, task, token, samples, args, stats, first_seq=0, initial_s=None):
        super().__init__(daemon=True)
        self.port, self.task, self.token = port, task, token
        #: the first interval (s): the study's task_batch_ms, or what an earlier page was last asked
        self.initial_s = args.batch_ms / 1000.0 if initial_s is None else initial_s
        self.interval_s = self.initial_s  # the interval asked last
        self.args, self.stats, self.seq = args, stats, first_seq
        self.start_at = 0.0
        self.conn = None
        self.origin = time.time() * 1000.0
        # each distinct sample once, without its time: b'"w": ..., ...}' after '{"t": T, '
        self.fragments = [json.dumps(s).encode()[1:] for s in samples]
        self.intervals: list[float] = []  # the batch intervals used (s)
        self.rng = random.Random(f"{task}-{first_seq}")

    def post(self, body: bytes) -> tuple[int, dict]:
        return post_json(self, "/api/gaze/samples", body, {"Content-Type": "application/json",
                                                           "Content-Encoding": "gzip"})

    def body(self, first: int, taken: list[float]) -> bytes:
        """The batch of the pictures ``first``, ``first + 1``, ... taken at ``taken`` (s)."""
        frags = self.fragments
        samples = b",".join(b'{"t": %r, %s' % (round(c * 1000.0, 2), frags[(first + i) % len(frags)])
                            for i, c in enumerate(taken))
        # "clicks": the page's count of its click and caret rows (none here), as the page sends it
        head = json.dumps({"phase": "task", "task": self.task, "seq": self.seq, "origin": self.origin,
                           "clicks": 0}).encode()
        return gzip.compress(head[:-1] + b', "samples": [' + samples + b"]}", 1)

    def run(self) -> None:
        a, st = self.args, self.stats
        frame_s, base_s = 1.0 / a.fps, a.batch_ms / 1000.0
        most_s = max(base_s, min(a.batch_max_ms / 1000.0, 60 * frame_s))
        feature, capture, errors, offered, stored = [], [], {}, 0, 0
        interval = self.initial_s
        due = interval
        last, k = interval, 0
        while due <= a.duration + 1e-9:  # the batches the page's timer makes within the run's window
            time.sleep(max(0.0, self.start_at + due - time.monotonic()))
            taken = [i * frame_s for i in range(k, k + 60) if i * frame_s <= due + 1e-9]
            # a new interval starts at a random point of its first one, as in the page
            due += interval if interval == last else interval * (0.25 + 0.75 * self.rng.random())
            last = interval
            self.intervals.append(interval)
            if not taken:
                continue
            body = self.body(k, taken)
            k += len(taken)
            self.seq += 1
            offered += len(taken)
            sent = time.monotonic()  # (a retried batch's latency counts from its first try)
            for attempt in range(5):  # the outbox retries with back-off; replays are harmless
                status, payload = self.post(body)
                if status == 200 or (status != 429 and 0 < status < 500):
                    break
                errors[status] = errors.get(status, 0) + 1
                time.sleep(0.5 * (attempt + 1))
            done = time.monotonic()
            if status != 200:
                errors[status] = errors.get(status, 0) + 1
                continue
            asked = payload.get("batch_ms")
            if not a.fixed_batches and isinstance(asked, (int, float)):
                interval = self.interval_s = max(base_s, min(most_s, asked / 1000.0))
            stored += int(payload.get("stored", 0)) if not payload.get("duplicate") else len(taken)
            feature += [done - sent] * len(taken)
            capture += [done - (self.start_at + c) for c in taken]
        with st.lock:
            st.offered += offered
            st.answered += stored
            st.request_latency += feature
            st.frame_latency += capture
            st.intervals += self.intervals
            for code, n in errors.items():
                st.errors[code] = st.errors.get(code, 0) + n


def warm_seconds(args) -> float:
    """The browser-mode warm-up (s): ``--warm-s`` paced, else one batch interval (at least 1 s):
    long enough for every page's first batch, which makes its tracker."""
    return args.warm_s if not args.fixed_batches else max(1.0, args.batch_ms / 1000.0)


def run_browser(k: int, args, samples: list[dict], model: bytes | None = None) -> dict:
    """K browser-mode participants (:class:`SampleClient`) against a fresh site, each with the
    calibration ``model`` in force (:func:`calibration_model`; None: uncalibrated)."""
    instance = Path(tempfile.mkdtemp(prefix="gazepref-gazebench-"))
    study = instance / "study.toml"
    study.write_text(DEFAULT_STUDY.read_text().replace('webcam = "off"', 'webcam = "optional"')
                     + f'\n[gaze]\ncompute = "browser"\nfps = {int(args.fps)}\ntask_batch_ms = {args.batch_ms}\n'
                     f'task_batch_max_ms = {args.batch_max_ms}\n' + (UNCALIBRATED_FALLBACK if model is None else "")
                     + ("interaction_calibration = false\n" if args.no_click_correction else ""))
    pairs = make_participants(instance, k, study, prefix="gbench",
                              state={"gaze": "calibrated" if model is not None else "uncalibrated"})
    calibrate_participants(instance, study, pairs, model)
    load_before = round(os.getloadavg()[0], 1)  # (the machine's other work, before this run adds its own)
    port = free_port()
    os.environ["GAZEPREF_STUDY_CONFIG"] = str(study)
    server = start_gunicorn(instance, port, args.workers, args.threads)
    stats = Stats()
    try:
        # warm-up: the trackers made; paced, also long enough for the server's answers to settle
        # (a step every 2 s at most), and each participant's pages go on at the interval last asked
        # (the page keeps it for the tab's next task page)
        warm_args = argparse.Namespace(**{**vars(args), "duration": warm_seconds(args)})
        warm = [SampleClient(port, task, tok, samples, warm_args, Stats(), 1_000_000) for task, tok in pairs]
        t_warm = time.monotonic() + 0.2
        for c in warm:
            c.start_at = t_warm
        run_threads(warm)
        clients = [SampleClient(port, task, tok, samples, args, stats, initial_s=w.interval_s)
                   for (task, tok), w in zip(pairs, warm)]
        t0 = time.monotonic() + 0.5
        for i, c in enumerate(clients):  # spread over a batch interval, as pages that started apart
            c.start_at = t0 + i * c.initial_s / k
        cpu0, client0 = cpu_seconds(server.pid), time.process_time()
        run_threads(clients)
        wall = time.monotonic() - t0
        cpu, client_cpu = cpu_seconds(server.pid) - cpu0, time.process_time() - client0
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(instance, ignore_errors=True)
    fl = np.array(stats.request_latency) * 1000.0
    cl = np.array(stats.frame_latency) * 1000.0
    pct = lambda a, q: round(float(np.percentile(a, q)), 1) if len(a) else None  # noqa: E731
    p99 = pct(fl, 99)
    lost = stats.offered - stats.answered
    return {
        "participants": k, "compute": "browser", "fps": args.fps, "batch_ms": args.batch_ms,
        "calibrated": model is not None, "click_correction": not args.no_click_correction,
        "samples_offered": stats.offered, "samples_stored": stats.answered, "lost": lost,
        "stored_per_s": round(stats.answered / wall, 1),
        "server_cpu_ms_per_sample": round(1000.0 * cpu / max(1, stats.answered), 3),
        "client_cpu_ms_per_sample": round(1000.0 * client_cpu / max(1, stats.offered), 3),
        "p50_ms": pct(fl, 50), "p99_ms": p99, "capture_p99_ms": pct(cl, 99),
        "batch_max_ms": args.batch_max_ms, "paced": not args.fixed_batches,
        "warm_s": warm_seconds(args),
        "interval_ms": {"median": pct(np.array(stats.intervals) * 1000.0, 50),
                        "max": round(1000.0 * max(stats.intervals), 1) if stats.intervals else None},
        "errors": stats.errors,
        "sustained": lost == 0 and not stats.errors and p99 is not None and p99 < 100.0,
        "sustained_rule": "nothing lost, no errors, p99_ms (a batch leaving the page -> its rows stored) < 100",
        "load_average_1min_before": load_before, "load_average_1min": round(os.getloadavg()[0], 1),
    }


def multipart(meta: dict, frames: list[bytes]) -> tuple[bytes, str]:
    b = uuid.uuid4().hex
    parts = [f'--{b}\r\nContent-Disposition: form-data; name="meta"\r\n\r\n{json.dumps(meta)}\r\n'.encode()]
    for i, f in enumerate(frames):
        parts.append(f'--{b}\r\nContent-Disposition: form-data; name="frame"; filename="f{i}.jpg"\r\n'
                     f"Content-Type: image/jpeg\r\n\r\n".encode() + f + b"\r\n")
    parts.append(f"--{b}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={b}"


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.frame_latency: list[float] = []  # capture -> answer, processed frames
        self.request_latency: list[float] = []
        self.errors: dict[int, int] = {}
        self.answered = self.dropped = self.offered = 0
        self.intervals: list[float] = []  # browser: the batch intervals the clients used (s)


class WsClient(threading.Thread):
    """One participant on one WebSocket: each frame sent at its capture time; the answers are
    read between frames (the thread waits for the next answer or the next capture time).

    The socket is opened once: ``warm_s`` seconds of set-up frames (the tracker is created in the
    worker that holds the socket), then ``ready`` is waited at (a barrier with the main thread,
    which then sets ``go["t0"]``) before the measured task frames."""

    def __init__(self, port, task, token, frames, args, offset, stats, ready, go, warm_s=2.0):
        super().__init__(daemon=True)
        self.port, self.task, self.token, self.frames = port, task, token, frames
        self.args, self.offset, self.stats = args, offset, stats
        self.ready, self.go, self.warm_s = ready, go, warm_s

    def run(self) -> None:
        import simple_websocket

        from gazepref.capture_site.gaze_ws import pack_frame

        a, st = self.args, self.stats
        frame_s = 1.0 / a.fps
        ws = None
        try:
            ws = simple_websocket.Client.connect(f"ws://127.0.0.1:{self.port}/api/gaze/ws")
            ws.send(json.dumps({"token": self.token}))
            hello = json.loads(ws.receive(timeout=30) or "{}")
        except Exception:  # noqa: BLE001
            hello = {}
        if not hello.get("ok"):
            with st.lock:
                st.errors[-1] = st.errors.get(-1, 0) + 1
                st.offered += int(a.duration * a.fps + 1e-9) + 1  # the task frames it could not send: lost
            self.ready.wait()
            return
        origin = time.time() * 1000.0
        captured: dict[int, tuple[float, float]] = {}  # seq -> (capture, sent)
        latencies, sends, errors = [], [], {}
        counts = {"answered": 0, "dropped": 0}

        def take(msg, record: bool) -> None:
            done = time.monotonic()
            m = json.loads(msg)
            if m.get("seq") not in captured:
                return
            cap, sent = captured.pop(m["seq"])
            if not record:
                return
            if "error" in m:
                errors[m.get("status", 0)] = errors.get(m.get("status", 0), 0) + 1
                return
            counts["answered"] += 1
            if m.get("dropped"):
                counts["dropped"] += 1
                return
            latencies.append(done - cap)
            sends.append(done - sent)

        def stream(phase: str, start: float, duration: float, first: int, record: bool) -> int:
            k, next_frame, end = first, start, start + duration
            while next_frame <= end + 1e-9:
                wait = next_frame - time.monotonic()
                if wait > 0:
                    msg = ws.receive(timeout=wait)
                    if msg is not None:
                        take(msg, record)
                    continue
                meta = {"phase": phase, "task": self.task, "seq": k, "origin": origin, "clicks": 0,
                        "t": round((next_frame - start) * 1000.0, 2)}
                captured[k] = (next_frame, time.monotonic())
                ws.send(pack_frame(meta, self.frames[k % len(self.frames)]))
                k += 1
                next_frame += frame_s
            deadline = time.monotonic() + 60
            while captured and time.monotonic() < deadline:
                msg = ws.receive(timeout=1.0)
                if msg is not None:
                    take(msg, record)
            return k - first

        sent = 0
        try:
            stream("setup", time.monotonic(), self.warm_s, 1_000_000, False)
            captured.clear()
            self.ready.wait()
            sent = stream("task", self.go["t0"] + self.offset, a.duration, 0, True)
            ws.close()
        except Exception:  # noqa: BLE001  (the server closed the socket)
            errors[0] = errors.get(0, 0) + 1
        with st.lock:
            st.offered += sent
            st.answered += counts["answered"]
            st.dropped += counts["dropped"]
            st.frame_latency += latencies
            st.request_latency += sends
            for code, n in errors.items():
                st.errors[code] = st.errors.get(code, 0) + n
            if captured:
                st.errors[-2] = st.errors.get(-2, 0) + len(captured)  # never answered


class Client(threading.Thread):
    def __init__(self, port, task, token, frames, args, start_at, stats, first_seq=0):
        super().__init__(daemon=True)
        self.first_seq = first_seq
        self.port, self.task, self.token, self.frames = port, task, token, frames
        self.args, self.start_at, self.stats = args, start_at, stats
        self.conn = None

    def post(self, body: bytes, ctype: str) -> tuple[int, dict]:
        return post_json(self, "/api/gaze/frames", body, {"Content-Type": ctype})

    def run(self) -> None:
        a = self.args
        frame_s, batch_s = 1.0 / a.fps, a.batch_ms / 1000.0
        end = self.start_at + a.duration
        next_frame, next_batch, k, seq = self.start_at, self.start_at + batch_s, 0, self.first_seq
        pending: list[tuple[float, bytes]] = []
        origin = time.time() * 1000.0
        while next_batch <= end + 1e-9:
            time.sleep(max(0.0, next_batch - time.monotonic()))
            now = time.monotonic()
            while next_frame <= min(now, end):  # frames "captured" since the last batch (like the page,
                pending.append((next_frame, self.frames[k % len(self.frames)]))  # a late batch takes
                next_frame += frame_s  # everything captured meanwhile)
                k += 1
            next_batch = max(next_batch + batch_s, now)
            if not pending:
                continue
            batch, pending = pending[:30], pending[30:]
            meta = {"phase": "task", "task": self.task, "seq": seq, "origin": origin, "clicks": 0,
                    "t": [round((c - self.start_at) * 1000.0, 2) for c, _ in batch]}
            seq += 1
            body, ctype = multipart(meta, [f for _, f in batch])
            sent = time.monotonic()
            status, payload = self.post(body, ctype)
            if status == 429:  # rate limited: wait and send again (the page retries likewise)
                time.sleep(1.0)
                status, payload = self.post(body, ctype)
            done = time.monotonic()
            with self.stats.lock:
                self.stats.offered += len(batch)
                if status != 200:
                    self.stats.errors[status] = self.stats.errors.get(status, 0) + 1
                    continue
                self.stats.request_latency.append(done - sent)
                dropped = int(payload.get("dropped", 0))
                self.stats.dropped += dropped
                self.stats.answered += len(batch)
                # rows are processed in order; the dropped ones are those reached late (the last ones)
                for c, _ in batch[:len(batch) - dropped]:
                    self.stats.frame_latency.append(done - c)


def run_once(k: int, args, frames: list[bytes]) -> dict:
    instance = Path(tempfile.mkdtemp(prefix="gazepref-gazebench-"))
    study = instance / "study.toml"
    study.write_text(DEFAULT_STUDY.read_text().replace('webcam = "off"', 'webcam = "optional"')
                     + '\n[gaze]\ncompute = "server"\n' + UNCALIBRATED_FALLBACK)
    pairs = make_participants(instance, k, study, prefix="gbench", state={"gaze": "uncalibrated"})
    calibrate_participants(instance, study, pairs, None)  # features without gaze, as measured before
    port = free_port()
    os.environ["GAZEPREF_STUDY_CONFIG"] = str(study)
    os.environ["GAZEPREF_GAZE_SHED_MS"] = str(args.shed_ms)
    os.environ["GAZEPREF_GAZE_WS_COMMIT_MS"] = str(args.commit_ms)
    os.environ["GAZEPREF_GAZE_WS_SKIP_STALE"] = "0" if args.keep_stale else "1"
    server = start_gunicorn(instance, port, args.workers, args.threads)
    stats = Stats()
    try:
        if args.transport == "ws":
            # one socket per participant: warm-up frames on it first (the tracker is created in the
            # worker holding the socket), then all start together
            go: dict[str, float] = {}
            ready = threading.Barrier(k + 1, action=lambda: go.__setitem__("t0", time.monotonic() + 0.5))
            clients = [WsClient(port, task, tok, frames, args, i / args.fps / k, stats, ready, go)
                       for i, (task, tok) in enumerate(pairs)]
            for c in clients:
                c.start()
            ready.wait(timeout=600)  # the barrier's action sets the start for everyone
            t0 = go["t0"]
            time.sleep(max(0.0, t0 - time.monotonic()))
            cpu0, client0 = cpu_seconds(server.pid), time.process_time()
        else:
            # warm-up: one tracker per participant and worker is created on first use (~0.5 s each)
            warm_args = argparse.Namespace(**{**vars(args), "duration": 2.0})
            warm = [Client(port, task, tok, frames, warm_args, time.monotonic() + 0.2, Stats(), first_seq=1_000_000)
                    for task, tok in pairs]
            run_threads(warm)
            t0 = time.monotonic() + 0.5
            clients = [Client(port, task, tok, frames, args, t0 + i * (args.batch_ms / 1000.0) / k, stats)
                       for i, (task, tok) in enumerate(pairs)]
            cpu0, client0 = cpu_seconds(server.pid), time.process_time()
            for c in clients:
                c.start()
        for c in clients:
            c.join()
        wall = time.monotonic() - t0
        cpu = cpu_seconds(server.pid) - cpu0
        client_cpu = time.process_time() - client0
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(instance, ignore_errors=True)
    fl = np.array(stats.frame_latency) * 1000.0
    rl = np.array(stats.request_latency) * 1000.0
    processed = len(fl)
    pct = lambda a, q: round(float(np.percentile(a, q)), 1) if len(a) else None  # noqa: E731
    p99 = pct(fl, 99)
    server_ms, client_ms = 1000.0 * cpu / max(1, processed), 1000.0 * client_cpu / max(1, stats.offered)
    sustained = (stats.answered >= 0.95 * stats.offered and not stats.errors
                 and processed >= 0.95 * stats.offered and p99 is not None and p99 < 200.0)
    # throughput kept without a growing backlog, whatever the batching wait
    kept_up = (not stats.errors and processed >= 0.95 * stats.offered and rl.size > 0
               and pct(rl, 99) < max(200.0, args.batch_ms))
    return {
        "participants": k,
        "compute": "server",
        "fps": args.fps,
        "transport": args.transport,
        "batch_ms": args.batch_ms if args.transport == "http" else None,
        "shed_ms": args.shed_ms,
        "skip_stale": args.transport == "ws" and not args.keep_stale,
        "frames_offered": stats.offered,
        "frames_processed": processed,
        "frames_dropped": stats.dropped,
        "processed_per_s": round(processed / wall, 1),
        "offered_per_s": round(stats.offered / wall, 1),
        "server_cpu_ms_per_frame": round(server_ms, 2),
        "client_cpu_ms_per_frame": round(client_ms, 2),  # same machine
        # participants the machine's cores could serve at this run's CPU cost per frame (server + clients)
        "cpu_bound_participants": round((os.cpu_count() or 1) * 1000.0 / args.fps / max(1e-9, server_ms + client_ms),
                                        1),
        "frame_to_gaze_p50_ms": pct(fl, 50),
        "frame_to_gaze_p99_ms": p99,
        "p99_ms": p99,
        "lost": stats.offered - processed,
        "request_p99_ms": pct(rl, 99),
        "errors": stats.errors,
        "kept_up": kept_up,
        "sustained": sustained,
        "sustained_rule": ("at least 95 % of the frames processed (the rest shed under load, in lost), no errors, "
                           "p99_ms (a frame captured -> its gaze answered) < 200"),
        "load_average_1min": round(os.getloadavg()[0], 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()), allow_abbrev=False)
    ap.add_argument("--compute", choices=["browser", "server"], default="browser",
                    help="browser (default, the site's): the page's landmark samples; server: the page sends "
                         "camera pictures")
    ap.add_argument("--participants", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of streaming per K (bounded)")
    ap.add_argument("--fps", type=float, default=None, help="pictures per second (default: server 10, browser 15)")
    ap.add_argument("--transport", choices=["ws", "http"], default="ws",
                    help="one WebSocket per participant, a frame per message (default), or batched HTTP posts")
    ap.add_argument("--batch-ms", type=int, default=None,
                    help="http / browser: the page's batch interval (default: http 100, browser 1000 as the "
                         "page's task phase)")
    ap.add_argument("--batch-max-ms", type=int, default=None,
                    help="browser: the study's task_batch_max_ms, the longest interval the server's answers "
                         "may ask for (default: as the site's, 4000 ms or 60 samples)")
    ap.add_argument("--warm-s", type=float, default=12.0,
                    help="browser, paced: seconds of warm-up before the measured run (the server's answers settle)")
    ap.add_argument("--fixed-batches", action="store_true",
                    help="browser: post every --batch-ms whatever the answers ask (runs before the pacing)")
    ap.add_argument("--commit-ms", type=float, default=500.0, help="ws: GAZE_WS_COMMIT_MS (0: commit every frame)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None,
                    help="threads per worker (default: ws 32, each socket holds one; http 8)")
    ap.add_argument("--shed-ms", type=float, default=0.0, help="server load shedding budget (0: off)")
    ap.add_argument("--keep-stale", action="store_true",
                    help="ws: process every frame even when overtaken under overload (GAZE_WS_SKIP_STALE off)")
    ap.add_argument("--uncalibrated", action="store_true",
                    help="browser: participants without a calibration (no gaze predicted; default: each has one)")
    ap.add_argument("--no-click-correction", action="store_true",
                    help="browser: the study without continuous calibration from clicks (interaction_calibration = "
                         "false; the default study has it: a task batch then reads the task's new click rows when "
                         "its page made one not read yet, and every few seconds)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.duration = min(args.duration, 120.0)
    browser = args.compute == "browser"
    given = {a.split("=")[0] for a in sys.argv[1:] if a.startswith("--")}
    server_only = sorted(given & {"--transport", "--commit-ms", "--shed-ms", "--keep-stale"})
    if browser and server_only:  # (the default mode changed to browser on 07 Dec 2026)
        ap.error(f"{', '.join(server_only)} apply to --compute server (the page's pictures); "
                 "browser mode posts landmark samples over HTTP")
    browser_only = sorted(given & {"--batch-max-ms", "--warm-s", "--fixed-batches", "--uncalibrated",
                                   "--no-click-correction"})
    if not browser and browser_only:
        ap.error(f"{', '.join(browser_only)} apply to --compute browser")
    if args.fps is None:
        args.fps = 15.0 if browser else 10.0
    if args.batch_ms is None:
        args.batch_ms = 1000 if browser else 100
    if args.batch_max_ms is None:  # as capture_site/gaze_settings.py
        args.batch_max_ms = max(args.batch_ms, min(4000, int(60_000 // args.fps)))
    # a page sends its first batch one interval after it starts: a shorter run (or warm-up) sends none
    if browser and args.duration < args.batch_ms / 1000.0:
        ap.error(f"--duration {args.duration:g} s is shorter than a batch interval (--batch-ms {args.batch_ms}): "
                 "no page would send a batch")
    if browser and not args.fixed_batches and args.warm_s < args.batch_ms / 1000.0:
        ap.error(f"--warm-s {args.warm_s:g} s is shorter than a batch interval (--batch-ms {args.batch_ms}): "
                 "the warm-up would make no tracker")
    if args.threads is None:
        args.threads = 32 if args.transport == "ws" and not browser else 8
    frames = astronaut_frames()
    if browser:
        return main_browser(args, frames)
    pipeline_ms = pipeline_cpu_ms(frames)
    if not args.json:
        print(f"pipeline_cpu_ms_per_frame={pipeline_ms}  (one tracker in this process, now: the machine's speed)",
              flush=True)
    results = []
    for k in args.participants:
        r = run_once(k, args, frames)
        results.append(r)
        if not args.json:
            print("  ".join(f"{key}={val}" for key, val in r.items()), flush=True)
    best = max((r["participants"] for r in results if r["sustained"]), default=0)
    kept = max((r["participants"] for r in results if r["kept_up"]), default=0)
    summary = {"sustained_participants": best, "kept_up_participants": kept, "cpus": os.cpu_count(),
               "pipeline_cpu_ms_per_frame": pipeline_ms,
               "gunicorn": f"{args.workers} workers x {args.threads} threads (gthread), SQLite WAL",
               "transport": args.transport}
    if args.json:
        print(json.dumps([r | summary for r in results]))
    else:
        print("  ".join(f"{key}={val}" for key, val in summary.items()))
    return 0


def main_browser(args, frames: list[bytes]) -> int:
    samples = astronaut_samples(frames)
    model = None if args.uncalibrated else calibration_model(samples)
    results = []
    for k in args.participants:
        r = run_browser(k, args, samples, model) | {
            "cpus": os.cpu_count(), "gunicorn": f"{args.workers} workers x {args.threads} threads (gthread), SQLite WAL"}
        results.append(r)
        if not args.json:
            print("  ".join(f"{key}={val}" for key, val in r.items()), flush=True)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
