"""How :mod:`nni_pl.nas.hardware` measures: the table's entries, timing, and the walk over a supernet's choices.

Example:
    >>> arch_key({"op": "conv", "ch": (8, 8)}, ["ch", "op"])
    '[[8,8],"conv"]'
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_pl.nas._labels import ArchitectureError, canonical, to_json_value

if TYPE_CHECKING:
    from torch import nn

_MAX_COMBOS = 512  # per choice: the values of its labels times those of the labels that change its input
_MIN_SAMPLE_S = 2e-4  # a timing sample runs a fast op several times, so the clock's resolution does not rule


def arch_key(arch: Mapping[str, Any], labels: Sequence[str]) -> str:
    """The table's key of ``arch``'s values of ``labels`` (JSON, so it survives a save)."""
    return canonical([to_json_value(arch[label]) for label in labels])


class Term:
    """One choice's entry: ms per combination of ``labels``, counted when every ``when`` condition holds."""

    def __init__(
        self,
        module: str,
        kind: str,
        labels: Sequence[str],
        values: Mapping[str, float],
        when: Sequence[tuple[Sequence[str], Sequence[str]]] = (),
    ) -> None:
        self.module, self.kind, self.labels = module, kind, list(labels)
        self.values = {str(k): float(v) for k, v in values.items()}
        self.when = [(list(labels_), list(allowed)) for labels_, allowed in when]
        self.conditions = [(labels_, set(allowed)) for labels_, allowed in self.when]

    def applies(self, arch: Mapping[str, Any]) -> bool:
        return all(arch_key(arch, labels) in allowed for labels, allowed in self.conditions)

    def latency(self, arch: Mapping[str, Any]) -> float:
        return self.values.get(arch_key(arch, self.labels), 0.0)  # absent: not reached by that architecture

    def to_dict(self) -> dict[str, Any]:
        when = [{"labels": la, "allowed": al} for la, al in self.when]
        return {
            "module": self.module,
            "kind": self.kind,
            "labels": self.labels,
            "values": self.values,
            "when": when,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Term:
        when = [(w["labels"], w["allowed"]) for w in d.get("when", ())]
        return cls(d.get("module", ""), d.get("kind", ""), d["labels"], d["values"], when)


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_ms(fn: Callable[[], Any], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    number = max(1, min(1000, int(_MIN_SAMPLE_S / max(time.perf_counter() - start, 1e-7))))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples) * 1e3


def _sig(x: Any) -> Any:
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return ("tensor", tuple(x.shape), str(x.dtype))
    if isinstance(x, (list, tuple)):
        return [_sig(v) for v in x]
    if isinstance(x, dict):
        return {k: _sig(v) for k, v in x.items()}
    return type(x).__name__


class _Node:
    def __init__(
        self,
        module: nn.Module,
        name: str,
        kind: str,
        labels: list[str],
        when: list[tuple[list[str], list[str]]],
    ):
        self.module, self.name, self.kind, self.labels, self.when = module, name, kind, labels, when
        self.inner: dict[int, list[_Node]] = {}  # unit (candidate index, block index) -> choices inside it
        self.term = Term(name, kind, labels, {}, when)

    def watch(self) -> list[nn.Module]:
        return list(self.module.blocks) if self.kind == "Repeat" else [self.module]  # type: ignore[union-attr]


class Measurer:
    """Times the choices of a supernet (in eval mode, under ``no_grad``) run on ``inputs``: :meth:`run`.

    Each choice is reached from the default architecture (changing only the labels that select the candidate
    or block holding it), its labels are widened by those that change its input, and each combination is
    timed at the input the supernet gives it, inner choices before the candidates holding them.
    """

    def __init__(self, net: Any, inputs: tuple[Any, ...], repeats: int, warmup: int) -> None:
        from nni_pl.nas.oneshot.supernet import (
            MixedInputChoice,
            MixedLayerChoice,
            MixedRepeat,
            MixedValueLayer,
        )

        self.net, self.inputs, self.repeats, self.warmup = net, inputs, repeats, warmup
        self.decisions: dict[str, list[Any]] = net.state.decisions
        self.default = {label: values[0] for label, values in self.decisions.items()}
        self.nodes: list[_Node] = []
        self._sigs: dict[str, dict[int, Any]] = {}

        def walk(mod: nn.Module, name: str, when: list[Any], owners: list[list[_Node]]) -> None:
            if isinstance(mod, (MixedLayerChoice, MixedRepeat, MixedValueLayer, MixedInputChoice)):
                kind = type(mod).__name__.removeprefix("Mixed")
                labels = list(mod.labels) if isinstance(mod, (MixedRepeat, MixedValueLayer)) else [mod.label]
                node = _Node(mod, name, kind, labels, when)
                self.nodes.append(node)
                for owner in owners:
                    owner.append(node)
                if isinstance(mod, MixedLayerChoice):
                    for i, (key, cand) in enumerate(mod.candidates.items()):
                        allowed = [arch_key({mod.label: self.decisions[mod.label][i]}, labels)]
                        node.inner[i] = []
                        walk(cand, f"{name}.{key}", [*when, (labels, allowed)], [*owners, node.inner[i]])
                elif isinstance(mod, MixedRepeat):
                    combos = [
                        dict(zip(labels, c))
                        for c in itertools.product(*(self.decisions[la] for la in labels))
                    ]
                    for k, block in enumerate(mod.blocks):
                        allowed = [arch_key(c, labels) for c in combos if mod._depth(c) > k]
                        node.inner[k] = []
                        walk(
                            block, f"{name}.blocks.{k}", [*when, (labels, allowed)], [*owners, node.inner[k]]
                        )
                return
            for child_name, child in mod.named_children():
                walk(child, f"{name}.{child_name}" if name else child_name, when, owners)

        walk(net.model, "", [], [])

    def _forward(self, arch: Mapping[str, Any], watch: Sequence[nn.Module]) -> dict[int, tuple[Any, Any]]:
        captured: dict[int, tuple[Any, Any]] = {}

        def hook(m: nn.Module, args: Any, kwargs: Any) -> None:
            captured.setdefault(id(m), (args, kwargs))

        handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in watch]
        try:
            self.net.state.set_arch(arch)
            self.net(*self.inputs)
        finally:
            for h in handles:
                h.remove()
        return captured

    def _shapes(self, arch: Mapping[str, Any]) -> dict[int, Any]:
        key = canonical(to_json_value(dict(arch)))
        if key not in self._sigs:
            watch = [m for n in self.nodes for m in n.watch()]
            self._sigs[key] = {k: _sig(v) for k, v in self._forward(arch, watch).items()}
        return self._sigs[key]

    def _reach(self, node: _Node) -> dict[str, Any]:
        """The default architecture, changed where needed to run ``node``."""
        arch = dict(self.default)
        for labels, allowed in node.when:
            if arch_key(arch, labels) not in allowed and allowed:
                arch.update(zip(labels, json.loads(allowed[0])))
        return arch

    def _labels(self, node: _Node, reach: dict[str, Any]) -> list[str]:
        """The node's labels plus those that change what it receives (shape), in the space's order."""
        ids = [id(m) for m in node.watch()]
        sig = [self._shapes(reach).get(i) for i in ids]
        extra = set()
        for label, values in self.decisions.items():
            if label in node.labels:
                continue
            for v in values:
                arch = {**reach, label: v}
                if node.term.applies(arch) and [self._shapes(arch).get(i) for i in ids] != sig:
                    extra.add(label)
                    break
        return [la for la in self.decisions if la in node.labels or la in extra]

    def _plain(self, module: nn.Module, arch: Mapping[str, Any]) -> nn.Module:
        """``module`` as the frozen architecture runs it: the supernet's sliced weights cost more (views)."""
        from torch import nn

        from nni_pl.nas.oneshot.supernet import MixedLayerChoice, MixedRepeat, MixedValueLayer

        if isinstance(module, MixedValueLayer):
            return module.sliced(arch).eval()
        if isinstance(module, MixedLayerChoice):
            i = self.net.state.index(module.label, arch[module.label])
            return self._plain(list(module.candidates.values())[i], arch)
        if isinstance(module, MixedRepeat):
            return nn.Sequential(*[self._plain(b, arch) for b in list(module.blocks)[: module._depth(arch)]])
        if not any(isinstance(m, (MixedLayerChoice, MixedRepeat, MixedValueLayer)) for m in module.modules()):
            return module
        out = copy.copy(module)
        out._modules = {k: None if v is None else self._plain(v, arch) for k, v in module._modules.items()}
        return out

    def _exclusive(
        self, node: _Node, unit: int, arch: Mapping[str, Any], module: nn.Module, args: Any
    ) -> float:
        """The time of ``module`` (a candidate or a block) less that of the choices inside it."""
        plain, (a, kw) = self._plain(module, arch), args
        inner = sum(n.term.latency(arch) for n in node.inner.get(unit, ()) if n.term.applies(arch))
        return max(0.0, time_ms(lambda: plain(*a, **kw), self.repeats, self.warmup) - inner)

    def _measure(self, node: _Node, arch: dict[str, Any]) -> float | None:
        from nni_pl.nas.mutables import _reduce

        mod: Any = node.module
        cap = self._forward(arch, node.watch())
        if node.kind == "Repeat":
            total = 0.0
            for k in range(min(mod._depth(arch), len(mod.blocks))):
                block = mod.blocks[k]
                if id(block) not in cap:
                    return None
                total += self._exclusive(node, k, arch, block, cap[id(block)])
            return total
        if id(mod) not in cap:
            return None
        args, kwargs = cap[id(mod)]
        if node.kind == "ValueLayer":
            layer = mod.sliced(arch).eval()
            return time_ms(lambda: layer(*args, **kwargs), self.repeats, self.warmup)
        i = self.net.state.index(node.labels[0], arch[node.labels[0]])
        if node.kind == "InputChoice":
            chosen = self.decisions[node.labels[0]][i]
            return time_ms(
                lambda: _reduce([args[0][j] for j in chosen], mod.reduction), self.repeats, self.warmup
            )
        return self._exclusive(node, i, arch, list(mod.candidates.values())[i], (args, kwargs))

    def run(self) -> list[Term]:
        for node in reversed(self.nodes):  # every choice inside a candidate before the candidate
            reach = self._reach(node)
            labels = self._labels(node, reach)
            n = 1
            for la in labels:
                n *= len(self.decisions[la])
            if n > _MAX_COMBOS:
                raise ArchitectureError(
                    node.labels[0],
                    f"the latency of {node.name!r} depends on {labels}: {n} "
                    f"combinations, more than the {_MAX_COMBOS} a table measures",
                )
            node.term = Term(node.name, node.kind, labels, {}, node.when)
            for combo in itertools.product(*(self.decisions[la] for la in labels)):
                arch = {**reach, **dict(zip(labels, combo))}
                if node.term.applies(arch):
                    ms = self._measure(node, arch)
                    if ms is not None:
                        node.term.values[arch_key(arch, labels)] = ms
        return [n.term for n in self.nodes]


def machine_info(threads: int) -> dict[str, Any]:
    import torch

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "system": platform.system(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": threads,
    }


def as_inputs(dummy_input: Any) -> tuple[Any, ...]:
    return tuple(dummy_input) if isinstance(dummy_input, (tuple, list)) else (dummy_input,)
