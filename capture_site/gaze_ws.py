"""Webcam frames over a WebSocket: ``/api/gaze/ws`` (flask-sock; the same pipeline as
``POST /api/gaze/frames``, one frame per message, answered at once).

Protocol (see docs/gaze.md, "Frames over a WebSocket"):

1. The page opens the socket and sends the participant token as its first (text) message,
   ``{"token": "..."}`` (never in the URL: URLs end up in logs). Answer ``{"ok": true,
   "commit_ms": n}``, or ``{"error", "status": 401}`` and the socket is closed (1008).
2. Each frame is one binary message: a 4-byte big-endian length ``n``, ``n`` bytes of JSON meta
   ``{"phase": "setup"|"task", "task": id, "seq": n, "origin": performance.timeOrigin,
   "calibration": id, "t": ms}`` and the JPEG bytes. In a task ``seq`` numbers the frames with the
   page's gaze counter (the one its HTTP batches use), so it increases frame by frame, and
   ``calibration`` (optional) is the page's, which scores the frame as for an HTTP batch.
3. Each frame is answered (text) once it is processed: ``{"seq", "face": {found, ok, code, message},
   "dropped": bool, "calibrated": bool}`` (set-up frames also ``"usable": [t]`` or ``[]``); a duplicate (``seq`` not above the last one stored of
   its page load) ``{"seq", "duplicate": true}``; a bad frame (not JPEG, corrupt, too large, bad meta, rate
   limit) ``{"seq", "error", "status"}``; the connection and the session go on. A seq numbers
   the frames of one page load (``origin``): a reloaded page that lost its saved counter may number
   from 0 again, and its frames are not the earlier page's (docs/gaze.md, "Each frame once").
4. Task rows are buffered and stored as one ``gaze`` chunk per ``GAZE_WS_COMMIT_MS`` (app config
   or ``$GAZEPREF_GAZE_WS_COMMIT_MS``, default 500 ms; 0 = every frame: ~1.5-2 ms more CPU per
   frame and a 10x longer latency tail at 20 participants, docs/gaze.md), at most 30 frames, and
   whenever phase, task or origin change; the chunk's ``seq`` is that of its last frame stored. After each commit the server sends
   ``{"stored": seq, "task": id, "n": rows stored}``: the page keeps every frame until a ``stored`` covers it and
   sends the rest again after a reconnect (the server answers those stored already as
   duplicates). When the socket closes or fails, the buffer is stored before the handler ends.
   Frames stored already (by the lost socket, on this host or another, or by the HTTP batches
   the page went on with) are left out at the store, under the task's lock
   (:func:`.gaze_store.store_gaze`).
5. When the server shuts down (SIGTERM, :mod:`.shutdown`) it stores the buffer, sends
   ``{"stored"}`` and then ``{"reconnect": true, "retry_after_ms": n}`` and closes (1012); the
   page reconnects after ``n`` ms and resends what was not stored.

Under overload a frame overtaken by a newer one of the same participant, while frames of others
wait for a pipeline slot, is stored unprocessed (DROPPED) and answered ``"dropped": true``
(:meth:`FrameSocket.overtaken`; app config ``GAZE_WS_SKIP_STALE`` or
``$GAZEPREF_GAZE_WS_SKIP_STALE``, default on): gaze stays fresh instead of seconds late.

Each open socket holds a server thread (and simple-websocket's reader thread): gunicorn needs
``--threads`` above the participants per worker (docs/STUDY_SITE.md).

Sockets that have not sent their token yet are capped per process (:class:`PendingSockets`; app
config ``GAZE_WS_MAX_PENDING`` or ``$GAZEPREF_GAZE_WS_MAX_PENDING``, default a quarter of the worker's
request threads: ``$GAZEPREF_WORKER_THREADS`` where set, else gunicorn's ``--threads`` under
``gazepref.capture_site.gunicorn_conf``, else 32: 8): anyone can open a socket and say nothing, and without a cap
such sockets would take every thread of a worker. A socket over the cap is answered at once
``{"reconnect": true, "retry_after_ms": n}`` and closed (1013, try again later), the message a
restarting server sends: the page tries again after that long (three tries, then HTTP batches).
An authenticated socket no longer counts, so a participant is never refused for it. The first
message is awaited ``AUTH_TIMEOUT_S`` (3 s): the page sends it as soon as the socket opens and
itself gives up on a socket not ready within 3 s of opening it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import threading
import time
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from ..settings import Settings
from .api import ApiError, install_error_handlers, loads_object
from .chunks import SEQ_STEP, check_seq_room
from .gaze_limits import pipeline_slots
from .gaze_pipeline import FrameContext, check_compute, frame_context, store_task_rows, track_frames
from .gaze_requests import frame_meta
from .gaze_settings import MAX_FRAME_BYTES, MAX_FRAMES_PER_BATCH
from .gaze_store import participant_settings
from .gaze_trackers import dropped_row, usable_times
from .ratelimit import RateLimiter
from .runtime import db
from .security import ParticipantToken, read_participant_token
from .shutdown import drain_state, draining

__all__ = ["bp", "pack_frame", "unpack_frame", "PendingSockets", "SERVER_OPTIONS"]

log = logging.getLogger(__name__)

bp = Blueprint("gaze_ws", __name__, url_prefix="/api/gaze")
_sock = Sock()
install_error_handlers(bp)


@bp.before_request
def _websocket_handshake():
    """A WebSocket handshake the socket library cannot take (RFC 6455: ``Sec-WebSocket-Version:
    13``, a ``Sec-WebSocket-Key``) is answered here: 426 with the version taken, or 400, as JSON.
    The library raised on such a handshake (a 500, and a traceback in the log for every one:
    anyone could fill the log)."""
    h = request.headers  # (no Upgrade: websocket at all: the route does not match, Werkzeug's 400)
    if h.get("Sec-WebSocket-Version", "").strip() != "13":
        return jsonify(error="WebSocket version 13 only (Sec-WebSocket-Version: 13)"), 426, {
            "Sec-WebSocket-Version": "13"}
    if not h.get("Sec-WebSocket-Key", "").strip():
        raise ApiError(400, "no Sec-WebSocket-Key: not a WebSocket handshake")
    return None

MAX_META_BYTES = 4096
# how long a socket may wait for its first message: the page sends it as soon as the socket opens
# (webcam.js connect(): it came 1.3-2.2 ms after the server's handler started, Chromium on the
# same host, test_webcam_site.py; add the network's round trip) and closes a socket that is not
# ready 3 s after it began to open it, so no page is still waiting after that
AUTH_TIMEOUT_S = 3.0
BUSY_RETRY_AFTER_S = 1.0  # what a socket refused for the cap is told to wait before trying again
DRAIN_POLL_S = 0.25  # how often an idle socket looks whether the server is shutting down
# simple_websocket.Server options (app config SOCK_SERVER_OPTIONS): read whole frames at once,
# refuse messages over the frame limit, ping idle peers so a dead one is noticed.
# Its reader threads are daemons (_ReaderThread).


class _ReaderThread(threading.Thread):
    """simple-websocket's reader of one socket, as a daemon thread. A reader whose peer has gone
    silent (a laptop shut, a network lost) waits up to the ping interval before it notices that
    the socket is done, and under gunicorn the worker closing the socket does not wake it: as an
    ordinary thread it held a worker's exit after SIGTERM that long (up to 25 s, with everything
    already stored). A reader only reads; the request handler that used it has returned by then."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.daemon = True


