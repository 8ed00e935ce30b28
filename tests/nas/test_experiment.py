"""NasExperiment: configuration checks, the trial entry point, and end-to-end runs with real trial processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from nni_pl.errors import ConfigError
from nni_pl.experiment import store as st
from nni_pl.nas import ArchitectureError, ModelSpace, NasBench101Cell, ValueChoice
from nni_pl.nas._trial import run_trial
from nni_pl.nas.evaluator import Classification, FunctionalEvaluator, Regression
from nni_pl.nas.experiment import SPEC_FILE, NasExperiment
from nni_pl.nas.strategy import GridSearch, Random, RegularizedEvolution, StrategyTuner

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nas_digits"
sys.path.insert(0, str(EXAMPLE))
from digits_space import DigitsSpace  # noqa: E402

TINY_DIGITS = {
    "factory": "nni_pl.nas.evaluator.data:digits_loaders",
    "kwargs": {"limit": 300, "batch_size": 50},
}


def n_params(model: nn.Module, scale: float = 1.0) -> float:
    return scale * sum(p.numel() for p in model.parameters())


ARCH = {"conv": "conv3", "width": 8, "act": "relu", "hidden": 32}


# --- configuration ---------------------------------------------------------------------------------------------
def test_config_runs_the_strategy_as_tuner_and_the_nas_trial(tmp_path: Path) -> None:
    ev = FunctionalEvaluator(n_params, scale={"_type": "choice", "_value": [1.0, 2.0]})
    exp = NasExperiment(
        DigitsSpace(), ev, GridSearch(seed=1), max_trial_number=5, experiment_working_directory=tmp_path
    )
    cfg = exp.config
    assert cfg.tuner.class_name == "nni_pl.nas.strategy.StrategyTuner"
    assert cfg.tuner.class_args["strategy"] == GridSearch(seed=1).to_config()
    assert set(cfg.search_space) == {"conv", "width", "act", "hidden", "scale"}
    assert cfg.trial_command.endswith(f"-m nni_pl.nas._trial {tmp_path / exp.id / SPEC_FILE}")
    assert cfg.lightning_cli is False
    assert exp.spec["model_space"] == {"import_path": "digits_space:DigitsSpace", "init_kwargs": {}}
    assert exp.spec["model_labels"] == ["conv", "width", "act", "hidden"]


def test_config_errors() -> None:
    ev = FunctionalEvaluator(n_params)
    with pytest.raises(ConfigError, match="model_space"):
        NasExperiment(nn.Linear(2, 2), ev, Random())
    with pytest.raises(ConfigError, match=r"'width'.*rename"):
        NasExperiment(
            DigitsSpace(), FunctionalEvaluator(n_params, width=ValueChoice([1, 2], label="width")), Random()
        )
    with pytest.raises(ConfigError, match="optimize_mode='minimize'"):
        NasExperiment(DigitsSpace(), Regression(train_dataloaders=TINY_DIGITS), Random())
    with pytest.raises(ConfigError, match="evaluator"):
        NasExperiment(DigitsSpace(), n_params, Random())
    with pytest.raises(ConfigError, match="strategy"):
        NasExperiment(DigitsSpace(), ev, "evolution")


def test_space_defined_in_main_is_refused() -> None:
    space = DigitsSpace()
    object.__setattr__(space, "import_path", "__main__:DigitsSpace")
    with pytest.raises(ConfigError, match="__main__"):
        NasExperiment(space, FunctionalEvaluator(n_params), Random())


class ConstrainedSpace(ModelSpace):
    """A NAS-Bench-101 cell with at most 2 edges: not every combination of its choices is an architecture."""

    def __init__(self, features: int = 4) -> None:
        super().__init__()
        self.cell = NasBench101Cell(
            {"id": lambda c: torch.nn.Identity(), "relu": lambda c: torch.nn.ReLU()},
            features,
            features,
            lambda i, o: torch.nn.Linear(i, o),
            max_num_nodes=4,
            max_num_edges=2,
            label="nb",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cell(x)


def test_constrained_space_proposals_are_filtered_in_the_manager(tmp_path: Path) -> None:
    space = ConstrainedSpace()
    exp = NasExperiment(
        space, FunctionalEvaluator(n_params), Random(seed=0), experiment_working_directory=tmp_path
    )
    args = exp.config.tuner.class_args
    assert args["model_space"] == {"import_path": f"{__name__}:ConstrainedSpace", "init_kwargs": {}}
    tuner = StrategyTuner(**args)  # what `nni-pl resume` builds from the stored config
    tuner.update_search_space(space.search_space())
    archs = [tuner.generate_parameters(i) for i in range(10)]
    for arch in archs:
        space.check_arch(arch)  # every proposal satisfies the edge limit
    assert any(r.trial_id is None for r in tuner.strategy.history)  # some were rejected on the way
    unconstrained = NasExperiment(DigitsSpace(), FunctionalEvaluator(n_params), Random())
    assert "model_space" not in unconstrained.config.tuner.class_args


# --- the trial entry point ----------------------------------------------------------------------------------------
def test_run_trial_rebuilds_space_and_evaluator_and_reports(trial_dir: Path) -> None:
    space = DigitsSpace()
    ev = FunctionalEvaluator(n_params, scale={"_type": "choice", "_value": [1.0, 2.0]})
    spec = {
        "model_space": {"import_path": space.import_path, "init_kwargs": space.init_kwargs},
        "evaluator": ev.to_config(),
        "seed": 0,
    }
    value = run_trial(spec, {**ARCH, "scale": 2.0})
    assert value == 2.0 * n_params(space.freeze(ARCH))
    final = [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in final] == ["FINAL"] and final[0]["value"] == value
    with pytest.raises(ArchitectureError, match="width"):
        run_trial(spec, {**ARCH, "width": 7, "scale": 1.0})


# --- end to end ------------------------------------------------------------------------------------------------------
def _cli(*args: str, workdir: Path) -> str:
    env = {**os.environ, "NNI_PL_HOME": str(workdir)}
    out = subprocess.run(
        [sys.executable, "-m", "nni_pl", *args, "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.slow
def test_nas_experiment_end_to_end_with_trial_processes_cli_and_resume(tmp_path: Path) -> None:
    evaluator = Classification(
        train_dataloaders=TINY_DIGITS, learning_rate=ValueChoice([0.05, 0.01], label="lr"), max_epochs=1
    )
    strategy = RegularizedEvolution(population_size=2, sample_size=2, mutation_prob=0.5, seed=0)
    exp = NasExperiment(
        DigitsSpace(),
        evaluator,
        strategy,
        seed=0,
        max_trial_number=3,
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
        trial_code_directory=EXAMPLE,
    )
    exp.run(display=False)
    trials = exp.trials()
    assert [t.status for t in trials] == [st.SUCCEEDED] * 3, [t.error for t in trials]
    for t in trials:
        assert set(t.parameters) == {"conv", "width", "act", "hidden", "lr"}
        assert 0.0 <= t.final_default <= 1.0
        assert t.intermediate_count == 1  # one validation epoch
    assert len({json.dumps(t.parameters, sort_keys=True) for t in trials}) == 3  # dedup
    top = exp.export_top_models(top_k=2)
    assert len(top) == 2 and set(top[0]) == {"conv", "width", "act", "hidden"}
    model = DigitsSpace().freeze(top[0])
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    assert exp.export_top_models(top_k=1, include_evaluator=True)[0]["lr"] in (0.05, 0.01)
    worst = min(trials, key=lambda t: t.final_default).parameters
    assert exp.export_top_models(optimize_mode="minimize") == [{k: v for k, v in worst.items() if k != "lr"}]
    with pytest.raises(ValueError, match="formatter"):
        exp.export_top_models(formatter="code")
    exp.close()

    # the CLI sees it as any experiment
    assert exp.id in _cli("list", workdir=tmp_path)
    shown = _cli("show", exp.id, workdir=tmp_path)
    assert '"conv"' in shown or "conv" in shown
    exported = json.loads(_cli("export", exp.id, "--format", "json", workdir=tmp_path))
    assert len(exported) == 3

    # resume through the CLI with a higher limit: the strategy relearns the 3 results and proposes a new arch
    _cli("update", exp.id, "--max-trials", "4", workdir=tmp_path)
    _cli("resume", exp.id, "--no-webui", "--no-display", workdir=tmp_path)
    again = NasExperiment.view(exp.id, working_directory=tmp_path)
    trials = again.trials()
    assert len(trials) == 4 and trials[-1].status == st.SUCCEEDED, [t.error for t in trials]
    assert len({json.dumps(t.parameters, sort_keys=True) for t in trials}) == 4
    best = max(trials, key=lambda t: t.final_default)
    top = again.export_top_models(top_k=4)
    assert len(top) == 4 and top[0] == {k: v for k, v in best.parameters.items() if k != "lr"}
    again.close()


@pytest.mark.slow
def test_function_execution_runs_trials_in_warm_workers_and_resumes(tmp_path: Path) -> None:
    evaluator = Classification(train_dataloaders=TINY_DIGITS, learning_rate=0.05, max_epochs=1)
    exp = NasExperiment(
        DigitsSpace(),
        evaluator,
        GridSearch(seed=0),
        execution="function",
        max_trial_number=2,
        experiment_working_directory=tmp_path,
        trial_code_directory=EXAMPLE,
    )
    assert exp.config.trial_command is None
    exp.run(display=False)
    trials = exp.trials()
    assert [t.status for t in trials] == [st.SUCCEEDED] * 2, [t.error for t in trials]
    assert all(t.intermediate_count == 1 and t.final_default is not None for t in trials)
    exp.close()

    # `nni-pl resume` knows NAS's trial function (no Python needed)
    _cli("update", exp.id, "--max-trials", "3", workdir=tmp_path)
    _cli("resume", exp.id, "--no-webui", "--no-display", workdir=tmp_path)
    again = NasExperiment.view(exp.id, working_directory=tmp_path)
    trials = again.trials()
    assert len(trials) == 3 and trials[-1].status == st.SUCCEEDED, [t.error for t in trials]
    assert len({json.dumps(t.parameters, sort_keys=True) for t in trials}) == 3  # the grid goes on, no repeat
    again.close()


def test_execution_must_be_process_or_function() -> None:
    with pytest.raises(ConfigError, match="execution"):
        NasExperiment(DigitsSpace(), FunctionalEvaluator(n_params), Random(), execution="thread")


@pytest.mark.slow
def test_stop_midway_then_resume_reruns_the_interrupted_architecture(tmp_path: Path) -> None:
    import threading
    import time

    data = {"factory": "nni_pl.nas.evaluator.data:digits_loaders", "kwargs": {"batch_size": 16}}
    evaluator = Classification(
        train_dataloaders=data, learning_rate=0.05, max_epochs=3
    )  # a few seconds a trial
    exp = NasExperiment(
        DigitsSpace(),
        evaluator,
        GridSearch(seed=3),
        execution="function",
        max_trial_number=3,
        experiment_working_directory=tmp_path,
        trial_code_directory=EXAMPLE,
    )

    def stop_after_first_result() -> None:  # what Ctrl-C does: the manager is asked to stop
        deadline = time.time() + 240
        while time.time() < deadline:
            if exp.experiment._store is not None and any(t.status == st.SUCCEEDED for t in exp.trials()):
                exp.stop()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=stop_after_first_result, daemon=True)
    watcher.start()
    exp.run(display=False)
    watcher.join()
    assert exp.experiment.get_status() == st.EXP_STOPPED
    exp.close()

    again = NasExperiment.resume(exp.id, working_directory=tmp_path)
    again.run(display=False)
    trials = again.trials()
    done = [t for t in trials if t.status == st.SUCCEEDED]
    assert len(done) == 3, [(t.status, t.error) for t in trials]
    assert len({json.dumps(t.parameters, sort_keys=True) for t in done}) == 3
    for t in trials:
        if t.status == st.USER_CANCELED:  # interrupted: its architecture ran again after resume
            assert t.parameters in [d.parameters for d in done]
    again.close()
