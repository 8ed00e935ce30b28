"""FeatureGradientSelector: NNI's arguments, the algorithm finding informative features, sklearn integration."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import scipy.sparse
from sklearn.base import clone
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from nni_pl._checks import ArgumentError
from nni_pl.feature_engineering import FeatureGradientSelector
from nni_pl.feature_engineering._learnability import chain_weights, polynomial_coefficients


def _binary(n: int = 300, d: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, (X[:, 3] + X[:, 7] > 0).astype(int)


FAST = {"n_epochs": 15, "batch_size": 100, "random_state": 0}


def test_constructor_defaults_are_nni_documented_ones():
    defaults = {k: p.default for k, p in inspect.signature(FeatureGradientSelector).parameters.items()}
    assert defaults == {
        "order": 4,
        "penalty": 1,
        "n_features": None,
        "max_features": None,
        "learning_rate": 0.1,
        "init": "zero",
        "n_epochs": 1,
        "shuffle": True,
        "batch_size": 1000,
        "target_batch_size": 1000,
        "max_time": math.inf,
        "classification": True,
        "ordinal": True,
        "balanced": True,
        "preprocess": "zscore",
        "soft_grouping": True,
        "verbose": 0,
        "device": "cpu",
        "random_state": None,
    }


def test_finds_the_informative_binary_features():
    X, y = _binary()
    selector = FeatureGradientSelector(n_features=2, **FAST).fit(X, y)
    assert selector.get_selected_features().tolist() == [3, 7]
    assert selector.scores_.shape == (20,)
    assert selector.scores_[[3, 7]].min() > np.delete(selector.scores_, [3, 7]).max()
    assert selector.n_iter_ == 15  # 45 mini-batches of 100 rows, 3 per step (target_batch_size: all 300)


def test_default_settings_one_step_still_ranks_by_gradient():
    X, y = _binary()
    selector = FeatureGradientSelector(n_features=2, random_state=0).fit(X, y)
    assert selector.n_iter_ == 1  # NNI's defaults: one epoch of one 1000-row batch
    assert selector.get_selected_features().tolist() == [3, 7]


def test_without_n_features_keeps_open_gates_and_the_penalty_closes_the_rest():
    X, y = _binary()
    selected = FeatureGradientSelector(n_epochs=40, batch_size=100, random_state=0).fit(X, y)
    assert set(selected.get_selected_features().tolist()) == {3, 7}
    loose = FeatureGradientSelector(penalty=0, n_epochs=40, batch_size=100, random_state=0).fit(X, y)
    assert len(loose.get_selected_features()) > 2  # no penalty: nothing pushes gates shut


def test_max_features_picks_the_elbow():
    X, y = _binary()
    selector = FeatureGradientSelector(max_features=10, **FAST).fit(X, y)
    assert selector.get_selected_features().tolist() == [3, 7]


def test_multiclass_ordinal_and_one_vs_rest():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 12))
    y = np.digitize(X[:, 2] + X[:, 9], [-1, 0, 1])  # 4 ordered classes
    for ordinal in (True, False):
        for balanced in (True, False):
            selector = FeatureGradientSelector(n_features=2, ordinal=ordinal, balanced=balanced, **FAST).fit(
                X, y
            )
            assert selector.get_selected_features().tolist() == [2, 9], (ordinal, balanced)


def test_regression_and_center_preprocessing():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 15)) * rng.uniform(0.5, 5, size=15)
    y = 3 * X[:, 4] - 2 * X[:, 11] + 0.1 * rng.normal(size=300)
    for preprocess in ("zscore", "center"):
        selector = FeatureGradientSelector(
            n_features=2, classification=False, preprocess=preprocess, **FAST
        ).fit(X, y)
        assert selector.get_selected_features().tolist() == [4, 11]


def test_sparse_input_matches_dense():
    X, y = _binary()
    dense = FeatureGradientSelector(n_features=2, **FAST).fit(X, y)
    sparse = FeatureGradientSelector(n_features=2, **FAST).fit(scipy.sparse.csr_matrix(X), y)
    np.testing.assert_allclose(sparse.scores_, dense.scores_, atol=1e-5)


def test_seeded_fits_are_reproducible():
    X, y = _binary()
    a = FeatureGradientSelector(**FAST).fit(X, y).scores_
    b = FeatureGradientSelector(**FAST).fit(X, y).scores_
    np.testing.assert_array_equal(a, b)


def test_hard_groups_are_selected_together():
    X, y = _binary()
    groups = np.arange(20)
    groups[[3, 4, 5]] = 3  # feature 3 is informative, 4 and 5 are noise in its group
    selector = FeatureGradientSelector(n_features=2, soft_grouping=False, **FAST).fit(X, y, groups=groups)
    assert selector.get_selected_features().tolist() == [3, 4, 5, 7]
    assert np.ptp(selector.scores_[[3, 4, 5]]) < 1e-6  # one gradient for the group


def test_soft_groups_change_the_penalty_only():
    X, y = _binary()
    groups = np.repeat(np.arange(5), 4)
    selector = FeatureGradientSelector(n_features=2, **FAST).fit(X, y, groups=groups)
    assert selector.get_selected_features().tolist() == [3, 7]
    assert np.ptp(selector.scores_[[0, 1, 2, 3]]) > 0.1  # members move separately


def test_init_sklearn_and_on_off():
    X, y = _binary()
    for init in ("sklearn", "on", "off"):
        selector = FeatureGradientSelector(n_features=2, init=init, **FAST).fit(X, y)
        assert selector.get_selected_features().tolist() == [3, 7], init
    # saturated starts barely move in few steps
    assert FeatureGradientSelector(init="onhigh", **FAST).fit(X, y).scores_.min() > 0.95
    assert FeatureGradientSelector(init="offhigh", **FAST).fit(X, y).scores_.max() < 0.1


def test_set_n_features_and_percentile_after_fit():
    X, y = _binary()
    selector = FeatureGradientSelector(n_features=2, **FAST).fit(X, y)
    assert len(selector.set_n_features(5).get_selected_features()) == 5
    assert len(selector.set_top_percentile(0.5).get_selected_features()) == 10
    assert {3, 7} <= set(selector.get_selected_features().tolist())


def test_pipeline_with_logistic_regression_and_clone():
    X, y = load_wine(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    pipeline = Pipeline(
        [
            ("select", FeatureGradientSelector(n_features=6, n_epochs=10, batch_size=60, random_state=0)),
            ("scale", StandardScaler()),
            ("lr", LogisticRegression(max_iter=500)),
        ]
    )
    assert pipeline.fit(X_train, y_train).score(X_test, y_test) > 0.85
    assert pipeline.named_steps["select"].transform(X_test).shape == (len(X_test), 6)
    copy = clone(pipeline)
    assert copy.get_params()["select__n_features"] == 6
    copy.set_params(select__n_features=3)
    assert copy.fit(X_train, y_train).named_steps["select"].get_support().sum() == 3
    assert FeatureGradientSelector(n_features=4, **FAST).fit_transform(X, y).shape == (len(X), 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"order": 0}, r"'FeatureGradientSelector.order': must be an integer between 1 and 12, got 0"),
        ({"penalty": -1}, r"'FeatureGradientSelector.penalty': must be a number >= 0, got -1"),
        ({"n_features": 0}, r"'FeatureGradientSelector.n_features': must be an integer >= 1 or None, got 0"),
        ({"n_features": 2, "max_features": 3}, r"'FeatureGradientSelector.max_features': only one of"),
        ({"learning_rate": 0}, r"'FeatureGradientSelector.learning_rate': must be a number > 0, got 0"),
        ({"init": "ones"}, r"'FeatureGradientSelector.init': must be 'zero', 'on', .*, got 'ones'"),
        ({"shuffle": 1}, r"'FeatureGradientSelector.shuffle': must be true or false, got 1"),
        ({"batch_size": 1}, r"'FeatureGradientSelector.batch_size': must be an integer >= 2, got 1"),
        ({"preprocess": "minmax"}, r"'FeatureGradientSelector.preprocess': must be 'zscore' or 'center'"),
        ({"device": "tpu"}, r"'FeatureGradientSelector.device': must be 'cpu' or 'cuda'.*got 'tpu'"),
        ({"max_time": 0}, r"'FeatureGradientSelector.max_time': must be a number > 0"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ArgumentError, match=match) as info:
        FeatureGradientSelector(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_fit_input_is_refused():
    X, y = _binary(n=40, d=8)
    with pytest.raises(
        ArgumentError,
        match=r"'FeatureGradientSelector.n_features': must be <= the number of columns of X \(8\), got 9",
    ):
        FeatureGradientSelector(n_features=9).fit(X, y)
    with pytest.raises(ArgumentError, match=r"'FeatureGradientSelector.fit.y': has a single class \(1\)"):
        FeatureGradientSelector().fit(X, np.ones(40, dtype=int))
    with pytest.raises(
        ArgumentError, match=r"'FeatureGradientSelector.fit.groups': must hold one group id per column"
    ):
        FeatureGradientSelector().fit(X, y, groups=[0, 1])
    with pytest.raises(
        ArgumentError, match=r"'FeatureGradientSelector.order': needs mini-batches of at least"
    ):
        FeatureGradientSelector(order=12).fit(X[:8], y[:8])
    with pytest.raises(
        ArgumentError, match=r"'FeatureGradientSelector.fit.y': has 200 distinct real values.*False"
    ):
        FeatureGradientSelector().fit(np.ones((200, 2)) + np.arange(200)[:, None] % 3, np.linspace(0, 1, 200))
    with pytest.raises(ArgumentError, match=r"'FeatureGradientSelector.fit.y': is constant"):
        FeatureGradientSelector(classification=False).fit(X, np.zeros(40))
    selector = FeatureGradientSelector().set_params(order=20)  # set_params skips __init__: fit checks again
    with pytest.raises(ArgumentError, match=r"'FeatureGradientSelector.order'"):
        selector.fit(X, y)


def test_polynomial_approximates_the_inverse_and_stays_small():
    lam = np.linspace(0.2, 1, 50)
    c = np.asarray(polynomial_coefficients(6, ridge=0.0))  # unregularised: a close fit
    assert np.max(np.abs(lam * np.polyval(c[::-1], lam) - 1)) < 0.2
    for order in (1, 4, 12):  # the default ridge: small coefficients, a fit that still rises towards 1
        c = np.asarray(polynomial_coefficients(order))
        assert np.max(np.abs(c)) < 1.5
        fit = lam * np.polyval(c[::-1], lam)
        assert fit.min() > 0.1 and fit[-1] > 3 * fit[0] and 0.9 < fit.max() < 1.5
    assert chain_weights(2, 10)[1] == pytest.approx(polynomial_coefficients(2)[1] / 120)


def test_learnability_estimate_is_unbiased_for_the_chain_moments():
    torch = pytest.importorskip("torch")
    from nni_pl.feature_engineering._learnability import learnability_error

    rng = np.random.default_rng(0)
    X = torch.as_tensor(rng.normal(size=(7, 3)))
    y = torch.as_tensor(rng.choice([-1.0, 1.0], size=(7, 1)))
    s = torch.as_tensor([[1.0], [0.5], [0.25]], dtype=torch.float64)
    K = (X * s.T) @ X.T
    # brute force: order 2 = pairs i<j (y_i K_ij y_j) and triples i<j<k (y_i K_ij K_jk y_k)
    pairs = sum(y[i] * K[i, j] * y[j] for i in range(7) for j in range(i + 1, 7))
    triples = sum(
        y[i] * K[i, j] * K[j, k] * y[k] for i in range(7) for j in range(i + 1, 7) for k in range(j + 1, 7)
    )
    weights = [0.7, -0.3]
    z = weights[0] * pairs + weights[1] * triples
    got = learnability_error(s, X, y, weights, binary=False)
    assert float(got) == pytest.approx(float(1 - z))


def test_own_adam_matches_torch_adam():
    torch = pytest.importorskip("torch")
    from nni_pl.feature_engineering._learnability import _Adam

    gen = torch.Generator().manual_seed(0)
    x = torch.nn.Parameter(torch.randn(6, 1, generator=gen))
    reference = torch.nn.Parameter(x.detach().clone())
    ours, theirs = _Adam(x, 0.1), torch.optim.Adam([reference], lr=0.1)
    for _ in range(5):
        g = torch.randn(6, 1, generator=gen)
        x.grad, reference.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(x.detach(), reference.detach())


def test_dataframe_column_names_are_kept():
    pd = pytest.importorskip("pandas")
    X, y = _binary()
    frame = pd.DataFrame(X, columns=[f"c{i}" for i in range(20)])
    selector = FeatureGradientSelector(n_features=2, **FAST).fit(frame, pd.Series(y))
    assert selector.get_feature_names_out().tolist() == ["c3", "c7"]
    assert selector.set_output(transform="pandas").transform(frame).columns.tolist() == ["c3", "c7"]
