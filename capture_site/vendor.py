"""The page's npm packages, served by the site under ``/vendor/`` (no CDN: the participant's
browser loads nothing from elsewhere).

``make serve`` / ``make test`` run ``npm ci`` in ``capture_site/web`` (package.json and
package-lock.json there pin the versions; ``node_modules`` is not in git). Only the files the
page needs are served (:data:`FILES`): the face-mesh library ``@vladmandic/human`` (its ESM
bundle and the blazeface, facemesh and iris models) and the TF.js wasm backend's binaries.
The folder is ``capture_site/web/node_modules`` of the source tree, or the app config
``WEB_MODULES`` / ``$GAZEPREF_WEB_MODULES``.
"""
from __future__ import annotations

import re
from pathlib import Path

from flask import Blueprint, abort, current_app, send_from_directory

__all__ = ["FILES", "bp", "modules_dir"]

bp = Blueprint("vendor", __name__, url_prefix="/vendor")

#: served URL path (under /vendor/) -> folder in node_modules; the file name must match the pattern
FILES: dict[str, tuple[str, re.Pattern[str]]] = {
    "human/dist": ("@vladmandic/human/dist", re.compile(r"human\.esm\.js(\.map)?")),
    "human/models": ("@vladmandic/human/models", re.compile(r"(blazeface|facemesh|iris)\.(json|bin)")),
    "tfjs-wasm": ("@tensorflow/tfjs-backend-wasm/dist", re.compile(r"tfjs-backend-wasm(-simd|-threaded-simd)?\.wasm")),
}


def modules_dir() -> Path:
    """The node_modules folder the site serves from."""
    configured = current_app.config.get("WEB_MODULES")  # from $GAZEPREF_WEB_MODULES at create_app
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent / "web" / "node_modules"


@bp.get("/<path:path>")
def files(path: str):
    folder, _, name = path.rpartition("/")
    entry = FILES.get(folder)
    if entry is None or not entry[1].fullmatch(name):
        abort(404)
    root = modules_dir() / entry[0]
    if not (root / name).is_file():
        current_app.logger.error("vendor file %s missing: run `npm ci` in capture_site/web (make serve does)", path)
        abort(404)
    return send_from_directory(root, name, max_age=7 * 24 * 3600)
