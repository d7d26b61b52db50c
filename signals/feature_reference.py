"""The documented column reference of the feature tables; ``docs/features.md`` is generated from it:

    python -m gazepref.signals.feature_reference > docs/features.md

``describe(table, column)`` answers for any column (including the generated ``l_``/``r_``/``d_``
comparison columns); a test checks that every column the pipeline writes is documented here.
"""
from __future__ import annotations

import sys

#: name → (unit, description). Shared by the tables where the same name appears.
KEYS = {
    "task_id": ("", "task (chat page) id, `worker/task` for IFLLM"),
    "participant_id": ("", "pseudonymous participant id (IFLLM worker id) — group folds by it"),
    "turn_id": ("", "turn id (IFLLM `query_ID`)"),
    "turn": ("", "0-based index of the turn within its task"),
    "kind": ("", "`pairwise` (two responses) or `pointwise` (one)"),
    "position": ("", "response position: 0 = left / only, 1 = right"),
    "model": ("", "name of the LLM that wrote the response"),
    "model_l": ("", "LLM of the left response"),
    "model_r": ("", "LLM of the right response"),
    "model_p": ("", "LLM of the previous turn's response (sequential)"),
    "sentence": ("", "0-based sentence index within the response"),
}

LABELS = {
    "label_likert": ("1-5", "the participant's satisfaction rating of this response (target, never a feature)"),
    "label_choice_this": ("0/1", "pairwise: 1 when this response was preferred (target, never a feature)"),
    "label_better_than_previous": ("0/1", "pointwise: rated better than the previous answer (target)"),
    "label_choice": ("0/1", "pairwise: 0 = left preferred, 1 = right preferred (target, never a feature)"),
    "label_likert_l": ("1-5", "Likert rating of the left response (target)"),
    "label_likert_r": ("1-5", "Likert rating of the right response (target)"),
    "label_likert_p": ("1-5", "Likert rating of the previous turn's response (sequential; target)"),
    "label_likert_c": ("1-5", "Likert rating of this turn's response (sequential; target)"),
}

TASK = {
    "task_n_turns": ("count", "turns in the task — uses later turns, task-level: not a default feature"),
    "task_calibration_accuracy_px": ("px", "webcam calibration accuracy in force for the task (mean validation offset; site studies), task-level"),
    "task_calibration_accuracy_pct": ("%", "WebGazer's score of that calibration (IFLLM `accuracy`), task-level"),
    "task_calibration_passed": ("0/1", "the calibration in force passed its validation (site studies), task-level"),
    "task_gaze_kept_share": ("0-1", "share of the task's gaze samples kept after cleaning and the region rule (NaN: none has a position), task-level"),
}

POST = {
    "post_fb_nof": ("", "category of the *next* message as feedback on this response (text_feedback); post-decision"),
    "post_fb_sat": ("", "satisfied / neutral / dissatisfied from the next message; post-decision"),
    "post_fb_ordinal": ("1-5", "rejection … satisfaction from the next message; post-decision"),
    "post_fb_confidence": ("0-1", "classifier confidence of post_fb_nof; post-decision"),
}