SERVER_OPTIONS = {"receive_bytes": 65536, "max_message_size": MAX_FRAME_BYTES + MAX_META_BYTES + 4,
                  "ping_interval": 25, "thread_class": _ReaderThread}


def pack_frame(meta: dict[str, Any], jpeg: bytes) -> bytes:
    """One frame message: 4-byte big-endian length, JSON meta, JPEG bytes."""
    m = json.dumps(meta, separators=(",", ":")).encode()
    return len(m).to_bytes(4, "big") + m + jpeg


def unpack_frame(data: Any) -> tuple[dict[str, Any], bytes]:
    if not isinstance(data, (bytes, bytearray)):
        raise ApiError(400, "frames are binary messages (4-byte length, JSON meta, JPEG)")
    if len(data) < 4:
        raise ApiError(400, "frame message too short")
    n = int.from_bytes(data[:4], "big")
    if n > MAX_META_BYTES or 4 + n > len(data):
        raise ApiError(400, f"bad meta length {n}")
    meta = loads_object(bytes(data[4:4 + n]))
    if meta is None:
        raise ApiError(400, "meta must be a JSON object")
    return meta, bytes(data[4 + n:])


def _limiter() -> RateLimiter:
    """Frames per participant and second (GAZE_WS_FRAMES_PER_S = 40, GAZE_WS_BURST = 100): above
    the highest frame rate a study may set (30), with room for a resend after a reconnect.

    In process, unlike the per-request limits (:class:`.ratelimit.DbRateLimiter`): a socket lives
    on one host, the page opens one at a time, and a database write per frame (30 a second per
    participant) would cost more than the frames. A participant holding sockets to N hosts at
    once could send N times the rate; each frame still passes the tracker's pipeline slots."""
    lim = current_app.extensions.get("gazepref_gaze_ws_limiter")
    if lim is None:
        lim = current_app.extensions.setdefault("gazepref_gaze_ws_limiter", RateLimiter(
            float(current_app.config.get("GAZE_WS_FRAMES_PER_S", 40.0)),
            float(current_app.config.get("GAZE_WS_BURST", 100))))
    return lim


