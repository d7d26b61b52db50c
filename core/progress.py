"""Progress reporting for long work, usable from any layer (the command line only re-exports it)."""
from __future__ import annotations

import sys
from collections.abc import Iterable


def progress(iterable: Iterable, total: int | None = None, desc: str = "", enable: bool = True):
    """A progress bar on stderr (hidden when stderr is not a terminal or ``enable`` is false)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enable or None, file=sys.stderr, leave=False)