#: Per-response features (responses table; in comparisons as l_/r_/d_).
RESPONSE = {
    "n_chars": ("chars", "length of the response text"),
    "n_words": ("words", "words (runs of non-space) in the response"),
    "n_sentences": ("count", "sentences (split after . ! ? + space, and at line breaks)"),
    "n_lines": ("count", "lines of the response text"),
    "g_dwell_ms": ("ms", "gaze dwell on the response box (sum of cleaned sample durations)"),
    "g_text_ms": ("ms", "gaze dwell on the response's words"),
    "g_word_cov": ("0-1", "share of the response's words with at least one fixation"),
    "g_depth": ("0-1", "furthest character reached by gaze, as a share of the response length"),
    "g_first_entry_ms": ("ms", "time from the turn's first sample to the first gaze sample on the response"),
    "g_visits": ("count", "entries of gaze into the response box (runs of samples)"),
    "g_fix_n": ("count", "fixations on the response (I-DT)"),
    "g_fix_ms": ("ms", "total fixation duration on the response"),
    "g_fix_mean_ms": ("ms", "mean fixation duration on the response"),
    "g_first_fix_ms": ("ms", "duration of the first fixation on the response"),
    "g_first_pass_ms": ("ms", "first-pass time: fixation time of the first visit to the response"),
    "g_sent_cov": ("0-1", "share of the response's sentences with at least one fixated word"),
    "g_word_ffd_ms": ("ms", "mean first-fixation duration over the fixated words"),
    "g_word_gd_ms": ("ms", "mean gaze duration (first run of fixations) over the fixated words"),
    "g_regressions": ("count", "fixations on an earlier word than the previous fixation of the same visit"),
    "g_regression_rate": ("0-1", "regressions per word-to-word transition within visits"),
    "g_reread_word_share": ("0-1", "share of fixated words fixated again in a later visit"),
    "g_read_wpm": ("words/min", "distinct words fixated per minute of fixation time (reading speed)"),
    "g_sent_first_share": ("0-1", "share of the response's fixation time on its first sentence"),
    "g_sent_last_share": ("0-1", "share of the response's fixation time on its last sentence"),
    "g_sent_reread_share": ("0-1", "share of fixated sentences fixated in two or more visits"),
    "m_dwell_ms": ("ms", "pointer hover time over the response box"),
    "m_text_ms": ("ms", "pointer hover time over the response's words"),
    "m_word_cov": ("0-1", "share of the response's words the pointer was over"),
    "m_depth": ("0-1", "furthest character under the pointer, as a share of the response length"),
    "m_first_entry_ms": ("ms", "time from the turn's first sample to the pointer's first entry into the response"),
    "m_visits": ("count", "entries of the pointer into the response box"),
    "sc_depth_px": ("px", "how far the response's content moved up from its first position (page/box scroll)"),
    "sc_dist_px": ("px", "total scroll distance of the response (moves > 1 px)"),
    "sc_back_n": ("count", "back-scrolls (content moving down again)"),
    "sc_speed_px_s": ("px/s", "scroll distance per second of the turn"),
    "m_select_n": ("count", "text selections in the response (events stream; NaN for IFLLM)"),
    "m_copy_n": ("count", "copies from the response (events stream; NaN for IFLLM)"),
}

#: Per-turn features (in both tables; the same value for both responses of a turn).
TURN = {
    "turn_ms": ("ms", "time from the turn's first to its last kept sample (ends at the next query in IFLLM)"),
    "g_samples": ("count", "cleaned gaze samples in the turn (allowed regions only)"),
    "g_hz": ("Hz", "cleaned gaze samples per second of the turn"),
    "g_camera_ok_share": ("0-1", "share of the turn's gaze samples before its decision with the face well placed, those without a position included (IFLLM camera_green; site studies: the face found, alone and lit, from the rows' flags; NaN unknown)"),
    "g_prompt_ms": ("ms", "gaze dwell above the responses (prompt and earlier conversation)"),
    "g_resp_ms": ("ms", "gaze dwell on the responses"),
    "g_prompt_share": ("0-1", "g_prompt_ms / (g_prompt_ms + g_resp_ms): time on the prompt vs the responses"),
    "g_fix_all_n": ("count", "fixations in the turn (responses and prompt)"),
    "g_fix_all_mean_ms": ("ms", "mean fixation duration in the turn"),
    "g_sacc_n": ("count", "saccades (moves between consecutive fixations without a gap) in the turn"),
    "g_sacc_amp_mean_px": ("px", "mean saccade amplitude in the turn"),
    "m_dist_px": ("px", "pointer path length (mousetrap total distance)"),
    "m_mad_px": ("px", "maximum absolute deviation from the straight first→last line, signed (mousetrap MAD): "
                 "positive when the path bends to the left of the direction of travel as seen on screen (up, "
                 "for a left-to-right movement), negative to the right"),
    "m_auc_px2": ("px²", "signed area between the path and the straight line (mousetrap AUC)"),
    "m_x_flips": ("count", "reversals of horizontal direction"),
    "m_y_flips": ("count", "reversals of vertical direction"),
    "m_vel_max": ("px/s", "peak pointer speed"),
    "m_acc_max": ("px/s²", "peak absolute pointer acceleration"),
    "m_idle_ms": ("ms", "time the pointer did not move"),
    "m_idle_max_ms": ("ms", "longest time without pointer movement"),
    "m_move_ms": ("ms", "time the pointer moved"),
    "m_hover_resp_ms": ("ms", "pointer time over the responses"),
    "m_hover_prompt_ms": ("ms", "pointer time above the responses (prompt, conversation)"),
}

