"""The recording schema: one data model for every stage of gazepref.

A *study* has *participants* (pseudonymous ids only); a participant works through *tasks*
(one chat page each, the IFLLM "task"); a task holds *turns* (one user message and one or two
LLM responses with their ratings) and *sample streams* (gaze, mouse, scroll, layout, ...).

Time: every sample carries ``t``, monotonic milliseconds on the task clock (the browser's
``performance.now()``; for IFLLM its ``page_timer``), and may carry ``epoch_ms`` (Unix ms, UTC).
A task's ``clock_anchor_epoch_ms`` is the epoch time of ``t == 0``; ``epoch_ms`` is kept per
sample where the recorder had it, because a hidden tab pauses IFLLM's page timer.

Record types are plain dataclasses (used by the readers, the exporters and the site's store);
sample streams are Arrow tables whose columns are fixed by :data:`STREAMS`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal

import pyarrow as pa

TurnKind = Literal["pairwise", "pointwise"]

#: Pairwise choice codes: which response (by position) the participant preferred.
LEFT, RIGHT = 0, 1


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    unit: str
    doc: str
    required: bool = True

    @cached_property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.type)


@dataclass(frozen=True)
class StreamSpec:
    """One kind of sample stream. ``extra_prefixes``: further float columns allowed by prefix."""

    name: str
    doc: str
    columns: tuple[Column, ...]
    extra_prefixes: tuple[str, ...] = ()

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([c.field for c in self.columns])

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


_T = Column("t", pa.float64(), "ms", "monotonic time on the task clock (performance.now())")
_EPOCH = Column("epoch_ms", pa.float64(), "ms", "Unix time of the sample, UTC, when recorded", False)
_TARGET = Column(
    "target", pa.string(), "",
    "what the sample refers to: 'window', 'response:0' (left/only), 'response:1' (right), 'prompt', ...",
)

STREAMS: dict[str, StreamSpec] = {
    s.name: s
    for s in (
        StreamSpec(
            "gaze",
            "Point of gaze in viewport CSS px, with the eye features it was estimated from.",
            (
                _T,
                Column("x", pa.float32(), "px", "gaze x in viewport CSS px"),
                Column("y", pa.float32(), "px", "gaze y in viewport CSS px"),
                Column("confidence", pa.float32(), "0-1", "estimate quality (1 = face well placed)", False),
                Column("flags", pa.int32(), "bits", "quality flags, see gazepref.schema.GazeFlag", False),
                _EPOCH,
            ),
            # eye_/head_/sight_/face_: the features of the estimate; drift_x/drift_y: the click drift
            # correction added to x/y (the tracker's own estimate is x - drift_x)
            extra_prefixes=("eye_", "head_", "face_", "sight_", "drift_"),
        ),
        StreamSpec(
            "mouse",
            "Pointer position in viewport CSS px (moves, coalesced per animation frame).",
            (
                _T,
                Column("x", pa.float32(), "px", "pointer x in viewport CSS px"),
                Column("y", pa.float32(), "px", "pointer y in viewport CSS px"),
                Column("buttons", pa.int8(), "bits", "MouseEvent.buttons", False),
                _EPOCH,
            ),
        ),
        StreamSpec(
            "events",
            "Discrete interaction events: click, hover_enter/hover_leave, select, copy, focus, blur, "
            "resize, rate, choose, submit.",
            (
                _T,
                Column("type", pa.string(), "", "event type"),
                _TARGET,
                Column("x", pa.float32(), "px", "pointer x where relevant", False),
                Column("y", pa.float32(), "px", "pointer y where relevant", False),
                Column("detail", pa.string(), "", "free detail (selected text length, key, size)", False),
                _EPOCH,
            ),
        ),
        StreamSpec(
            "scroll",
            "Scroll offsets of the window or of a response pane.",
            (
                _T,
                _TARGET,
                Column("scroll_x", pa.float32(), "px", "horizontal scroll offset"),
                Column("scroll_y", pa.float32(), "px", "vertical scroll offset"),
                _EPOCH,
            ),
        ),
        StreamSpec(
            "layout",
            "On-screen geometry: one row per element box (kind='element', viewport px) and per word "
            "box (kind='word', px relative to the response element's content, scroll included).",
            (
                _T,
                _TARGET,
                Column("kind", pa.string(), "", "'element' or 'word'"),
                Column("index", pa.int32(), "", "word index within the response (-1 for elements)"),
                Column("char_start", pa.int32(), "", "first character of the word in the response text"),
                Column("char_end", pa.int32(), "", "one past the last character"),
                Column("x", pa.float32(), "px", "left"),
                Column("y", pa.float32(), "px", "top"),
                Column("w", pa.float32(), "px", "width"),
                Column("h", pa.float32(), "px", "height"),
                Column("turn", pa.int32(), "", "turn index the response belongs to", False),
                _EPOCH,
            ),
        ),
        StreamSpec(
            "visibility",
            "Page visibility and focus: 'visible', 'hidden', 'focus', 'blur'.",
            (_T, Column("state", pa.string(), "", "new state"), _EPOCH),
        ),
        StreamSpec(
            "hits",
            "A gaze or mouse sample relative to a response box and the character under it "
            "(IFLLM's rel_* files; our site derives it from the layout).",
            (
                _T,
                Column("source", pa.string(), "", "'gaze' or 'mouse'"),
                Column("position", pa.int8(), "", "response position: 0 left/only, 1 right"),
                Column("x", pa.float32(), "px", "x relative to the response box, -1 outside"),
                Column("y", pa.float32(), "px", "y relative to the response box (scroll included), -1 outside"),
                Column("char_index", pa.int32(), "", "index into the response text, -1 when not on text"),
                Column("window", pa.string(), "", "text around the character (<=20 chars)", False),
                Column("camera_ok", pa.int8(), "", "1 face well placed, 0 not, -1 unknown", False),
                _EPOCH,
            ),
        ),
    )
}


class GazeFlag:
    """Bit flags on gaze samples."""

    NO_FACE = 1
    MULTIPLE_FACES = 2
    TOO_DARK = 4
    BLUR = 8
    BLINK = 16
    OFF_SCREEN = 32  # reserved: nothing sets it
    UNCALIBRATED = 64
    DROPPED = 128  # frame not processed: the server was behind (load shedding)
    CALIBRATION_FAILED = 256  # no calibration attempt passed validation: stored without an estimate (x/y NaN;
    #                           gaze recalibrate --include-failed may give one from the best attempt)
    OVEREXPOSED = 512  # over half the face box saturated (grey >= 250): the landmarks are unreliable


def conform(stream: str, table: pa.Table) -> pa.Table:
    """Return ``table`` with the columns of ``stream`` in order and cast to their types.

    Missing optional columns are added as nulls; a missing required column raises ``ValueError``;
    further columns are kept only when the stream allows their prefix.
    """
    spec = STREAMS[stream]
    names = table.column_names
    present = set(names)
    arrays, fields = [], []
    n = table.num_rows
    for c in spec.columns:
        if c.name in present:
            col = table.column(c.name)
            arrays.append(col if col.type == c.type else col.cast(c.type))
        elif c.required:
            raise ValueError(f"stream {stream!r}: missing required column {c.name!r}")
        else:
            arrays.append(pa.nulls(n, c.type))
        fields.append(c.field)
    if len(present) > len(arrays) or not present <= spec.names:
        for name in names:
            if name in spec.names:
                continue
            if not spec.extra_prefixes or not name.startswith(spec.extra_prefixes):
                raise ValueError(f"stream {stream!r}: unknown column {name!r}")
            col = table.column(name)
            arrays.append(col if col.type == pa.float32() else col.cast(pa.float32()))
            fields.append(pa.field(name, pa.float32()))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def empty(stream: str) -> pa.Table:
    return STREAMS[stream].schema.empty_table()


@dataclass
class Response:
    position: int  # 0 = left (or the only one), 1 = right
    model: str
    text: str
    likert: int | None = None  # 1-5 satisfaction


@dataclass
class Turn:
    """One user message and the response(s) it got, with the participant's ratings."""

    turn_id: str
    task_id: str
    participant_id: str
    index: int  # 0-based order within the task
    kind: TurnKind
    prompt: str  # the user's message as typed
    responses: list[Response]
    prompt_sent: str | None = None  # what the LLM received (modifiers applied)
    modifiers: list[str] = field(default_factory=list)
    context: list[dict[str, str]] = field(default_factory=list)  # earlier chat messages
    choice: int | None = None  # pairwise: LEFT / RIGHT
    choice_strength: int | None = None  # optional 1-3
    better_than_previous: bool | None = None  # pointwise, from the 2nd turn
    feedback_text: str | None = None  # free text about this turn
    epoch_ms: float | None = None  # when the turn was sent (Unix ms)
    t_shown: float | None = None  # task clock: responses rendered
    t_decided: float | None = None  # task clock: ratings submitted

    @property
    def pairwise(self) -> bool:
        return self.kind == "pairwise"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: What a task's ``answers`` hold beside the answers to the study's pre- and post-task questions
