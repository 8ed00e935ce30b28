"""One-shot NAS (DARTS, GumbelDARTS, ENAS, SPOS, Proxyless) on the tabular digits benchmark, side by side with
multi-trial search at equal cost.

The model space is the table's (``benchmarks/nas/build_table.py``: 144 MLPs on scikit-learn digits) written with
nni-pl's primitives, so every exported architecture is a key of ``benchmarks/data/nas_digits.json``:

* :class:`DigitsSpace` (every strategy): ``Repeat`` of hidden blocks (``depth`` 1-3), each an ``nn.Linear``
  whose width is a ``ValueChoice`` (one weight of the largest size, sliced), a ``norm`` ``LayerChoice`` (none /
  ``BatchNorm1d(width)``) and an ``activation`` ``LayerChoice``; a ``skip`` ``LayerChoice`` between no shortcut
  and a linear shortcut from the input added to the logits.
* :class:`DigitsGatedSpace`: the same architectures with ``width`` a ``LayerChoice`` over four whole networks
  (nested choices; only checked against the builder, kept as a second spelling of the space).

Both are checked against the table's builder: ``space.freeze(arch)`` has the same parameter count as
``build_model(arch)`` (an assertion at start-up).

Data: the table's 70/30 stratified split (random_state=0). The 30% stays the held-out set that defines the
table's accuracies; the one-shot searches never see it. The 70% training part is split again in stratified
halves: weights train on the first, the architecture (DARTS/GumbelDARTS/Proxyless architecture step, ENAS's
controller reward, SPOS's evolution) is chosen on the second.

Per strategy and seed (0..19): ``torch.manual_seed(seed)``, the strategy's ``seed=seed``, ``search(...)``; the
exported architecture's true (3-seed mean) accuracy from the table gives the **regret** (optimum - it, in
percentage points). **Cost** = the search's wall time / the mean wall time of training one architecture with
the table's recipe through the evaluator a multi-trial trial runs (``Classification``: Lightning, as the
searches), measured at the start of the same run on this machine; **cost (bare loop)** divides by a bare
PyTorch loop's training (``build_table.train_once``) instead. Multi-trial strategies (``benchmarks/nas/run.py``'s
``simulate`` runs) get ``round(cost)`` evaluations for the same seeds (and, in a second table, ``round(cost
(bare loop))``).

Also: Proxyless's latency (a table measured here with ``measure_latency_table``, the budget the median
predicted latency of the space; predicted and measured latency of every exported model), the predictor's error
on 10 frozen architectures, the bytes of tensors saved for backward in one step (Proxyless's architecture step,
DARTS's, a frozen sub-net's training step; and Proxyless's on the ProxylessNAS hub space), and NNI 3.0's one-shot strategies on an equivalent space (in
``benchmarks/.venv-nni``; its failure message when it cannot run).

Example:
    nice -n 10 .venv/bin/python benchmarks/nas_oneshot.py            # 20 seeds, results/nas_oneshot.md + .png
    .venv/bin/python benchmarks/nas_oneshot.py --quick --out /tmp/o.md --plot /tmp/o.png
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "nas"))
sys.path.insert(0, str(ROOT))

import build_table  # noqa: E402
import run as multi  # noqa: E402

logger = logging.getLogger("nas.oneshot")

RESULTS = ROOT / "benchmarks" / "results"
NNI_VENV = ROOT / "benchmarks" / ".venv-nni"
NNI3_WORKER = ROOT / "benchmarks" / "nas" / "nni3_oneshot_worker.py"
BATCH = (
    64  # one-shot batches (the table's recipe trains with 128 on twice the data: the same steps per epoch)
)
LR = build_table.RECIPE["lr"]
MULTI_TRIAL = ("Random", "GridSearch", "RegularizedEvolution", "TPE")
DIFFERENTIABLE = ("DARTS", "GumbelDARTS")

#: Per strategy: constructor settings and epochs, chosen on seeds 100-102 (not the reported 0-19) for a search
#: cost of roughly 20-30 bare-loop architecture trainings on this machine. NNI's defaults are for thousands of steps; here a
#: search has ~10 steps per epoch, so the architecture learning rates are 10x NNI's and ENAS updates its
#: controller every 2 steps instead of 20.
STRATEGIES: dict[str, dict[str, Any]] = {
    "DARTS": {"epochs": 8, "kwargs": {"arc_learning_rate": 3e-3}},
    "GumbelDARTS": {"epochs": 8, "kwargs": {"arc_learning_rate": 3e-3}},
    "ENAS": {"epochs": 8, "kwargs": {"ctrl_lr": 1e-2, "ctrl_steps_aggregate": 1}},
    "SPOS": {"epochs": 25, "kwargs": {"search": "evolution", "num_candidates": 40, "population_size": 10}},
    "Proxyless": {"epochs": 5, "kwargs": {"arc_learning_rate": 3e-3, "latency_weight": 1.0}},
}


# --------------------------------------------------------------------------------------------- the spaces


def _spaces() -> tuple[type, type]:
    """The two model-space classes (built lazily: nni_pl.nas imports torch)."""
    from nni_pl.nas import LayerChoice, ModelSpace, Repeat, ValueChoice, nn

    class NoShortcut(nn.Module):
        """The ``skip=False`` candidate: adds nothing to the logits (no parameters)."""

        def forward(self, x: Any) -> Any:
            return x.new_zeros(x.shape[0], 10)

    def activation() -> Any:
        return LayerChoice(
            {"relu": nn.ReLU(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid()}, label="activation"
        )

    def norm(width: Any) -> Any:
        return LayerChoice({"none": nn.Identity(), "batchnorm": nn.BatchNorm1d(width)}, label="norm")

    def skip() -> Any:
        return LayerChoice({"False": NoShortcut(), "True": nn.Linear(64, 10)}, label="skip")

    class DigitsSpace(ModelSpace):
        """The table's space with a shared, sliced ``ValueChoice`` width."""

        def __init__(self) -> None:
            super().__init__()
            width = ValueChoice([8, 16, 32, 64], label="width")
            self.body = Repeat(
                lambda i: nn.Sequential(nn.Linear(64 if i == 0 else width, width), norm(width), activation()),
                (1, 3),
                label="depth",
            )
            self.head = nn.Linear(width, 10)
            self.skip = skip()

        def forward(self, x: Any) -> Any:
            return self.head(self.body(x)) + self.skip(x)

    class DigitsGatedSpace(ModelSpace):
        """The table's space with ``width`` a LayerChoice over four networks (for Proxyless)."""

        def __init__(self) -> None:
            super().__init__()

            def network(w: int) -> Any:
                blocks = Repeat(
                    lambda i: nn.Sequential(nn.Linear(64 if i == 0 else w, w), norm(w), activation()),
                    (1, 3),
                    label="depth",
                )
                return nn.Sequential(blocks, nn.Linear(w, 10))

            self.body = LayerChoice({str(w): network(w) for w in (8, 16, 32, 64)}, label="width")
            self.skip = skip()

        def forward(self, x: Any) -> Any:
            return self.body(x) + self.skip(x)

    return DigitsSpace, DigitsGatedSpace


