"""Reading questionnaire answers (demographics, pre- and post-task questions) from a form."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .answers import copied_from
from .config import LIKERT_VALUES, Question
from .validation import InvalidInput, check_form_number

#: the longest answer (characters) a question takes: its field takes no more (``maxlength``), and
#: a longer one sent anyway is asked again, never cut
MAX_ANSWER = 5000


class AnswerError(str):
    """A message about one question's answer; ``field`` is the question's id, so the page can
    tie the message to its control (``aria-describedby``, ``aria-invalid``)."""

    field: str

    def __new__(cls, text: str, field: str) -> AnswerError:
        obj = super().__new__(cls, text)
        obj.field = field
        return obj


def read_answers(questions: tuple[Question, ...], form: Mapping[str, str], all_optional: bool = False,
                 copy_sources: Sequence[str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Answers keyed by question id, and one message per missing or invalid answer
    (:class:`AnswerError`, naming its question).

    Attention checks add ``<id>_passed`` (True/False). ``all_optional`` (demographics) accepts
    blanks everywhere. ``copy_sources``: the answer texts a ``copy`` question's text must occur in.
    """
    answers: dict[str, Any] = {}
    errors: list[str] = []
    for q in questions:
        raw = (form.get(q.id) or "").strip()
        if len(raw) > MAX_ANSWER:  # (the page's field takes no more: a script, an old page) never cut silently
            errors.append(AnswerError(f"Please shorten your answer to at most {MAX_ANSWER} characters "
                                      f"(it has {len(raw)}): {q.label}", q.id))
            continue
        if not raw:
            if q.required and not all_optional:
                errors.append(AnswerError(f"Please answer: {q.label}", q.id))
            continue
        if q.type in ("likert", "attention"):
            if raw not in LIKERT_VALUES:
                errors.append(AnswerError(f"Choose a value from 1 to 5: {q.label}", q.id))
                continue
            answers[q.id] = int(raw)
            if q.type == "attention":
                answers[f"{q.id}_passed"] = raw == q.expected
        elif q.type == "number":
            try:
                value = check_form_number(raw, q.id)
            except InvalidInput:
                errors.append(AnswerError(f"Enter a number: {q.label}", q.id))
                continue
            if not q.minimum <= value <= q.maximum or (q.integer and value != int(value)):
                kind = "a whole number" if q.integer else "a number"
                errors.append(AnswerError(f"Enter {kind} from {q.number_text(q.minimum)} to {q.number_text(q.maximum)}: {q.label}", q.id))
                continue
            answers[q.id] = int(value) if q.integer else value
        elif q.type == "choice":
            if raw not in q.options:
                errors.append(AnswerError(f"Choose one of the options: {q.label}", q.id))
                continue
            answers[q.id] = raw
        elif q.type == "copy" and copy_sources is not None and not copied_from(raw, copy_sources):
            errors.append(AnswerError(f"The text you entered is not in the answers shown on this page. Please copy "
                                      f"one whole sentence from them: {q.label}", q.id))
        else:
            answers[q.id] = raw
    return answers, errors
