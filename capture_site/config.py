"""Study configuration: a TOML file, validated into :class:`StudyConfig` with clear errors.

The embedded default (``default_study.toml`` next to this module) runs an offline, mouse-only
study on the demo LLM. :func:`load_config` reads a file; :func:`parse_config` a dict (the form
stored in ``Study.config``). Every mistake raises :class:`ConfigError` naming the file, the key
and what was expected.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import UserError
from ..schema import TASK_ANSWER_ENTRIES
from ..llm import KINDS
from ..llm.demo import VARIANTS as DEMO_VARIANTS

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_study.toml")

QUESTION_TYPES = ("text", "likert", "number", "choice", "copy", "attention")
LIKERT_VALUES = ("1", "2", "3", "4", "5")  # a likert or attention question's answers (questions.read_answers)
WEBCAM_MODES = ("off", "optional", "required")
RESUME_MODES = ("code", "link")  # another browser resumes with the resume code / by the link alone
TASK_ORDERS = ("pairwise-first", "pointwise-first", "alternate", "random")
FREE_TEXT_MODES = ("off", "optional", "required")
BACKENDS = KINDS  # the LLM backend kinds of gazepref.llm
ANSWER_FORMATS = ("markdown", "plain")
PLATFORM_NAMES = ("any", "prolific", "mturk")
MTURK_SUBMIT_HOSTS = ("https://www.mturk.com", "https://workersandbox.mturk.com")
#: desktop-only by default for webcam studies: the smallest window (width, height) in CSS px
WEBCAM_MIN_VIEWPORT = (1024, 600)
#: ``[consent]`` flag a study sets to say its consent text covers keeping camera pictures (``gaze.keep_frames``)
CONSENT_FRAMES_KEY = "camera_images"


class ConfigError(UserError):
    """The study configuration is invalid (one line naming the key)."""


@dataclass(frozen=True)
class Question:
    id: str
    label: str
    type: str = "text"
    required: bool = True
    options: tuple[str, ...] = ()
    expected: str | None = None  # attention checks: the answer that passes
    #: a 'number' question's bounds and whether it takes whole numbers only: the page's input
    #: (``min``, ``max``, ``step``) and the server's check are the same rule
    minimum: float = 0.0
    maximum: float = 150.0
    integer: bool = True

    @staticmethod
    def number_text(value: float) -> str:
        """A bound as the page and the messages write it: ``0``, ``150``, ``2.5``."""
        return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


@dataclass(frozen=True)
class Topic:
    id: str
    title: str
    prompt: str


@dataclass(frozen=True)
class ModelSpec:
    """One LLM arm: which backend serves it and that backend's options."""

    name: str
    backend: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Modifier:
    """Text appended to the prompt sent to the LLM on a random share of turns (recorded per turn)."""

    name: str
    text: str
    probability: float


@dataclass(frozen=True)
class PlatformConfig:
    """The crowd platform the participants come from and how they return to it (``[platform]``;
    see docs/STUDY_SITE.md and :mod:`gazepref.capture_site.platforms`)."""

    name: str = "any"  # any | prolific | mturk
    require_id: bool = False  # refuse arrivals without that platform's participant id
    completion_url: str = ""  # "{code}" is replaced by the completion code
    screenout_code: str = ""  # declined consent, no camera: a code of its own ("" none)
    screenout_url: str = ""
    redirect_after_s: int = 0  # 0: the done page offers a button; n: it also goes there after n s
    description: str = ""  # the MTurk preview (and any preview) describes the task with this
    mturk_submit_to: str = MTURK_SUBMIT_HOSTS[0]  # when the link carried no turkSubmitTo


@dataclass(frozen=True)
class StudyConfig:
    slug: str
    name: str
    completion_code: str
    demographics: bool
    webcam: str
    consent_text: str
    instructions_text: str
    pairwise_tasks: int
    pointwise_tasks: int
    min_turns: int
    max_turns: int
    order: str
    likert: bool
    choice_strength: bool
    compare_previous: bool
    free_text: str
    topics: tuple[Topic, ...]
    models: dict[str, ModelSpec]
    pairs: tuple[tuple[str, str], ...]
    pointwise_models: tuple[str, ...]
    swap_positions: bool
    modifiers: tuple[Modifier, ...]
    demographics_questions: tuple[Question, ...]
    pre_task_questions: tuple[Question, ...]
    post_task_questions: tuple[Question, ...]
    platform: PlatformConfig = PlatformConfig()
    answer_format: str = "markdown"  # how answers are shown: "markdown" or "plain"
    min_viewport: tuple[int, int] = (0, 0)  # (width, height) CSS px below which pages ask for a larger window
    resume: str = "code"
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def calibration(self) -> bool:
        """Whether the flow has a webcam calibration step (the gaze module fills it in)."""
        return self.webcam != "off"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- validation helpers


