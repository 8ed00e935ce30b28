"""Shared helpers of the NAS tests: tiny spaces built the way users write them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from nni_pl.nas import InputChoice, LayerChoice, ModelSpace, ValueChoice, nn
from nni_pl.trial._context import TrialContext, activate


class TinySpace(ModelSpace):
    """A two-layer MLP space with every primitive of the contract (import path used by load_space tests)."""

    def __init__(self, in_features: int = 8, classes: int = 3) -> None:
        super().__init__()
        hidden = ValueChoice([4, 8, 16], label="hidden")
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "id": nn.Identity()}, label="act")
        self.skip = InputChoice(2, 1, reduction="sum", label="skip")
        self.dropout = ValueChoice([0.0, 0.5], label="dropout")
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = self.skip([h, self.act(h)])
        h = torch.nn.functional.dropout(h, self.dropout(), self.training)
        return self.fc2(h)


@pytest.fixture
def tiny_space() -> TinySpace:
    torch.manual_seed(0)
    return TinySpace()


@pytest.fixture
def trial_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("NNI_PL_PARAMETERS", raising=False)
    path = tmp_path / "trial"
    path.mkdir()
    (path / "parameter.json").write_text(json.dumps({"parameters": {}}), encoding="utf-8")
    activate(TrialContext(experiment_id="exp", trial_id="t1", trial_dir=path))
    yield path
    activate(None)