def _commit_ms() -> float:
    """How often buffered task rows are stored: app config GAZE_WS_COMMIT_MS (from
    $GAZEPREF_GAZE_WS_COMMIT_MS at ``create_app``), default 500 ms (0: every frame)."""
    value = current_app.config.get("GAZE_WS_COMMIT_MS")
    return max(0.0, float(500 if value is None else value))


def _skip_stale() -> bool:
    """Whether frames overtaken under overload are skipped: app config GAZE_WS_SKIP_STALE (from
    $GAZEPREF_GAZE_WS_SKIP_STALE at ``create_app``; default on; "0"/"false" off)."""
    value = current_app.config.get("GAZE_WS_SKIP_STALE")
    if value is None:
        return True
    return str(value).strip().lower() not in ("0", "false", "no", "off", "")


def _send(ws, obj: dict[str, Any]) -> None:
    ws.send(json.dumps(obj, separators=(",", ":")))


def _hang_up(ws, retry_after_s: float, code: int, reason: str) -> None:
    """Tell the page to reconnect after ``retry_after_s`` and close: the page's "try again later"
    (webcam.js: it reconnects after that long, three times, then posts batches)."""
    _send(ws, {"reconnect": True, "retry_after_ms": int(retry_after_s * 1000)})
    ws.close(code, reason)
    try:  # wake simple-websocket's reader thread (it waits for the peer up to the ping interval
        ws.sock.shutdown(socket.SHUT_RDWR)  # and would hold the exiting process that long)
    except OSError:
        pass


class PendingSockets:
    """The sockets of this process still waiting for their first message, at most ``limit``
    (0: no cap). Each holds a request thread while it waits; a client that opens sockets and
    sends nothing could otherwise take every thread of a worker and stall every participant.

    ``with pending.slot() as ok:`` counts the socket for the block when ``ok`` (under a lock, given
    back however the block ends); ``ok`` is False when ``limit`` are waiting already."""

    def __init__(self, limit: int):
        self.limit = max(0, int(limit))
        self.waiting = 0
        self.refused = 0  # since the last warning in the log
        self._warned_at = -math.inf
        self._lock = threading.Lock()

    def enter(self) -> bool:
        """Count one more waiting socket; False (nothing counted) when ``limit`` wait already."""
        with self._lock:
            if not self.limit or self.waiting < self.limit:
                self.waiting += 1
                return True
            self.refused += 1
            now = time.monotonic()
            if now - self._warned_at < 60.0:
                return False
            self._warned_at, refused, self.refused = now, self.refused, 0
        # at most a line a minute, however many are refused
        log.warning("gaze websocket refused: %d sockets of this process wait for their token "
                    "(GAZE_WS_MAX_PENDING); %d refused since the last warning", self.limit, refused)
        return False

    def leave(self) -> None:
        with self._lock:
            self.waiting -= 1

    @contextlib.contextmanager
    def slot(self):
        ok = self.enter()
        try:
            yield ok
        finally:
            if ok:
                self.leave()


def _pending() -> PendingSockets:
    """This app's (this process's) :class:`PendingSockets`: app config GAZE_WS_MAX_PENDING (from
    $GAZEPREF_GAZE_WS_MAX_PENDING, else a quarter of the worker's threads, :func:`.serving.worker_threads`,
    at ``create_app``)."""
    pending = current_app.extensions.get("gazepref_gaze_ws_pending")
    if pending is None:
        limit = current_app.config.get("GAZE_WS_MAX_PENDING")
        if limit is None:  # (an app made without create_app's settings)
            limit = Settings().gaze_ws_pending_cap
        pending = current_app.extensions.setdefault("gazepref_gaze_ws_pending", PendingSockets(int(limit)))
    return pending