#: (each under its question's id; an attention question's verdict under ``<id>_passed``): the
#: site's plan of the task (``topic_id``, ``models``) and what a recording adds (``finished``, the
#: time; ``calibration_unit`` of ``calibration_accuracy``). No question may use these ids.
TASK_ANSWER_ENTRIES = ("topic_id", "models", "finished", "calibration_unit")


@dataclass
class Task:
    """One chat page of a participant (IFLLM's (worker, task) registration)."""

    task_id: str
    participant_id: str
    study_id: str
    kind: TurnKind
    topic: str | None = None
    clock_anchor_epoch_ms: float | None = None
    finished: bool = False
    feedback_text: str | None = None  # task-level free text
    answers: dict[str, Any] = field(default_factory=dict)  # questions' answers by id, TASK_ANSWER_ENTRIES
    calibration_accuracy: float | None = None  # % (IFLLM) or px, see answers['calibration_unit']
    # site studies: the webcam calibration in force for the task (the step's outcome): passed,
    # accuracy_px, accuracy_deg, precision_px, data_loss, attempts, quality, webgazer_score_pct
    calibration: dict[str, Any] | None = None


@dataclass
class Participant:
    participant_id: str  # pseudonym; never a raw platform id
    study_id: str
    consented: bool = True
    platform: str | None = None
    # site studies with the webcam: how the camera step ended (None: the webcam off, or the step
    # not reached): WEBCAM_OUTCOMES
    webcam: str | None = None
    camera_error: str | None = None  # the camera could not be used: "denied", "not-found", "unsupported", "failed"
    screened_out: str | None = None  # sent back to the platform as screened out: "no-camera", "calibration-failed"


#: :attr:`Participant.webcam`: calibrated; a failed calibration, then gaze recorded uncalibrated
#: or none (mouse only, "failed"); no usable camera; the set-up's face check not passed in time
WEBCAM_OUTCOMES = ("calibrated", "uncalibrated", "failed", "no-camera", "skipped")
