"""CGO: merged training loads each batch once, per-model metrics equal solo training, broken models retry alone."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nni_pl.errors import ConfigError
from nni_pl.nas import LayerChoice, ModelSpace, ValueChoice
from nni_pl.nas import nn as nas_nn
from nni_pl.nas.cgo import CgoBatcher, CgoError, run_merged_trials, train_merged
from nni_pl.nas.evaluator import Classification
from nni_pl.trial._context import TrialContext

N_TRAIN, N_VAL, BATCH, EPOCHS = 48, 24, 16, 2


class CountingDataset(Dataset):
    """Synthetic 2-class data that counts every sample it hands out."""

    def __init__(self, n: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, generator=gen)
        self.y = (self.x[:, 0] + self.x[:, 1] > 0).long()
        self.loads = 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.loads += 1
        return self.x[i], self.y[i]


class CountingCollate:
    def __init__(self) -> None:
        self.batches = 0

    def __call__(self, items: list) -> tuple[torch.Tensor, torch.Tensor]:
        self.batches += 1
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def _loaders() -> tuple[DataLoader, DataLoader, CountingDataset, CountingCollate]:
    train, val, collate = CountingDataset(N_TRAIN, 0), CountingDataset(N_VAL, 1), CountingCollate()
    train_loader = DataLoader(train, batch_size=BATCH, shuffle=True, collate_fn=collate)
    return train_loader, DataLoader(val, batch_size=BATCH, collate_fn=collate), train, collate


def _models() -> list[nn.Module]:
    torch.manual_seed(123)
    return [
        nn.Linear(6, 2),
        nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2)),
        nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2)),
    ]


class Broken(nn.Module):
    """A candidate with a shape error in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(7, 2)  # the data has 6 features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class FailsWhenMerged(nn.Module):
    """Works alone; raises on its 2nd step of the merged run (as a model broken by merging would)."""

    calls = 0

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        FailsWhenMerged.calls += 1
        if FailsWhenMerged.calls == 2:
            raise RuntimeError("merged-only failure")
        return self.fc(x)


