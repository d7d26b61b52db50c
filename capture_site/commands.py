"""CLI: ``gazepref serve`` and ``gazepref user add``."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the study site (development server)",
                       description="Run the study site. Embedded defaults: SQLite in the instance "
                                   "folder, offline demo LLM. Production: see README (gunicorn).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--instance", help="instance folder (database, secrets); default ./instance")
    p.add_argument("--config", help="study configuration file (TOML)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from .app import create_app

    overrides = {}
    if args.config:
        overrides["STUDY_CONFIG"] = args.config
    app = create_app(instance_path=args.instance, overrides=overrides)
    print(f"gazepref study site: http://{args.host}:{args.port}/", flush=True)
    app.run(host=args.host, port=args.port, debug=False, use_reloader=False)
    return 0