def space_arch(arch: Mapping[str, Any], gated: bool = False) -> dict[str, Any]:
    """A table architecture as the space's values (LayerChoice values are candidate names)."""
    out = dict(arch)
    out["skip"] = str(arch["skip"])
    if gated:
        out["width"] = str(arch["width"])
    return out


def table_arch(arch: Mapping[str, Any]) -> dict[str, Any]:
    """An exported architecture as the table's values (matched by ``str``, as ``arch_key`` does)."""
    out = {}
    for label, spec in build_table.SEARCH_SPACE.items():
        match = [v for v in spec["_value"] if str(v) == str(arch[label])]
        if not match:
            raise ValueError(f"exported {label}={arch[label]!r} is not a table value {spec['_value']}")
        out[label] = match[0]
    return out


def check_spaces(n: int = 12) -> None:
    """``space.freeze(arch)`` has ``build_model(arch)``'s parameter count, for ``n`` archs of each space."""
    space, gated = (cls() for cls in _spaces())
    archs = build_table.all_archs()
    for arch in [*archs[:: max(1, len(archs) // n)], archs[-1]]:
        want = sum(p.numel() for p in build_table.build_model(arch).parameters())
        for s, is_gated in ((space, False), (gated, True)):
            got = sum(p.numel() for p in s.freeze(space_arch(arch, is_gated)).parameters())
            assert got == want, f"{type(s).__name__} {arch}: {got} parameters, build_model has {want}"


# --------------------------------------------------------------------------------------------- data, unit


class Data:
    """The table's split, the training part halved (weights / architecture), and seeded loaders."""

    def __init__(self) -> None:
        import torch
        from sklearn.model_selection import train_test_split

        self.split = build_table.load_split()
        x_tr, y_tr, _, _ = self.split
        ia, ib = train_test_split(np.arange(len(y_tr)), test_size=0.5, stratify=y_tr.numpy(), random_state=0)
        self.weights = (x_tr[torch.from_numpy(ia)], y_tr[torch.from_numpy(ia)])
        self.arch = (x_tr[torch.from_numpy(ib)], y_tr[torch.from_numpy(ib)])

    def loaders(self, seed: int) -> tuple[Any, Any]:
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        def make(xy: tuple[Any, Any], offset: int) -> Any:
            gen = torch.Generator().manual_seed(seed * 2 + offset)
            return DataLoader(TensorDataset(*xy), batch_size=BATCH, shuffle=True, generator=gen)

        return make(self.weights, 0), make(self.arch, 1)


def measure_unit(data: Data, n: int = 5) -> list[float]:
    """Seconds to train ``n`` architectures (spread over the space) with the table's recipe, after a warm-up."""
    archs = build_table.all_archs()
    build_table.train_once(archs[0], 0, data.split)
    picks = archs[:: len(archs) // n][:n]
    return [build_table.train_once(a, 0, data.split)[2] for a in picks]


def measure_unit_lightning(data: Data, n: int = 3) -> list[float]:
    """Seconds to train ``n`` architectures with the table's recipe through the evaluator a multi-trial nni-pl
    trial runs (``Classification``: a Lightning ``Trainer``, validated once at the end as the searches are),
    in this process (no trial start-up counted), after a warm-up."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from nni_pl.nas.evaluator import Classification

    x_tr, y_tr, x_va, y_va = data.split
    epochs = build_table.RECIPE["epochs"]
    gen = torch.Generator().manual_seed(0)
    train = DataLoader(
        TensorDataset(x_tr, y_tr), batch_size=build_table.RECIPE["batch_size"], shuffle=True, generator=gen
    )
    val = DataLoader(TensorDataset(x_va, y_va), batch_size=256)
    evaluator = Classification(
        train_dataloaders=train,
        val_dataloaders=val,
        learning_rate=LR,
        max_epochs=epochs,
        check_val_every_n_epoch=epochs,
        num_sanity_val_steps=0,
    )
    archs = build_table.all_archs()
    picks = archs[:: len(archs) // n][:n]
    times = []
    for i, arch in enumerate([archs[0], *picks]):
        torch.manual_seed(0)
        model = build_table.build_model(arch)
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # the standalone result lines
            evaluator.evaluate(model)
        if i:  # the first is the warm-up
            times.append(time.perf_counter() - start)
    return times


# --------------------------------------------------------------------------------------------- searching


def make_strategy(
    name: str, seed: int, epochs_override: int | None, predictor_path: str | None, budget: float | None
) -> tuple[Any, int]:
    from nni_pl.nas import strategy as st

    spec = STRATEGIES[name]
    kwargs = dict(spec["kwargs"])
    if name == "Proxyless":
        kwargs.update(latency_predictor=predictor_path, latency_budget=budget)
    cls = {
        "DARTS": st.DARTS,
        "GumbelDARTS": st.GumbelDARTS,
        "ENAS": st.ENAS,
        "SPOS": st.SPOS,
        "Proxyless": st.Proxyless,
    }[name]
    return cls(seed=seed, **kwargs), epochs_override or spec["epochs"]


def trainer_kwargs(epochs: int, **more: Any) -> dict[str, Any]:
    # validation once, at the end (the per-epoch validation of the exported architecture is only reporting)
    return {
        "max_epochs": epochs,
        "check_val_every_n_epoch": epochs,
        "num_sanity_val_steps": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": False,
        **more,
    }


def run_search(
    name: str,
    seed: int,
    data: Data,
    epochs: int | None,
    predictor_path: str | None,
    budget: float | None,
    callbacks: Sequence[Any] = (),
    **more: Any,
) -> tuple[dict[str, Any], float, Any]:
    """One search; returns (exported architecture in table values, wall seconds, the result)."""
    import torch

    from nni_pl.nas.evaluator import Classification
    from nni_pl.nas.oneshot.runner import search

    space_cls, _ = _spaces()
    strategy, n_epochs = make_strategy(name, seed, epochs, predictor_path, budget)
    start = time.perf_counter()
    torch.manual_seed(seed)
    space = space_cls()
    train, val = data.loaders(seed)
    evaluator = Classification(train_dataloaders=train, val_dataloaders=val, learning_rate=LR)
    with contextlib.redirect_stderr(io.StringIO()):  # the standalone intermediate-result lines
        result = search(
            space,
            evaluator,
            strategy,
            trainer_kwargs=trainer_kwargs(n_epochs, **more),
            callbacks=list(callbacks),
        )
    seconds = time.perf_counter() - start
    return table_arch(result.arch), seconds, result


# --------------------------------------------------------------------------------------------- memory


def saved_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()`` and the bytes of the tensors autograd saved for backward while it ran."""
    import torch

    total = 0
    seen: set[int] = set()

    def pack(t: Any) -> Any:  # each storage once: a tensor saved by two ops (or a view of one) is memory once
        nonlocal total
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total


def _memory_probe() -> Any:
    import lightning.pytorch as pl

    from nni_pl.nas.oneshot.supernet import GATES

    class Probe(pl.Callback):
        """Wraps the one-shot module's ``loss``: bytes saved for backward per call, with the mode and gates."""

        def __init__(self) -> None:
            self.records: list[dict[str, Any]] = []

        def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
            original = pl_module.loss

            def loss(batch: Any, batch_idx: int = 0, *, quiet: bool = True) -> Any:
                out, nbytes = saved_bytes(lambda: original(batch, batch_idx, quiet=quiet))
                state = pl_module.state
                record = {"mode": state.mode, "bytes": nbytes, "batch": int(batch[0].shape[0])}
                if state.mode == GATES:
                    record["picked"] = {
                        la: state.decisions[la][next(i for i, g in pairs if float(g) == 1.0)]
                        for la, pairs in state.gates.items()
                    }
                    # labels without gates (width: mixed at the largest size) at their most probable value
                    for la, probs in state.probs.items():
                        record["picked"].setdefault(la, state.decisions[la][int(probs.argmax())])
                self.records.append(record)
                return out

            pl_module.loss = loss

    return Probe()


def subnet_bytes(arch: Mapping[str, Any], batch: int) -> int:
    """Bytes saved for backward by one training step's forward of the frozen sub-net ``arch`` (table values)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = build_table.build_model(arch).train()
    x, y = torch.rand(batch, 64), torch.randint(0, 10, (batch,))
    _, nbytes = saved_bytes(lambda: F.cross_entropy(model(x), y))
    return nbytes


def memory_section(data: Data, predictor_path: str, budget: float, steps: int) -> dict[str, Any]:
    """Saved-for-backward bytes: Proxyless's architecture steps and DARTS's vs frozen sub-nets'."""
    largest = {"depth": 3, "width": 64, "activation": "relu", "norm": "batchnorm", "skip": True}
    out: dict[str, Any] = {"largest_arch": largest, "largest_subnet": subnet_bytes(largest, BATCH)}
    for name in ("Proxyless", "DARTS"):
        probe = _memory_probe()
        run_search(name, 0, data, 1, predictor_path, budget, callbacks=[probe], limit_train_batches=steps)
        arch_steps = [r for r in probe.records if r["mode"] in ("gates", "mix") and r["batch"] == BATCH]
        weight_steps = [r for r in probe.records if r["mode"] == "sample" and r["batch"] == BATCH]
        row: dict[str, Any] = {
            "arch_step_max": max(r["bytes"] for r in arch_steps),
            "arch_step_mean": statistics.mean(r["bytes"] for r in arch_steps),
            "weight_step_max": max((r["bytes"] for r in weight_steps), default=None),
            "steps": len(arch_steps),
        }
        if name == "Proxyless":
            ratios = [r["bytes"] / subnet_bytes(table_arch(r["picked"]), BATCH) for r in arch_steps]
            row["ratio_to_picked_mean"] = statistics.mean(ratios)
            row["ratio_to_picked_max"] = max(ratios)
        out[name] = row
    return out


def hub_memory(batch: int = 32, size: int = 32, draws: int = 6, seed: int = 0) -> dict[str, Any]:
    """Proxyless's architecture step on the ProxylessNAS hub space (MobileNetV2 blocks: the space the strategy is
    made for) against the frozen sub-net it trains: bytes saved for backward, for ``draws`` random gate draws.

    The step is what :class:`ProxylessModule` runs: two paths per LayerChoice/Repeat (the picked one with
    autograd, the other only in backward), ValueChoice layer arguments mixed at their largest size. The
    sub-net compared is the picked paths with every ValueChoice at its largest value (what the mixed layers
    compute)."""
    import torch
    import torch.nn.functional as F

    from nni_pl.nas.hub import ProxylessNAS
    from nni_pl.nas.oneshot.supernet import (
        GATES,
        build_supernet,
        freeze_supernet,
    )

    torch.manual_seed(seed)
    space = ProxylessNAS(num_labels=10, in_channels=3)
    net = build_supernet(space, "Proxyless").train()
    state = net.state
    paths = net.path_labels()
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(draws):
        gates, arch = {}, {}
        for label, values in state.decisions.items():
            if label in paths and len(values) > 1:
                i, j = torch.randperm(len(values), generator=gen)[:2].tolist()
                logits = torch.zeros(2, requires_grad=True)
                soft = logits.softmax(0)
                g = torch.tensor([1.0, 0.0]) - soft.detach() + soft
                gates[label] = [(i, g[0]), (j, g[1])]
                arch[label] = values[i]
            elif label in paths:
                arch[label] = values[0]
            else:
                arch[label] = max(values)
        state.mode = GATES
        state.gates = gates
        state.probs = {
            la: torch.full((len(v),), 1.0 / len(v)) for la, v in state.decisions.items() if la not in paths
        }
        _, step = saved_bytes(lambda: F.cross_entropy(net(x), y))
        frozen = freeze_supernet(net, space, arch).train()
        _, sub = saved_bytes(lambda frozen=frozen: F.cross_entropy(frozen(x), y))
        rows.append(step / sub)
    return {
        "ratios": rows,
        "mean": float(np.mean(rows)),
        "max": float(max(rows)),
        "batch": batch,
        "size": size,
    }


# --------------------------------------------------------------------------------------------- latency


def latency_section(repeats: int, n_check: int, seed: int = 0) -> dict[str, Any]:
    """The latency table of the space on this CPU (batch 1), its budget and its error on frozen archs."""
    import torch

    from nni_pl.nas.hardware import measure_latency_table, predictor_error

    space_cls, _ = _spaces()
    space, x = space_cls(), torch.zeros(1, 64)
    t0 = time.perf_counter()
    predictor = measure_latency_table(space, x, repeats=repeats, warmup=5)
    preds = [predictor.predict(space_arch(a)) for a in build_table.all_archs()]
    budget = float(np.median(preds))
    rng = np.random.default_rng(seed)
    archs = [build_table.all_archs()[i] for i in rng.choice(len(preds), n_check, replace=False)]
    rows = predictor_error(predictor, space, x, [space_arch(a) for a in archs], repeats=repeats)
    ape = [abs(p - m) / m for _, p, m in rows]
    return {
        "predictor": predictor,
        "budget": budget,
        "min": float(min(preds)),
        "max": float(max(preds)),
        "mape": float(np.mean(ape)),
        "check": [(table_arch(a), p, m) for a, p, m in rows],
        "seconds": time.perf_counter() - t0,
        "space": space,
        "x": x,
    }


def measured_latency(
    lat: dict[str, Any], archs: Sequence[Mapping[str, Any]], repeats: int
) -> dict[str, float]:
    """Measured ms (end to end, frozen) per distinct architecture, keyed by ``arch_key``."""
    from nni_pl.nas.hardware import predictor_error

    unique = {build_table.arch_key(a): a for a in archs}
    rows = predictor_error(
        lat["predictor"],
        lat["space"],
        lat["x"],
        [space_arch(a) for a in unique.values()],
        repeats=repeats,
    )
    return {build_table.arch_key(table_arch(a)): m for a, _, m in rows}


# --------------------------------------------------------------------------------------------- NNI 3.0


def run_nni3(names: Sequence[str], epochs: int, timeout: int) -> dict[str, dict[str, Any]]:
    """NNI 3.0's one-shot strategies on the same space, in its own venv; per strategy the exported arch or the error."""
    python = NNI_VENV / "bin" / "python"
    if not python.exists():
        return {
            n: {"error": f"{python.relative_to(ROOT)} missing (created by benchmarks/trial_overhead.py)"}
            for n in names
        }
    site = next(p for p in sys.path if p.endswith("site-packages"))
    # NNI's own site-packages first (its pinned filelock: ours deadlocks in nnictl's config lock), then ours (torch)
    nni_site = next((NNI_VENV / "lib").glob("python*/site-packages"))
    env = dict(os.environ, PYTHONPATH=f"{nni_site}{os.pathsep}{site}", PYTHONWARNINGS="ignore")
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        job = json.dumps({"strategy": name, "epochs": epochs, "seed": 0, "batch": BATCH, "lr": LR})
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [str(python), str(NNI3_WORKER), job],
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            out[name] = {"error": f"timed out after {timeout} s"}
            continue
        lines = proc.stdout.strip().splitlines()
        try:
            res = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            res = {}
        if proc.returncode != 0 or not res:
            tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            err = next(
                (ln for ln in reversed(tail) if "Error" in ln or "Exception" in ln),
                tail[-1] if tail else "no output",
            )
            frames = [
                ln.strip().split('"')[1].split("site-packages/")[-1]
                + ":"
                + ln.split("line ")[1].split(",")[0]
                for ln in tail
                if ln.strip().startswith('File "') and "line " in ln
            ]
            where = f" (at {frames[-1]})" if frames else ""
            res = {"error": f"{err.strip()[:300]}{where}"}
        res["seconds"] = time.perf_counter() - t0
        out[name] = res
        logger.info("NNI 3.0 %s: %s", name, res.get("error") or res.get("arch"))
    return out


# --------------------------------------------------------------------------------------------- stats, report


def _stats(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {
        "mean": float(arr.mean()),
        "sem": float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else 0.0,
        "median": float(np.median(arr)),
        "optimum": float(np.mean(arr <= 1e-12)),
    }


def _pp(x: float) -> str:
    return f"{100 * x:.2f}"


def write_report(path: Path, res: dict[str, Any]) -> None:
    opt = res["optimum"]
    choices = ", ".join(f"{k}: {v['_value']}" for k, v in build_table.SEARCH_SPACE.items())
    lines = [
        "# One-shot NAS on the tabular digits benchmark",
        "",
        f"Space: the 144 MLP architectures of `benchmarks/data/nas_digits.json` (digits; {choices}), "
        f"written as an nni-pl `ModelSpace` (`benchmarks/nas_oneshot.py`: `Repeat` depth, `ValueChoice` width on a shared sliced "
        "`nn.Linear`, `LayerChoice` norm/activation/skip; every strategy searches this one space); "
        "`space.freeze(arch)` has the table builder's parameter count for every architecture checked. "
        f"Optimum: {opt['val_acc_mean']:.4f} mean val accuracy ({json.dumps(opt['arch'])}).",
        "",
        "Data: the table's 70/30 split; the 30% held-out set (which defines the table's accuracies) is never seen by "
        "a search. The 70% is halved (stratified): the weights train on one half, the architecture (DARTS/GumbelDARTS/"
        f"Proxyless architecture steps, ENAS's controller reward, SPOS's evolution) is chosen on the other. Batch {BATCH}, "
        f"Adam lr {LR} for the weights.",
        "",
        f"{res['n_seeds']} seeds (0..{res['n_seeds'] - 1}) per strategy; `torch.manual_seed(seed)` and the strategy's "
        "`seed`. **regret** = optimum - true (3-seed mean) table accuracy of the exported architecture, in percentage "
        f"points. **cost** = search wall time / the mean time to train one architecture with the table's recipe "
        f"(8 epochs, batch 128) through the evaluator a multi-trial nni-pl trial runs (`Classification`, a Lightning "
        f"`Trainer`, validated once at the end as the searches are; in this process, so no trial start-up is "
        f"counted), measured at the start of this run: **{res['unit'] * 1000:.1f} ms** "
        f"({len(res['unit_samples'])} architectures: {', '.join(f'{1000 * t:.0f}' for t in res['unit_samples'])} ms; "
        f"{res['unit_end'] * 1000:.1f} ms when re-measured at the end). Both sides pay Lightning's per-fit and per-step "
        f"costs this way. In a bare PyTorch loop one architecture trains in {res['loop_unit'] * 1000:.1f} ms "
        f"({res['loop_end'] * 1000:.1f} ms at the end): **cost (bare loop)** below divides by that instead, and a "
        "second table compares multi-trial search at that, much larger, budget. "
        "Multi-trial strategies (`benchmarks/nas/run.py`'s `simulate`, noisy single-seed evaluations) get "
        "round(cost) evaluations for the same seed. "
        f"Produced in {res['seconds']:.0f} s on {platform.machine()}, {os.cpu_count()} CPUs, torch 1 thread, "
        f"Python {platform.python_version()}, torch {res['torch']}.",
        "",
        "Settings: "
        + "; ".join(
            f"{n} {STRATEGIES[n]['epochs'] if not res['quick'] else 1} epochs `{json.dumps(STRATEGIES[n]['kwargs'])}`"
            for n in res["strategies"]
        )
        + ".",
        "",
        "## One-shot strategies",
        "",
        "| strategy | regret mean ± s.e.m. | median | found the optimum | cost (architecture trainings) mean ± s.d. | cost (bare loop) | search wall time (s) | cost / full sweep (144) | distinct exports |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in res["oneshot"].items():
        s = _stats(r["regret"])
        cost = np.asarray(r["cost"])
        lines.append(
            f"| {name} | {_pp(s['mean'])} ± {_pp(s['sem'])} | {_pp(s['median'])} | {s['optimum']:.0%} | "
            f"{cost.mean():.1f} ± {cost.std(ddof=1) if len(cost) > 1 else 0:.1f} | {np.mean(r['cost_loop']):.1f} | "
            f"{np.mean(r['seconds']):.2f} | "
            f"{cost.mean() / 144:.1%} | {len({build_table.arch_key(a) for a in r['arch']})} |"
        )
    lines += [
        "",
        "Most frequent exported architecture per strategy: "
        + "; ".join(f"{n} `{_mode_arch(r['arch'])}" for n, r in res["oneshot"].items())
        + ".",
        "",
        "## Multi-trial search at equal cost (same seeds, round(cost) evaluations each)",
        "",
        "| one-shot strategy (mean regret) | " + " | ".join(MULTI_TRIAL) + " |",
        "|---|" + "---:|" * len(MULTI_TRIAL),
    ]
    for name, r in res["oneshot"].items():
        s = _stats(r["regret"])
        cells = []
        for m in MULTI_TRIAL:
            ms = _stats(res["equal_cost"][name][m]) if m in res["equal_cost"][name] else None
            cells.append(f"{_pp(ms['mean'])} ± {_pp(ms['sem'])}" if ms else "n/a")
        lines.append(
            f"| {name} ({_pp(s['mean'])} ± {_pp(s['sem'])}, cost {np.mean(r['cost']):.1f}) | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "## Multi-trial search at the bare-loop cost (round(cost (bare loop)) evaluations each)",
        "",
        "If a multi-trial evaluation cost only a bare PyTorch loop's training (no Lightning, no trial), it would get "
        "this many more evaluations:",
        "",
        "| one-shot strategy (mean regret) | " + " | ".join(MULTI_TRIAL) + " |",
        "|---|" + "---:|" * len(MULTI_TRIAL),
    ]
    for name, r in res["oneshot"].items():
        s = _stats(r["regret"])
        cells = [
            f"{_pp(_stats(res['equal_loop'][name][m])['mean'])} ± {_pp(_stats(res['equal_loop'][name][m])['sem'])}"
            for m in MULTI_TRIAL
        ]
        lines.append(
            f"| {name} ({_pp(s['mean'])} ± {_pp(s['sem'])}, cost {np.mean(r['cost_loop']):.1f}) | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "## Targets", ""]
    lines += [f"- **{'PASS' if ok else 'FAIL'}**: {text}" for ok, text in res["targets"]]
    mem = res.get("memory")
    hub = res.get("hub_memory")
    if mem:
        px, dx = mem["Proxyless"], mem["DARTS"]
        sub = mem["largest_subnet"]
        lines += [
            "",
            "## Memory: bytes of tensors saved for backward in one step (batch "
            f"{BATCH}, `torch.autograd.graph.saved_tensors_hooks`, deterministic)",
            "",
            "| step | max KiB | mean KiB | ratio to the largest sub-net | ratio to the sub-net picked by the gates (mean / max) |",
            "|---|---:|---:|---:|---:|",
            f"| frozen sub-net, largest ({json.dumps(mem['largest_arch'])}) | {sub / 1024:.1f} | | 1.00 | |",
            f"| Proxyless weight step (one sampled path) | {px['weight_step_max'] / 1024:.1f} | | {px['weight_step_max'] / sub:.2f} | |",
            f"| Proxyless architecture step ({px['steps']} steps; per choice the picked path, the other run only in backward) | {px['arch_step_max'] / 1024:.1f} | {px['arch_step_mean'] / 1024:.1f} | "
            f"{px['arch_step_max'] / sub:.2f} | {px['ratio_to_picked_mean']:.2f} / {px['ratio_to_picked_max']:.2f} |",
            f"| DARTS step (every candidate mixed; {dx['steps']} steps) | {dx['arch_step_max'] / 1024:.1f} | {dx['arch_step_mean'] / 1024:.1f} | {dx['arch_step_max'] / sub:.2f} | |",
            "",
            "Counting each storage once (a tensor saved by two operations is in memory once); weights count too. "
            "Proxyless mixes the width (a ValueChoice: one weight) at its largest size, so the largest sub-net is the "
            'fair comparison; the "picked" column compares with the most probable width instead. In this MLP each '
            "block is one small linear layer, so the tensors a gate or a mask needs (the other path's output for the "
            "gate's gradient, the masked input) weigh as much as the block itself; in MobileNetV2 blocks they do not:",
            "",
            f"| ProxylessNAS hub space, batch {hub['batch']}, {hub['size']}x{hub['size']} | ratio of an architecture step to "
            f"its sub-net | mean {hub['mean']:.2f} | max {hub['max']:.2f} | ({len(hub['ratios'])} gate draws) |"
            if hub
            else "",
        ]
    lat = res.get("latency")
    if lat:
        lines += [
            "",
            "## Latency (Proxyless with the latency loss)",
            "",
            f"Table measured on this CPU with `measure_latency_table` (batch 1, 1 thread) in {lat['seconds']:.1f} s; "
            f"predicted latency over the 144 architectures {lat['min']:.3f}-{lat['max']:.3f} ms; **budget = the median, "
            f"{lat['budget']:.3f} ms**. Predictor error on {len(lat['check'])} random frozen architectures "
            f"(`predictor_error`, end to end): **MAPE {lat['mape']:.1%}**.",
            "",
            "| | value |",
            "|---|---:|",
            f"| seeds whose export is within the budget, predicted | {lat['within_pred']}/{res['n_seeds']} |",
            f"| seeds whose export is within the budget, measured | {lat['within_meas']}/{res['n_seeds']} |",
            f"| seeds whose export is within budget + 10%, measured | {lat['within_meas10']}/{res['n_seeds']} |",
            f"| exported predicted ms, mean (max) | {lat['pred_mean']:.3f} ({lat['pred_max']:.3f}) |",
            f"| exported measured ms, mean (max) | {lat['meas_mean']:.3f} ({lat['meas_max']:.3f}) |",
            f"| Proxyless regret vs the best architecture within the budget (predicted), mean ± s.e.m. | "
            f"{_pp(lat['regret_in_budget']['mean'])} ± {_pp(lat['regret_in_budget']['sem'])} (that optimum: {lat['budget_optimum']:.4f}) |",
            "",
            "| architecture | predicted ms | measured ms |",
            "|---|---:|---:|",
        ]
        lines += [f"| `{build_table.arch_key(a)}` | {p:.3f} | {m:.3f} |" for a, p, m in lat["check"]]
    nni3 = res.get("nni3")
    lines += ["", "## NNI 3.0 one-shot strategies on an equivalent space", ""]
    if not nni3:
        lines.append("Not run (`--skip-nni3`).")
    else:
        lines += [
            "NNI 3.0 (`benchmarks/.venv-nni`, nni 3.0 with this project's torch and lightning) runs "
            "`nni.nas.experiment.NasExperiment` with its one-shot strategy on the same space written with "
            "`nni.nas.nn.pytorch` (`MutableLinear`/`MutableBatchNorm1d` widths, `LayerChoice`, `Repeat`), seed 0, "
            "the same data halves.",
            "",
            "| strategy | result |",
            "|---|---|",
        ]
        for n, r in nni3.items():
            if "error" in r:
                lines.append(f"| {n} | failed: `{r['error']}` |")
            else:
                a = r["arch"]
                lines.append(
                    f"| {n} | exported `{a}`, regret {r.get('regret', float('nan')) * 100:.2f} in {r['seconds']:.0f} s |"
                )
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def _mode_arch(archs: Sequence[Mapping[str, Any]]) -> str:
    keys = [build_table.arch_key(a) for a in archs]
    best = max(set(keys), key=keys.count)
    return f"{best}` ({keys.count(best)}/{len(keys)})"


def plot(path: Path, res: dict[str, Any], curves: dict[str, list[list[float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    top = max(max(r["cost"]) for r in res["oneshot"].values())
    xs = np.arange(1, math.ceil(top) + 3)
    for name, runs in curves.items():
        arr = 100 * np.array([[multi.at_budget(c, n) for n in xs] for c in runs])
        mean = arr.mean(0)
        sem = arr.std(0, ddof=1) / math.sqrt(len(arr)) if len(arr) > 1 else 0 * mean
        ax.plot(
            xs,
            mean,
            label=f"{name} (multi-trial)",
            lw=1.5,
            ls="--" if name != "Random" else "-",
            color="grey" if name == "Random" else None,
        )
        ax.fill_between(xs, mean - sem, mean + sem, alpha=0.12)
    for name, r in res["oneshot"].items():
        reg, cost = 100 * np.asarray(r["regret"]), np.asarray(r["cost"])
        yerr = reg.std(ddof=1) / math.sqrt(len(reg)) if len(reg) > 1 else 0
        xerr = cost.std(ddof=1) if len(cost) > 1 else 0
        ax.errorbar(
            cost.mean(),
            reg.mean(),
            yerr=yerr,
            xerr=xerr,
            fmt="o",
            ms=7,
            capsize=3,
            label=f"{name} (one-shot)",
        )
    ax.set_xlabel("cost (architecture trainings through the evaluator, table's recipe, this machine)")
    ax.set_ylabel("regret (percentage points, mean ± s.e.m.)")
    ax.set_title(f"One-shot vs multi-trial NAS on the digits table ({res['n_seeds']} seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seeds", type=int, default=20, help="search seeds 0..N-1 per strategy (default: %(default)s)"
    )
    parser.add_argument(
        "--first-seed", type=int, default=0, help="first seed (settings were picked on 100-102)"
    )
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument(
        "--quick", action="store_true", help="2 seeds, 1 epoch, short timings, no NNI 3.0 (a smoke test)"
    )
    parser.add_argument("--skip-nni3", action="store_true", help="do not run NNI 3.0")
    parser.add_argument("--nni3-timeout", type=int, default=240, help="seconds per NNI 3.0 strategy")
    parser.add_argument("--out", type=Path, default=RESULTS / "nas_oneshot.md")
    parser.add_argument("--plot", type=Path, default=RESULTS / "nas_oneshot.png")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for name in (
        "nni_pl",
        "lightning",
        "lightning.pytorch",
        "lightning.fabric",
        "lightning.pytorch.utilities.rank_zero",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    epochs = 1 if args.quick else None
    if args.quick:
        args.seeds, args.skip_nni3 = 2, True
    repeats = 5 if args.quick else 30

    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    check_spaces()
    logger.info("spaces: parameter counts match build_table.build_model")
    table = multi.load_table()
    opt = table["optimum"]
    data = Data()
    loop_samples = measure_unit(data)
    loop_unit = float(np.mean(loop_samples))
    unit_samples = measure_unit_lightning(data)
    unit = float(np.mean(unit_samples))
    logger.info(
        "unit: %.1f ms per architecture training through the evaluator (%s); %.1f ms in a bare loop (%s)",
        1000 * unit,
        [round(1000 * t) for t in unit_samples],
        1000 * loop_unit,
        [round(1000 * t) for t in loop_samples],
    )

    lat = latency_section(repeats, 4 if args.quick else 10)
    tmpdir = tempfile.mkdtemp(prefix="nas_oneshot_")
    predictor_path = str(Path(tmpdir) / "latency.json")
    lat["predictor"].save(predictor_path)
    logger.info(
        "latency: budget %.3f ms, MAPE %.1f%% (%.1f s)", lat["budget"], 100 * lat["mape"], lat["seconds"]
    )

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    oneshot: dict[str, dict[str, list[Any]]] = {}
    for name in args.strategies:
        rec: dict[str, list[Any]] = {"arch": [], "regret": [], "cost": [], "cost_loop": [], "seconds": []}
        for seed in seeds:
            arch, seconds, _ = run_search(name, seed, data, epochs, predictor_path, lat["budget"])
            acc = table["archs"][build_table.arch_key(arch)]["val_acc_mean"]
            rec["arch"].append(arch)
            rec["regret"].append(opt["val_acc_mean"] - acc)
            rec["cost"].append(seconds / unit)
            rec["cost_loop"].append(seconds / loop_unit)
            rec["seconds"].append(seconds)
        oneshot[name] = rec
        s = _stats(rec["regret"])
        logger.info(
            "%s: regret %.2f ± %.2f pp, cost %.1f (%s`)",
            name,
            100 * s["mean"],
            100 * s["sem"],
            np.mean(rec["cost"]),
            _mode_arch(rec["arch"]),
        )

    # multi-trial at equal cost: one run per (strategy, seed) up to the largest budget; budgets are prefixes
    factories, simulate = multi.load_strategies(list(MULTI_TRIAL))
    top = max(round(c) for r in oneshot.values() for c in r["cost"] + r["cost_loop"]) + 2
    curves = {
        m: [multi.run_one(table, f, simulate, max(top, 2), seed) for seed in seeds]
        for m, f in factories.items()
    }
    equal_cost = {
        name: {
            m: [multi.at_budget(curves[m][i], max(1, round(c))) for i, c in enumerate(r["cost"])]
            for m in curves
        }
        for name, r in oneshot.items()
    }

    equal_loop = {
        name: {
            m: [multi.at_budget(curves[m][i], max(1, round(c))) for i, c in enumerate(r["cost_loop"])]
            for m in curves
        }
        for name, r in oneshot.items()
    }
    unit_end = float(np.mean(measure_unit_lightning(data)))
    loop_end = float(np.mean(measure_unit(data)))
    res: dict[str, Any] = {
        "table": table,
        "optimum": opt,
        "n_seeds": len(seeds),
        "unit": unit,
        "unit_samples": unit_samples,
        "unit_end": unit_end,
        "loop_unit": loop_unit,
        "loop_samples": loop_samples,
        "loop_end": loop_end,
        "oneshot": oneshot,
        "equal_cost": equal_cost,
        "equal_loop": equal_loop,
        "strategies": args.strategies,
        "quick": args.quick,
        "torch": torch.__version__,
    }

    # latency of Proxyless's exports
    targets: list[tuple[bool, str]] = []
    if "Proxyless" in oneshot:
        archs = oneshot["Proxyless"]["arch"]
        measured = measured_latency(lat, archs, repeats)
        pred = [lat["predictor"].predict(space_arch(a)) for a in archs]
        meas = [measured[build_table.arch_key(a)] for a in archs]
        budget = lat["budget"]
        in_budget = [a for a in build_table.all_archs() if lat["predictor"].predict(space_arch(a)) <= budget]
        best_in = max(table["archs"][build_table.arch_key(a)]["val_acc_mean"] for a in in_budget)
        lat.update(
            within_pred=sum(p <= budget for p in pred),
            within_meas=sum(m <= budget for m in meas),
            within_meas10=sum(m <= 1.1 * budget for m in meas),
            pred_mean=float(np.mean(pred)),
            pred_max=max(pred),
            meas_mean=float(np.mean(meas)),
            meas_max=max(meas),
            budget_optimum=best_in,
            regret_in_budget=_stats(
                [best_in - table["archs"][build_table.arch_key(a)]["val_acc_mean"] for a in archs]
            ),
        )
        targets.append(
            (
                lat["within_pred"] == len(seeds),
                f"Proxyless with the latency loss exports an architecture within the latency budget ({budget:.3f} ms, predicted) on every seed: {lat['within_pred']}/{len(seeds)}",
            )
        )
        targets.append(
            (
                lat["within_meas"] == len(seeds),
                f"... and measured end to end on this CPU: {lat['within_meas']}/{len(seeds)} within the budget ({lat['within_meas10']}/{len(seeds)} within +10%; measured max {lat['meas_max']:.3f} ms)",
            )
        )
    res["latency"] = lat

    if "Proxyless" in oneshot and "DARTS" in oneshot:
        mem = memory_section(data, predictor_path, lat["budget"], 4 if args.quick else 10)
        res["memory"] = mem
        ratio = mem["Proxyless"]["arch_step_max"] / mem["largest_subnet"]
        hub = hub_memory(draws=3 if args.quick else 8)
        res["hub_memory"] = hub
        targets.append(
            (
                hub["max"] <= 1.5,
                f"peak memory (bytes saved for backward) of a Proxyless architecture step <= 1.5x one sub-net's training step, on the ProxylessNAS hub space (MobileNetV2 blocks, batch {hub['batch']}, {hub['size']}x{hub['size']}): mean {hub['mean']:.2f}x, max {hub['max']:.2f}x over {len(hub['ratios'])} gate draws. On this tabular MLP space (one linear layer per block, so a gate's own tensors weigh as much as the block): {ratio:.2f}x the largest frozen sub-net (DARTS: {mem['DARTS']['arch_step_max'] / mem['largest_subnet']:.2f}x; vs the sub-net the gates picked: mean {mem['Proxyless']['ratio_to_picked_mean']:.2f}x, max {mem['Proxyless']['ratio_to_picked_max']:.2f}x)",
            )
        )

    def beats_random(name: str) -> tuple[bool, str]:
        own, rnd = np.asarray(oneshot[name]["regret"]), np.asarray(equal_cost[name]["Random"])
        d = own - rnd
        sem = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else 0.0
        return (
            bool(own.mean() < rnd.mean()),
            f"{name} {_pp(own.mean())} vs Random {_pp(rnd.mean())} at cost {np.mean(oneshot[name]['cost']):.1f} (paired difference {100 * d.mean():+.2f} ± {100 * sem:.2f})",
        )

    if "SPOS" in oneshot:
        ok, text = beats_random("SPOS")
        targets.insert(
            0, (ok, "SPOS reaches a lower mean regret than random multi-trial search at equal cost: " + text)
        )
    diffs = [beats_random(n) for n in DIFFERENTIABLE if n in oneshot]
    if diffs:
        targets.insert(
            1 if "SPOS" in oneshot else 0,
            (
                any(ok for ok, _ in diffs),
                "a differentiable strategy (DARTS or GumbelDARTS) reaches a lower mean regret than random multi-trial search at equal cost: "
                + "; ".join(t for _, t in diffs),
            ),
        )
    res["targets"] = targets

    if not args.skip_nni3:
        res["nni3"] = run_nni3(["DARTS", "ENAS", "RandomOneShot", "Proxyless"], 8, args.nni3_timeout)
        for r in res["nni3"].values():
            if "arch" in r:
                try:
                    r["regret"] = (
                        opt["val_acc_mean"]
                        - table["archs"][build_table.arch_key(table_arch(r["arch"]))]["val_acc_mean"]
                    )
                except (KeyError, ValueError) as err:
                    r["regret"] = float("nan")
                    r["arch_error"] = str(err)
    res["seconds"] = time.perf_counter() - start
    write_report(args.out, res)
    try:
        plot(args.plot, res, curves)
    except ImportError as err:
        logger.warning("no plot (%s)", err)
    if args.json:
        raw = {k: v for k, v in res.items() if k not in ("table", "latency")}
        raw["latency"] = {k: v for k, v in lat.items() if k not in ("predictor", "space", "x")}
        args.json.write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    for ok, text in targets:
        logger.info("%s: %s", "PASS" if ok else "FAIL", text)
    logger.info("wrote %s and %s in %.0f s", args.out, args.plot, res["seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
