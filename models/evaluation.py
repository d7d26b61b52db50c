"""Evaluation of the reward models, one import for callers (``gazepref reward evaluate``,
``benchmarks/reward_eval.py``). The work is split by job:

* :mod:`gazepref.models.reward_data` — :class:`RewardData`, :func:`load_data` (a recording's
  comparisons, implicit features from the signal processor's comparison table, ``hist_*``,
  optional ``tf_*``);
* :mod:`gazepref.models.feature_cache` — the on-disk cache of a recording's comparison table;
* :mod:`gazepref.models.model_registry` — the models by name and track (:func:`default_models`);
* :mod:`gazepref.models.metrics` — accuracy, AUC, log-loss, ECE, the worker-bootstrap gain CI;
* :mod:`gazepref.models.cross_validation` — the protocol (K-fold grouped by worker, nested CV for
  every L2 strength, seeds; the anchor's random K-fold; train/test);
* :mod:`gazepref.models.evaluation_report` — the report as Markdown and JSON.

Labels: ``y = 1`` when the left response was preferred (see :mod:`gazepref.models.comparisons`).
"""
from __future__ import annotations

from .cross_validation import (cross_val_predict, distinct_seeds, evaluate, fit_model,  # noqa: F401
                               held_out_test, splits, train_test)
from .evaluation_report import markdown, to_json  # noqa: F401
from .feature_cache import FEATURES_VERSION, cache_path, code_fingerprint  # noqa: F401
from .metrics import bootstrap_gain, correct, ece, metrics  # noqa: F401
from .model_registry import PRIMARY, applicable_models, default_models, primary  # noqa: F401
from .reward_data import RewardData, load_data, text_feedback_features  # noqa: F401