#: Pairwise-only features (comparisons table), for gaze (g_) and pointer (m_).
PAIR = {
    "share_l": ("0-1", "attention share of the left response: left / (left + right) dwell"),
    "l_ms": ("ms", "time on the left response (fixations for gaze, samples for the pointer)"),
    "r_ms": ("ms", "time on the right response"),
    "switches": ("count", "changes of side between the two responses"),
    "first_side": ("0/1", "side looked at (pointed at) first: 0 left, 1 right, NaN never"),
    "last_side": ("0/1", "side looked at (pointed at) last before the turn ended (the choice); controls excluded"),
    "last_visit_ms": ("ms", "length of the final visit to a response"),
    "returns": ("count", "visits to a side already visited (re-reading)"),
    "last_share_l": ("0-1", "left share over the last third of the time spent on the responses"),
}

#: The in-box family (comparisons table), per source: ``gaze_<name>`` and ``mouse_<name>``
#: (:mod:`gazepref.signals.inbox`); the reward models' default implicit features.
INBOX = {
    "d_share": ("-0.5-0.5", "in-box dwell share of the left box minus ½ (each sample stands for the time to the next, ≤ 500 ms)"),
    "d_log_dwell": ("log s", "log(1 + in-box dwell in s), left minus right"),
    "d_log_ontext": ("log s", "log(1 + dwell on the text in s), left minus right"),
    "d_coverage": ("0-1", "share of 20-character blocks visited, left minus right"),
    "d_depth": ("0-1", "90th percentile of the visited character / length, left minus right"),
    "d_visits": ("log count", "log(1 + visits to the box), left minus right"),
    "d_first": ("±1", "box entered first: +1 left, −1 right, 0 neither"),
    "d_log_ms_per_char": ("log ms/char", "log(1 + ms on the text per character), left minus right"),
    "s_log_total_s": ("log s", "log(1 + in-box dwell on both boxes in s) (symmetric context)"),
    "s_switches": ("log count", "log(1 + changes of box) (symmetric context)"),
    "s_camera_ok": ("0-1", "gaze only: share of the turn's samples with the face well placed (IFLLM `camera_green`; site studies: from the rows' flags)"),
    "s_present": ("0/1", "1 when the source has samples in the turn, one at least with a position (else the family's other columns are missing; a failed calibration's gaze rows, x/y NaN, have none)"),
}

SENTENCE = {
    "n_words": ("words", "words in the sentence"),
    "g_fix_n": ("count", "fixations on the sentence's words"),
    "g_fix_ms": ("ms", "fixation time on the sentence"),
    "g_first_fix_ms": ("ms", "duration of the first fixation on the sentence"),
    "g_visits": ("count", "visits to the response that fixated this sentence"),
    "g_word_cov": ("0-1", "share of the sentence's words fixated"),
    "g_dwell_ms": ("ms", "gaze sample dwell on the sentence"),
}


