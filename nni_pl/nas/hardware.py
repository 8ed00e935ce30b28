"""Hardware-aware NAS: a latency table measured on this CPU, and :class:`LatencyFilter` for multi-trial strategies.

NNI 2.5 predicts latency with nn-Meter; nni-pl measures instead. :func:`measure_latency_table` builds the
supernet of a model space, records the input each choice receives while it runs on ``dummy_input``, and times
every candidate alone at that input on this machine (``torch.no_grad``, eval mode, median of ``repeats``). The
:class:`LatencyPredictor` it returns is additive: ``predict(arch) = base + sum of the chosen candidates' ms``,
where ``base`` is what is no choice (the frozen default architecture measured end to end, less its candidates).

* A choice inside a ``LayerChoice`` candidate (or a ``Repeat`` block) counts only when that candidate is
  chosen (that block runs); the outer entry holds the candidate's time less the inner choices'.
* A ``Repeat`` with a chosen depth ``d`` costs the sum of its first ``d`` blocks, each timed at its own input.
* A choice whose input shape depends on another label (a layer after a ``ValueChoice`` width) is timed for
  every combination of those labels.

Not predicted: plain layers whose cost changes with a choice (a ``ReLU`` after a searched width) count at
their default cost, and a module called twice in one forward counts once.

Example:
    >>> import torch
    >>> from nni_pl.nas import ModelSpace, LayerChoice, nn
    >>> class Net(ModelSpace):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.op = LayerChoice({"conv": nn.Conv2d(3, 3, 3, padding=1), "skip": nn.Identity()}, label="op")
    ...     def forward(self, x):
    ...         return self.op(x).mean()
    >>> predictor = measure_latency_table(Net(), torch.zeros(1, 3, 8, 8), repeats=3, warmup=1)
    >>> len(predictor.table["op"]), predictor.predict({"op": "conv"}) >= 0
    (2, True)
    >>> LatencyFilter(predictor.predict({"op": "skip"}), predictor)({"op": "skip"})
    True
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_pl._checks import check_int, check_number, fail
from nni_pl.nas._labels import ArchitectureError, canonical, to_json_value

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["LatencyFilter", "LatencyPredictor", "measure_latency_table", "predictor_error"]

log = logging.getLogger(__name__)

FORMAT = "nni_pl.latency_table"
_MAX_COMBOS = 512  # per choice: the values of its labels times those of the labels that change its input
_MIN_SAMPLE_S = 2e-4  # a timing sample runs a fast op several times, so the clock's resolution does not rule


def _key(arch: Mapping[str, Any], labels: Sequence[str]) -> str:
    return canonical([to_json_value(arch[label]) for label in labels])


class _Term:
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
        self._allowed = [(labels_, set(allowed)) for labels_, allowed in self.when]

    def applies(self, arch: Mapping[str, Any]) -> bool:
        return all(_key(arch, labels) in allowed for labels, allowed in self._allowed)

    def latency(self, arch: Mapping[str, Any]) -> float:
        return self.values.get(_key(arch, self.labels), 0.0)  # absent: not reached by that architecture

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
    def from_dict(cls, d: Mapping[str, Any]) -> _Term:
        when = [(w["labels"], w["allowed"]) for w in d.get("when", ())]
        return cls(d.get("module", ""), d.get("kind", ""), d["labels"], d["values"], when)


class LatencyPredictor:
    """Predicted latency (ms) of an architecture: ``base`` plus the measured entry of each chosen candidate.

    Built by :func:`measure_latency_table` (or :meth:`from_table`, :meth:`load`).

    Attributes:
        base: ms of the part of the network that is no choice.
        decisions: label -> its values, in order.
        meta: where and how it was measured (machine, torch version, input shape, threads, repeats).

    Example:
        >>> p = LatencyPredictor.from_table({"op": ["conv", "skip"]}, {"op": [2.0, 0.5]}, base=1.0)
        >>> p.predict({"op": "conv"})
        3.0
        >>> import torch
        >>> p.expected_latency({"op": torch.tensor([0.5, 0.5])})
        tensor(2.2500)
    """

    def __init__(
        self,
        *,
        base: float,
        decisions: Mapping[str, Sequence[Any]],
        terms: Sequence[Mapping[str, Any] | _Term],
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.base = check_number(self, "base", base, low=0)
        self.decisions = {label: [to_json_value(v) for v in values] for label, values in decisions.items()}
        self.terms = [t if isinstance(t, _Term) else _Term.from_dict(t) for t in terms]
        self.meta = dict(meta or {})
        for term in self.terms:
            for label in term.labels + [la for labels, _ in term.when for la in labels]:
                if label not in self.decisions:
                    fail(
                        self,
                        "terms",
                        f"an entry of {term.module or term.kind!r} reads label {label!r}, which "
                        f"is not among the decisions {sorted(self.decisions)}",
                    )

    @classmethod
    def from_table(
        cls,
        decisions: Mapping[str, Sequence[Any]],
        table: Mapping[str, Sequence[float]],
        *,
        base: float = 0.0,
    ) -> LatencyPredictor:
        """A predictor from ``table`` (label -> ms per value, in the order of ``decisions[label]``)."""
        terms = []
        for label, ms in table.items():
            if len(ms) != len(decisions[label]):
                fail(
                    cls,
                    "table",
                    f"label {label!r} has {len(decisions[label])} values but {len(ms)} latencies",
                )
            terms.append(
                _Term(
                    label,
                    "table",
                    [label],
                    {_key({label: v}, [label]): m for v, m in zip(decisions[label], ms)},
                )
            )
        return cls(base=base, decisions=decisions, terms=terms)

    @property
    def table(self) -> dict[str, list[float]]:
        """label -> ms per value, for the labels whose cost adds up per value (no condition, no other label)."""
        plain = {la for t in self.terms if len(t.labels) == 1 and not t.when for la in t.labels}
        for t in self.terms:
            if len(t.labels) > 1 or t.when:
                plain -= set(t.labels) | {la for labels, _ in t.when for la in labels}
        out = {label: [0.0] * len(self.decisions[label]) for label in self.decisions if label in plain}
        for t in self.terms:
            if t.labels and t.labels[0] in out:
                label = t.labels[0]
                for i, v in enumerate(self.decisions[label]):
                    out[label][i] += t.latency({label: v})
        return out

    def _check(self, arch: Mapping[str, Any]) -> None:
        for label in dict.fromkeys(
            la for t in self.terms for la in t.labels + [x for ls, _ in t.when for x in ls]
        ):
            if label not in arch:
                raise ArchitectureError(
                    label, f"is missing from the architecture {dict(arch)!r}; give every label"
                )
            if canonical(to_json_value(arch[label])) not in {canonical(v) for v in self.decisions[label]}:
                raise ArchitectureError(
                    label, f"{arch[label]!r} is not one of its values {self.decisions[label]}"
                )

    def predict(self, arch: Mapping[str, Any]) -> float:
        """Predicted latency of ``arch`` (label -> value) in ms."""
        self._check(arch)
        return self.base + sum(t.latency(arch) for t in self.terms if t.applies(arch))

    def expected_latency(self, probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``base + sum_i probs[label][i] * ms[label][i]`` over every choice (labels drawn independently):
        differentiable in ``probs``, as ProxylessNAS's latency loss needs.

        Raises:
            ArchitectureError: a label the table reads has no probabilities, or as many as it has values.
        """
        import torch

        def p(label: str) -> torch.Tensor:
            if label not in probs:
                raise ArchitectureError(
                    label, f"expected_latency needs its probabilities; got labels {sorted(probs)}"
                )
            if probs[label].shape != (len(self.decisions[label]),):
                raise ArchitectureError(
                    label,
                    f"has {len(self.decisions[label])} values, got probabilities of "
                    f"shape {tuple(probs[label].shape)}",
                )
            return probs[label]

        def mass(labels: Sequence[str], weight: Callable[[dict[str, Any]], float | None]) -> Any:
            total: Any = 0.0
            for idx in itertools.product(*(range(len(self.decisions[la])) for la in labels)):
                arch = {la: self.decisions[la][i] for la, i in zip(labels, idx)}
                w = weight(arch)
                if w:
                    prob: Any = 1.0
                    for la, i in zip(labels, idx):
                        prob = prob * p(la)[i]
                    total = total + prob * w
            return total

        total: Any = torch.tensor(self.base)
        for t in self.terms:
            term = mass(t.labels, t.latency)
            for labels, allowed in t._allowed:
                term = term * mass(
                    labels, lambda a, labels=labels, allowed=allowed: float(_key(a, labels) in allowed)
                )
            total = total + term
        return total

    # --- saving ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The predictor as JSON-able data (what :meth:`save` writes)."""
        return {
            "format": FORMAT,
            "version": 1,
            "unit": "ms",
            "base": self.base,
            "decisions": self.decisions,
            "terms": [t.to_dict() for t in self.terms],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyPredictor:
        if data.get("format") != FORMAT:
            fail(cls, "data", f"is not a latency table (format {data.get('format')!r}, expected {FORMAT!r})")
        return cls(base=data["base"], decisions=data["decisions"], terms=data["terms"], meta=data.get("meta"))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the table (with the machine it was measured on and the input shape) as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyPredictor:
        """A predictor saved by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def __repr__(self) -> str:
        return f"LatencyPredictor(base={self.base:.3f} ms, {len(self.terms)} choices, labels={list(self.decisions)})"


class LatencyFilter:
    """NNI's ``LatencyFilter``: keeps an architecture whose predicted latency is at most ``threshold`` ms.

    Give it to a multi-trial strategy as ``model_filter``: architectures it rejects never run (they count as
    failed). It rebuilds from :meth:`to_config` (the table inline), so the experiment's manager can use it.

    Args:
        threshold: the largest latency to keep, in ms.
        predictor: a :class:`LatencyPredictor`, its :meth:`~LatencyPredictor.to_dict` data, or a saved table's path.

    Example:
        >>> p = LatencyPredictor.from_table({"op": ["conv", "skip"]}, {"op": [2.0, 0.5]}, base=1.0)
        >>> keep = LatencyFilter(threshold=2.0, predictor=p)
        >>> keep({"op": "conv"}), keep({"op": "skip"})
        (False, True)
        >>> LatencyFilter.from_config(keep.to_config())({"op": "skip"})
        True
        >>> LatencyFilter(threshold=-1, predictor=p)
        Traceback (most recent call last):
        ...
        nni_pl._checks.ArgumentError: argument 'LatencyFilter.threshold': must be a number >= 0, got -1; ...
    """

    def __init__(
        self, threshold: float, predictor: LatencyPredictor | Mapping[str, Any] | str | os.PathLike[str]
    ) -> None:
        hint = "the largest latency to keep, in milliseconds, e.g. threshold=100"
        self.threshold = check_number(self, "threshold", threshold, low=0, hint=hint)
        if isinstance(predictor, LatencyPredictor):
            self.predictor = predictor
        elif isinstance(predictor, Mapping):
            self.predictor = LatencyPredictor.from_dict(predictor)
        elif isinstance(predictor, (str, os.PathLike)):
            try:
                self.predictor = LatencyPredictor.load(predictor)
            except (OSError, ValueError) as e:
                fail(self, "predictor", f"cannot read the latency table {str(predictor)!r}: {e}")
        else:
            fail(
                self,
                "predictor",
                f"must be a LatencyPredictor, its to_dict() or a saved table's path, got {predictor!r}",
            )

    def __call__(self, arch_or_model: Any) -> bool:
        """Whether to keep ``arch_or_model`` (an architecture dict, or a model frozen from a space)."""
        arch = (
            arch_or_model
            if isinstance(arch_or_model, Mapping)
            else getattr(arch_or_model, "frozen_arch", None)
        )
        if arch is None:
            raise TypeError(
                f"LatencyFilter needs an architecture dict or a frozen model, got {type(arch_or_model).__name__}"
            )
        return self.predictor.predict(arch) <= self.threshold

    def to_config(self) -> dict[str, Any]:
        return {
            "class": f"{__name__}:LatencyFilter",
            "kwargs": {"threshold": self.threshold, "predictor": self.predictor.to_dict()},
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LatencyFilter:
        return cls(**dict(config.get("kwargs") or {}))

    def __repr__(self) -> str:
        return f"LatencyFilter(threshold={self.threshold:g}, predictor={self.predictor!r})"


# --------------------------------------------------------------------------------------------- measuring


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _time_ms(fn: Callable[[], Any], repeats: int, warmup: int) -> float:
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
        self.term = _Term(name, kind, labels, {}, when)

    def watch(self) -> list[nn.Module]:
        return list(self.module.blocks) if self.kind == "Repeat" else [self.module]  # type: ignore[union-attr]


class _Measurer:
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
                        allowed = [_key({mod.label: self.decisions[mod.label][i]}, labels)]
                        node.inner[i] = []
                        walk(cand, f"{name}.{key}", [*when, (labels, allowed)], [*owners, node.inner[i]])
                elif isinstance(mod, MixedRepeat):
                    combos = [
                        dict(zip(labels, c))
                        for c in itertools.product(*(self.decisions[la] for la in labels))
                    ]
                    for k, block in enumerate(mod.blocks):
                        allowed = [_key(c, labels) for c in combos if mod._depth(c) > k]
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
            if _key(arch, labels) not in allowed and allowed:
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

    def _exclusive(self, node: _Node, unit: int, arch: Mapping[str, Any], fn: Callable[[], Any]) -> float:
        inner = sum(n.term.latency(arch) for n in node.inner.get(unit, ()) if n.term.applies(arch))
        return max(0.0, _time_ms(fn, self.repeats, self.warmup) - inner)

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
                args, kwargs = cap[id(block)]
                total += self._exclusive(node, k, arch, lambda b=block, a=args, kw=kwargs: b(*a, **kw))
            return total
        if id(mod) not in cap:
            return None
        args, kwargs = cap[id(mod)]
        if node.kind == "ValueLayer":
            layer = mod.sliced(arch).eval()
            return _time_ms(lambda: layer(*args, **kwargs), self.repeats, self.warmup)
        i = self.net.state.index(node.labels[0], arch[node.labels[0]])
        if node.kind == "InputChoice":
            chosen = self.decisions[node.labels[0]][i]
            return _time_ms(
                lambda: _reduce([args[0][j] for j in chosen], mod.reduction), self.repeats, self.warmup
            )
        cand = list(mod.candidates.values())[i]
        return self._exclusive(node, i, arch, lambda: cand(*args, **kwargs))

    def run(self) -> list[_Term]:
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
            node.term = _Term(node.name, node.kind, labels, {}, node.when)
            for combo in itertools.product(*(self.decisions[la] for la in labels)):
                arch = {**reach, **dict(zip(labels, combo))}
                if node.term.applies(arch):
                    ms = self._measure(node, arch)
                    if ms is not None:
                        node.term.values[_key(arch, labels)] = ms
        return [n.term for n in self.nodes]


def _machine(threads: int) -> dict[str, Any]:
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


def _as_inputs(dummy_input: Any) -> tuple[Any, ...]:
    return tuple(dummy_input) if isinstance(dummy_input, (tuple, list)) else (dummy_input,)


def measure_latency_table(
    space: nn.Module, dummy_input: Any, *, repeats: int = 30, warmup: int = 5, threads: int = 1
) -> LatencyPredictor:
    """Time every candidate of ``space`` at the input it receives from ``dummy_input``, on this CPU.

    Args:
        space: a model space (``ModelSpace``).
        dummy_input: a tensor (or a tuple of tensors) the space's ``forward`` takes; its batch size counts.
        repeats: timing samples per candidate (the median is kept).
        warmup: calls before timing.
        threads: torch's intra-op threads while timing (restored afterwards).

    Returns:
        The additive predictor (see the module's description), its ``meta`` naming this machine.
    """
    import torch

    from nni_pl.nas.oneshot.supernet import build_supernet

    repeats = check_int("measure_latency_table", "repeats", repeats, minimum=1)
    warmup = check_int("measure_latency_table", "warmup", warmup, minimum=0)
    threads = check_int("measure_latency_table", "threads", threads, minimum=1)
    inputs = _as_inputs(dummy_input)
    with _threads(threads), torch.no_grad():
        net = build_supernet(space, "RandomOneShot").eval()
        measurer = _Measurer(net, inputs, repeats, warmup)
        terms = measurer.run()
        frozen = space.freeze(measurer.default).eval()  # type: ignore[operator]
        whole = _time_ms(lambda: frozen(*inputs), repeats, warmup)
    shapes = [list(x.shape) if hasattr(x, "shape") else None for x in inputs]
    meta = {
        "machine": _machine(threads),
        "input_shape": shapes[0] if len(shapes) == 1 else shapes,
        "repeats": repeats,
        "warmup": warmup,
        "default_arch": measurer.default,
        "default_ms": whole,
    }
    predictor = LatencyPredictor(base=0.0, decisions=net.state.decisions, terms=terms, meta=meta)
    predictor.base = max(0.0, whole - predictor.predict(measurer.default))
    log.info(
        "latency table of %d choices measured: default architecture %.3f ms, base %.3f ms",
        len(terms),
        whole,
        predictor.base,
    )
    return predictor


def predictor_error(
    predictor: LatencyPredictor,
    space: nn.Module,
    dummy_input: Any,
    archs: Sequence[Mapping[str, Any]],
    *,
    repeats: int = 30,
    warmup: int = 5,
    threads: int = 1,
) -> list[tuple[dict[str, Any], float, float]]:
    """``(arch, predicted ms, measured ms)`` for each of ``archs``, measured end to end as ``space.freeze(arch)``.

    Example:
        >>> import torch
        >>> from nni_pl.nas import ModelSpace, ValueChoice, nn
        >>> class Net(ModelSpace):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc = nn.Linear(8, ValueChoice([4, 64], label="width"))
        ...     def forward(self, x):
        ...         return self.fc(x)
        >>> space, x = Net(), torch.zeros(2, 8)
        >>> p = measure_latency_table(space, x, repeats=3, warmup=1)
        >>> [(arch, pred > 0, real > 0) for arch, pred, real in predictor_error(p, space, x, [{"width": 4}])]
        [({'width': 4}, True, True)]
    """
    import torch

    repeats = check_int("predictor_error", "repeats", repeats, minimum=1)
    inputs = _as_inputs(dummy_input)
    out = []
    with _threads(threads), torch.no_grad():
        for arch in archs:
            model = space.freeze(dict(arch)).eval()  # type: ignore[operator]
            measured = _time_ms(lambda m=model: m(*inputs), repeats, warmup)
            out.append((dict(arch), predictor.predict(arch), measured))
    return out
