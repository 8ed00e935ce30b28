"""The base class of every feature selector: NNI's ``FeatureSelector`` interface as a scikit-learn selector.

A selector learns which columns of a tabular ``X`` matter for ``y``. Its NNI interface is two methods:
``fit(X, y, **kwargs)`` and ``get_selected_features()`` (the indices of the chosen columns). Because the base
class is also a scikit-learn estimator with ``SelectorMixin``, every selector gets ``get_support``,
``transform``, ``fit_transform``, ``inverse_transform``, ``get_params``/``set_params`` and ``clone`` for free, and
goes into a ``Pipeline`` as is.

A custom selector subclasses :class:`FeatureSelector`, stores its constructor arguments under their own names
(scikit-learn's rule, so ``clone`` works), and implements ``fit``: it calls :meth:`FeatureSelector.validate_input`
first, then sets ``selected_features_``.

Example:
    >>> import numpy as np
    >>> from nni_pl.feature_engineering import FeatureSelector
    >>> class VarianceTopK(FeatureSelector):
    ...     '''Keeps the k columns with the largest variance.'''
    ...     def __init__(self, k=2):
    ...         self.k = k
    ...     def fit(self, X, y, **kwargs):
    ...         X, y = self.validate_input(X, y)
    ...         self.selected_features_ = np.sort(np.argsort(-X.var(axis=0))[: self.k])
    ...         return self
    >>> X = np.array([[0.0, 1, 10, 5], [0, 2, 20, 5], [0, 3, 30, 5]])
    >>> selector = VarianceTopK(k=2).fit(X, [0, 1, 0])
    >>> selector.get_selected_features().tolist()
    [1, 2]
    >>> selector.transform(X).shape
    (3, 2)
"""

from __future__ import annotations

import numbers
from abc import abstractmethod
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from nni_pl._checks import ArgumentError, fail, owner_name

__all__ = ["FeatureSelector"]


class FeatureSelector(SelectorMixin, BaseEstimator):
    """Base class of feature selectors (NNI's ``nni.feature_engineering.feature_selector.FeatureSelector``).

    Subclasses implement :meth:`fit`, which must call :meth:`validate_input` and set ``selected_features_`` (the
    indices of the kept columns); they may override :meth:`get_selected_features`. ``get_support`` and
    ``transform`` follow ``get_selected_features()``.

    Attributes:
        selected_features_: indices of the selected columns (set by ``fit``).
        n_features_in_: the number of columns ``fit`` saw.

    Example:
        >>> import numpy as np
        >>> from sklearn.base import clone
        >>> from nni_pl.feature_engineering import FeatureSelector
        >>> class FirstColumns(FeatureSelector):
        ...     def __init__(self, n=1):
        ...         self.n = n
        ...     def fit(self, X, y, **kwargs):
        ...         X, y = self.validate_input(X, y)
        ...         self.selected_features_ = np.arange(self.n)
        ...         return self
        >>> clone(FirstColumns(n=3)).get_params()
        {'n': 3}
        >>> FirstColumns(n=2).fit(np.eye(4), [0, 1, 0, 1]).get_support().tolist()
        [True, True, False, False]
    """

    @abstractmethod
    def fit(self, X: Any, y: Any, **kwargs: Any) -> FeatureSelector:
        """Learn which features to keep from ``X`` (``[n_samples, n_features]``) and ``y`` (``[n_samples]``).

        Returns:
            ``self``.
        """

    def get_selected_features(self) -> np.ndarray:
        """The indices of the selected features (NNI's interface), after :meth:`fit`."""
        check_is_fitted(
            self,
            "selected_features_",
            msg=f"this {type(self).__name__} is not fitted yet; call fit(X, y) first",
        )
        return np.asarray(self.selected_features_, dtype=np.int64)

    def validate_input(self, X: Any, y: Any, *, sparse: bool = False) -> tuple[Any, np.ndarray]:
        """Check ``X`` and ``y`` for ``fit``, record ``n_features_in_`` (and column names), return them as arrays.

        Args:
            X: a 2-D array-like of numbers ``[n_samples, n_features]`` (a pandas DataFrame too); a scipy sparse
                matrix when ``sparse`` is true (returned in CSR form).
            y: a 1-D array-like ``[n_samples]`` (a ``[n_samples, 1]`` column is flattened).
            sparse: accept a scipy sparse ``X``.

        Raises:
            ArgumentError: (a ``ValueError``) naming ``<Class>.fit.X`` or ``<Class>.fit.y``, echoing the problem.
        """
        owner = f"{owner_name(self)}.fit"
        given = X
        X = check_matrix(owner, "X", X, sparse=sparse)
        y = check_target(owner, y, X.shape[0])
        # a DataFrame's column names are recorded (get_feature_names_out, pandas output)
        validate_data(self, given if hasattr(given, "columns") else X, reset=True, skip_check_array=True)
        return X, y

    def transform(self, X: Any) -> Any:
        """``X`` reduced to the selected columns (the same kind of array as given)."""
        check_is_fitted(self, msg=f"this {type(self).__name__} is not fitted yet; call fit(X, y) first")
        shape = X.shape if hasattr(X, "shape") else np.asarray(X).shape
        if len(shape) != 2:
            fail(
                f"{owner_name(self)}.transform",
                "X",
                f"must be 2-D [n_samples, {self.n_features_in_}], got shape {shape}; Reshape your data "
                "(X.reshape(1, -1) for a single sample)",
            )
        if shape[1] != self.n_features_in_:
            fail(
                f"{owner_name(self)}.transform",
                "X",
                f"X has {shape[1]} features, but {owner_name(self)} is expecting {self.n_features_in_} features "
                "as input (the columns it was fitted on); pass the same columns",
            )
        return super().transform(X)

    def _get_support_mask(self) -> np.ndarray:
        mask = np.zeros(self.n_features_in_, dtype=bool)
        mask[self.get_selected_features()] = True
        return mask

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.sparse = True
        return tags


