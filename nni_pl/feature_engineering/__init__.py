"""Feature selection for tabular data (NNI's feature-engineering toolkit), as scikit-learn selectors.

- :class:`FeatureSelector`: the base class; subclass it for a custom selector.
- :class:`FeatureGradientSelector`: gradient search over relaxed feature gates with a sparsity penalty (torch,
  imported when it fits).
- :class:`GBDTSelector`: LightGBM's feature importances (``pip install lightgbm``).

Every selector has NNI's ``fit(X, y, ...)`` / ``get_selected_features()`` and goes into a scikit-learn
``Pipeline``. Names are imported on first use: ``import nni_pl.feature_engineering`` imports neither torch nor
scikit-learn.

Example:
    >>> from sklearn.datasets import load_wine
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from nni_pl.feature_engineering import FeatureGradientSelector
    >>> X, y = load_wine(return_X_y=True)
    >>> pipeline = make_pipeline(
    ...     FeatureGradientSelector(n_features=5, n_epochs=10, batch_size=60, random_state=0),
    ...     StandardScaler(),
    ...     LogisticRegression(),
    ... )
    >>> pipeline.fit(X, y).score(X, y) > 0.9
    True
"""

from __future__ import annotations

from nni_pl._imports import lazy_exports

_MODULES = {
    "FeatureGradientSelector": "gradient_selector",
    "FeatureSelector": "feature_selector",
    "GBDTSelector": "gbdt_selector",
}
__all__ = sorted(_MODULES)


__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
