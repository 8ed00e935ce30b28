"""FeatureGradientSelector: gradient-based feature selection over relaxed feature gates (NNI's
``nni.algorithms.feature_engineering.gradient_selector.FeatureGradientSelector``).

The method (Mahabal et al., *Feature Gradients: Scalable Feature Selection via Discrete Relaxation*) puts a gate
``s_d = sigmoid(2 x_d)`` on every column and minimises, by Adam over mini-batches, the estimated error of the
best linear model on the gated columns (Kong and Valiant's learnability estimate, linear in rows and columns,
higher-order interactions through ``order``) plus ``penalty`` times the mean gate. Open gates (``x >= 0``) are
the selection, unless ``n_features`` asks for the top ``n`` scores or ``max_features`` for the elbow of the
error curve. The maths is in ``_learnability.py``; torch is imported only when ``fit`` runs.

Example:
    >>> import numpy as np
    >>> from nni_pl.feature_engineering import FeatureGradientSelector
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(300, 20))
    >>> y = (X[:, 3] + X[:, 7] > 0).astype(int)
    >>> selector = FeatureGradientSelector(n_features=2, n_epochs=20, batch_size=100, random_state=0)
    >>> selector.fit(X, y).get_selected_features().tolist()
    [3, 7]
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Any

import numpy as np

from nni_pl._checks import check_bool, check_choice, check_int, check_number, fail
from nni_pl.feature_engineering.feature_selector import FeatureSelector, check_optional_int

__all__ = ["FeatureGradientSelector"]

logger = logging.getLogger(__name__)

_INIT_VALUES = {"zero": 0.0, "on": 1.0, "off": -1.0, "onhigh": 3.0, "offhigh": -3.0}
_INITS = (*_INIT_VALUES, "sklearn")
_STATS_ROWS = 20_000  # rows that estimate the column means, deviations and the top singular value


class FeatureGradientSelector(FeatureSelector):
    """Select features by gradient descent on relaxed feature gates with a sparsity penalty.

    Arguments and defaults are NNI 2.5's as its documentation lists them (``penalty`` and ``preprocess`` spelled
    right; ``random_state`` added). Every argument is checked here and again by ``fit`` (``set_params`` may change
    it); a bad one raises an ``ArgumentError`` (a ``ValueError``) naming it.

    Args:
        order: the order of interactions the learnability estimate includes, 1 to 12; higher is more accurate
            and slower.
        penalty: the weight of the sparsity term (the loss is ``(error + penalty * mean gate) / (1 + penalty)``).
        n_features: keep the top ``n_features`` scores; ``None`` keeps the open gates (score >= 0.5), unless
            ``max_features`` is set.
        max_features: choose the number by the elbow method, at most ``max_features`` (only one of
            ``n_features`` and ``max_features`` may be set).
        learning_rate: Adam's learning rate.
        init: the initial gates: ``'zero'`` (half open), ``'on'``/``'onhigh'`` (open), ``'off'``/``'offhigh'``
            (closed), or ``'sklearn'`` (the top ``n_features`` — else ``max_features``, else a tenth of the
            columns — by scikit-learn's F-test open, the rest closed).
        n_epochs: passes over the rows (each pass is ``n_rows // batch_size`` mini-batches).
        shuffle: shuffle the rows before each pass.
        batch_size: rows per mini-batch (at most the number of rows).
        target_batch_size: rows per optimiser step: gradients of ``ceil(target_batch_size / batch_size)``
            mini-batches are accumulated.
        max_time: stop after this many seconds (``math.inf``: no limit).
        classification: the target is classes (else real values).
        ordinal: with more than two classes, split them as ``y >= k`` (ordered classes) rather than one-vs-rest.
        balanced: with more than two classes, weigh every class equally (else by its support).
        preprocess: ``'zscore'`` (center and scale columns to unit variance) or ``'center'``.
        soft_grouping: ``groups`` given to ``fit`` are sources to use few of (a penalty on the number of groups
            used) rather than units selected together.
        verbose: log the loss every ``verbose`` optimiser steps (logging, INFO); 0 for silence.
        device: ``'cpu'`` or ``'cuda'`` (``'cuda:1'``...).
        random_state: seed of the row shuffling and of the statistics' sample; ``None`` for fresh randomness.

    Attributes:
        scores_: per-feature score ``sigmoid(2 x)`` in ``(0, 1)``.
        selected_features_: indices of the selected features, ascending.
        n_features_in_: the number of columns seen by ``fit``.
        n_iter_: optimiser steps taken.

    Example:
        >>> import numpy as np
        >>> from sklearn.datasets import load_breast_cancer
        >>> X, y = load_breast_cancer(return_X_y=True)
        >>> selector = FeatureGradientSelector(n_features=5, random_state=0).fit(X, y)
        >>> selector.transform(X).shape
        (569, 5)
        >>> FeatureGradientSelector(order=13)
        Traceback (most recent call last):
        ...
        nni_pl._checks.ArgumentError: argument 'FeatureGradientSelector.order': must be an integer between 1 and 12, got 13
    """

    def __init__(
        self,
        order: int = 4,
        penalty: float = 1,
        n_features: int | None = None,
        max_features: int | None = None,
        learning_rate: float = 1e-1,
        init: str = "zero",
        n_epochs: int = 1,
        shuffle: bool = True,
        batch_size: int = 1000,
        target_batch_size: int = 1000,
        max_time: float = math.inf,
        classification: bool = True,
        ordinal: bool = True,
        balanced: bool = True,
        preprocess: str = "zscore",
        soft_grouping: bool = True,
        verbose: int = 0,
        device: str = "cpu",
        random_state: int | None = None,
    ) -> None:
        self.order = order
        self.penalty = penalty
        self.n_features = n_features
        self.max_features = max_features
        self.learning_rate = learning_rate
        self.init = init
        self.n_epochs = n_epochs
        self.shuffle = shuffle
        self.batch_size = batch_size
        self.target_batch_size = target_batch_size
        self.max_time = max_time
        self.classification = classification
        self.ordinal = ordinal
        self.balanced = balanced
        self.preprocess = preprocess
        self.soft_grouping = soft_grouping
        self.verbose = verbose
        self.device = device
        self.random_state = random_state
        self._check_params()

    def _check_params(self) -> None:
        check_int(self, "order", self.order, minimum=1, maximum=12)
        check_number(self, "penalty", self.penalty, low=0)
        check_optional_int(self, "n_features", self.n_features)
        check_optional_int(self, "max_features", self.max_features)
        if self.n_features is not None and self.max_features is not None:
            fail(
                self,
                "max_features",
                f"only one of n_features and max_features may be set, got n_features={self.n_features!r} "
                f"and max_features={self.max_features!r}; set the other to None",
            )
        check_number(self, "learning_rate", self.learning_rate, low=0, low_open=True)
        check_choice(self, "init", self.init, _INITS)
        check_int(self, "n_epochs", self.n_epochs, minimum=1)
        check_bool(self, "shuffle", self.shuffle)
        check_int(self, "batch_size", self.batch_size, minimum=2)
        check_int(self, "target_batch_size", self.target_batch_size, minimum=1)
        check_number(self, "max_time", self.max_time, low=0, low_open=True, allow_inf=True)
        for name in ("classification", "ordinal", "balanced", "soft_grouping"):
            check_bool(self, name, getattr(self, name))
        check_choice(self, "preprocess", self.preprocess, ("zscore", "center"))
        check_int(self, "verbose", self.verbose, minimum=0)
        if not isinstance(self.device, str) or not (self.device == "cpu" or self.device.startswith("cuda")):
            fail(self, "device", f"must be 'cpu' or 'cuda' (or 'cuda:N'), got {self.device!r}")
        if self.random_state is not None and (
            not isinstance(self.random_state, numbers.Integral) or isinstance(self.random_state, bool)
        ):
            fail(self, "random_state", f"must be an integer seed or None, got {self.random_state!r}")

    def fit(self, X: Any, y: Any, groups: Any = None) -> FeatureGradientSelector:
        """Select features via a gradient-based search on ``(X, y)``.

        Args:
            X: ``[n_samples, n_features]`` numbers (a numpy array, DataFrame or scipy sparse matrix).
            y: ``[n_samples]`` class labels (``classification=True``) or real values.
            groups: optional ``[n_features]`` group ids, e.g. ``[0, 0, 1, 2]``: the first two columns are one
                group, selected together (or, with ``soft_grouping``, one source among few to use).

        Returns:
            ``self``.
        """
        self._check_params()
        X, y = self.validate_input(X, y, sparse=True)
        n_rows, n_cols = X.shape
        owner = f"{type(self).__name__}.fit"
        if self.n_features is not None and self.n_features > n_cols:
            fail(
                self, "n_features", f"must be <= the number of columns of X ({n_cols}), got {self.n_features}"
            )
        group_ids = None if groups is None else _check_groups(owner, groups, n_cols)
        batch_size = min(self.batch_size, n_rows)
        if batch_size < self.order + 1:
            fail(
                self,
                "order",
                f"needs mini-batches of at least order + 1 = {self.order + 1} rows, but X has {n_rows} rows and "
                f"batch_size is {self.batch_size}; lower order or pass more rows",
            )
        target = min(max(self.batch_size, self.target_batch_size), n_rows)
        accum_steps = max(math.ceil(target / batch_size), 1)
        max_iter = self.n_epochs * (n_rows // batch_size)
        task_kind, y_prepared, n_classes = _prepare_target(owner, y, self.classification)

        import torch

        from nni_pl.feature_engineering import _learnability as fg

        if self.device != "cpu" and not torch.cuda.is_available():
            fail(self, "device", f"is {self.device!r} but torch sees no CUDA device; use device='cpu'")
        task = fg.Task(task_kind, n_classes, ordinal=self.ordinal, balanced=self.balanced)
        x0 = self._initial_logits(X, y, n_cols)
        for dtype in (torch.float32, torch.float64):
            rng = np.random.default_rng(self.random_state)
            batch = _batch_reader(X, y_prepared, self.preprocess, rng, self.device, dtype, task_kind)
            try:
                result = fg.train_gates(
                    batch,
                    n_rows,
                    n_cols,
                    task,
                    order=self.order,
                    penalty=float(self.penalty),
                    learning_rate=float(self.learning_rate),
                    x0=x0,
                    batch_size=batch_size,
                    accum_steps=accum_steps,
                    max_iter=max_iter,
                    max_time=float(self.max_time),
                    shuffle=self.shuffle,
                    groups=group_ids if not self.soft_grouping else None,
                    soft_groups=group_ids if self.soft_grouping else None,
                    rng=rng,
                    device=self.device,
                    dtype=dtype,
                    verbose=self.verbose,
                )
                break
            except FloatingPointError:
                if dtype == torch.float64:
                    raise
                logger.info("the loss was NaN in float32; fitting again in float64")
        self.scores_ = 1.0 / (1.0 + np.exp(-2.0 * result.x))
        self.n_iter_ = result.steps
        self.loss_ = result.loss
        # best first: the score, then (ties: Adam moves every gate by the same step at first) the mean gradient
        self._ranking = np.lexsort((result.mean_gradient, -result.x))
        self._groups = group_ids if not self.soft_grouping else None
        if self.max_features is not None:
            n = fg.elbow_number(
                batch,
                n_rows,
                task,
                self._ranking,
                min(self.max_features, n_cols),
                order=self.order,
                batch_size=batch_size,
                n_batches=3 * accum_steps,
                rng=rng,
                max_time=max(float(self.max_time) - result.seconds, 60.0),
                device=self.device,
                dtype=dtype,
            )
            self._select_top(n)
        elif self.n_features is not None:
            self._select_top(self.n_features)
        else:
            self.selected_features_ = np.flatnonzero(result.x >= 0)
        return self

    def get_selected_features(self) -> np.ndarray:
        """The indices of the selected features, ascending (NNI: ``get_selected_features()`` takes no argument)."""
        return super().get_selected_features()

    def set_n_features(self, n: int) -> FeatureGradientSelector:
        """After ``fit``, select the top ``n`` scores instead (no refit); also sets ``n_features``."""
        self.get_selected_features()  # fitted?
        check_int(self, "n_features", n, minimum=1, maximum=self.n_features_in_)
        self.n_features, self.max_features = n, None
        self._select_top(n)
        return self

    def set_top_percentile(self, percentile: float) -> FeatureGradientSelector:
        """After ``fit``, select the top ``percentile`` (in ``[0, 1]``) of the features (at least one)."""
        check_number(self, "percentile", percentile, low=0, high=1)
        return self.set_n_features(max(int(self.n_features_in_ * percentile), 1))

    def _select_top(self, n: int) -> None:
        chosen = set(self._ranking[:n].tolist())
        if self._groups is not None:  # a selected member brings its whole group
            hit = np.isin(self._groups, self._groups[list(chosen)])
            chosen |= set(np.flatnonzero(hit).tolist())
        self.selected_features_ = np.array(sorted(chosen), dtype=np.int64)

    def _initial_logits(self, X: Any, y: np.ndarray, n_cols: int) -> np.ndarray:
        if self.init != "sklearn":
            return np.full(n_cols, _INIT_VALUES[self.init])
        from sklearn.feature_selection import f_classif, f_regression

        k = self.n_features or self.max_features or max(n_cols // 10, 1)
        score_fn = f_classif if self.classification else f_regression
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.nan_to_num(score_fn(X, y)[0], nan=-np.inf)
        x0 = np.full(n_cols, _INIT_VALUES["off"])
        x0[np.argsort(-scores, kind="stable")[: min(k, n_cols)]] = _INIT_VALUES["on"]
        return x0


def _check_groups(owner: str, groups: Any, n_cols: int) -> np.ndarray:
    values = np.asarray(groups)
    if values.shape != (n_cols,):
        fail(owner, "groups", f"must hold one group id per column of X ({n_cols}), got shape {values.shape}")
    return np.unique(values, return_inverse=True)[1].astype(np.int64)  # ids 0..G-1


def _prepare_target(owner: str, y: np.ndarray, classification: bool) -> tuple[str, np.ndarray, int]:
    """The task kind, ``y`` coded for it (±1, class codes, or standardised values) and the number of classes."""
    if classification:
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            fail(
                owner, "y", f"has a single class ({classes[0].item()!r}); feature selection needs two or more"
            )
        if len(classes) > 100 and y.dtype.kind == "f":
            fail(
                owner,
                "y",
                f"has {len(classes)} distinct real values, read as classes; "
                "for a real-valued target pass classification=False",
            )
        if len(classes) == 2:
            return "binary", np.where(codes == 1, 1.0, -1.0), 2
        return "multiclass", codes.astype(np.float64), len(classes)
    if y.dtype.kind not in "biuf":
        fail(owner, "y", f"must be numbers when classification=False, got dtype {y.dtype}")
    y = y.astype(np.float64)
    sd = y.std()
    if sd == 0:
        fail(owner, "y", f"is constant ({y[0]!r}); nothing to select features for")
    return "regression", (y - y.mean()) / sd, 0


def _batch_reader(
    X: Any, y: np.ndarray, preprocess: str, rng: np.random.Generator, device: str, dtype, kind: str
):
    """``rows -> (X_rows, y_rows)`` preprocessed tensors: centred (and z-scored), scaled so that the covariance's
    largest eigenvalue is 1 (statistics from up to 20,000 random rows)."""
    import scipy.sparse
    import torch

    n_rows, n_cols = X.shape
    sample = np.sort(rng.permutation(n_rows)[:_STATS_ROWS])
    to = {"dtype": dtype, "device": device}
    y_t = torch.as_tensor(y, **to)
    if scipy.sparse.issparse(X):
        stats = X[sample].toarray()
    else:
        stats = X if n_rows <= _STATS_ROWS else X[sample]
    mean = stats.mean(axis=0)
    sd = stats.std(axis=0, ddof=1) if preprocess == "zscore" else np.ones(n_cols)
    sd[sd == 0] = 1.0
    mean_t, sd_t = torch.as_tensor(mean, **to), torch.as_tensor(sd, **to)
    if scipy.sparse.issparse(X):
        centred = (torch.as_tensor(stats, **to) - mean_t) / sd_t
        sv1 = _top_singular_value(centred / math.sqrt(len(sample)))
        del centred
        scale_t = sd_t * (sv1 if sv1 > 0 else 1.0)

        def batch(rows: np.ndarray) -> tuple[Any, Any]:
            idx = torch.as_tensor(rows, device=device)
            return (torch.as_tensor(X[rows].toarray(), **to) - mean_t) / scale_t, y_t[idx]

        return batch
    # dense: one preprocessed copy (torch.tensor copies, so the caller's array is never changed in place)
    dense = torch.tensor(X, **to)
    dense.sub_(mean_t).div_(sd_t)
    stats_t = dense if n_rows <= _STATS_ROWS else dense[torch.as_tensor(sample, device=device)]
    sv1 = _top_singular_value(stats_t / math.sqrt(len(sample)))
    del stats_t
    if sv1 > 0:
        dense.div_(sv1)

    def dense_batch(rows: np.ndarray) -> tuple[Any, Any]:
        idx = torch.as_tensor(rows, device=device)
        return dense[idx], y_t[idx]

    return dense_batch


def _top_singular_value(A: Any) -> float:
    """The largest singular value of the tensor ``A``: exact through the smaller Gram matrix, else by power
    iteration."""
    import torch

    n, d = A.shape
    if min(n, d) <= 3000:
        gram = A @ A.T if n <= d else A.T @ A
        return float(math.sqrt(max(float(torch.linalg.eigvalsh(gram.double())[-1]), 0.0)))
    v = torch.randn(d, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(A)
    value = 0.0
    for _ in range(100):
        u = A.T @ (A @ v)
        new = float(u.norm())
        if new == 0:
            return 0.0
        v = u / new
        if abs(new - value) <= 1e-6 * new:
            break
        value = new
    return math.sqrt(value)