class _ValueTypeError(ArgumentError, TypeError):
    """An argument holding values of a type that cannot be used (e.g. a dict inside ``X``)."""


def check_matrix(owner: str, name: str, X: Any, *, sparse: bool = False) -> Any:
    """``X`` as a finite 2-D float array (CSR matrix when sparse input is allowed and given)."""
    import scipy.sparse

    if X is None:
        fail(owner, name, "must be a 2-D array [n_samples, n_features], got None")
    given = type(X).__name__
    complex_error = "must hold real numbers: Complex data not supported; pass X.real or np.abs(X)"
    if scipy.sparse.issparse(X):
        if not sparse:
            fail(owner, name, f"must be a dense array, got a sparse {type(X).__name__}; pass X.toarray()")
        if X.dtype.kind == "c":
            fail(owner, name, complex_error)
        X = scipy.sparse.csr_matrix(X, dtype=np.float64)
        values = X.data
    else:
        try:
            X = np.asarray(X)
            if X.dtype.kind == "c":
                fail(owner, name, complex_error)
            X = X.astype(np.float64, copy=False)
        except (TypeError, ValueError) as e:
            if isinstance(e, ArgumentError):
                raise
            reason = f"must be a 2-D array of numbers, got {given} that numpy cannot read ({e})"
            if isinstance(e, TypeError):  # values of a wrong type: an ArgumentError that is a TypeError too
                raise _ValueTypeError(owner, name, reason) from None
            fail(owner, name, reason)
        values = X
    if X.ndim != 2:
        fix = "; a single feature reads X.reshape(-1, 1)" if X.ndim == 1 else ""
        fail(owner, name, f"must be 2-D [n_samples, n_features], got shape {X.shape}{fix}")
    if X.shape[1] < 1:
        fail(
            owner,
            name,
            f"has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required; pass at least one column",
        )
    if X.shape[0] < 2:
        fail(owner, name, f"needs at least 2 samples, got n_samples={X.shape[0]} (shape {X.shape})")
    if not np.isfinite(values).all():
        fail(owner, name, "contains NaN or infinite values; impute or drop them first")
    return X


def check_target(owner: str, y: Any, n_samples: int) -> np.ndarray:
    """``y`` as a 1-D array of ``n_samples`` values (a ``[n, 1]`` column is flattened)."""
    if y is None:
        fail(owner, "y", "requires y to be passed, but the target y is None; pass one target per row of X")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        fail(owner, "y", f"must be 1-D [n_samples], got shape {y.shape}")
    if y.shape[0] != n_samples:
        fail(owner, "y", f"has {y.shape[0]} values but X has {n_samples} rows; pass one target per row")
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        fail(owner, "y", "contains NaN or infinite values; drop those rows first")
    return y


def check_optional_int(owner: object, name: str, value: Any, *, minimum: int = 1) -> int | None:
    """``value`` if it is ``None`` or an integer ``>= minimum``."""
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        fail(owner, name, f"must be an integer >= {minimum} or None, got {value!r}")
    return int(value)