def describe(table: str, column: str) -> tuple[str, str]:
    """(unit, description) of a column of ``responses``, ``comparisons`` or ``sentences``."""
    for d in (KEYS, LABELS, TASK, POST):
        if column in d:
            return d[column]
    if table == "sentences":
        return SENTENCE[column]
    if column in TURN:
        return TURN[column]
    if table == "responses":
        return RESPONSE[column]
    if table == "sequential":
        for side, word in (("p_", "previous turn's response"), ("c_", "this turn's response"),
                           ("d_", "this minus previous")):
            if column.startswith(side) and column[2:] in RESPONSE:
                u, doc = RESPONSE[column[2:]]
                return u, f"{word}: {doc}"
    if table == "comparisons":
        for side, word in (("l_", "left"), ("r_", "right"), ("d_", "left minus right")):
            if column.startswith(side) and column[2:] in RESPONSE:
                u, doc = RESPONSE[column[2:]]
                return u, f"{word}: {doc}"
        for src, word in (("g_", "gaze"), ("m_", "pointer")):
            if column.startswith(src) and column[2:] in PAIR:
                u, doc = PAIR[column[2:]]
                return u, f"{word}: {doc}"
        for src, word in (("gaze_", "gaze"), ("mouse_", "pointer")):
            if column.startswith(src) and column[len(src):] in INBOX:
                u, doc = INBOX[column[len(src):]]
                return u, f"{word}, in the boxes only: {doc}"
    raise KeyError(f"{table}.{column} is not documented")


def comparison_columns() -> list[str]:
    cols = list(TURN)
    cols += [f"{s}{k}" for s in ("g_", "m_") for k in PAIR]
    cols += [f"{side}{k}" for k in RESPONSE for side in ("l_", "r_", "d_")]
    cols += [f"{s}{k}" for s in ("gaze_", "mouse_") for k in INBOX if s == "gaze_" or k != "s_camera_ok"]
    return cols


