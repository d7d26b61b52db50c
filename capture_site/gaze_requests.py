"""Reading and checking what the page sends with webcam frames: the multipart ``meta`` and
``frame`` parts (:mod:`.multipart` splits the body), frame counts, sizes and types, and a frame
batch's ``{phase, task, seq, origin, t}`` (:func:`frame_meta`, shared by the HTTP batches and the
WebSocket). Every problem is an :class:`~.api.ApiError` (400, or 413 for too much)."""
from __future__ import annotations

import math
from typing import Any, NamedTuple

from flask import request

from .api import ApiError, loads_object
from .gaze_settings import MAX_FRAME_BYTES
from .multipart import MultipartError, Part, parse_multipart
from .validation import InvalidInput, origin_ms, page_time_ms

__all__ = ["FrameMeta", "frame_meta", "frame_parts", "integer", "json_body", "multipart_form", "numbers"]


def multipart_form(bucket: tuple[Any, str] | None = None,
                   refusal: str = "too many requests; slow down") -> tuple[dict[str, Any], list[Part]]:
    """The JSON ``meta`` part and the ``frame`` parts of a multipart request (:mod:`.multipart`).
    ``bucket`` = (a :class:`.ratelimit.DbRateLimiter`, key): a large body (by its Content-Length)
    whose sender is out of tokens is refused (429, ``refusal``) before it is read
    (:func:`.batches.out_of_tokens_for`, as :func:`json_body`)."""
    from .batches import out_of_tokens_for

    ctype = request.mimetype
    if ctype != "multipart/form-data":
        raise ApiError(400, f"frames must be sent as multipart/form-data (got {ctype or 'no content type'!r})")
    if bucket is not None and out_of_tokens_for(request.content_length, *bucket):
        raise ApiError(429, refusal, retry_after=1)
    try:
        parts = parse_multipart(request.get_data(cache=False), request.mimetype_params.get("boundary", ""))
    except MultipartError as e:
        raise ApiError(400, str(e)) from None
    meta_part = next((p for p in parts if p.name == "meta"), None)
    meta = loads_object(meta_part.data if meta_part is not None else None)
    if meta is None:
        raise ApiError(400, "meta must be a JSON object")
    return meta, [p for p in parts if p.name == "frame"]


def json_body(bucket: tuple[Any, str] | None = None, refusal: str = "too many requests; slow down",
              large: int | None = None) -> dict[str, Any]:
    """The JSON object of a request (gzip allowed: ``Content-Encoding: gzip``, as the outbox sends),
    with the telemetry batches' size limits (:func:`.batches.decode_body`). ``bucket`` = (a
    :class:`.ratelimit.DbRateLimiter`, key): a large body whose sender is out of tokens is refused
    (429, ``refusal``) before it is parsed (:func:`.batches.out_of_tokens_for`; ``large``: the
    size above which that is looked at, default :data:`.batches.LARGE_JSON_BYTES`)."""
    from .batches import LARGE_JSON_BYTES, BatchError, decode_body, json_size, out_of_tokens_for

    gzipped = request.headers.get("Content-Encoding", "").lower() == "gzip" or request.args.get("enc") == "gzip"
    raw = request.get_data(cache=False)
    if bucket is not None and out_of_tokens_for(json_size(raw, gzipped), *bucket, large=large or LARGE_JSON_BYTES):
        raise ApiError(429, refusal, retry_after=1)
    try:
        return decode_body(raw, gzipped)
    except BatchError as e:
        raise ApiError(e.status, str(e)) from None


def frame_parts(parts: list[Part], expected: int, limit: int) -> list[bytes]:
    """The JPEG bytes of ``parts``: ``expected`` of them (one per time), at most ``limit``."""
    if len(parts) != expected:
        raise ApiError(400, f"{len(parts)} frame parts for {expected} times")
    if len(parts) > limit:
        raise ApiError(413, f"too many frames in one request: {len(parts)} (limit {limit})")
    for i, part in enumerate(parts):
        if part.content_type != "image/jpeg":
            raise ApiError(400, f"frame {i}: wrong content type {part.content_type or 'none'!r} (expected image/jpeg)")
        if len(part.data) > MAX_FRAME_BYTES:
            raise ApiError(413, f"frame {i}: larger than the limit of {MAX_FRAME_BYTES} bytes")
    return [p.data for p in parts]


def numbers(values: Any, name: str = "t") -> list[float]:
    """``values`` as a list of finite floats (ApiError 400 naming ``name`` otherwise)."""
    if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ApiError(400, f"{name} must be a list of finite numbers")
    return [float(v) for v in values]


def integer(meta: dict[str, Any], key: str, lo: int = 0, hi: int = 2**31 - 1, name: str | None = None) -> int:
    """``meta[key]`` as an integer in [lo, hi] (ApiError 400 naming ``name``, default ``key``, otherwise)."""
    v = meta.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > hi:
        raise ApiError(400, f"{name or key} must be an integer from {lo} to {hi} (got {v!r})")
    return v


class FrameMeta(NamedTuple):
    phase: str                 # "setup" | "task"
    times: list[float]
    task_id: int | None = None
    seq: int | None = None
    origin: float | None = None
    calibration: int | None = None  # the calibration row the frames were taken under (None: not said)
    clicks: int | None = None  # the click and caret rows the page has made for the correction (None: not said)


def frame_meta(meta: dict[str, Any], times: list[float] | None = None) -> FrameMeta:
    """Checked ``{phase, task, seq, origin, calibration, clicks}`` of a frame batch (HTTP) or one
    frame (WebSocket, ``times`` given: its ``t``). ``calibration`` (task frames; optional, null =
    not said) is the id of the calibration the page records under (its ``gaze.calibration``);
    ``clicks`` (optional) how many click and caret rows with a point the page has recorded while
    recording (:func:`.gaze_drift.needs_update`); the set-up phase's are ignored."""
    phase = meta.get("phase", "task")
    if phase not in ("setup", "task"):
        raise ApiError(400, f"phase must be 'setup' or 'task' (got {phase!r})")
    times = numbers(meta.get("t")) if times is None else times
    # times on the page's clock (performance.now(): from 0), in the order taken, as for telemetry
    # batches (the tracker's blink baseline and smoothing follow them; the exporters need the range)
    for i, t in enumerate(times):
        try:
            page_time_ms(t, "t")
        except InvalidInput as e:
            raise ApiError(400, f"{e} at {i}") from None
        if i and t < times[i - 1]:
            raise ApiError(400, f"t goes backwards at {i} ({times[i - 1]} -> {t})")
    if phase != "task":
        return FrameMeta(phase, times)
    task_id, seq = integer(meta, "task"), integer(meta, "seq")
    try:  # the range the exporters need (as for telemetry batches)
        origin = origin_ms(meta.get("origin"), "origin (performance.timeOrigin)")
    except InvalidInput as e:
        raise ApiError(400, str(e)) from None
    calibration = None if meta.get("calibration") is None else integer(meta, "calibration", 1)
    clicks = None if meta.get("clicks") is None else integer(meta, "clicks", 0)
    return FrameMeta(phase, times, task_id, seq, origin, calibration, clicks)
