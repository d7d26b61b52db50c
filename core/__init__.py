"""gazepref: implicit (mouse, webcam gaze) and text feedback from LLM chats, turned into rewards
for aligning LLMs with DPO.

Subpackages: :mod:`gazepref.capture_site` (the study site), :mod:`gazepref.signals` (features),
:mod:`gazepref.models` (reward models, DPO), :mod:`gazepref.datasets` (readers, exporters,
preference sets). The recording schema is :mod:`gazepref.schema`, its storage :mod:`gazepref.store`.
"""

from __future__ import annotations

import math
from typing import Any

__version__ = "0.1.0"


class UserError(Exception):
    """A mistake by the user (missing file, wrong layout, bad option): reported in one line."""


def json_safe(value: Any) -> Any:
    """A standard-JSON copy of ``value``: every non-finite float (NaN: a metric that is not
    defined) as ``None``, numpy scalars and arrays as Python values, tuples as lists and mapping
    keys as strings; ``value`` itself is left as it was. Used by ``--json`` output
    (:func:`gazepref.cli.emit`) and by the study site's stored and returned gaze results."""
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # numpy scalar or array, without importing numpy
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
