"""Telemetry batches: decoding and validation, before anything touches the database.

A batch is JSON (optionally gzip-compressed, ``Content-Encoding: gzip`` or ``?enc=gzip``)::

    {"task": 12, "seq": 7, "origin": 1763860000123.4,
     "streams": {"mouse": {"t": [...], "x": [...], "y": [...], "buttons": [...]}, "events": {...}}}

``seq`` numbers the batches of one page load (``origin``) of the task (a replayed (origin, seq) adds nothing; another
page load may use the same seqs), ``origin`` is the page's
``performance.timeOrigin`` and every stream is column-major with the columns of
:data:`gazepref.schema.STREAMS`. :func:`parse_batch` raises :class:`BatchError` naming the first
problem: sizes, types, non-finite numbers, unequal column lengths, time going backwards.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .. import schema
from ..store import MAX_ID

MAX_BODY_BYTES = 2 * 1024 * 1024  # as sent (compressed)
MAX_JSON_BYTES = 16 * 1024 * 1024  # after decompression
#: a body larger than this (as JSON; a multipart frame batch: as sent) is read or parsed only once
#: the sender's rate-limit bucket was seen to hold a token (:func:`out_of_tokens_for`); smaller
#: ones cost less to parse than that extra read
LARGE_JSON_BYTES = 64 * 1024
MAX_ROWS = 20_000  # per stream per batch
MAX_TEXT = 2_000  # characters per string value
MAX_SEQ = 2**31 - 1
MAX_ORIGIN_MS = 1e14  # performance.timeOrigin in Unix ms: until the year 5138
MAX_PAGE_TIME_MS = 1e10  # a page-clock time (performance.now()): ~115 days of an open page
INGEST_STREAMS = tuple(s for s in schema.STREAMS if s != "hits")  # hits are derived on the server
NULLABLE = {("gaze", "x"), ("gaze", "y")}  # required columns that may be null (gaze before calibration)


class BatchError(ValueError):
    """The batch is malformed; ``status`` is 400, or 413 when it is too large."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Batch:
    task: int
    seq: int
    origin: float
    tables: dict[str, pa.Table]  # conformed to the stream schemas; only non-empty streams

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.tables.values())


def json_size(raw: bytes, gzipped: bool) -> int:
    """The body's size as JSON, known before decompressing it: its length, or for gzip the size its
    trailer declares (ISIZE, the last 4 bytes: the uncompressed length mod 2**32, exact for the
    bodies taken here). :func:`decode_body` holds the body to it: a body that decompresses to more
    is refused after that many bytes."""
    if not gzipped:
        return len(raw)
    return int.from_bytes(raw[-4:], "little") if len(raw) >= 18 else 0


def out_of_tokens_for(size_bytes: int | None, limiter, key: str, large: int = LARGE_JSON_BYTES) -> bool:
    """Whether to refuse (429) a body of ``size_bytes`` before parsing it: it is larger than
    :data:`LARGE_JSON_BYTES` and the sender's bucket ``key`` of ``limiter``
    (:class:`.ratelimit.DbRateLimiter`) holds no token, so the take after parsing would refuse it
    anyway. One indexed read, for large bodies only: a participant out of tokens cannot make the
    server decompress and parse up to 16 MB a request (JSON batches, ``size_bytes`` =
    :func:`json_size`) or read a multipart frame batch at all (``size_bytes`` = its
    Content-Length, known before the body is read; None, a body without one: as large).
    ``large``: the size above which to look (a route whose legal bodies are larger than the
    default: above the largest of them)."""
    return (size_bytes is None or size_bytes > large) and not limiter.has_token(key)


GZIP_MAGIC = b"\x1f\x8b"
#: deflate's largest expansion: 258 bytes from a 2-bit code, ~1032 to 1 (RFC 1951): a trailer
#: declaring more than that many times the body's length belongs to no complete gzip stream of
#: it (a body cut short ends in other bytes)
MAX_DEFLATE_RATIO = 1032


#: a JSON integer with more digits than this is beyond any float64 (~1.8e308): no number the site
#: takes (Python reads it exactly, and ``math.isfinite`` of it raised OverflowError: a 500)
MAX_INT_DIGITS = 308


