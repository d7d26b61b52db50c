"""A small, fast ``multipart/form-data`` reader for the webcam frame batches.

Werkzeug's form parser compiles regular expressions for each new boundary (every browser request
has its own) and streams parts through Python-level buffers: ~2 ms of CPU per frame batch. The
gaze endpoints read the whole body (at most ``MAX_CONTENT_LENGTH``) and split it here instead:
~0.05 ms. Only what ``FormData`` sends is understood: parts with a ``Content-Disposition:
form-data; name="..."`` header, optionally ``filename`` and ``Content-Type``. Anything else is a
:class:`MultipartError` (the endpoints answer 400).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(rb'(?:^|;)\s*name="([^"]*)"', re.I)
_FILENAME = re.compile(rb';\s*filename="([^"]*)"', re.I)
# RFC 2046 boundary characters (bchars), at most 70 (we allow 200); anything else, e.g. a
# boundary decoded from an RFC 2231 ``boundary*=UTF-8''%E2%9C%93``, is refused
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,199}[0-9A-Za-z'()+_,\-./:=?]")


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str  # lower case, without parameters; "" when the part has none
    data: bytes


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """The parts of a ``multipart/form-data`` body, in order."""
    if not isinstance(boundary, str) or not _BOUNDARY.fullmatch(boundary):
        raise MultipartError("missing or invalid multipart boundary")
    delim = b"\r\n--" + boundary.encode("latin-1")
    pieces = (b"\r\n" + body).split(delim)
    # pieces[0] is the preamble (ignored); the last piece starts with "--" (the closing delimiter)
    if len(pieces) < 2:
        raise MultipartError("no multipart boundary in the body")
    if not pieces[-1].startswith(b"--"):
        raise MultipartError("multipart body is not closed")
    parts = []
    for piece in pieces[1:-1]:
        head_end = piece.find(b"\r\n\r\n")
        if head_end < 0:
            if not piece.endswith(b"\r\n"):
                raise MultipartError("multipart part without a header block")
            head_end = len(piece) - 2  # an empty part whose blank line ends at the delimiter
            piece += b"\r\n"
        name = filename = None
        ctype = ""
        for line in piece[:head_end].split(b"\r\n")[1:]:  # [0]: rest of the boundary line
            key, sep, value = line.partition(b":")
            if not sep:
                raise MultipartError("malformed multipart header line")
            key = key.strip().lower()
            if key == b"content-disposition":
                disposition, _, params = value.strip().partition(b";")
                if disposition.strip().lower() != b"form-data":
                    raise MultipartError("multipart part is not form-data")
                m = _NAME.search(b";" + params)
                name = m.group(1).decode("utf-8", "replace") if m else None
                m = _FILENAME.search(b";" + params)
                filename = m.group(1).decode("utf-8", "replace") if m else None
            elif key == b"content-type":
                ctype = value.split(b";", 1)[0].strip().lower().decode("latin-1")
        if name is None:
            raise MultipartError("multipart part without a name")
        parts.append(Part(name, filename, ctype, piece[head_end + 4:]))
    return parts
