"""Checks at the site's edge: what a request may carry before any handler (or an LLM) sees it.

One validator, applied once per request (:func:`check_request`, an ``app.before_request`` hook)
and by every JSON reader of the site (:func:`loads_json`):

* **Text the databases cannot store**: NUL (PostgreSQL text and JSON refuse ``\\u0000``) and lone
  surrogates (``"\\ud800"``: valid JSON, not UTF-8; both databases refuse it). Checked in the URL
  path, the query string, urlencoded form fields and every string (and key) of a JSON body.
* **Numbers JSON cannot store**: ``NaN``, ``Infinity`` and literals that overflow to infinity
  (``1.0e999``): PostgreSQL's JSON refuses them and no exporter can use them.
* **JSON nested too deeply** for the parser (``RecursionError``), or deeper than :data:`MAX_DEPTH`.
* **Ranges the exporters need**: :func:`origin_ms` (``performance.timeOrigin``, the same range as
  the telemetry batches) and :func:`page_time_ms` (page-clock times).

Problems raise :class:`InvalidInput` (a ``ValueError``); the site answers 400 with a JSON
``{"error"}`` (on the API) or the error page. Ingest batches have their own, faster reader
(:mod:`.batches`) with the same rules.
"""
from __future__ import annotations

import json
import math
from typing import Any

from ..store import MAX_ID
from .batches import MAX_ORIGIN_MS, MAX_PAGE_TIME_MS, BatchError, parse_int

MAX_DEPTH = 32  # nesting of a request's JSON: the site's own requests nest 4 deep at most


class InvalidInput(ValueError):
    """The request carries something the site cannot store; the message names what and where."""


def text_problem(s: str) -> str | None:
    """What makes ``s`` unstorable (a NUL, a lone surrogate), or None when it is fine."""
    if "\x00" in s:
        return "contains a NUL character"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (a lone surrogate)"
    return None


def check_text(s: str, where: str) -> str:
    """``s`` when it is storable text; :class:`InvalidInput` naming ``where`` otherwise."""
    problem = text_problem(s)
    if problem:
        raise InvalidInput(f"{where} {problem}")
    return s


def check_value(value: Any, where: str = "body", depth: int = 0) -> Any:
    """Check a parsed JSON value: storable strings and keys, finite numbers, nesting depth."""
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{where} is nested too deeply (limit {MAX_DEPTH})")
    if isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{where} is not a finite number")
    elif isinstance(value, dict):
        for k, v in value.items():
            check_text(k, f"{where}: a key")
            check_value(v, f"{where}.{k}" if len(where) < 200 else where, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_value(v, f"{where}[{i}]" if len(where) < 200 else where, depth + 1)
    return value


def _no_constant(name: str) -> Any:
    raise InvalidInput(f"non-finite number {name} in JSON")


def loads_json(data: str | bytes | bytearray, where: str = "body") -> Any:
    """Parse JSON text and :func:`check_value` it; :class:`InvalidInput` for anything the site
    could not store (including malformed or too deeply nested JSON)."""
    try:
        value = json.loads(data, parse_constant=_no_constant, parse_int=parse_int)
    except InvalidInput:
        raise
    except BatchError as e:  # (an integer out of range)
        raise InvalidInput(f"{where}: {e}") from None
    except RecursionError:
        raise InvalidInput(f"{where} is nested too deeply") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{where} is not UTF-8 JSON") from None
    except ValueError as e:
        raise InvalidInput(f"{where} is not JSON: {e}") from None
    return check_value(value, where)


def finite_in(value: object, name: str, lo: float, hi: float) -> float:
    """``value`` as a float when it is a number with ``lo < value < hi``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and lo < value < hi):
        raise InvalidInput(f"{name} must be a number between {lo:g} and {hi:g} (got {value!r})")
    return float(value)


def origin_ms(value: object, name: str = "origin") -> float:
    """A page's ``performance.timeOrigin`` (Unix ms): 0 < origin < 1e14, as ingest requires."""
    return finite_in(value, name, 0.0, MAX_ORIGIN_MS)


def page_time_ms(value: object, name: str) -> float:
    """A page-clock time (``performance.now()``, ms since the page's origin): 0 <= t < 1e10 (~115
    days of an open page), the rule of every time a page sends (telemetry rows: ``batches``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < MAX_PAGE_TIME_MS:
        raise InvalidInput(f"{name} must be a number between 0 and {MAX_PAGE_TIME_MS:g} ms on the page's clock "
                           f"(got {value!r})")
    return float(value)


def check_form_number(raw: str, where: str) -> int | float:
    """A number typed into a form (``"30"``, ``"1.5"``): finite, or :class:`InvalidInput`."""
    try:
        value: int | float = int(raw)
    except ValueError:
        try:
            value = float(raw)
        except ValueError:
            raise InvalidInput(f"{where} is not a number") from None
    if isinstance(value, float) and not math.isfinite(value) or isinstance(value, int) and abs(value) > 2**53:
        raise InvalidInput(f"{where} is out of range")
    return value


def check_request() -> None:
    """``before_request``: whole numbers in the path must be ids the databases can hold (else 404);
    the path, the query string and the form fields of the pages must be storable text (the API's multipart bodies are read by the endpoints that take them, JSON
    bodies by :func:`loads_json`)."""
    from flask import request
    from werkzeug.exceptions import NotFound

    check_text(request.path, "the address")
    for value in (request.view_args or {}).values():  # ids in the address: what the databases can hold
        if isinstance(value, int) and not 0 <= value <= MAX_ID:
            raise NotFound(f"no such id {value}")
    for key, value in request.args.items(multi=True):
        check_text(key, "a query parameter name")
        check_text(value, f"query parameter {key!r}")
    if request.mimetype == "application/x-www-form-urlencoded" or (
            request.mimetype == "multipart/form-data" and not request.path.startswith("/api/")):
        for key, value in request.form.items(multi=True):
            check_text(key, "a form field name")
            check_text(value, f"form field {key!r}")