class FrameSocket:
    """One participant's socket: per-frame processing and the buffer of task rows."""

    def __init__(self, ws, token: ParticipantToken, commit_ms: float):
        # the lookup, again each commit interval (:meth:`context`), checks the token each time: a
        # socket outliving its participant's row writes nothing into a row that took their id
        self.ws, self.token, self.commit_s = ws, token, commit_ms / 1000.0
        self.ctx: FrameContext | None = None
        self.ctx_at = 0.0
        self.rows: list[dict[str, float]] = []
        self.frames: list[bytes] = []
        self.times: list[float] = []
        self.seqs: list[int] = []  # the buffered frames' seq
        self.buf_seq: int | None = None  # seq of the last buffered frame
        self.first_at: float | None = None  # when the first buffered frame came
        self.done: dict[tuple[int, float], int] = {}  # (task, origin) -> highest seq stored or buffered here
        self.limiter = _limiter()
        self.slots = pipeline_slots()
        self.skip_stale = _skip_stale()

    # ------------------------------------------------------------------ frames

    def handle(self, data: Any) -> None:
        arrived = time.monotonic()
        seq = None
        try:
            raw, jpeg = unpack_frame(data)
            seq = raw.get("seq")
            t = raw.get("t")
            if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t):
                raise ApiError(400, "t must be a finite number")
            meta = frame_meta(raw, [float(t)])
            if len(jpeg) > MAX_FRAME_BYTES:
                raise ApiError(413, f"frame larger than the limit of {MAX_FRAME_BYTES} bytes")
            ctx = self.context(meta)
            if meta.phase == "task":
                last = max(self.done.get((meta.task_id, meta.origin), -1), -1 if ctx.last_seq is None else ctx.last_seq)
                if meta.seq <= last:
                    _send(self.ws, {"seq": seq, "duplicate": True})  # costs no rate-limit token
                    return
                # beyond SEQ_FREE, near what is stored only (a socket's buffer is not: frames sent in
                # steps of SEQ_STEP would climb to the top of the range unstored), else the task's last
                stored = -1 if ctx.last_seq is None else ctx.last_seq
                if meta.seq > stored + SEQ_STEP:
                    check_seq_room(meta.task_id, meta.seq)
            if self.limiter.allow(f"w{self.token.id}"):
                rows, dropped = track_frames(ctx, [jpeg], meta.times, arrived,
                                             stale=self.overtaken if self.skip_stale else None)
            elif meta.phase == "task":
                # over the rate (the resend after a long reconnect, say): kept on the task's
                # timeline unprocessed, like a frame the server was too far behind for, so the
                # frames after it still follow in order and none is lost
                rows, dropped = [dropped_row(float(t))], 1
            else:
                raise ApiError(429, "too many frames; slow down", retry_after=1)
            if meta.phase == "task":
                if self.first_at is None:
                    self.first_at = arrived
                self.rows += rows
                self.frames.append(jpeg)
                self.times += meta.times
                self.seqs.append(meta.seq)
                self.buf_seq = self.done[(meta.task_id, meta.origin)] = meta.seq
            entry = ctx.entry
            extra = {"usable": usable_times(rows)} if meta.phase == "setup" else {}
            _send(self.ws, {"seq": seq, "face": entry.face, "dropped": bool(dropped),
                            "calibrated": ctx.calibrated, **extra})
        except ApiError as e:
            _send(self.ws, {"seq": seq, "error": e.message, "status": e.status, **e.extra})
        if self.rows and (len(self.rows) >= MAX_FRAMES_PER_BATCH or self.due() <= 0):
            self.commit()

    def overtaken(self) -> bool:
        """The server is behind (frames of other participants wait for a pipeline slot) and a newer
        message of this participant is already waiting on the socket: this frame's gaze would come
        late and the newer frame's later still, so it is stored unprocessed (DROPPED) instead."""
        return bool(getattr(self.ws, "input_buffer", None)) and self.slots.waiting > 0

    def context(self, meta) -> FrameContext:
        """The lookup of :func:`.gaze_pipeline.frame_context`, again after each commit interval (the
        latest calibration, drift clicks, consent) and whenever phase, task, origin or the
        frames' calibration change (the buffer is stored first)."""
        ctx = self.ctx
        key = (meta.phase, meta.task_id, meta.origin, meta.calibration)
        if ctx is not None and (ctx.meta.phase, ctx.meta.task_id, ctx.meta.origin, ctx.meta.calibration) != key:
            self.commit()
            ctx = None
        if ctx is None or time.monotonic() - self.ctx_at >= max(self.commit_s, 0.5):
            ctx = self.ctx = frame_context(self.token, meta._replace(seq=None))
            self.ctx_at = time.monotonic()
        return ctx

    def due(self) -> float:
        """Seconds until the buffer is to be stored (inf: nothing buffered)."""
        if self.first_at is None:
            return math.inf
        return self.first_at + self.commit_s - time.monotonic()

    def commit(self) -> None:
        """Store the buffered task rows as one gaze chunk (seq of its last frame stored) and tell the page.

        Frames stored already are left out (:func:`.gaze_store.store_gaze`: by their page load and
        time, checked and inserted in one transaction under the task's lock): after a reconnect
        the page resends every frame the lost socket had not confirmed, and that socket, on this
        host or another, may store its buffer after the new one looked, or at the same moment as
        the new one stores its own (it stores it when it notices the loss, or when it is due);
        and when the page went on with HTTP batches, they carry those frames too."""
        if not self.rows:
            return
        ctx, seq = self.ctx, self.buf_seq
        rows, frames, times, seqs = self.rows, self.frames, self.times, self.seqs
        self.rows, self.frames, self.times, self.seqs, self.first_at = [], [], [], [], None
        try:
            n = store_task_rows(ctx, seq, rows, frames, times, seqs=seqs)
        except ApiError as e:  # the task is gone (the participant withdrew after the lookup): as
            # a refused token (401, closed 1008); the page's reconnect is refused the same way
            if self.ws.connected:
                _send(self.ws, {"task": ctx.meta.task_id, "error": e.message, "status": e.status})
                self.ws.close(1008, "refused")
            return
        self.ctx = ctx._replace(set_anchor=False)
        if self.ws.connected:
            _send(self.ws, {"stored": seq, "task": ctx.meta.task_id, "n": n})

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        try:
            while not draining():
                wait = self.due()
                data = self.ws.receive(timeout=max(0.0, min(wait, DRAIN_POLL_S)))
                if data is None:  # no frame for a while: store the buffer when it is due
                    if self.due() <= 0:
                        self.commit()
                    continue
                self.handle(data)
        finally:
            self.commit()  # closed, failed or shutting down: store what is buffered
        # the server is shutting down (.shutdown): everything buffered is stored and acknowledged;
        # the page reconnects (to this server once restarted, or another) and resends the rest
        _hang_up(self.ws, drain_state().retry_after_s, 1012, "server restarting")


