"""The reserved parameter keys (TRIAL_BUDGET, PBT's checkpoint folders) are defined once, in the trial protocol."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nni_pl.trial import protocol

ROOT = Path(__file__).resolve().parents[2]
RESERVED = {protocol.TRIAL_BUDGET, protocol.LOAD_CHECKPOINT_DIR, protocol.SAVE_CHECKPOINT_DIR}
USERS = [
    "nni_pl.hpo.tuners.pbt",
    "nni_pl.hpo.tuners.bohb",
    "nni_pl.hpo.tuners._brackets",
    "nni_pl.callbacks.pbt",
    "nni_pl.callbacks.nni_callback",
    "nni_pl.trial",
    "nni_pl.training.lightning_cli",
]


def _source(module: str) -> Path:
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _code_literals(path: Path) -> list[tuple[int, str]]:
    """String constants of the module's code; docstrings (whose examples show users the keys) and ``__all__``
    (which names the re-exported constants) left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skipped.add(id(first.value))
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            skipped.update(id(n) for n in ast.walk(node.value))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):  # f-string pieces
            out += [(v.lineno, v.value) for v in node.values if isinstance(v, ast.Constant)]
    return out


@pytest.mark.parametrize("module", USERS)
def test_modules_use_the_protocol_keys_not_their_own_literals(module: str) -> None:
    found = [
        (line, text) for line, text in _code_literals(_source(module)) if any(k in text for k in RESERVED)
    ]
    assert not found, f"{module} spells reserved keys itself (use nni_pl.trial.protocol's constants): {found}"


def test_public_names_re_export_the_protocol_keys() -> None:
    from nni_pl.hpo.tuners import bohb, hyperband
    from nni_pl.hpo.tuners import pbt as pbt_tuner

    assert bohb.TRIAL_BUDGET == hyperband.TRIAL_BUDGET == protocol.TRIAL_BUDGET == "TRIAL_BUDGET"
    assert "TRIAL_BUDGET" in bohb.__all__ and "TRIAL_BUDGET" in hyperband.__all__
    assert (
        (pbt_tuner.LOAD_CHECKPOINT_DIR, pbt_tuner.SAVE_CHECKPOINT_DIR)
        == (
            protocol.LOAD_CHECKPOINT_DIR,
            protocol.SAVE_CHECKPOINT_DIR,
        )
        == ("load_checkpoint_dir", "save_checkpoint_dir")
    )  # NNI's names: NNI trial code reads them
    assert {"LOAD_CHECKPOINT_DIR", "SAVE_CHECKPOINT_DIR"} <= set(pbt_tuner.__all__)
