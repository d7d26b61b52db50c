"""The site's own files (``/vendor/``: the face mesh, its models and the wasm binaries;
``/static/``: the pages' scripts and styles) go out gzip-compressed to browsers that accept it,
from a copy made once per file version in the instance folder (capture_site/compressed.py)."""
from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from gazepref.capture_site import compressed, vendor

MODULES = Path(vendor.__file__).resolve().parent / "web" / "node_modules"
STATIC = Path(vendor.__file__).resolve().parent / "static"
HUMAN = "@vladmandic/human"
WASM = "@tensorflow/tfjs-backend-wasm"
GZIP = {"Accept-Encoding": "gzip, deflate, br"}  # as browsers ask


@pytest.fixture(autouse=True)
def _node_modules():
    if not (MODULES / HUMAN / "package.json").is_file():
        pytest.skip("capture_site/web/node_modules is missing (make serve / make test run npm ci)")


def _base(app) -> str:
    with app.test_request_context():
        return vendor.base_url()


def _copies(app) -> list[Path]:
    folder = Path(app.instance_path) / compressed.CACHE_FOLDER
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def _worth_compressing(data: bytes) -> bool:
    return len(gzip.compress(data, 6)) < (1 - compressed.MIN_SAVING) * len(data)


@pytest.mark.parametrize("path, source", [
    ("human/dist/human.esm.js", f"{HUMAN}/dist/human.esm.js"),
    ("human/models/facemesh.json", f"{HUMAN}/models/facemesh.json"),
    ("tfjs-wasm/tfjs-backend-wasm-simd.wasm", f"{WASM}/dist/tfjs-backend-wasm-simd.wasm"),
])
def test_a_vendor_file_goes_out_gzipped_to_browsers_that_accept_it(make_app, path, source):
    app = make_app()
    client = app.test_client()
    url = _base(app) + path
    original = (MODULES / source).read_bytes()

    plain = client.get(url)
    assert plain.status_code == 200 and plain.data == original
    assert "Content-Encoding" not in plain.headers and plain.headers["Accept-Ranges"] == "bytes"
    assert int(plain.headers["Content-Length"]) == len(original)

    packed = client.get(url, headers=GZIP)
    assert packed.status_code == 200 and packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.data) == original
    assert int(packed.headers["Content-Length"]) == len(packed.data) < 0.9 * len(original)
    assert packed.headers["Content-Type"] == plain.headers["Content-Type"]
    for r in (plain, packed):  # one URL, two bodies: caches keep them apart
        assert "Accept-Encoding" in r.headers["Vary"]
        assert r.cache_control.public and r.cache_control.immutable and r.cache_control.max_age == 365 * 24 * 3600
    assert packed.headers["ETag"] != plain.headers["ETag"]
    assert "Accept-Ranges" not in packed.headers
    if path.endswith(".wasm"):  # WebAssembly.instantiateStreaming needs it
        assert packed.headers["Content-Type"] == "application/wasm"

    # conditional requests: each variant is revalidated by its own ETag
    again = client.get(url, headers={**GZIP, "If-None-Match": packed.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == packed.headers["ETag"] and "Accept-Encoding" in again.headers["Vary"]
    assert client.get(url, headers={"If-None-Match": plain.headers["ETag"]}).status_code == 304
    other = client.get(url, headers={**GZIP, "If-None-Match": plain.headers["ETag"]})
    assert other.status_code == 200 and gzip.decompress(other.data) == original
    head = client.head(url, headers=GZIP)
    assert head.headers["Content-Encoding"] == "gzip"
    assert head.headers["Content-Length"] == packed.headers["Content-Length"]

    # a Range request: the identity bytes in part, the compressed variant only whole
    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == original[100:200]
    whole = client.get(url, headers={**GZIP, "Range": "bytes=100-199"})
    assert whole.status_code == 200 and gzip.decompress(whole.data) == original

    # gzip refused (q=0) or not named: as it is
    for accept in ("gzip;q=0, deflate", "identity", "br"):
        r = client.get(url, headers={"Accept-Encoding": accept})
        assert r.status_code == 200 and "Content-Encoding" not in r.headers and r.data == original, accept


def test_model_weights_are_compressed_only_where_it_saves_a_tenth(make_app):
    """The weights (.bin) of the three models compress differently (float weights hardly at
    all): a file gzip shrinks by less than MIN_SAVING goes out as it is, without Vary."""
    app = make_app()
    client = app.test_client()
    outcomes = set()
    for model in ("blazeface", "facemesh", "iris"):
        original = (MODULES / HUMAN / "models" / f"{model}.bin").read_bytes()
        worth = _worth_compressing(original)
        outcomes.add(worth)
        r = client.get(f"{_base(app)}human/models/{model}.bin", headers=GZIP)
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/octet-stream"
        assert (r.headers.get("Content-Encoding") == "gzip") == worth, model
        assert ("Accept-Encoding" in r.headers.get("Vary", "")) == worth, model
        assert (gzip.decompress(r.data) if worth else r.data) == original
    assert outcomes == {True, False}, "the pinned models have weights of both kinds"
    # an uncompressed model is remembered as such, in the instance folder (no second attempt)
    assert sum(p.name.startswith("iris.bin.") and p.suffix == ".identity" for p in _copies(app)) == 1


def test_the_compressed_copy_is_made_once_and_follows_the_installed_file(make_app, tmp_path):
    """``npm ci`` may replace a file: the copy is keyed by the file's size and time, so the next
    request gets the new bytes (new ETag) and the old copy is deleted. Upgrading a package
    changes the URLs (their version); a page still asking for the old ones is answered with the
    current file, revalidated, not kept for a year."""
    modules = tmp_path / "node_modules"
    for pkg, files in ((HUMAN, ["package.json", "dist/human.esm.js"]), (WASM, ["package.json"])):
        for f in files:
            (modules / pkg / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(MODULES / pkg / f, modules / pkg / f)
    app = make_app(WEB_MODULES=str(modules))
    client = app.test_client()
    url = _base(app) + "human/dist/human.esm.js"
    first = client.get(url, headers=GZIP)
    (copy,) = _copies(app)
    made_ns = copy.stat().st_mtime_ns
    assert client.get(url, headers=GZIP).data == first.data
    assert _copies(app) == [copy] and copy.stat().st_mtime_ns == made_ns, "compressed once"

    source = modules / HUMAN / "dist" / "human.esm.js"
    new = source.read_bytes() + b"\n// updated\n"
    source.write_bytes(new)
    os.utime(source, ns=(made_ns + 10**9, made_ns + 10**9))
    second = client.get(url, headers=GZIP)
    assert gzip.decompress(second.data) == new and second.headers["ETag"] != first.headers["ETag"]
    assert client.get(url, headers={**GZIP, "If-None-Match": first.headers["ETag"]}).status_code == 200
    (newer,) = _copies(app)
    assert newer != copy, "the old copy is deleted"

    package = modules / HUMAN / "package.json"
    meta = json.loads(package.read_text())
    old_base = _base(app)
    package.write_text(json.dumps(meta | {"version": meta["version"] + "-next"}))
    assert _base(app) != old_base and meta["version"] + "-next" in _base(app)
    stale = client.get(old_base + "human/dist/human.esm.js", headers=GZIP)
    assert stale.status_code == 200 and gzip.decompress(stale.data) == new
    assert stale.cache_control.no_cache and not stale.cache_control.immutable
    assert client.get(_base(app) + "human/dist/human.esm.js").cache_control.immutable


def test_a_deleted_copy_is_made_again(make_app):
    app = make_app()
    client = app.test_client()
    url = _base(app) + "human/models/iris.json"
    client.get(url, headers=GZIP)
    for p in _copies(app):
        p.unlink()
    r = client.get(url, headers=GZIP)
    assert r.status_code == 200 and gzip.decompress(r.data) == (MODULES / HUMAN / "models" / "iris.json").read_bytes()
    assert len(_copies(app)) == 1


@pytest.mark.parametrize("name", ["webcam.js", "style.css"])
def test_static_files_go_out_gzipped_and_are_revalidated(make_app, name):
    """The pages' own scripts and styles (unversioned URLs, relative imports between modules):
    compressed as the vendor files, still revalidated by ETag on each page."""
    client = make_app().test_client()
    original = (STATIC / name).read_bytes()
    plain = client.get(f"/static/{name}")
    packed = client.get(f"/static/{name}", headers=GZIP)
    assert plain.data == original and "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == "gzip" and gzip.decompress(packed.data) == original
    assert int(packed.headers["Content-Length"]) == len(packed.data)
    for r in (plain, packed):
        assert r.cache_control.no_cache and "Accept-Encoding" in r.headers["Vary"]
    assert client.get(f"/static/{name}", headers={**GZIP, "If-None-Match": packed.headers["ETag"]}).status_code == 304
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/nothing.js", headers=GZIP).status_code == 404