def test_cgo_loads_each_batch_once_for_all_merged_models() -> None:
    train_loader, val_loader, train, collate = _loaders()
    results = train_merged(_models(), train_loader, val_loader, max_epochs=EPOCHS, max_models=4, seed=0)
    assert [r.status for r in results] == ["succeeded"] * 3
    train_batches = EPOCHS * -(-N_TRAIN // BATCH)
    val_batches = EPOCHS * -(-N_VAL // BATCH)
    assert train.loads == EPOCHS * N_TRAIN  # once per sample and epoch, not once per model
    assert collate.batches == train_batches + val_batches


def test_cgo_per_model_metrics_equal_training_each_model_alone() -> None:
    models = _models()
    solo_models = [copy.deepcopy(m) for m in models]
    reports: list[tuple[int, str, float]] = []
    train_loader, val_loader, _, _ = _loaders()
    merged = train_merged(
        models, train_loader, val_loader, max_epochs=EPOCHS, seed=7, report=lambda *a: reports.append(a)
    )
    for i, model in enumerate(solo_models):
        train_loader, val_loader, _, _ = _loaders()
        (alone,) = train_merged([model], train_loader, val_loader, max_epochs=EPOCHS, seed=7)
        assert alone.final == pytest.approx(merged[i].final, abs=1e-7)
        assert alone.intermediate == pytest.approx(merged[i].intermediate, abs=1e-7)
        for p, q in zip(model.parameters(), models[i].parameters()):
            torch.testing.assert_close(p, q)
    # each model reports as its own trial: EPOCHS intermediates then one final, with its own values
    for i, result in enumerate(merged):
        mine = [(kind, value) for j, kind, value in reports if j == i]
        assert mine == [("intermediate", v) for v in result.intermediate] + [("final", result.final)]
    assert len({r.final for r in merged}) > 1 or len({tuple(r.intermediate) for r in merged}) > 1


def test_cgo_broken_model_is_dropped_and_retried_alone_while_others_finish() -> None:
    train_loader, val_loader, train, _ = _loaders()
    torch.manual_seed(0)
    models = [nn.Linear(6, 2), Broken(), nn.Linear(6, 2)]
    reports: list[tuple[int, str, object]] = []
    results = train_merged(
        models, train_loader, val_loader, max_epochs=EPOCHS, seed=0, report=lambda *a: reports.append(a)
    )
    assert [r.status for r in results] == ["succeeded", "failed", "succeeded"]
    assert results[1].retried_alone and "mat1 and mat2" in results[1].error
    assert not results[0].retried_alone and len(results[0].intermediate) == EPOCHS
    assert (1, "failed", results[1].error) in reports
    assert train.loads == EPOCHS * N_TRAIN + BATCH  # the merged run, then the retry's first batch

    FailsWhenMerged.calls = 0
    torch.manual_seed(0)
    train_loader, val_loader, _, _ = _loaders()
    flaky, good = FailsWhenMerged(), nn.Linear(6, 2)
    start = copy.deepcopy(flaky.state_dict())
    results = train_merged([good, flaky], train_loader, val_loader, max_epochs=EPOCHS, seed=0)
    assert [r.status for r in results] == ["succeeded", "succeeded"]
    assert results[1].retried_alone and results[1].error == ""
    # the retry started from the initial weights: equal to a clean solo run
    clean = FailsWhenMerged()  # its call counter is past 2: it no longer raises
    clean.load_state_dict(start)
    train_loader, val_loader, _, _ = _loaders()
    (solo,) = train_merged([clean], train_loader, val_loader, max_epochs=EPOCHS, seed=0)
    assert solo.final == pytest.approx(results[1].final, abs=1e-7)


def test_cgo_max_models_splits_into_merged_runs() -> None:
    train_loader, val_loader, train, _ = _loaders()
    results = train_merged(_models(), train_loader, val_loader, max_epochs=1, max_models=2, seed=0)
    assert all(r.status == "succeeded" for r in results)
    assert train.loads == 2 * N_TRAIN  # two merged runs: [0, 1] and [2]
    with pytest.raises(CgoError, match="max_models must be a positive integer, got 0"):
        train_merged(_models(), train_loader, val_loader, max_models=0)
    with pytest.raises(CgoError, match="task must be one of"):
        train_merged(_models(), train_loader, val_loader, task="ranking")


def test_cgo_batcher_releases_full_or_waited_groups() -> None:
    clock = [0.0]
    batcher: CgoBatcher[str] = CgoBatcher(max_models=3, batch_wait_s=5.0, clock=lambda: clock[0])
    for name in "abcd":
        batcher.add(name)
    assert batcher.pop_ready() == ["a", "b", "c"]
    assert batcher.pop_ready() is None  # "d" waits for company
    clock[0] = 4.9
    assert batcher.pop_ready() is None
    clock[0] = 5.0
    assert batcher.pop_ready() == ["d"]
    assert batcher.pop_ready(flush=True) is None
    batcher.add("e")
    assert batcher.pop_ready(flush=True) == ["e"]
    with pytest.raises(ConfigError, match="batch_wait_s"):
        CgoBatcher(batch_wait_s=-1)


class CgoSpace(ModelSpace):
    """Digits (flattened) -> hidden (8/16) -> activation -> 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        hidden = ValueChoice([8, 16], label="hidden")
        self.fc1 = nas_nn.Linear(64, hidden)
        self.act = LayerChoice({"relu": nas_nn.ReLU(), "tanh": nas_nn.Tanh()}, label="act")
        self.fc2 = nas_nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def test_cgo_run_merged_trials_reports_each_model_to_its_own_trial(tmp_path: Path) -> None:
    space = CgoSpace()
    data = {"factory": "nni_pl.nas.evaluator.data:digits_loaders", "kwargs": {"flatten": True, "limit": 200}}
    lr = ValueChoice([1, 2], label="lr_x")
    evaluator = Classification(train_dataloaders=data, learning_rate=lr * 0.01, max_epochs=2)
    spec = {
        "model_space": {"import_path": space.import_path, "init_kwargs": space.init_kwargs},
        "evaluator": evaluator.to_config(),
        "seed": 3,
    }
    archs = [
        {"hidden": 8, "act": "relu", "lr_x": 1},
        {"hidden": 16, "act": "tanh", "lr_x": 1},
        {"hidden": 16, "act": "relu", "lr_x": 2},  # another learning rate: its own group
    ]
    contexts = []
    for i in range(len(archs)):
        (tmp_path / f"t{i}").mkdir()
        contexts.append(TrialContext(experiment_id="e", trial_id=f"t{i}", trial_dir=tmp_path / f"t{i}"))
    results = run_merged_trials(spec, list(zip(archs, contexts)), max_models=4)
    for ctx in contexts:
        ctx.close()
    assert [r.status for r in results] == ["succeeded"] * 3
    for i, result in enumerate(results):
        lines = [json.loads(x) for x in (tmp_path / f"t{i}" / "metrics.jsonl").read_text().splitlines()]
        assert [x["type"] for x in lines] == ["PERIODICAL", "PERIODICAL", "FINAL"]
        assert lines[-1]["value"] == pytest.approx(result.final) and 0.0 <= result.final <= 1.0
