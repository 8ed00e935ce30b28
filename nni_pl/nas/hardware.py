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

import itertools
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_pl._checks import check_int, check_number, fail
from nni_pl.nas._labels import ArchitectureError, canonical, to_json_value
from nni_pl.nas._latency import Measurer, Term, arch_key, as_inputs, machine_info, num_threads, time_ms

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["LatencyFilter", "LatencyPredictor", "measure_latency_table", "predictor_error"]

log = logging.getLogger(__name__)

FORMAT = "nni_pl.latency_table"


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
        terms: Sequence[Mapping[str, Any] | Term],
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.base = check_number(self, "base", base, low=0)
        self.decisions = {label: [to_json_value(v) for v in values] for label, values in decisions.items()}
        self.terms = [t if isinstance(t, Term) else Term.from_dict(t) for t in terms]
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
                Term(
                    label,
                    "table",
                    [label],
                    {arch_key({label: v}, [label]): m for v, m in zip(decisions[label], ms)},
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

        first = next(iter(probs.values()), None)
        total: Any = torch.tensor(self.base) if first is None else first.new_tensor(self.base)
        for t in self.terms:
            term = mass(t.labels, t.latency)
            for labels, allowed in t.conditions:
                term = term * mass(
                    labels, lambda a, labels=labels, allowed=allowed: float(arch_key(a, labels) in allowed)
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
    inputs = as_inputs(dummy_input)
    with num_threads(threads), torch.no_grad():
        net = build_supernet(space, "RandomOneShot").eval()
        measurer = Measurer(net, inputs, repeats, warmup)
        terms = measurer.run()
        frozen = space.freeze(measurer.default).eval()  # type: ignore[operator]
        whole = time_ms(lambda: frozen(*inputs), repeats, warmup)
    shapes = [list(x.shape) if hasattr(x, "shape") else None for x in inputs]
    meta = {
        "machine": machine_info(threads),
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
    inputs = as_inputs(dummy_input)
    out = []
    with num_threads(threads), torch.no_grad():
        for arch in archs:
            model = space.freeze(dict(arch)).eval()  # type: ignore[operator]
            measured = time_ms(lambda m=model: m(*inputs), repeats, warmup)
            out.append((dict(arch), predictor.predict(arch), measured))
    return out
