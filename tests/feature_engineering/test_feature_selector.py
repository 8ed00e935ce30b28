"""The FeatureSelector base class: NNI's interface, scikit-learn integration, input checks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from nni_pl._checks import ArgumentError
from nni_pl.feature_engineering import FeatureSelector


class CustomizedSelector(FeatureSelector):
    """The seed's customisation example: keeps the k columns most correlated with y."""

    def __init__(self, k: int = 2) -> None:
        self.k = k

    def fit(self, X, y, **kwargs):
        X, y = self.validate_input(X, y)
        corr = np.abs([np.corrcoef(X[:, j], y)[0, 1] for j in range(X.shape[1])])
        self.selected_features_ = np.sort(np.argsort(-np.nan_to_num(corr))[: self.k])
        return self


def _data(n: int = 80, d: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X[:, 1] - X[:, 4] > 0).astype(int)
    return X, y


def test_custom_selector_nni_interface():
    X, y = _data()
    selector = CustomizedSelector(k=2)
    assert selector.fit(X, y) is selector
    assert selector.get_selected_features().tolist() == [1, 4]


def test_custom_selector_sklearn_integration():
    X, y = _data()
    selector = CustomizedSelector(k=2).fit(X, y)
    assert selector.get_support().tolist() == [False, True, False, False, True, False]
    assert selector.get_support(indices=True).tolist() == [1, 4]
    np.testing.assert_array_equal(selector.transform(X), X[:, [1, 4]])
    restored = selector.inverse_transform(selector.transform(X))
    assert restored.shape == X.shape and not restored[:, 0].any()
    assert clone(selector).get_params() == {"k": 2}
    assert selector.set_params(k=3).k == 3
    pipeline = make_pipeline(CustomizedSelector(k=2), LogisticRegression()).fit(X, y)
    assert pipeline.score(X, y) > 0.9


def test_base_class_is_abstract():
    with pytest.raises(TypeError):
        FeatureSelector()


def test_unfitted_selector_says_to_fit():
    with pytest.raises(ValueError, match=r"not fitted yet; call fit\(X, y\) first"):
        CustomizedSelector().get_selected_features()


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (
            np.zeros(5),
            np.zeros(5),
            r"'CustomizedSelector.fit.X': must be 2-D .* got shape \(5,\); a single feature",
        ),
        (np.zeros((5, 2)), np.zeros(4), r"'CustomizedSelector.fit.y': has 4 values but X has 5 rows"),
        (
            np.zeros((5, 2)),
            np.zeros((5, 2)),
            r"'CustomizedSelector.fit.y': must be 1-D \[n_samples\], got shape",
        ),
        (np.array([[1.0, np.nan], [2, 3]]), [0, 1], r"'CustomizedSelector.fit.X': contains NaN"),
        ([["a", "b"], ["c", "d"]], [0, 1], r"'CustomizedSelector.fit.X': must be a 2-D array of numbers"),
        (None, [0, 1], r"'CustomizedSelector.fit.X': must be a 2-D array .* got None"),
        (np.zeros((1, 3)), [0], r"'CustomizedSelector.fit.X': needs at least 2 samples, got n_samples=1"),
        (np.zeros((4, 0)), [0, 1, 0, 1], r"'CustomizedSelector.fit.X': has 0 feature\(s\)"),
        (
            np.ones((2, 2)) * 1j,
            [0, 1],
            r"'CustomizedSelector.fit.X': must hold real numbers: Complex data not supported",
        ),
        (
            np.zeros((2, 2)),
            None,
            r"'CustomizedSelector.fit.y': requires y to be passed, but the target y is None",
        ),
    ],
)
def test_bad_input_is_refused_in_one_line(X, y, match):
    with pytest.raises(ArgumentError, match=match) as info:
        CustomizedSelector().fit(X, y)
    assert "\n" not in str(info.value)


def test_transform_with_other_columns_is_refused():
    X, y = _data()
    selector = CustomizedSelector().fit(X, y)
    with pytest.raises(
        ArgumentError,
        match=r"'CustomizedSelector.transform.X': X has 3 features, but CustomizedSelector is expecting 6",
    ):
        selector.transform(X[:, :3])


def test_import_is_light():
    code = (
        "import sys, nni_pl.feature_engineering as fe; fe.FeatureGradientSelector; fe.GBDTSelector; "
        "print('torch' in sys.modules, 'lightgbm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("name", ["FeatureGradientSelector", "GBDTSelector"])
def test_scikit_learn_estimator_checks(name):
    """scikit-learn's own estimator checks pass, but one: nni-pl checks arguments in __init__ (a project rule),
    scikit-learn would wait for fit."""
    import warnings

    from sklearn.utils.estimator_checks import check_estimator

    import nni_pl.feature_engineering as fe

    if name == "GBDTSelector":
        pytest.importorskip("lightgbm")
    estimator = getattr(fe, name)(random_state=0)
    if name == "FeatureGradientSelector":
        estimator.set_params(batch_size=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(
            estimator,
            on_fail=None,
            expected_failed_checks={"check_do_not_raise_errors_in_init_or_set_params": "checked in __init__"},
        )
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert failed == []