def parse_int(text: str) -> int:
    """``json.loads``'s ``parse_int`` for the site's bodies: the integer, or :class:`BatchError`
    (400) beyond float64's range."""
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise BatchError(f"an integer of {len(text)} digits in JSON: out of range")
    return int(text)


def decode_body(raw: bytes, gzipped: bool) -> dict:
    """The batch object of a request body (gzip: one gzip stream, as CompressionStream writes)."""
    if len(raw) > MAX_BODY_BYTES:
        raise BatchError(f"batch too large: {len(raw)} bytes (limit {MAX_BODY_BYTES})", 413)
    if gzipped:
        if raw[:2] != GZIP_MAGIC:
            raise BatchError("body is not gzip (its Content-Encoding says gzip)")
        size = json_size(raw, gzipped)
        if size > MAX_DEFLATE_RATIO * len(raw):  # no gzip stream of this length holds that much
            raise BatchError(f"body is not one gzip stream (cut short, or followed by other data): its last 4 bytes "
                             f"declare {size} bytes, more than {len(raw)} bytes of gzip can hold")
        if size > MAX_JSON_BYTES:  # said by its trailer: nothing is decompressed
            raise BatchError(f"batch too large once decompressed ({size} bytes; limit {MAX_JSON_BYTES})", 413)
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:  # at most one byte more than the trailer says (zlib checks the two agree at the end)
            raw = d.decompress(raw, size + 1)
        except zlib.error as e:
            raise BatchError(f"body is not valid gzip: {e}") from None
        if len(raw) > size or d.unconsumed_tail:
            raise BatchError("body is not one gzip stream of the size its trailer declares (it decompresses to more)")
        if not d.eof:
            raise BatchError("body is truncated gzip")
        if d.unused_data:
            raise BatchError("body is not one gzip stream: data follows its end")

    def no_constants(name: str):
        raise BatchError(f"non-finite number {name} in batch")

    try:
        obj = json.loads(raw, parse_constant=no_constants, parse_int=parse_int)
    except UnicodeDecodeError:
        raise BatchError("body is not UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise BatchError(f"body is not JSON: {e.msg} at position {e.pos}") from None
    except RecursionError:
        raise BatchError("body is nested too deeply") from None
    if not isinstance(obj, dict):
        raise BatchError("batch must be a JSON object")
    return obj


_NUMBER_TYPES = {int, float}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _column(stream: str, name: str, values: list, col: schema.Column | None) -> pa.Array:
    """One column as an Arrow array of its stream type; BatchError naming it when it is wrong."""
    where = f"streams.{stream}.{name}"
    pa_type = col.type if col is not None else pa.float32()
    types = set(map(type, values))  # C speed; the hot path avoids per-value Python loops
    nulls = type(None) in types
    if nulls and col is not None and col.required and (stream, name) not in NULLABLE:
        raise BatchError(f"{where}: required column has null values")
    types.discard(type(None))
    if pa.types.is_string(pa_type):
        if types - {str}:
            bad = next(v for v in values if v is not None and type(v) is not str)
            raise BatchError(f"{where}: expected text, got {bad!r}")
        if values and max((len(v) for v in values if v is not None), default=0) > MAX_TEXT:
            raise BatchError(f"{where}: text longer than {MAX_TEXT} characters")
        if "\x00" in "".join(v for v in values if v is not None):  # (as validation.text_problem)
            raise BatchError(f"{where}: text contains a NUL character")
        try:
            return pa.array(values, type=pa.string())
        except UnicodeEncodeError:  # a lone surrogate (JSON "\ud800"): JSON allows it, UTF-8 does not
            raise BatchError(f"{where}: text is not valid Unicode") from None
    if types - _NUMBER_TYPES:
        bad = next(v for v in values if v is not None and type(v) not in _NUMBER_TYPES)
        raise BatchError(f"{where}: expected numbers, got {bad!r}")
    try:
        arr = np.array([np.nan if v is None else v for v in values] if nulls else values, dtype=np.float64)
    except OverflowError:
        raise BatchError(f"{where}: number out of range") from None
    mask = np.isnan(arr) if nulls else None
    present = arr[~mask] if nulls else arr
    if not np.isfinite(present).all():
        raise BatchError(f"{where}: numbers must be finite")
    if pa_type == pa.float32() and present.size and np.abs(present).max() > _FLOAT32_MAX:
        raise BatchError(f"{where}: number out of range for float32 (|x| <= {_FLOAT32_MAX:.3g})")
    if pa.types.is_integer(pa_type) and present.size:
        if not (present == np.round(present)).all():
            raise BatchError(f"{where}: expected whole numbers")
        limit = {pa.int8(): 2**7, pa.int32(): 2**31}.get(pa_type, 2**63)
        if present.min() < -limit or present.max() >= limit:
            raise BatchError(f"{where}: value out of range for {pa_type}")
        whole = (np.where(mask, 0.0, arr) if nulls else arr).astype(np.int64)
        return pa.array(whole, type=pa_type, mask=mask)
    return pa.array(arr, type=pa_type, mask=mask)


def _table(stream: str, columns: object) -> pa.Table:
    spec = schema.STREAMS[stream]
    if not isinstance(columns, dict):
        raise BatchError(f"streams.{stream} must be an object of columns")
    lengths = set()
    arrays = {}
    for name, values in columns.items():
        if not isinstance(values, list):
            raise BatchError(f"streams.{stream}.{name} must be a list")
        lengths.add(len(values))
        try:
            col = spec.column(name)
        except KeyError:
            if not (spec.extra_prefixes and name.startswith(spec.extra_prefixes)):
                raise BatchError(f"streams.{stream}: unknown column {name!r}") from None
            col = None
        arrays[name] = _column(stream, name, values, col)
    if len(lengths) > 1:
        raise BatchError(f"streams.{stream}: columns have different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    if n > MAX_ROWS:
        raise BatchError(f"streams.{stream}: {n} rows (limit {MAX_ROWS} per batch)", 413)
    if n and "t" in arrays:
        t = arrays["t"].to_numpy(zero_copy_only=False)
        if t[0] < 0:
            raise BatchError(f"streams.{stream}.t: negative time {t[0]}")
        if not t.max() < MAX_PAGE_TIME_MS:
            raise BatchError(f"streams.{stream}.t: {t.max()} ms is no time on a page's clock (under {MAX_PAGE_TIME_MS:.0e})")
        back = np.flatnonzero(np.diff(t) < 0)
        if back.size:
            i = int(back[0]) + 1
            raise BatchError(f"streams.{stream}.t: time goes backwards at row {i} ({t[i - 1]} -> {t[i]})")
    try:
        return schema.conform(stream, pa.table(arrays) if arrays else spec.schema.empty_table())
    except (ValueError, pa.ArrowInvalid) as e:
        raise BatchError(str(e)) from None


def parse_batch(obj: dict) -> Batch:
    unknown = set(obj) - {"task", "seq", "origin", "streams", "v"}
    if unknown:
        raise BatchError(f"unknown batch field {sorted(unknown)[0]!r}")
    seq = obj.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise BatchError(f"seq must be an integer in 0..{MAX_SEQ} (got {seq!r})")
    task = obj.get("task")
    if not isinstance(task, int) or isinstance(task, bool) or not 0 < task <= MAX_ID:
        raise BatchError(f"task must be an integer task id in 1..{MAX_ID} (got {task!r})")
    origin = obj.get("origin")
    if isinstance(origin, bool) or not isinstance(origin, (int, float)) or not 0 < origin < MAX_ORIGIN_MS:
        raise BatchError(f"origin must be performance.timeOrigin in Unix ms (got {origin!r})")
    streams = obj.get("streams")
    if not isinstance(streams, dict):
        raise BatchError("streams must be an object keyed by stream name")
    tables = {}
    for name, columns in streams.items():
        if name not in INGEST_STREAMS:
            raise BatchError(f"unknown stream {name!r} (expected one of {', '.join(INGEST_STREAMS)})")
        table = _table(name, columns)
        if table.num_rows:
            tables[name] = table
    return Batch(task, seq, float(origin), tables)
