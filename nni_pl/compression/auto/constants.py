"""The algorithm names auto compression searches over (NNI's ``PRUNER_DICT`` and ``QUANTIZER_DICT``).

The values name nni-pl's classes (resolved when a trial runs, so this module does not import torch).

Example:
    >>> from nni_pl.compression.auto.constants import PRUNER_DICT, QUANTIZER_DICT
    >>> PRUNER_DICT["l1"], QUANTIZER_DICT["qat"]
    ('L1NormPruner', 'QAT_Quantizer')
"""

from __future__ import annotations

__all__ = ["ONE_SHOT_PRUNERS", "PRUNER_DICT", "QUANTIZER_DICT", "TRAINING_PRUNERS"]

# NNI 2.5 maps these to its v1 pruners (L1FilterPruner, ...); nni-pl's one-shot pruners are the v2 ones
PRUNER_DICT: dict[str, str] = {
    "level": "LevelPruner",
    "slim": "SlimPruner",
    "l1": "L1NormPruner",
    "l2": "L2NormPruner",
    "fpgm": "FPGMPruner",
    "taylorfo": "TaylorFOWeightPruner",
    "apoz": "ActivationAPoZRankPruner",
    "mean_activation": "ActivationMeanRankPruner",
}

QUANTIZER_DICT: dict[str, str] = {
    "naive": "NaiveQuantizer",
    "qat": "QAT_Quantizer",
    "dorefa": "DoReFaQuantizer",
    "bnn": "BNNQuantizer",
}

# pruners that train the model (or run it on data) while they compute masks: they need the module's
# optimizer_factory(), criterion() and sparsifying_trainer()
TRAINING_PRUNERS = ("slim", "taylorfo", "apoz", "mean_activation")
ONE_SHOT_PRUNERS = ("level", "l1", "l2", "fpgm")