def authenticate(ws) -> ParticipantToken | None:
    """The participant of the first message ``{"token"}``; None (answered, closed) otherwise."""
    data = ws.receive(timeout=AUTH_TIMEOUT_S)
    msg = loads_object(data) if isinstance(data, str) else None
    token = read_participant_token(msg.get("token")) if msg is not None else None
    if token is None:
        _send(ws, {"error": "the first message must be {\"token\": <participant token>}", "status": 401})
        ws.close(1008, "unauthorised")
        return None
    try:
        _, settings = participant_settings(token)
        check_compute(settings, "frames")  # (browser mode: the page sends no picture; refused now, not frame by frame)
    except ApiError as e:
        _send(ws, {"error": e.message, "status": e.status})
        ws.close(1008, "refused")
        return None
    finally:
        db().close()  # the socket lives long: hold no database session
    return token


@_sock.route("/ws", bp=bp)
def frames_ws(ws) -> None:
    with _pending().slot() as admitted:
        if not admitted:  # too many sockets wait for their token: try again later
            _hang_up(ws, BUSY_RETRY_AFTER_S, 1013, "try again later")
            return
        token = authenticate(ws)  # (the slot is given back once it is known, whatever the outcome)
    if token is None:
        return
    commit_ms = _commit_ms()
    _send(ws, {"ok": True, "commit_ms": commit_ms})
    drain = drain_state()
    drain.socket_opened()
    try:
        FrameSocket(ws, token, commit_ms).run()
    except ConnectionClosed:
        pass
    except Exception:  # the buffer was stored (or not acknowledged): the page sends it again
        log.exception("gaze websocket failed")
        if ws.connected:
            ws.close(1011, "server error")
    finally:
        drain.socket_closed()
