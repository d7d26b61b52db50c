"""The page's npm packages, served by the site under ``/vendor/`` (no CDN: the participant's
browser loads nothing from elsewhere).

``make serve`` / ``make test`` run ``npm ci`` in ``capture_site/web`` (package.json and
package-lock.json there pin the versions; ``node_modules`` is not in git). Only the files the
page needs are served (:data:`FILES`): the face-mesh library ``@vladmandic/human`` (its ESM
bundle and the blazeface, facemesh and iris models) and the TF.js wasm backend's binaries.
The folder is ``capture_site/web/node_modules`` of the source tree, or the app config
``WEB_MODULES`` / ``$GAZEPREF_WEB_MODULES``.

The URLs carry the installed packages' versions (:func:`version_tag`, e.g.
``/vendor/human-3.3.6_tfjs-wasm-4.22.0/human/dist/human.esm.js``; the page gets the base from
:func:`base_url`), so the files are cached for a year without revalidation (``immutable``); a
page of an earlier version (the packages upgraded while it was open) still gets the current
files, revalidated (``no-cache``). Files go out gzip-compressed where the browser accepts it
(capture_site/compressed.py).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from flask import Blueprint, abort, current_app, url_for

from .compressed import send, version as file_version

__all__ = ["FILES", "PACKAGES", "base_url", "bp", "modules_dir", "version_tag"]

bp = Blueprint("vendor", __name__, url_prefix="/vendor")

#: served URL path (under /vendor/) -> folder in node_modules; the file name must match the pattern
FILES: dict[str, tuple[str, re.Pattern[str]]] = {
    "human/dist": ("@vladmandic/human/dist", re.compile(r"human\.esm\.js(\.map)?")),
    "human/models": ("@vladmandic/human/models", re.compile(r"(blazeface|facemesh|iris)\.(json|bin)")),
    "tfjs-wasm": ("@tensorflow/tfjs-backend-wasm/dist", re.compile(r"tfjs-backend-wasm(-simd|-threaded-simd)?\.wasm")),
}
#: the packages served (short name in the URL's version tag -> npm name)
PACKAGES = {"human": "@vladmandic/human", "tfjs-wasm": "@tensorflow/tfjs-backend-wasm"}
#: how long a browser keeps a file of the current version (versioned URL): a year, never revalidated
MAX_AGE_S = 365 * 24 * 3600

_versions: dict[Path, tuple[str, str]] = {}  # package.json -> (its file version, the package version in it)


def modules_dir() -> Path:
    """The node_modules folder the site serves from."""
    configured = current_app.config.get("WEB_MODULES")  # from $GAZEPREF_WEB_MODULES at create_app
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent / "web" / "node_modules"


def _version(package_json: Path) -> str:
    try:
        stamp = file_version(package_json.stat())
    except OSError:
        return "missing"
    known = _versions.get(package_json)
    if known is None or known[0] != stamp:
        try:
            version = str(json.loads(package_json.read_text(encoding="utf-8"))["version"])
        except (OSError, ValueError, KeyError, TypeError):
            version = "unknown"
        known = _versions[package_json] = (stamp, re.sub(r"[^0-9A-Za-z.+-]", "-", version))
    return known[1]


def version_tag() -> str:
    """The URL segment naming the installed versions, e.g. ``human-3.3.6_tfjs-wasm-4.22.0``."""
    root = modules_dir()
    return "_".join(f"{short}-{_version(root / npm / 'package.json')}" for short, npm in PACKAGES.items())


def base_url() -> str:
    """The page's base URL of the vendor files (with the versions: :func:`version_tag`)."""
    return url_for("vendor.files", tag=version_tag(), path="")


@bp.get("/<tag>/<path:path>")
def files(tag: str, path: str):
    folder, _, name = path.rpartition("/")
    entry = FILES.get(folder)
    if entry is None or not entry[1].fullmatch(name):
        abort(404)
    file = modules_dir() / entry[0] / name
    if not file.is_file():
        current_app.logger.error("vendor file %s missing: run `npm ci` in capture_site/web (make serve does)", path)
        abort(404)
    if tag == version_tag():
        return send(file, max_age=MAX_AGE_S, immutable=True)
    return send(file)  # a page of another version: the current file, revalidated
