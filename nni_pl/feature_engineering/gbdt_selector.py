"""GBDTSelector: features ranked by a LightGBM model's importances (NNI's
``nni.algorithms.feature_engineering.gbdt_selector.GBDTSelector``).

``fit`` trains a boosted-tree model on part of the data with early stopping on the rest (``eval_ratio``), then
reads each feature's importance: ``'split'`` (how many splits use it) or ``'gain'`` (the total gain of those
splits). ``get_selected_features(topk)`` returns the ``topk`` most important, best first. LightGBM is an optional
dependency, imported by ``fit``.

NNI passes the training settings to ``fit`` (all required there); here they are also constructor arguments with
defaults, so the selector works in a ``Pipeline`` and under ``clone``; values given to ``fit`` win for that fit.

Example:
    >>> from sklearn.datasets import load_breast_cancer
    >>> from nni_pl.feature_engineering import GBDTSelector
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> selector = GBDTSelector(random_state=0)
    >>> selector.fit(X, y, lgb_params={"objective": "binary", "verbosity": -1}, eval_ratio=0.2,
    ...              early_stopping_rounds=10, importance_type="gain", num_boost_round=50)  # doctest: +ELLIPSIS
    GBDTSelector(...)
    >>> len(selector.get_selected_features(5))
    5
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from nni_pl._checks import check_choice, check_int, check_number, fail
from nni_pl.errors import MissingDependencyError, did_you_mean
from nni_pl.feature_engineering.feature_selector import FeatureSelector, check_optional_int

__all__ = ["GBDTSelector"]

_FIT_SETTINGS = ("lgb_params", "eval_ratio", "early_stopping_rounds", "importance_type", "num_boost_round")


class GBDTSelector(FeatureSelector):
    """Select the features a LightGBM model finds most important.

    Args:
        lgb_params: LightGBM's parameters (``objective``, ``num_leaves``, ``learning_rate``...). ``None`` picks
            the objective from ``y``: ``'binary'`` for two classes, ``'multiclass'`` for more (up to 100 integer
            or any non-numeric labels), ``'regression'`` for real values; ``verbosity`` defaults to -1 and
            ``seed`` to ``random_state``.
        eval_ratio: the fraction of rows held out for early stopping, in ``(0, 1)``.
        early_stopping_rounds: stop when the held-out metric has not improved for this many rounds.
        importance_type: ``'split'`` or ``'gain'``.
        num_boost_round: the most boosting rounds.
        topk: how many features ``get_support``/``transform`` keep (a ``Pipeline`` needs it); ``None`` keeps every
            feature with a positive importance.
        random_state: seed of the train/eval split (and LightGBM's ``seed`` unless ``lgb_params`` sets one).

    Attributes:
        feature_importances_: importance per feature (of ``importance_type``).
        selected_features_: what ``transform`` keeps (``topk`` best, ascending).
        model_: the trained ``lightgbm.Booster``.

    Example:
        >>> GBDTSelector(importance_type="cover")
        Traceback (most recent call last):
        ...
        nni_pl._checks.ArgumentError: argument 'GBDTSelector.importance_type': must be 'split' or 'gain', got 'cover'
    """

    def __init__(
        self,
        lgb_params: dict[str, Any] | None = None,
        eval_ratio: float = 0.1,
        early_stopping_rounds: int = 10,
        importance_type: str = "split",
        num_boost_round: int = 100,
        topk: int | None = None,
        random_state: int | None = None,
    ) -> None:
        self.lgb_params = lgb_params
        self.eval_ratio = eval_ratio
        self.early_stopping_rounds = early_stopping_rounds
        self.importance_type = importance_type
        self.num_boost_round = num_boost_round
        self.topk = topk
        self.random_state = random_state
        self._check_settings(self, self._settings({}))
        check_optional_int(self, "topk", topk)
        if random_state is not None and (
            not isinstance(random_state, numbers.Integral) or isinstance(random_state, bool)
        ):
            fail(self, "random_state", f"must be an integer seed or None, got {random_state!r}")

    def _settings(self, overrides: dict[str, Any]) -> dict[str, Any]:
        return {name: overrides.get(name, getattr(self, name)) for name in _FIT_SETTINGS}

    @staticmethod
    def _check_settings(owner: object, settings: dict[str, Any]) -> None:
        params = settings["lgb_params"]
        if params is not None and not isinstance(params, dict):
            fail(owner, "lgb_params", f"must be a dict of LightGBM parameters or None, got {params!r}")
        check_number(
            owner, "eval_ratio", settings["eval_ratio"], low=0, high=1, low_open=True, high_open=True
        )
        check_int(owner, "early_stopping_rounds", settings["early_stopping_rounds"], minimum=1)
        check_choice(owner, "importance_type", settings["importance_type"], ("split", "gain"))
        check_int(owner, "num_boost_round", settings["num_boost_round"], minimum=1)

    def fit(self, X: Any, y: Any, **kwargs: Any) -> GBDTSelector:
        """Train LightGBM on ``(X, y)`` and record the feature importances.

        Args:
            X: ``[n_samples, n_features]`` numbers (numpy, DataFrame or scipy sparse).
            y: ``[n_samples]`` targets.
            **kwargs: NNI's fit settings, overriding the constructor's for this fit: ``lgb_params``,
                ``eval_ratio``, ``early_stopping_rounds``, ``importance_type``, ``num_boost_round``.

        Returns:
            ``self``.
        """
        owner = f"{type(self).__name__}.fit"
        unknown = sorted(set(kwargs) - set(_FIT_SETTINGS))
        if unknown:
            fail(
                owner,
                unknown[0],
                f"is not a fit setting{did_you_mean(unknown[0], _FIT_SETTINGS)}; "
                f"the settings are {', '.join(_FIT_SETTINGS)}",
            )
        settings = self._settings(kwargs)
        self._check_settings(owner, settings)
        check_optional_int(self, "topk", self.topk)
        try:
            import lightgbm as lgb
        except ImportError as e:
            raise MissingDependencyError("lightgbm", "gbdt", "GBDTSelector") from e
        from sklearn.model_selection import train_test_split

        X, y = self.validate_input(X, y, sparse=True)
        if self.topk is not None and self.topk > X.shape[1]:
            fail(self, "topk", f"must be <= the number of columns of X ({X.shape[1]}), got {self.topk}")
        params, y = _lgb_params(owner, settings["lgb_params"], y, self.random_state)
        n_eval = int(np.ceil(settings["eval_ratio"] * X.shape[0]))
        if n_eval < 1 or n_eval >= X.shape[0]:
            fail(
                owner,
                "eval_ratio",
                f"leaves no rows to train or to evaluate on ({X.shape[0]} rows), got "
                f"{settings['eval_ratio']!r}",
            )
        X_train, X_eval, y_train, y_eval = train_test_split(
            X, y, test_size=settings["eval_ratio"], random_state=self.random_state
        )
        train = lgb.Dataset(X_train, y_train)
        self.model_ = lgb.train(
            params,
            train,
            num_boost_round=settings["num_boost_round"],
            valid_sets=[lgb.Dataset(X_eval, y_eval, reference=train)],
            callbacks=[lgb.early_stopping(settings["early_stopping_rounds"], verbose=False)],
        )
        self.feature_importances_ = np.asarray(
            self.model_.feature_importance(importance_type=settings["importance_type"]), dtype=np.float64
        )
        if self.topk is not None:
            self.selected_features_ = np.sort(self._ranking()[: self.topk])
        else:
            self.selected_features_ = np.flatnonzero(self.feature_importances_ > 0)
        return self

    def get_selected_features(self, topk: int | None = None) -> np.ndarray:
        """The indices of the ``topk`` most important features, most important first (NNI's interface).

        ``topk=None`` uses the constructor's ``topk``; without either, the features ``transform`` keeps.
        """
        selected = super().get_selected_features()  # fitted?
        topk = self.topk if topk is None else topk
        if topk is None:
            return selected
        check_int(
            f"{type(self).__name__}.get_selected_features",
            "topk",
            topk,
            minimum=1,
            maximum=self.n_features_in_,
        )
        return self._ranking()[:topk]

    def _ranking(self) -> np.ndarray:
        return np.argsort(-self.feature_importances_, kind="stable")

    def _get_support_mask(self) -> np.ndarray:
        mask = np.zeros(self.n_features_in_, dtype=bool)
        mask[self.selected_features_] = True
        return mask


def _lgb_params(owner: str, params: dict[str, Any] | None, y: np.ndarray, seed: int | None):
    """LightGBM's parameters (the objective from ``y`` when none are given) and ``y`` coded for them."""
    params = dict(params) if params is not None else {}
    params.setdefault("verbosity", -1)
    if seed is not None:
        params.setdefault("seed", seed)
    numeric = y.dtype.kind in "biuf"
    integral = numeric and np.all(np.mod(y, 1) == 0)
    if "objective" not in params:
        classes = np.unique(y)
        if not numeric or (integral and len(classes) <= 100):
            if len(classes) < 2:
                fail(
                    owner,
                    "y",
                    f"has a single class ({classes[0].item()!r}); feature selection needs two or more",
                )
            if len(classes) == 2:
                params["objective"] = "binary"
            else:
                params.update(objective="multiclass", num_class=len(classes))
            return params, np.searchsorted(classes, y)
        params["objective"] = "regression"
        return params, y.astype(np.float64)
    if not numeric:  # LightGBM takes numbers: code the labels 0..K-1
        return params, np.unique(y, return_inverse=True)[1]
    return params, y
