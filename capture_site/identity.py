"""Who a participant is, from the URL parameters crowd platforms send.

Prolific: ``PROLIFIC_PID``, ``STUDY_ID``, ``SESSION_ID``. MTurk: ``workerId``, ``assignmentId``,
``hitId`` (``assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE`` is MTurk's preview). Others: ``pid`` or
``participant``. Without any, a random one-off id is made. Raw ids never leave this module
except through :func:`gazepref.capture_site.security.pseudonymise`.
"""
from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

# platform -> (participant id parameter, further session parameters)
PLATFORMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "prolific": ("PROLIFIC_PID", ("STUDY_ID", "SESSION_ID")),
    "mturk": ("workerId", ("assignmentId", "hitId", "turkSubmitTo")),
    "generic": ("pid", ()),
    "generic2": ("participant", ()),
}
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
MAX_ID_LENGTH = 128


@dataclass(frozen=True)
class Arrival:
    platform: str  # prolific | mturk | generic | direct
    raw_id: str
    extras: dict[str, str] = field(default_factory=dict)  # raw; pseudonymise before storing
    preview: bool = False


def placeholder(value: str) -> bool:
    """Whether ``value`` is a platform's placeholder left unfilled (Prolific's
    ``{{%PROLIFIC_PID%}}``: the link opened as written, not through the platform). Taken for an id,
    everyone who opened that link would be one participant."""
    return "{{" in value or "}}" in value


def arrival_from_args(args: Mapping[str, str]) -> Arrival:
    """Read the platform and participant id from a request's query parameters (an unfilled
    placeholder is no id: :func:`placeholder`)."""
    for platform, (id_param, extra_params) in PLATFORMS.items():
        raw = (args.get(id_param) or "").strip()[:MAX_ID_LENGTH]
        if raw and not placeholder(raw):
            extras = {p: args[p][:MAX_ID_LENGTH] for p in extra_params if args.get(p)}
            preview = extras.get("assignmentId") == MTURK_PREVIEW
            return Arrival(platform.rstrip("2"), raw, extras, preview)
    preview = args.get("assignmentId") == MTURK_PREVIEW
    return Arrival("direct", secrets.token_hex(16), {}, preview)
