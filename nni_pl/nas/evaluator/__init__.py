"""Evaluators score one model inside a trial: :class:`FunctionalEvaluator`, :class:`Classification`,
:class:`Regression` and :class:`Lightning`; subclass :class:`Evaluator` for your own. ``Trainer``,
``DataLoader`` and ``LightningModule`` are NNI's ``pl.*`` names for its ``pl.Lightning`` form
(``import nni_pl.nas.evaluator as pl``).

Example:
    >>> from nni_pl.nas.evaluator import Classification
    >>> ev = Classification(train_dataloaders="nni_pl.nas.evaluator.data:digits_loaders",
    ...                     learning_rate={"_type": "choice", "_value": [0.01, 0.001]}, max_epochs=1)
    >>> ev.search_space()
    {'learning_rate': {'_type': 'choice', '_value': [0.01, 0.001]}}
    >>> ev.freeze({"learning_rate": 0.01}).learning_rate
    0.01
"""

from nni_pl.nas.evaluator._base import (
    Evaluator,
    EvaluatorError,
    config_search_space,
    freeze_config,
    import_object,
    resolve_factory,
)
from nni_pl.nas.evaluator.functional import FunctionalEvaluator
from nni_pl.nas.evaluator.lightning import (
    Classification,
    DataLoader,
    Lightning,
    LightningModule,
    Regression,
    SupervisedModule,
    Trainer,
)

__all__ = [
    "Classification",
    "DataLoader",
    "Evaluator",
    "EvaluatorError",
    "FunctionalEvaluator",
    "Lightning",
    "LightningModule",
    "Regression",
    "SupervisedModule",
    "Trainer",
    "config_search_space",
    "freeze_config",
    "import_object",
    "resolve_factory",
]
