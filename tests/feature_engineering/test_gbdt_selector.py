"""GBDTSelector: NNI's fit/get_selected_features, sklearn integration, settings checks, missing lightgbm."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from nni_pl._checks import ArgumentError
from nni_pl.errors import MissingDependencyError
from nni_pl.feature_engineering import GBDTSelector

NNI_FIT = {
    "lgb_params": {"objective": "binary", "verbosity": -1, "num_leaves": 7, "min_data_in_leaf": 5},
    "eval_ratio": 0.2,
    "early_stopping_rounds": 5,
    "importance_type": "gain",
    "num_boost_round": 40,
}


def _data(n: int = 300, d: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, (2 * X[:, 2] - X[:, 8] + 0.3 * rng.normal(size=n) > 0).astype(int)


@pytest.fixture(autouse=True)
def _needs_lightgbm(request):
    if request.node.name != "test_missing_lightgbm_says_how_to_install":
        pytest.importorskip("lightgbm")


def test_nni_style_fit_and_topk():
    X, y = _data()
    selector = GBDTSelector()
    selector.fit(X, y, **NNI_FIT)
    top = selector.get_selected_features(2)
    assert sorted(top.tolist()) == [2, 8]
    assert top[0] == 2  # most important first, as NNI returns them
    assert selector.feature_importances_.shape == (12,)
    assert selector.feature_importances_[2] == selector.feature_importances_.max()


def test_split_importance_counts_splits():
    X, y = _data()
    selector = GBDTSelector(random_state=0).fit(X, y, **{**NNI_FIT, "importance_type": "split"})
    assert np.all(selector.feature_importances_ == np.round(selector.feature_importances_))
    assert set(selector.get_selected_features(2).tolist()) == {2, 8}


def test_default_objective_from_y_multiclass_and_regression():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 8))
    labels = np.array(["low", "mid", "high"])[np.digitize(X[:, 5], [-0.5, 0.5])]
    multi = GBDTSelector(topk=1, random_state=0).fit(X, labels)
    assert multi.get_selected_features().tolist() == [5]
    assert multi.model_.params["objective"] == "multiclass"
    reg = GBDTSelector(topk=1, random_state=0).fit(X, 3.5 * X[:, 6] + 0.01 * rng.normal(size=400))
    assert reg.get_selected_features().tolist() == [6]
    assert reg.model_.params["objective"] == "regression"


def test_pipeline_with_logistic_regression_and_clone():
    X, y = _data(n=400, d=30)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    pipeline = make_pipeline(GBDTSelector(topk=2, random_state=0), LogisticRegression())
    assert pipeline.fit(X_train, y_train).score(X_test, y_test) > 0.85
    selector = pipeline.named_steps["gbdtselector"]
    assert selector.get_support(indices=True).tolist() == [2, 8]
    assert selector.transform(X_test).shape == (100, 2)
    copy = clone(pipeline).set_params(gbdtselector__topk=5)
    assert copy.fit(X_train, y_train).named_steps["gbdtselector"].get_support().sum() == 5
    # NNI-style settings reach fit through the pipeline's step__param routing
    pipeline.fit(X_train, y_train, gbdtselector__importance_type="gain", gbdtselector__num_boost_round=20)
    assert pipeline.named_steps["gbdtselector"].model_.current_iteration() <= 20


def test_without_topk_keeps_used_features():
    X, y = _data()
    selector = GBDTSelector(random_state=0).fit(X, y)
    kept = selector.get_support()
    np.testing.assert_array_equal(kept, selector.feature_importances_ > 0)
    with pytest.raises(
        ArgumentError,
        match=r"'GBDTSelector.get_selected_features.topk': must be an integer between 1 and 12, got 0",
    ):
        selector.get_selected_features(0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"importance_type": "cover"},
            r"'GBDTSelector.fit.importance_type': must be 'split' or 'gain', got 'cover'",
        ),
        ({"eval_ratio": 1.5}, r"'GBDTSelector.fit.eval_ratio': must be a number > 0 and < 1, got 1.5"),
        (
            {"early_stopping_rounds": 0},
            r"'GBDTSelector.fit.early_stopping_rounds': must be an integer >= 1, got 0",
        ),
        (
            {"num_boost_round": "100"},
            r"'GBDTSelector.fit.num_boost_round': must be an integer >= 1, got '100'",
        ),
        (
            {"lgb_params": [1]},
            r"'GBDTSelector.fit.lgb_params': must be a dict of LightGBM parameters or None",
        ),
        (
            {"num_boost_rounds": 5},
            r"'GBDTSelector.fit.num_boost_rounds': is not a fit setting \(did you mean 'num_boost_round'\?\)",
        ),
    ],
)
def test_bad_fit_settings_are_refused(kwargs, match):
    X, y = _data(n=50)
    with pytest.raises(ArgumentError, match=match) as info:
        GBDTSelector().fit(X, y, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_constructor_arguments_and_input():
    with pytest.raises(ArgumentError, match=r"'GBDTSelector.importance_type': must be 'split' or 'gain'"):
        GBDTSelector(importance_type="weight")
    with pytest.raises(ArgumentError, match=r"'GBDTSelector.topk': must be an integer >= 1 or None, got -1"):
        GBDTSelector(topk=-1)
    X, y = _data(n=50)
    with pytest.raises(
        ArgumentError, match=r"'GBDTSelector.topk': must be <= the number of columns of X \(12\), got 13"
    ):
        GBDTSelector(topk=13).fit(X, y)
    with pytest.raises(ArgumentError, match=r"'GBDTSelector.fit.y': has 49 values but X has 50 rows"):
        GBDTSelector().fit(X, y[:-1])


def test_missing_lightgbm_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_lightgbm(name, *args, **kwargs):
        if name == "lightgbm" or name.startswith("lightgbm."):
            raise ImportError("No module named 'lightgbm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lightgbm)
    X, y = _data(n=50)
    with pytest.raises(
        MissingDependencyError, match=r"GBDTSelector needs the package 'lightgbm'.*pip install"
    ) as info:
        GBDTSelector().fit(X, y)
    assert "\n" not in str(info.value)
