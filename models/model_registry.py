"""The reward models by name: ``name → (track, factory)`` (:func:`default_models`), and the model
reported under each track's name (:data:`PRIMARY`)."""
from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from .fusion import EarlyFusion, LateFusion, PointwiseFusion
from .implicit_models import ImplicitModel, has_features
from .personalized import PAIR_HIST_COLUMNS, PersonalizedModel
from .text_models import EmbeddingBT, LengthRule, OrdinalLikert, StructureBT, TfidfBT


def default_models(text_feedback: bool = False) -> dict[str, tuple[str, Callable[[], Any]]]:
    """name → (track, factory). Tracks: text, implicit, fused, personalized, ablation."""
    m: dict[str, tuple[str, Callable[[], Any]]] = {
        "length_rule": ("text", LengthRule),
        "structure_bt": ("text", StructureBT),
        "tfidf_bt": ("text", TfidfBT),
        "minilm_bt": ("text", EmbeddingBT),
        "ordinal_likert": ("text", OrdinalLikert),
        "implicit_logistic": ("implicit", lambda: ImplicitModel("logistic")),
        "implicit_gbm": ("implicit", lambda: ImplicitModel("gbm")),
        "implicit_forest": ("implicit", lambda: ImplicitModel("forest")),
        "late_fusion": ("fused", lambda: LateFusion(StructureBT())),
        "late_fusion_worker_cal": ("fused", lambda: LateFusion(StructureBT(), per_worker=True)),
        "late_fusion_length_worker_cal": ("fused", lambda: LateFusion(LengthRule(), per_worker=True)),
        "late_fusion_centred": ("fused", lambda: LateFusion(StructureBT(), per_worker="centre")),
        "late_fusion_length_centred": ("fused", lambda: LateFusion(LengthRule(), per_worker="centre")),
        "late_fusion_minilm": ("fused", lambda: LateFusion(EmbeddingBT(), per_worker=True)),
        "late_fusion_gbm": ("fused", lambda: LateFusion(StructureBT(), head="gbm")),
        "early_fusion": ("fused", lambda: EarlyFusion(per_worker=True)),
        "pointwise_fusion": ("fused", lambda: PointwiseFusion(per_worker=True)),
        "personalized": ("personalized", lambda: PersonalizedModel(LengthRule())),
        "personalized_choices": ("personalized", lambda: PersonalizedModel(LengthRule(), history=("hist_d_task_side",))),
        "personalized_all_history": ("personalized", lambda: PersonalizedModel(LengthRule(), history=PAIR_HIST_COLUMNS)),
        "personalized_structure": ("personalized", lambda: PersonalizedModel(StructureBT())),
        "personalized_fused": ("personalized", lambda: PersonalizedModel(LengthRule(), implicit=True, per_worker=True)),
        "personalized_fused_centred": ("personalized", lambda: PersonalizedModel(LengthRule(), implicit=True,
                                                                                  per_worker="centre")),
        # ablations: which signal carries what
        "ablation_gaze": ("ablation", lambda: ImplicitModel("logistic", sources=("gaze",))),
        "ablation_mouse": ("ablation", lambda: ImplicitModel("logistic", sources=("mouse",))),
        "ablation_text+gaze": ("ablation", lambda: LateFusion(StructureBT(), sources=("gaze",), per_worker=True)),
        "ablation_text+mouse": ("ablation", lambda: LateFusion(StructureBT(), sources=("mouse",), per_worker=True)),
    }
    if text_feedback:
        m["ablation_text_feedback"] = ("ablation", lambda: ImplicitModel("logistic", sources=("tf",)))
        m["ablation_text+text_feedback"] = ("ablation", lambda: LateFusion(StructureBT(), sources=("tf",)))
        m["ablation_fused+text_feedback"] = ("ablation", lambda: LateFusion(StructureBT(), sources=("gaze", "mouse", "tf"),
                                                                           per_worker=True))
    return m


def applicable_models(models: dict[str, tuple[str, Callable[[], Any]]],
                      X: pd.DataFrame) -> dict[str, tuple[str, Callable[[], Any]]]:
    """``models`` without the implicit-only ones that would find none of their columns in ``X`` (a
    recording without gaze or pointer trajectories); the fused models then fall back to text."""
    out = {}
    for name, (track, factory) in models.items():
        m = factory()
        if isinstance(m, ImplicitModel) and not has_features(m, X):
            continue
        out[name] = (track, factory)
    return out


#: the model reported under each track's name in the JSON. ``text`` is the length rule, the strongest
#: text-only baseline here (so ``fused`` vs ``text`` is the honest comparison); the others are the
#: designs chosen for their track (per-worker calibrated late fusion; length + history)
PRIMARY = {"text": "length_rule", "implicit": "implicit_logistic", "fused": "late_fusion_worker_cal",
           "personalized": "personalized"}


def primary(models: dict) -> dict[str, str]:
    """The model reported under each track: :data:`PRIMARY`, else the track's first model."""
    out = {}
    for track in ("text", "implicit", "fused", "personalized"):
        if PRIMARY[track] in models:
            out[track] = PRIMARY[track]
        else:
            names = [n for n, (t, _) in models.items() if t == track]
            if names:
                out[track] = names[0]
    return out