def markdown() -> str:
    out = [
        "# Feature reference",
        "",
        "Generated by `python -m gazepref.signals.feature_reference` from",
        "`signals/feature_reference.py`; produced by `gazepref features SOURCE --out DIR`",
        "(`signals/features.py`). Four Parquet tables: `responses.parquet` (one row per response),",
        "`comparisons.parquet` (one row per pairwise turn), `sequential.parquet` (one row per pointwise",
        "turn with a previous turn), `sentences.parquet` (one row per sentence of every response).",
        "",
        "## What may feed a model",
        "",
        "`gazepref.signals.features.default_feature_columns(df)` returns the default feature set:",
        "every column except those `gazepref.signals.features.off_limits` names — one list, used by",
        "the reward models too (`tests/models/test_leakage.py`): the keys, `label_*` (the participant's",
        "ratings: targets only), `task_*` (task-level aggregates, constant over a task or using later",
        "turns — they leak across folds), `post_*` (data from after the decision, e.g. the next",
        "message's text feedback) and the side looked at / pointed at *last* before the choice",
        "(`*_last_side`, `*_last_visit_ms`, `*_last_share_l`: the pointer's way down to the",
        "*Left | Right* buttons would give the click away).",
        "",
        "The reward models (`gazepref reward`, `gazepref align`) read their implicit features from the",
        "comparisons table only (`gazepref.signals.features.comparison_table`): by default its in-box",
        "family (`gaze_*`, `mouse_*`), with `--features signals` its other pairwise measures.",
        "",
        "No leakage by construction (`signals/regions.py`, tested in `tests/signals/test_features.py`):",
        "",
        "- a turn's features use only that turn's samples; in IFLLM these end when the next query",
        "  starts, and where a recorder has the decision time (`Turn.t_decided`) samples after it are",
        "  dropped;",
        "- only gaze/pointer samples inside a response box or *above* the boxes (prompt, conversation)",
        "  are used. Samples level with or below the boxes but outside them — where the",
        "  \"Which response did you like better? Left | Right\" controls and the rating scales sit — are",
        "  dropped before cleaning, fixation detection and every measure (a dropped sample also ends the",
        "  time segment, so no sample's duration stretches over dropped time). IFLLM recorded no",
        "  layout, so the boxes' top edge is estimated from the samples inside them (`y - rel_y`, the",
        "  latest one of the same turn); a turn without any in-box sample keeps in-box samples only;",
        "- ratings (Likert, choice, better-than-previous) are only in `label_*` columns;",
        "- every cleaning step (de-duplication, spikes, smoothing, fixations, sample durations) works",
        "  within one turn's segments, so no turn borrows data from a later one.",
        "- these fixations (`gazepref.signals.reading.fixations`) are the only ones: the scanpath view",
        "  draws the same ones (docs/analyst_views.md, \"Fixations\"), so its counts are `g_fix_all_n` and",
        "  `g_fix_n`.",
        "",
        "Conventions: `g_` gaze, `m_` mouse/pointer, `sc_` scroll; in `comparisons`, `l_`/`r_` are the",
        "left/right response's value and `d_` = left − right. Times in ms on the task clock; positions",
        "in viewport CSS px. NaN = not defined (e.g. no fixation on the response). A task without samples",
        "of a source has all of that source's measures NaN, not 0: gaze rows without a position (those of",
        "a failed webcam calibration, x/y NaN, kept for a later re-estimate) are no gaze samples.",
        "",
    ]

    def table(title: str, items: dict) -> None:
        out.extend([f"### {title}", "", "| column | unit | description |", "| --- | --- | --- |"])
        for k, (u, d) in items.items():
            out.append(f"| `{k}` | {u} | {d} |")
        out.append("")

    out += ["## Keys, labels, task-level and post-decision columns", ""]
    table("Keys and metadata (never features)", KEYS)
    table("Labels (targets, never features)", LABELS)
    table("Task-level aggregates (`task_*`, not in the default set)", TASK)
    table("Post-decision (`post_*`, only with `--text-feedback`, not in the default set)", POST)
    out += ["## responses.parquet", ""]
    table("Per-response features", RESPONSE)
    table("Per-turn features (repeated on each response of the turn)", TURN)
    out += ["## comparisons.parquet", "",
            "One row per pairwise turn: the per-turn features above, the pairwise features below for",
            "gaze (`g_`) and pointer (`m_`), and every per-response feature as `l_<name>`, `r_<name>`,",
            "`d_<name>`.", ""]
    table("Pairwise features (prefix `g_` or `m_`)", PAIR)
    out += ["### In-box family (prefix `gaze_` or `mouse_`)", "",
            "How each source divided the turn between the two boxes, from the samples *inside a",
            "response box* only, as recorded (before gaze cleaning), before the turn's decision",
            "(`signals/inbox.py`). `<source>_d_*` are left minus right (swapping the sides negates",
            "them), `<source>_s_*` symmetric context. These are the reward models' default implicit",
            "features (`gazepref reward`, `gazepref align`).", "",
            "| column | unit | description |", "| --- | --- | --- |"]
    out += [f"| `<source>_{k}` | {u} | {d} |" for k, (u, d) in INBOX.items()]
    out.append("")
    out += ["## sequential.parquet", "",
            "One row per pointwise turn after the first of its task: this turn's answer against the",
            "previous turn's (IFLLM's `better than the previous answer`, `label_better_than_previous`).",
            "The per-turn features above (of this turn) and every per-response feature as `p_<name>`",
            "(previous turn), `c_<name>` (this turn) and `d_<name>` = this − previous. The previous",
            "turn's samples all precede this turn's decision.", ""]
    out += ["## sentences.parquet", "", "Keys `task_id … position`, `sentence`, then the measures below; a task",
            "without any gaze position (no camera, a failed calibration) has its `g_` columns missing (NaN), as",
            "the other tables (0 before 07 Dec 2026).", ""]
    table("Per-sentence measures", SENTENCE)
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(markdown())
