"""The Python examples of README.md and docs/*.md run as written.

Each ```python block is registered in :data:`EXAMPLES` (by a line it contains) with what it needs
to run: placeholder paths replaced by real data (the IFLLM sample, the tests' chat log) and the
names the prose gives it (``rec``, ``turns``, a prompt ``p`` ...). A new block without an entry
fails :func:`test_every_example_is_registered`, so examples cannot silently rot."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks() -> list[tuple[str, str]]:
    """(file name, code) of every ```python block of the docs."""
    out = []
    for doc in DOCS:
        for m in re.finditer(r"^```python\n(.*?)^```", doc.read_text(), flags=re.S | re.M):
            out.append((doc.name, m.group(1)))
    return out


def _sample_turns(ns: dict, sample: Path) -> None:
    from gazepref.datasets.sources import open_source

    rec = open_source(str(sample))
    pairwise = [t for t in rec.turns() if t.pairwise]
    ns.update(rec=rec, turns=pairwise, p=pairwise[0].prompt, a=pairwise[0].responses[0].text,
              b=pairwise[0].responses[1].text)


def _mined(ns: dict, sample: Path, log: Path, tmp: Path) -> None:
    from gazepref.cli import main

    assert main(["feedback", "mine", str(log), "--out", str(tmp / "mined")]) == 0


@dataclass
class Example:
    doc: str
    marker: str  # a line of the block that names it
    #: placeholder in the docs -> key of the real value ("sample", "log", "tmp/NAME")
    subs: dict[str, str] = field(default_factory=dict)
    setup: Callable | None = None  # (namespace, sample, log, tmp) -> None: the names the prose gives
    imports_only: str = ""  # why only the block's imports run (they must still resolve)
    check: Callable | None = None  # (namespace) -> None


EXAMPLES = [
    Example("README.md", "rec = open_source(", subs={"path/to/dataset": "sample"},
            check=lambda ns: ns["streams"]["gaze"].num_rows > 0 and ns["turns"]),
    Example("reward_models.md", "rm = train_reward_model(",
            subs={"~/.cache/gazepref/ifllm-dev/dataset": "sample", "runs/rm": "tmp/rm"},
            setup=lambda ns, s, log, tmp: _sample_turns(ns, s)),
    Example("text_feedback.md", "classify_feedback([",
            setup=lambda ns, s, log, tmp: ns.update(q="Who founded Tesla?", a="Elon Musk founded Tesla.",
                                                    n="who were the founders of tesla motors")),
    Example("feedback_mining.md", "report = ReadReport()", subs={"logs/wildchat.parquet": "log"},
            check=lambda ns: ns["report"].to_dict()["conversations"] > 0),
    Example("feedback_mining.md", "fb = feedback_index(", subs={'"mined"': "tmp/mined", '"chats.jsonl"': "log"},
            setup=lambda ns, s, log, tmp: _mined(ns, s, log, tmp),
            check=lambda ns: ns["pairs"] and ns["kto"]),
    Example("alignment.md", 'LabelSource("choice_strength"',
            setup=lambda ns, s, log, tmp: ns.update(
                LabelSource=__import__("gazepref.datasets.label_sources", fromlist=["LabelSource"]).LabelSource)),
    Example("gaze.md", "tracker = GazeTracker()",
            imports_only="needs webcam JPEGs, calibration targets and a database session"),
]


def _example(doc: str, code: str) -> Example | None:
    found = [e for e in EXAMPLES if e.doc == doc and e.marker in code]
    return found[0] if len(found) == 1 else None


def test_every_example_is_registered():
    blocks = python_blocks()
    assert blocks, "no ```python blocks found"
    unregistered = [f"{doc}: {code.splitlines()[0]}" for doc, code in blocks if _example(doc, code) is None]
    assert not unregistered, f"register these doc examples in EXAMPLES: {unregistered}"
    used = {(e.doc, e.marker) for doc, code in blocks for e in [_example(doc, code)] if e}
    stale = [(e.doc, e.marker) for e in EXAMPLES if (e.doc, e.marker) not in used]
    assert not stale, f"EXAMPLES entries whose block is gone from the docs: {stale}"


@pytest.mark.slow
@pytest.mark.parametrize("doc, code", python_blocks(), ids=lambda v: v if v.endswith(".md") else "")
def test_doc_example_runs(doc, code, ifllm_sample, feedback_log, tmp_path, monkeypatch):
    ex = _example(doc, code)
    assert ex is not None
    monkeypatch.chdir(tmp_path)
    values = {"sample": str(ifllm_sample), "log": str(feedback_log)}
    for placeholder, key in ex.subs.items():
        real = str(tmp_path / key[4:]) if key.startswith("tmp/") else values[key]
        quoted = placeholder.startswith('"')
        assert placeholder in code, f"{doc}: placeholder {placeholder!r} is gone from the example"
        code = code.replace(placeholder, f'"{real}"' if quoted else real)
    if ex.imports_only:
        code = "\n".join(line for line in code.splitlines() if line.startswith(("from ", "import ")))
    ns: dict = {"__name__": "doc_example"}
    if ex.setup:
        ex.setup(ns, ifllm_sample, feedback_log, tmp_path)
    exec(compile(code, f"<{doc} example>", "exec"), ns)
    if ex.check:
        assert ex.check(ns)