class _Reader:
    """Typed access to one table of the TOML document, with errors naming ``where.key``.

    It records the keys asked for (``read``, in order) and the tables opened through it
    (``children``): :meth:`check_read` then names a key nothing asked for, so the keys a table
    knows are the ones its reader reads (read each key unconditionally)."""

    def __init__(self, data: Any, where: str, source: str):
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: [{where}] must be a table")
        self.data, self.where, self.source = data, where, source
        self.read: dict[str, None] = {}  # the keys asked for, in the order asked (an ordered set)
        self.children: list[_Reader] = []

    def _fail(self, key: str, expected: str) -> None:
        got = self.data.get(key)
        raise ConfigError(f"{self.source}: {self.where}.{key} must be {expected} (got {got!r})")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., expected: str = "") -> Any:
        self.read[key] = None
        if key not in self.data:
            if default is ...:
                raise ConfigError(f"{self.source}: missing {self.where}.{key}")
            return default
        value = self.data[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            self._fail(key, expected or "a number")
        if not isinstance(value, kind):
            self._fail(key, expected or getattr(kind, "__name__", "the right type"))
        return value

    def int(self, key: str, default: Any = ..., lo: int = 0, hi: int | None = None, expected: str = "") -> int:
        """An integer in ``lo..hi`` (``hi`` optional); ``expected`` replaces the generated wording
        of the error (the same for a wrong type and a value out of range)."""
        expected = expected or (f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}")
        value = self.get(key, int, default, expected)
        if value < lo or (hi is not None and value > hi):
            self._fail(key, expected)
        return value

    def number(self, key: str, default: Any = ..., lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, expected: str = "", finite: bool = True) -> float:
        """A number (int or float) in ``lo..hi`` (either end optional; ``lo_open``: above ``lo``,
        not at it), finite unless ``finite=False`` (NaN and infinities refused). ``expected``
        replaces the generated wording of the error (e.g. ``"a finite number > 0"``)."""
        bounds = ([f"{'>' if lo_open else '>='} {lo:g}"] if lo is not None and hi is None else
                  [f"<= {hi:g}"] if hi is not None and lo is None else
                  [f"in {lo:g}..{hi:g}"] if lo is not None else [])
        expected = expected or " ".join(["a finite number" if finite else "a number", *bounds])
        value = float(self.get(key, (int, float), default, expected))
        if ((finite and not math.isfinite(value)) or (lo is not None and (value < lo or (lo_open and value == lo)))
                or (hi is not None and value > hi)):
            self._fail(key, expected)
        return value

    def text(self, key: str, default: Any = ...) -> str:
        return self.get(key, str, default, "a string").strip()

    def flag(self, key: str, default: bool) -> bool:
        return self.get(key, bool, default, "true or false")

    def choice(self, key: str, options: tuple[str, ...], default: Any = ...) -> str:
        value = self.get(key, str, default, "one of " + ", ".join(options))
        if value not in options:
            self._fail(key, "one of " + ", ".join(options))
        return value

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def table(self, key: str) -> _Reader:
        """The sub-table ``key`` (absent: empty), whose keys :meth:`check_read` checks too."""
        self.read[key] = None
        child = _Reader(self.data.get(key, {}), self._name(key), self.source)
        self.children.append(child)
        return child

    def table_list(self, key: str) -> list[_Reader]:
        items = self.get(key, list, [], "an array of tables")
        children = [_Reader(item, f"{self._name(key)}[{i}]", self.source) for i, item in enumerate(items)]
        self.children += children
        return children

    def check_read(self) -> None:
        """A key of this table or of the tables opened through it that nothing read (a typo such
        as ``tasks.min_turn``) is an error naming it, instead of the default silently standing in
        for the value meant."""
        unknown = sorted(set(self.data) - set(self.read))
        if unknown:
            raise ConfigError(f"{self.source}: unknown key {self._name(unknown[0])} (known: {', '.join(self.read)})")
        for child in self.children:
            child.check_read()


def is_study_slug(slug: str) -> bool:
    """Whether ``slug`` has a study slug's form: letters, digits, '-' or '_', 1 to 64 characters."""
    return bool(slug) and len(slug) <= 64 and slug.replace("-", "").replace("_", "").isalnum()


def _questions(doc: _Reader, key: str, strict: bool = True) -> tuple[Question, ...]:
    out, seen = [], set()
    for q in doc.table_list(key):
        qid = q.text("id")
        if strict and not qid:  # the answer's key and the form field's name
            q._fail("id", "a non-empty id")
        if qid in seen:
            raise ConfigError(f"{doc.source}: {key}: duplicate question id {qid!r}")
        seen.add(qid)
        qtype = q.choice("type", QUESTION_TYPES, "text")
        options = tuple(str(o) for o in q.get("options", list, [], "a list of strings"))
        if qtype == "choice" and not options:
            raise ConfigError(f"{doc.source}: {q.where}: a 'choice' question needs options")
        expected = q.get("expected", (str, int), None, "a string")
        if qtype == "attention" and expected is None:
            raise ConfigError(f"{doc.source}: {q.where}: an 'attention' question needs 'expected'")
        if strict and qtype == "attention" and str(expected) not in LIKERT_VALUES:  # else nobody passes
            q._fail("expected", "one of the scale's values 1..5 (an 'attention' question is a 1-5 scale)")
        bounds: dict[str, Any] = {}
        if qtype == "number":  # read for number questions only: elsewhere they are unknown keys
            bounds = {"minimum": q.number("min", 0.0), "maximum": q.number("max", 150.0),
                      "integer": q.flag("integer", True)}
            if bounds["minimum"] > bounds["maximum"]:
                q._fail("max", f"a number >= min ({bounds['minimum']:g})")
            for bound, name in (("minimum", "min"), ("maximum", "max")):  # (the page's steps count from min)
                if bounds["integer"] and bounds[bound] != int(bounds[bound]):
                    q._fail(name, "a whole number with integer = true (integer = false takes decimals)")
        out.append(Question(qid, q.text("label"), qtype, q.flag("required", True), options,
                            None if expected is None else str(expected), **bounds))
    return tuple(out)


def _check_task_answer_keys(cfg: StudyConfig, source: str) -> None:
    """A task keeps its pre- and post-task answers in one table with its own entries
    (:data:`gazepref.schema.TASK_ANSWER_ENTRIES`: the task's plan, read by the chat, and what a
    recording adds), each answer under its question's id (an attention question's
    verdict under ``<id>_passed``): an id that another answer or entry already uses would replace
    it (a question ``models`` replaced the task's models, and every chat turn then failed)."""
    seen: dict[str, str] = {key: "the task's own entry" for key in TASK_ANSWER_ENTRIES}
    for section in ("pre_task_questions", "post_task_questions"):
        for i, q in enumerate(getattr(cfg, section)):
            for key in (q.id, f"{q.id}_passed") if q.type == "attention" else (q.id,):
                if key in seen:
                    raise ConfigError(
                        f"{source}: {section}[{i}].id {q.id!r}: a task keeps its answers under their ids and "
                        f"{key!r} is already {seen[key]} (reserved: {', '.join(TASK_ANSWER_ENTRIES)}): give it another id")
                seen[key] = f"{section}[{i}]'s"


def _url(r: _Reader, key: str) -> str:
    """An https:// address in which ``{code}`` is the only placeholder (the completion code goes
    there): any other brace, ``{cod}``, Prolific's ``{{%PROLIFIC_PID%}}``, would reach every
    participant's link as it is (a URL has no literal braces, RFC 3986)."""
    url = r.text(key, "")
    if url and not url.startswith("https://"):
        r._fail(key, "an https:// address")
    rest = url.replace("{code}", "")
    if "{" in rest or "}" in rest:
        start = max(rest.find("{"), 0)
        end = rest.find("}", start)
        part = rest[start:end + 1] if end >= 0 else rest[start:]
        raise ConfigError(f"{r.source}: {r.where}.{key} has {part!r}: only {{code}} is replaced "
                          f"(by the completion code); write any other brace as %7B / %7D")
    return url


def _platform(r: _Reader) -> PlatformConfig:
    name = r.choice("name", PLATFORM_NAMES, "any")
    return PlatformConfig(
        name=name,
        require_id=r.flag("require_id", name != "any"),
        completion_url=_url(r, "completion_url"),
        screenout_code=r.text("screenout_code", ""),
        screenout_url=_url(r, "screenout_url"),
        redirect_after_s=r.int("redirect_after_s", 0, hi=600),
        description=r.text("description", ""),
        mturk_submit_to=r.choice("mturk_submit_to", MTURK_SUBMIT_HOSTS, MTURK_SUBMIT_HOSTS[0]),
    )


def parse_config(data: dict[str, Any], source: str = "study config", strict: bool = True) -> StudyConfig:
    """Validate a parsed TOML document (or a stored ``Study.config``) into a :class:`StudyConfig`.

    Both ways an unknown section, a missing or mistyped key, and the value checks older than
    ``strict`` are errors. ``strict`` (a study file being loaded: ``gazepref study check``,
    ``serve`` and :func:`~gazepref.capture_site.app.create_app`) adds: a key of a fixed table
    that nothing reads is an error (``[models.NAME]`` tables hold their backend's options;
    ``[gaze]`` checks its own keys); an empty ``study.completion_code``; a demo model's
    ``variant`` and ``rank``; and, with the webcam on, the ``[gaze]`` table, its numbers finite
    and positive (see :func:`~gazepref.capture_site.gaze_settings.gaze_settings`). A stored
    config (``strict=False``, the running site) skips what ``strict`` adds, so a study started
    before one of those checks existed keeps its pages."""
    doc = _Reader(data, "", source)
    known = {"study", "consent", "instructions", "tasks", "ratings", "topics", "models", "assignment",
             "modifiers", "demographics_questions", "pre_task_questions", "post_task_questions", "gaze",
             "platform"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown section {unknown[0]!r} (known: {', '.join(sorted(known))})")
    study = doc.table("study")
    slug = study.text("slug")
    if not is_study_slug(slug):
        raise ConfigError(f"{source}: study.slug must be letters, digits, '-' or '_' (got {slug!r})")
    tasks = doc.table("tasks")
    pairwise_n, pointwise_n = tasks.int("pairwise", 1), tasks.int("pointwise", 1)
    if pairwise_n + pointwise_n == 0:
        raise ConfigError(f"{source}: [tasks] needs at least one pairwise or pointwise task")
    min_turns = tasks.int("min_turns", 3, lo=1)
    max_turns = tasks.int("max_turns", max(min_turns, 8), lo=1)
    if max_turns < min_turns:
        raise ConfigError(f"{source}: tasks.max_turns ({max_turns}) is below tasks.min_turns ({min_turns})")
    ratings = doc.table("ratings")

    topics = tuple(Topic(t.text("id"), t.text("title"), t.text("prompt")) for t in doc.table_list("topics"))
    if not topics:
        raise ConfigError(f"{source}: at least one [[topics]] entry is needed")
    for i, topic in enumerate(topics):  # a task keeps its topic's id: a second topic of that id was never shown
        earlier = [j for j, other in enumerate(topics[:i]) if other.id == topic.id]
        if strict and (not topic.id or earlier):
            raise ConfigError(f"{source}: topics[{i}].id must be a non-empty id of its own (got {topic.id!r}"
                              + (f", also topics[{earlier[0]}]'s)" if earlier else ")"))

    models_tbl = _Reader(data.get("models", {}), "models", source)
    models: dict[str, ModelSpec] = {}
    for name, spec in models_tbl.data.items():
        m = _Reader(spec, f"models.{name}", source)
        backend = m.choice("backend", BACKENDS)
        options = {k: v for k, v in spec.items() if k != "backend"}
        if backend == "openai":
            m.text("base_url")
            m.text("model")
        if backend == "hf":
            m.text("path")
        if strict and backend == "demo":  # checked here, not at a participant's first turn
            m.choice("variant", DEMO_VARIANTS, "concise")
            m.int("rank", 0)
            m.flag("fail", False)
        if strict and backend == "hf":  # gazepref.llm.hf.HFBackend's arguments: another key fails every turn
            m.int("max_new_tokens", 256, lo=1)
            m.number("temperature", 0.0, lo=0.0)
            m.text("device", "cpu")
        if strict and backend != "openai":  # openai: other keys are request parameters (top_p, ...)
            m.check_read()
        models[name] = ModelSpec(name, backend, options)
    if not models:
        raise ConfigError(f"{source}: at least one [models.NAME] table is needed")

    assign = doc.table("assignment")
    pairs = []
    for i, pair in enumerate(assign.get("pairs", list, [], "a list of [model, model] pairs")):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise ConfigError(f"{source}: assignment.pairs[{i}] must be two model names (got {pair!r})")
        pairs.append((pair[0], pair[1]))
    pointwise_models = tuple(assign.get("pointwise", list, list(models)[:1], "a list of model names"))
    for name in [n for p in pairs for n in p] + list(pointwise_models):
        if name not in models:
            raise ConfigError(f"{source}: assignment names model {name!r}, which has no [models.{name}] table")
    if pairwise_n and not pairs:
        raise ConfigError(f"{source}: pairwise tasks need assignment.pairs")
    if pointwise_n and not pointwise_models:
        raise ConfigError(f"{source}: pointwise tasks need assignment.pointwise")

    modifiers = []
    for m in doc.table_list("modifiers"):
        p = float(m.get("probability", (int, float), 0.0, "a number in 0..1"))
        if not 0.0 <= p <= 1.0:
            m._fail("probability", "a number in 0..1")
        modifiers.append(Modifier(m.text("name"), m.get("text", str, expected="a string"), p))

    platform = _platform(doc.table("platform"))
    if strict and platform.name == "prolific" and "completion_code" not in study.data:
        # "auto" would stand in: codes Prolific cannot check, so every submission looks wrong there
        raise ConfigError(f"{source}: missing study.completion_code (with platform.name = \"prolific\": "
                          f"the code given to Prolific; \"auto\": one per participant, which Prolific cannot check)")
    completion_code = study.text("completion_code", "auto")
    if strict and not completion_code:  # the done page would show none and the platform's link carry "cc="
        study._fail("completion_code", 'a code or "auto" (one code per participant)')
    webcam = study.choice("webcam", WEBCAM_MODES, "off")
    viewport = study.get("min_viewport", list, list(WEBCAM_MIN_VIEWPORT if webcam != "off" else (0, 0)),
                         "[width, height] in CSS px")
    if not (len(viewport) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10000
                                       for v in viewport)):
        study._fail("min_viewport", "[width, height] in CSS px, e.g. [1024, 600] ([0, 0]: any window)")

    consent = doc.table("consent")
    if strict:  # true or false (gaze_settings wants it true for keep_frames); a stored config as it is
        consent.get(CONSENT_FRAMES_KEY, bool, None, "true or false")
    else:
        consent.get(CONSENT_FRAMES_KEY, object, None)
    cfg = StudyConfig(
        slug=slug,
        name=study.text("name", slug),
        completion_code=completion_code,
        demographics=study.flag("demographics", True),
        webcam=webcam,
        resume=study.choice("resume", RESUME_MODES, "code"),
        consent_text=consent.text("text"),
        instructions_text=doc.table("instructions").text("text", ""),
        pairwise_tasks=pairwise_n,
        pointwise_tasks=pointwise_n,
        min_turns=min_turns,
        max_turns=max_turns,
        order=tasks.choice("order", TASK_ORDERS, "pairwise-first"),
        likert=ratings.flag("likert", True),
        choice_strength=ratings.flag("choice_strength", True),
        compare_previous=ratings.flag("compare_previous", True),
        free_text=ratings.choice("free_text", FREE_TEXT_MODES, "optional"),
        topics=topics,
        models=models,
        pairs=tuple(pairs),
        pointwise_models=pointwise_models,
        swap_positions=assign.flag("swap_positions", True),
        modifiers=tuple(modifiers),
        demographics_questions=_questions(doc, "demographics_questions", strict),
        pre_task_questions=_questions(doc, "pre_task_questions", strict),
        post_task_questions=_questions(doc, "post_task_questions", strict),
        platform=platform,
        answer_format=study.choice("answer_format", ANSWER_FORMATS, "markdown"),
        min_viewport=(viewport[0], viewport[1]),
        raw=data,
    )
    if strict:  # the sections themselves are checked above (always)
        _check_task_answer_keys(cfg, source)
        for table in doc.children:
            table.check_read()
    if strict and (cfg.calibration or "gaze" in data):  # (with the webcam off too: a mistake waits there
        from .gaze_settings import gaze_settings  # for the day it is switched on)

        gaze_settings(cfg, source, strict=True)  # a bad [gaze] table fails here, naming the file and the key
    return cfg


def load_config(path: str | Path | None = None) -> StudyConfig:
    """Read and validate a study configuration file (TOML); ``None`` gives the embedded default."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"study config not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_config(data, str(path))
