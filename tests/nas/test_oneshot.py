"""One-shot strategies end to end: each trains on digits and exports an architecture inside the space; a search
resumed from a mid-search checkpoint ends where an uninterrupted one does; a one-shot NasExperiment is one trial
with the architecture probabilities as intermediate results; bad settings are refused up front."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from nni_pl._checks import ArgumentError
from nni_pl._lightning import quiet_trainer_kwargs
from nni_pl.errors import ConfigError
from nni_pl.experiment import store as st
from nni_pl.nas import ValueChoice
from nni_pl.nas.evaluator import Classification, FunctionalEvaluator
from nni_pl.nas.experiment import NasExperiment
from nni_pl.nas.oneshot.lightning import DartsModule
from nni_pl.nas.oneshot.runner import paired_loader, search
from nni_pl.nas.oneshot.supernet import OneShotError, build_supernet
from nni_pl.nas.strategy import DARTS, ENAS, SPOS, GumbelDARTS, Proxyless, RandomOneShot
from tests.nas.oneshot_spaces import DigitsConvSpace, DigitsLayerSpace, StridedSpace

DIGITS = {"factory": "nni_pl.nas.evaluator.data:digits_loaders", "kwargs": {"limit": 600, "batch_size": 50}}


def _evaluator(**kw):
    return Classification(
        train_dataloaders=DIGITS, learning_rate=0.01, max_epochs=kw.pop("max_epochs", 1), **kw
    )


@pytest.mark.parametrize(
    "strategy, space",
    [
        (DARTS(seed=0), DigitsConvSpace),
        (DARTS(unrolled=True, seed=0), DigitsConvSpace),
        (GumbelDARTS(seed=0), DigitsConvSpace),
        (ENAS(seed=0, ctrl_steps_aggregate=2), DigitsConvSpace),
        (RandomOneShot(seed=0, num_candidates=8, population_size=4), DigitsConvSpace),
        (Proxyless(seed=0), DigitsLayerSpace),
        (Proxyless(seed=0), DigitsConvSpace),
    ],
    ids=["darts", "darts-unrolled", "gumbel", "enas", "spos", "proxyless", "proxyless-values"],
)
def test_each_strategy_trains_an_epoch_on_digits_and_exports_an_architecture_of_the_space(strategy, space):
    torch.manual_seed(0)
    model_space = space()
    result = search(model_space, _evaluator(), strategy, top_k=3)
    model_space.check_arch(result.arch)
    assert result.top_models[0] == result.arch and 1 <= len(result.top_models) <= 3
    assert len({json.dumps(a, sort_keys=True) for a in result.top_models}) == len(result.top_models)
    for arch in result.top_models:
        model_space.check_arch(arch)
        assert model_space.freeze(arch)(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert result.score is not None and 0.0 <= result.score <= 1.0
    assert len(result.history) == 1 and result.history[0]["arch"]


def test_darts_learns_the_architecture_weights_and_a_good_supernet():
    torch.manual_seed(0)
    result = search(DigitsConvSpace(), _evaluator(max_epochs=3), DARTS(seed=0, arc_learning_rate=3e-3))
    alpha = [a.detach() for a in result.module.alpha]
    moved = [float(a.abs().max()) > 1e-2 for a in alpha]  # from the 1e-3 initialisation
    # an activation choice may matter too little to move in 3 epochs
    assert sum(moved) >= len(alpha) - 1, alpha
    assert result.score > 0.6  # the supernet's chosen path classifies digits after 3 small epochs
    assert [h["epoch"] for h in result.history] == [0, 1, 2] and "probs" in result.history[-1]


def _fit(module, max_epochs, tmp_path, name, ckpt_path=None, every=None):
    train, val = _evaluator().dataloaders()
    # the same batches in every epoch of every run (a shuffling loader's generator is not in a checkpoint)
    train = torch.utils.data.DataLoader(train.dataset, batch_size=50, shuffle=False)
    callbacks = []
    if every:
        callbacks.append(
            pl.callbacks.ModelCheckpoint(dirpath=tmp_path / name, save_top_k=-1, every_n_epochs=1)
        )
    trainer = pl.Trainer(
        **quiet_trainer_kwargs(
            max_epochs=max_epochs,
            enable_checkpointing=bool(every),
            callbacks=callbacks,
            num_sanity_val_steps=0,
        )
    )
    trainer.fit(module, paired_loader(train, val), val, ckpt_path=ckpt_path)
    return module


def _darts_module():
    torch.manual_seed(0)
    space = DigitsConvSpace()
    net = build_supernet(space, "GumbelDARTS")
    inner = _evaluator().build_module(net)
    return GumbelDARTS(seed=3).build_module(inner, net)


def test_a_search_resumed_mid_way_ends_with_the_architecture_of_an_uninterrupted_run(tmp_path):
    whole = _fit(_darts_module(), 3, tmp_path, "whole")
    first = _fit(_darts_module(), 1, tmp_path, "first", every=True)
    ckpt = next((tmp_path / "first").glob("*.ckpt"))
    resumed = _fit(_darts_module(), 3, tmp_path, "resumed", ckpt_path=str(ckpt))
    assert first.export() is not None
    assert resumed.export() == whole.export()
    for a, b in zip(resumed.alpha, whole.alpha):
        torch.testing.assert_close(a, b)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]


def test_a_checkpoint_of_another_strategy_is_refused(tmp_path):
    _fit(_darts_module(), 1, tmp_path, "g", every=True)
    ckpt = next((tmp_path / "g").glob("*.ckpt"))
    space = DigitsConvSpace()
    net = build_supernet(space, "DARTS")
    module = DartsModule(_evaluator().build_module(net), net)
    with pytest.raises(ValueError, match=r"GumbelDARTS.*cannot resume DARTS"):
        _fit(module, 2, tmp_path, "d", ckpt_path=str(ckpt))


def test_spos_search_respects_a_flops_limit():
    torch.manual_seed(0)
    space = DigitsConvSpace()
    from nni_pl.nas.oneshot.runner import count_flops

    flops = sorted(
        count_flops(space.freeze(a), torch.zeros(1, 1, 8, 8))
        for a in [space.random_arch(seed=s) for s in range(30)]
    )
    limit = flops[len(flops) // 3]
    result = search(
        space, _evaluator(), SPOS(seed=0, num_candidates=12, population_size=4, max_flops=limit), top_k=4
    )
    for arch in result.top_models:
        assert count_flops(space.freeze(arch), torch.zeros(1, 1, 8, 8)) <= limit


def test_bad_settings_are_refused_naming_the_argument():
    with pytest.raises(ArgumentError, match=r"DARTS.arc_learning_rate.*> 0, got 0"):
        DARTS(arc_learning_rate=0)
    with pytest.raises(ArgumentError, match=r"ENAS.ctrl_kwargs.lstm.*lstm_size"):
        ENAS(ctrl_kwargs={"lstm": 3})
    with pytest.raises(ArgumentError, match=r"RandomOneShot.search.*'grid'"):
        RandomOneShot(search="grid")
    with pytest.raises(ArgumentError, match=r"Proxyless.latency_predictor.*go together"):
        Proxyless(latency_budget=3.0)
    with pytest.raises(ArgumentError, match=r"GumbelDARTS.min_temp.*<= gumbel_temperature"):
        GumbelDARTS(gumbel_temperature=0.5, min_temp=0.9)


def test_a_one_shot_experiment_is_refused_before_anything_exists(tmp_path):
    ev = _evaluator()
    with pytest.raises(OneShotError, match=r"'stride'.*Proxyless"):
        NasExperiment(StridedSpace(), ev, Proxyless(), experiment_working_directory=tmp_path)
    with pytest.raises(ConfigError, match=r"evaluator.lr.*DARTS"):
        NasExperiment(
            DigitsConvSpace(),
            Classification(train_dataloaders=DIGITS, learning_rate=ValueChoice([0.1, 0.01], label="lr")),
            DARTS(),
            experiment_working_directory=tmp_path,
        )
    with pytest.raises(ConfigError, match=r"max_trial_number.*one trial"):
        NasExperiment(
            DigitsConvSpace(), ev, DARTS(), max_trial_number=5, experiment_working_directory=tmp_path
        )
    with pytest.raises(ConfigError, match=r"evaluator.*FunctionalEvaluator"):
        NasExperiment(
            DigitsConvSpace(), FunctionalEvaluator(len), DARTS(), experiment_working_directory=tmp_path
        )
    assert not list(tmp_path.iterdir())


def test_a_one_shot_nas_experiment_is_one_trial_with_probabilities_as_intermediate_results(tmp_path):
    root = Path(__file__).resolve().parents[2]
    exp = NasExperiment(
        DigitsLayerSpace(),
        _evaluator(max_epochs=2),
        DARTS(seed=0),
        seed=0,
        experiment_working_directory=tmp_path,
        trial_code_directory=root,
    )
    assert exp.config.max_trial_number == 1
    exp.run(display=False)
    trials = exp.trials()
    assert [t.status for t in trials] == [st.SUCCEEDED], [t.error for t in trials]
    assert trials[0].parameters == {"oneshot_strategy": "DARTS"} and 0.0 <= trials[0].final_default <= 1.0
    metrics = exp.experiment.store.list_metrics(exp.id, trials[0].trial_id)
    intermediate = [m.value for m in metrics if m.type != "FINAL"]
    assert len(intermediate) == 2 and all("p/op/conv5" in v and "default" in v for v in intermediate)
    top = exp.export_top_models(top_k=2)
    assert len(top) == 2 and set(top[0]) == {"op", "op2", "skip"}
    DigitsLayerSpace().check_arch(top[0])
    exp.close()
    # the CLI shows it like any experiment, the trial's intermediate results included
    from nni_pl.cli.main import main

    assert main(["show", exp.id, "--workdir", str(tmp_path)]) == 0
    assert main(["trial", "ls", exp.id, "--workdir", str(tmp_path)]) == 0


def _predictor(space, tmp_path):
    from nni_pl.nas.hardware import LatencyPredictor

    # a fixed table (timings are the hardware tests' business): conv5 costs most, identity nothing
    table = {"op": [3.0, 1.5, 0.0], "op2": [1.5, 0.0], "skip": [0.0, 0.0]}
    decisions = {la: v["_value"] for la, v in space.search_space().items()}
    predictor = LatencyPredictor.from_table(decisions, table, base=0.5)
    path = tmp_path / "latency.json"
    predictor.save(path)
    return predictor, str(path)


def test_proxyless_with_a_latency_budget_exports_within_it(tmp_path):
    space = DigitsLayerSpace()
    predictor, path = _predictor(space, tmp_path)
    budget = 1.6  # excludes conv5 with conv3, and conv5 alone needs op2=id
    for seed in range(3):
        torch.manual_seed(seed)
        strategy = Proxyless(seed=seed, latency_predictor=path, latency_budget=budget, latency_weight=5.0)
        result = search(space, _evaluator(), strategy)
        assert predictor.predict(result.arch) <= budget, result.arch
    probs = result.module.probabilities()
    uniform = {la: torch.full_like(v, 1 / len(v)) for la, v in probs.items()}
    assert float(predictor.expected_latency(probs)) < float(
        predictor.expected_latency(uniform)
    )  # the loss pulls


def test_spos_search_respects_a_latency_limit(tmp_path):
    space = DigitsLayerSpace()
    predictor, path = _predictor(space, tmp_path)
    torch.manual_seed(0)
    strategy = RandomOneShot(
        seed=0, num_candidates=12, population_size=4, max_latency=1.0, latency_predictor=path
    )
    result = search(space, _evaluator(), strategy, top_k=3)
    assert result.top_models and all(predictor.predict(a) <= 1.0 for a in result.top_models)


def test_spos_recalibrates_batch_norm_per_candidate_and_restores_the_supernets_statistics():
    torch.manual_seed(0)
    space = DigitsConvSpace()
    net = build_supernet(space, "RandomOneShot")
    module = RandomOneShot(seed=0).build_module(_evaluator().build_module(net), net)
    train, val = _evaluator().dataloaders()
    batches, recal = list(val)[:2], list(train)[:3]
    norms = [m for m in module.inner.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    before = [(m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked)) for m in norms]
    arch = {"width": 16, "kernel": 5, "op": "conv", "skip": [1], "depth": 2, "act": "relu"}
    plain = module.evaluate_arch(arch, batches)
    recalibrated = module.evaluate_arch(arch, batches, recalibrate=recal)
    assert (
        plain != recalibrated
    )  # the untrained supernet's running statistics (0/1) are not this architecture's
    for m, (mean, var, n) in zip(norms, before):
        torch.testing.assert_close(m.running_mean, mean)
        torch.testing.assert_close(m.running_var, var)
        assert int(m.num_batches_tracked) == n
    assert module.inner.training
