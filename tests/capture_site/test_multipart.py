"""The multipart/form-data reader of the webcam frame endpoints."""
from __future__ import annotations

from io import BytesIO

import pytest
from werkzeug.test import EnvironBuilder

from gazepref.capture_site.multipart import MultipartError, parse_multipart

B = "----WebKitFormBoundaryAbC123xyz"


def body(*parts: bytes, boundary: str = B, close: bool = True) -> bytes:
    out = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    return out + (b"--" + boundary.encode() + b"--\r\n" if close else b"")


def test_a_browser_form_data_body():
    jpeg = b"\xff\xd8\r\n--not a boundary\r\n\r\n\x00\xff\xd9"  # binary data with CRLFs and dashes
    data = body(b'Content-Disposition: form-data; name="meta"\r\n\r\n{"t": [1]}',
                b'Content-Disposition: form-data; name="frame"; filename="blob"\r\nContent-Type: Image/JPEG\r\n\r\n' + jpeg,
                b'Content-Disposition: form-data; name="frame"; filename="f1.jpg"\r\nContent-Type: image/png; x=1\r\n\r\n')
    meta, f0, f1 = parse_multipart(data, B)
    assert (meta.name, meta.filename, meta.content_type, meta.data) == ("meta", None, "", b'{"t": [1]}')
    assert (f0.name, f0.filename, f0.content_type, f0.data) == ("frame", "blob", "image/jpeg", jpeg)
    assert (f1.content_type, f1.data) == ("image/png", b"")


def test_same_parts_as_werkzeug():
    files = [(BytesIO(b"\xff\xd8abc"), "a.jpg", "image/jpeg"), (BytesIO(b""), "b.jpg", "image/jpeg")]
    env = EnvironBuilder(method="POST", data={"meta": "{}", "frame": files}, content_type="multipart/form-data")
    environ = env.get_environ()
    boundary = environ["CONTENT_TYPE"].split("boundary=")[1].strip('"')
    parts = parse_multipart(environ["wsgi.input"].read(), boundary)  # a preamble CRLF, an empty last part
    assert [(p.name, p.filename, p.content_type, p.data) for p in parts] == [
        ("meta", None, "", b"{}"), ("frame", "a.jpg", "image/jpeg", b"\xff\xd8abc"), ("frame", "b.jpg", "image/jpeg", b"")]


@pytest.mark.parametrize("data, boundary, message", [
    (body(b'Content-Disposition: form-data; name="meta"\r\n\r\n{}', close=False), B, "not closed"),
    (b"no boundary here", B, "no multipart boundary"),
    (body(b'Content-Disposition: form-data; filename="x"\r\n\r\n{}'), B, "without a name"),
    (body(b'Content-Disposition: attachment; name="x"\r\n\r\n{}'), B, "not form-data"),
    (body(b"Content-Disposition form-data\r\n\r\n{}"), B, "malformed multipart header"),
    (body(b"{}"), B, "header block"),
    (body(b""), "", "boundary"),
])
def test_malformed_bodies(data, boundary, message):
    with pytest.raises(MultipartError, match=message):
        parse_multipart(data, boundary)
