"""Flask application factory for the study site."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask


def create_app(instance_path: str | None = None, overrides: dict[str, Any] | None = None) -> Flask:
    instance = Path(instance_path or os.environ.get("GAZEPREF_INSTANCE") or Path.cwd() / "instance").resolve()
    app = Flask(__name__, instance_path=str(instance), instance_relative_config=True)
    instance.mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(DATABASE_URL=f"sqlite:///{instance / 'gazepref.sqlite'}")
    if overrides:
        app.config.update(overrides)

    @app.get("/")
    def index() -> str:
        return "<!doctype html><title>gazepref study</title><h1>gazepref study site</h1>"

    return app
