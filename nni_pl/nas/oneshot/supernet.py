"""The supernet: a model space whose choices all live in one network, run the way a one-shot strategy says.

:func:`build_supernet` copies a model space and replaces each choice by a *mixed* module that holds every
candidate and asks one shared :class:`SupernetState` how to run:

* ``LayerChoice`` -> :class:`MixedLayerChoice` (the candidates, transformed too: nested choices work);
* ``InputChoice`` -> :class:`MixedInputChoice`;
* ``Repeat`` with a chosen depth -> :class:`MixedRepeat` (the blocks, transformed; depth = a prefix);
* a layer built with ``ValueChoice`` arguments (``nn.Conv1d/2d``, ``nn.Linear``, ``nn.BatchNorm1d/2d`` through
  :mod:`nni_pl.nas.nn`) -> :class:`MixedValueLayer`: **one weight of the largest size, sliced** for the chosen
  channels and kernel (the centre of the largest kernel), as NNI's mixed operations do; another layer with
  choices keeps one copy per combination of values (exact for layers without weights);
* a ``ValueChoice`` stored as a module attribute is set to the chosen value before each forward (sampling
  strategies only);
* ``Cell``, ``NasBench201Cell`` and ``AutoActivation`` are made of the above and need nothing of their own.

The state has three modes: ``"sample"`` (one architecture runs: SPOS, ENAS, export, the evolution after
SPOS), ``"mix"`` (every candidate, weighted by probabilities per label: DARTS, GumbelDARTS) and ``"gates"``
(ProxylessNAS: at most two candidates per label run, weighted by straight-through binary gates). A layer with
``ValueChoice`` arguments mixes its values in one computation at the largest size, on the weight masked by the
weighted slices (in ``"gates"`` mode too: its values share one weight, so there are no paths to gate).

Example:
    >>> import torch
    >>> from nni_pl.nas import ModelSpace, LayerChoice, ValueChoice, nn
    >>> class Net(ModelSpace):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv = nn.Conv2d(1, ValueChoice([4, 8], label="ch"), ValueChoice([3, 5], label="k"),
    ...                               padding=ValueChoice([3, 5], label="k") // 2)
    ...         self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
    ...     def forward(self, x):
    ...         return self.act(self.conv(x)).mean((1, 2, 3))
    >>> net = build_supernet(Net(), strategy="SPOS")
    >>> net.state.set_arch({"ch": 8, "k": 5, "act": "1"})
    >>> net(torch.zeros(2, 1, 6, 6)).shape
    torch.Size([2])
    >>> net.conv.weight.shape  # the largest weight, sliced per architecture
    torch.Size([8, 1, 5, 5])
"""

from __future__ import annotations

import copy
import inspect
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nni_pl.nas._labels import canonical, to_json_value
from nni_pl.nas._value import ValueExpr, expr_leaves, resolve
from nni_pl.nas.mutables import ArchitectureError, InputChoice, LayerChoice, Mutable, Repeat, _reduce

__all__ = [
    "MixedInputChoice",
    "MixedLayerChoice",
    "MixedRepeat",
    "MixedValueLayer",
    "Supernet",
    "SupernetState",
    "build_supernet",
]

SAMPLE, MIX, GATES = "sample", "mix", "gates"
_SHARED = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)


class OneShotError(ArchitectureError):
    """A model space a one-shot strategy cannot search; the message names the label and the strategy."""


# --------------------------------------------------------------------------------------------- the state


class SupernetState:
    """How every mixed module of one supernet runs now; shared by them all (not a module: nothing to save).

    Attributes:
        decisions: label -> the allowed values (the space's search space, in order).
        mode: ``"sample"``, ``"mix"`` or ``"gates"``.
        arch: the architecture that runs in ``"sample"`` mode (label -> value).
        probs: in ``"mix"`` mode, label -> a 1-d tensor of weights over the label's values (set per step).
        gates: in ``"gates"`` mode, label -> ``[(index, gate tensor), ...]`` (the one or two paths that run).
    """

    def __init__(self, decisions: Mapping[str, Sequence[Any]]) -> None:
        self.decisions: dict[str, list[Any]] = {k: list(v) for k, v in decisions.items()}
        self._index = {
            label: {canonical(to_json_value(v)): i for i, v in enumerate(values)}
            for label, values in self.decisions.items()
        }
        self.mode = SAMPLE
        self.arch: dict[str, Any] = {k: v[0] for k, v in self.decisions.items()}
        self.probs: dict[str, torch.Tensor] = {}
        self.gates: dict[str, list[tuple[int, torch.Tensor | None]]] = {}

    def index(self, label: str, value: Any) -> int:
        """The position of ``value`` among ``label``'s values."""
        try:
            return self._index[label][canonical(to_json_value(value))]
        except KeyError:
            raise ArchitectureError(
                label, f"{value!r} is not one of its values {self.decisions.get(label)}"
            ) from None

    def set_arch(self, arch: Mapping[str, Any]) -> None:
        """Run ``arch`` (sample mode); labels it leaves out keep their current value."""
        for label, value in arch.items():
            if label in self.decisions:
                self.index(label, value)  # checked
                self.arch[label] = value
        self.mode = SAMPLE

    def paths(self, label: str) -> list[tuple[int, torch.Tensor | None]]:
        """``[(value index, weight or None), ...]``: which values of ``label`` run now and how they are weighted.

        In ``"gates"`` mode a label without gates (a ValueChoice of layer arguments, whose values share one
        weight) is mixed by its ``probs``."""
        if self.mode == SAMPLE:
            return [(self.index(label, self.arch[label]), None)]
        if self.mode == GATES and label in self.gates:
            return self.gates[label]
        p = self.probs[label]
        return [(i, p[i]) for i in range(len(self.decisions[label]))]

    def off(self, weight: torch.Tensor | None) -> bool:
        """Whether a path of ``"gates"`` mode is the one not picked (its gate is 0 in value). Such a path runs
        without autograd: an architecture step needs its output for the gate's gradient, not its weights'
        gradients, so it holds one output tensor in memory instead of every activation of the path."""
        return self.mode == GATES and weight is not None and float(weight.detach()) == 0.0

    def combos(self, labels: Sequence[str]) -> list[tuple[dict[str, Any], torch.Tensor | None]]:
        """Every combination of the running values of ``labels``, with the product of their weights."""
        per_label = [self.paths(label) for label in labels]
        out: list[tuple[dict[str, Any], torch.Tensor | None]] = []
        for picks in itertools.product(*per_label):
            arch = {label: self.decisions[label][i] for label, (i, _) in zip(labels, picks)}
            weight: torch.Tensor | None = None
            for _, w in picks:
                if w is not None:
                    weight = w if weight is None else weight * w
            out.append((arch, weight))
        return out


class _GateGradient(torch.autograd.Function):
    """Zero in value; its backward gives the two gates of a choice ``<grad, output of each path>``.

    The picked path's output is the one computed in forward (saved detached); the other path runs in backward,
    without autograd, from the saved inputs (as ProxylessNAS's ``ArchGradientFunction``), so the architecture
    step holds one path's activations, not two. The gate tensors are the straight-through gates of
    :class:`~nni_pl.nas.oneshot.lightning.ProxylessModule` (1 and 0 in value, softmax gradients).
    """

    @staticmethod
    def forward(
        ctx: Any,
        g_picked: torch.Tensor,
        g_other: torch.Tensor,
        out: torch.Tensor,
        other: nn.Module,
        *inputs: torch.Tensor,
    ) -> torch.Tensor:  # type: ignore[override]
        ctx.other = other
        ctx.save_for_backward(out, *inputs)
        return torch.zeros_like(out)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:  # type: ignore[override]
        out, *inputs = ctx.saved_tensors
        with torch.no_grad():
            other_out = ctx.other(*inputs)
            g_picked = (grad * out).sum()
            g_other = (grad * other_out).sum() if other_out.shape == out.shape else torch.zeros_like(g_picked)
        return g_picked, g_other, None, None, *([None] * len(inputs))


def _weighted_sum(outputs: list[tuple[Any, torch.Tensor | None]], label: str) -> Any:
    if len(outputs) == 1 and outputs[0][1] is None:
        return outputs[0][0]
    total: Any = None
    for out, w in outputs:
        term = out if w is None else out * w
        if total is not None and getattr(total, "shape", None) != getattr(term, "shape", None):
            raise OneShotError(
                label,
                f"its candidates give outputs of different shapes ({tuple(total.shape)} and "
                f"{tuple(term.shape)}), which a mixing strategy cannot add; use a sampling strategy "
                "(RandomOneShot, ENAS) or make the candidates' outputs alike",
            )
        total = term if total is None else total + term
    return total


# --------------------------------------------------------------------------------------------- mixed modules


class _Mixed(nn.Module):
    def _bind(self, state: SupernetState) -> None:
        object.__setattr__(self, "state", state)  # shared, not a child module

    state: SupernetState


class MixedLayerChoice(_Mixed):
    """A ``LayerChoice`` in a supernet: runs the candidate(s) the state picks; ``label`` and ``names`` as before."""

    def __init__(self, label: str, candidates: Mapping[str, nn.Module], state: SupernetState) -> None:
        super().__init__()
        self.label = label
        self.names = list(candidates)
        self.candidates = nn.ModuleDict({_key(n): m for n, m in candidates.items()})
        self._bind(state)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        mods = list(self.candidates.values())
        paths = self.state.paths(self.label)
        if (
            self.state.mode == GATES
            and len(paths) == 2
            and not kwargs
            and all(isinstance(a, torch.Tensor) for a in args)
        ):
            (i, g_i), (j, g_j) = paths
            if self.state.off(g_i):
                (i, g_i), (j, g_j) = (j, g_j), (i, g_i)
            out = mods[i](*args)
            if isinstance(out, torch.Tensor) and g_i is not None and g_j is not None:
                # ProxylessNAS's binary-gate gradient: the other path runs only in backward, without autograd
                return out + _GateGradient.apply(g_i, g_j, out.detach(), mods[j], *args)
        outputs = []
        for i, w in paths:
            if self.state.off(w):  # a gate's other path: its output only, for the gate's gradient
                with torch.no_grad():
                    outputs.append((mods[i](*args, **kwargs), w))
            else:
                outputs.append((mods[i](*args, **kwargs), w))
        return _weighted_sum(outputs, self.label)

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


class MixedInputChoice(_Mixed):
    """An ``InputChoice`` in a supernet: reduces the chosen inputs, or mixes every allowed selection."""

    def __init__(self, origin: InputChoice, state: SupernetState) -> None:
        super().__init__()
        self.label, self.n_candidates, self.reduction = origin.label, origin.n_candidates, origin.reduction
        self._bind(state)

    def forward(self, candidate_inputs: Sequence[torch.Tensor]) -> Any:
        values = self.state.decisions[self.label]
        return _weighted_sum(
            [
                (_reduce([candidate_inputs[j] for j in values[i]], self.reduction), w)
                for i, w in self.state.paths(self.label)
            ],
            self.label,
        )

    def extra_repr(self) -> str:
        return f"label={self.label!r}, n_candidates={self.n_candidates}, reduction={self.reduction!r}"


class MixedRepeat(_Mixed):
    """A ``Repeat`` with a chosen depth in a supernet: the first ``depth`` blocks run; mixing adds the outputs
    at each allowed depth, weighted."""

    def __init__(self, origin: Repeat, state: SupernetState) -> None:
        super().__init__()
        self.blocks = origin.blocks
        self.depth_choice = origin.depth_choice
        self.label = origin.label
        self.labels = (
            [leaf.label for leaf in origin.depth_choice.leaves()] if origin.depth_choice else [origin.label]
        )
        self._bind(state)

    def _depth(self, arch: Mapping[str, Any]) -> int:
        if self.depth_choice is not None:
            return int(self.depth_choice.evaluate(arch))
        return int(arch[self.label])

    def forward(self, x: Any) -> Any:
        combos = self.state.combos(self.labels)
        depths = [(self._depth(a), w) for a, w in combos]
        wanted: dict[int, torch.Tensor | None] = {}
        for d, w in depths:
            if d in wanted and w is not None:
                prev = wanted[d]
                wanted[d] = w if prev is None else prev + w
            else:
                wanted.setdefault(d, w)
        outputs = []
        out = x
        # with gates, blocks past the picked depth only serve the other gate's gradient: no autograd there
        picked = max((d for d, w in wanted.items() if not self.state.off(w)), default=max(wanted))
        for d in range(max(wanted) + 1):
            if d in wanted:
                outputs.append((out, wanted[d]))
            if d < len(self.blocks) and d < max(wanted):
                if d >= picked and self.state.mode == GATES:
                    with torch.no_grad():
                        out = self.blocks[d](out)
                else:
                    out = self.blocks[d](out)
        return _weighted_sum(outputs, self.label)

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


def _key(name: str) -> str:
    return name.replace(".", "_") or "_"


class MixedValueLayer(_Mixed):
    """A layer built with ``ValueChoice`` arguments, in a supernet.

    ``Conv1d``/``Conv2d``/``Linear``/``BatchNorm1d``/``BatchNorm2d`` hold one set of weights of the largest
    size (:attr:`weight`, :attr:`bias`); an architecture uses the slice its values pick (the first channels,
    the centre of the kernel), so a sub-net frozen from the supernet by :meth:`sliced` computes exactly what
    the supernet computes for that architecture. Mixing weighs the slices' masks (one convolution at the
    largest size). Any other layer keeps one instance per combination of its values.
    """

    def __init__(self, origin: nn.Module, state: SupernetState) -> None:
        super().__init__()
        base = type(origin).__dict__.get("_nas_base") or type(origin).__mro__[1]
        args, kwargs = origin._nas_init  # type: ignore[misc]
        self.base: type[nn.Module] = base
        self._args, self._kwargs = args, kwargs
        self.labels = [leaf.label for leaf in expr_leaves(list(args)) + expr_leaves(kwargs)]
        self.labels = list(dict.fromkeys(self.labels))
        self._bind(state)
        self.shared = issubclass(base, _SHARED)
        combos = [
            dict(zip(self.labels, c)) for c in itertools.product(*(state.decisions[la] for la in self.labels))
        ]
        self._resolved = {canonical(a): self._bind_args(a) for a in combos}
        if self.shared:
            largest = self._largest(list(self._resolved.values()))
            self.full = base(**largest)
            self.full.train(origin.training)
        else:
            self.copies = nn.ModuleDict(
                {str(i): base(*resolve(list(args), a), **resolve(kwargs, a)) for i, a in enumerate(combos)}
            )
            self._copy_index = {canonical(a): str(i) for i, a in enumerate(combos)}

    # arguments -----------------------------------------------------------------------------------
    def _bind_args(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        bound = inspect.signature(self.base).bind(
            *resolve(list(self._args), arch), **resolve(self._kwargs, arch)
        )
        bound.apply_defaults()
        out = dict(bound.arguments)
        if "kernel_size" in out:
            n = 1 if issubclass(self.base, nn.Conv1d) else 2
            for key in ("kernel_size", "stride", "dilation") + (
                ("padding",) if not isinstance(out.get("padding"), str) else ()
            ):
                v = out[key]
                out[key] = (v,) * n if isinstance(v, int) else tuple(v)
        return out

    def _largest(self, all_args: list[dict[str, Any]]) -> dict[str, Any]:
        first = dict(all_args[0])
        for key in ("in_channels", "out_channels", "in_features", "out_features", "num_features"):
            if key in first:
                first[key] = max(a[key] for a in all_args)
        if "kernel_size" in first:
            first["kernel_size"] = tuple(
                max(a["kernel_size"][d] for a in all_args) for d in range(len(first["kernel_size"]))
            )
            first["padding"] = 0
            first["groups"] = max(a["groups"] for a in all_args)
        if "bias" in first:
            first["bias"] = any(a["bias"] for a in all_args)
        return first

    def args_for(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        return self._resolved[canonical({la: arch[la] for la in self.labels})]

    @property
    def weight(self) -> torch.Tensor:
        return self.full.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.full.bias

    # checks --------------------------------------------------------------------------------------
    def check_mixable(self, strategy: str) -> None:
        """Raise OneShotError when the values cannot be mixed in one computation (``strategy`` is named)."""
        if not self.shared:
            return
        args = list(self._resolved.values())
        if "kernel_size" in args[0]:
            for key in ("stride", "dilation", "padding_mode"):
                if len({str(a[key]) for a in args}) > 1:
                    raise OneShotError(
                        self.labels[0],
                        f"{strategy} mixes the values of a {self.base.__name__} in one convolution, so its {key} "
                        f"cannot change with the choice (got {sorted({str(a[key]) for a in args})}); use a "
                        "sampling strategy (RandomOneShot, ENAS) or a LayerChoice",
                    )
            if any(isinstance(a["padding"], str) for a in args) or len({_offset(a) for a in args}) > 1:
                raise OneShotError(
                    self.labels[0],
                    f"{strategy} needs every kernel size of this {self.base.__name__} to keep the output size "
                    "(padding = kernel_size // 2 for odd kernels); got "
                    f"{[(a['kernel_size'], a['padding']) for a in args]}",
                )
            groups = {a["groups"] for a in args}
            if len(groups) > 1 and not all(
                a["groups"] == a["in_channels"] == a["out_channels"] for a in args
            ):
                raise OneShotError(
                    self.labels[0],
                    f"{strategy}: groups changes with the choice but the convolution is not depthwise "
                    "(groups = in_channels = out_channels); use a sampling strategy",
                )

    # running -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        combos = self.state.combos(self.labels)
        if not self.shared:
            return _weighted_sum(
                [(self.copies[self._copy_index[canonical(a)]](x), w) for a, w in combos], self.labels[0]
            )
        if len(combos) == 1 and combos[0][1] is None:
            return self._run(x, self.args_for(combos[0][0]))
        return self._run_mixed(x, [(self.args_for(a), w) for a, w in combos])

    def _slices(self, a: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, b = self.full.weight, self.full.bias
        if issubclass(self.base, nn.Linear):
            w = w[: a["out_features"], : a["in_features"]]
            b = b[: a["out_features"]] if b is not None and a["bias"] else None
            return w, b
        kfull = self.full.kernel_size
        crop = tuple(slice((kf - k) // 2, (kf - k) // 2 + k) for kf, k in zip(kfull, a["kernel_size"]))
        w = w[(slice(0, a["out_channels"]), slice(0, a["in_channels"] // a["groups"]), *crop)]
        b = b[: a["out_channels"]] if b is not None and a["bias"] else None
        return w, b

    def _run(self, x: torch.Tensor, a: Mapping[str, Any]) -> torch.Tensor:
        full = self.full
        if issubclass(self.base, nn.Linear):
            w, b = self._slices(a)
            return F.linear(x, w, b)
        if issubclass(self.base, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return _batch_norm(full, x, a["num_features"])
        w, b = self._slices(a)
        conv = F.conv1d if issubclass(self.base, nn.Conv1d) else F.conv2d
        if a["padding_mode"] != "zeros":
            pad = [p for p in reversed(a["padding"]) for _ in range(2)]
            return conv(
                F.pad(x, pad, mode=a["padding_mode"]), w, b, a["stride"], 0, a["dilation"], a["groups"]
            )
        return conv(x, w, b, a["stride"], a["padding"], a["dilation"], a["groups"])

    def _run_mixed(
        self, x: torch.Tensor, parts: list[tuple[dict[str, Any], torch.Tensor | None]]
    ) -> torch.Tensor:
        """Every value at once, at the largest size: the input's channels, the output's channels and the kernel
        are each scaled by a mask, the weighted sum over the values of "this channel (kernel cell) is in the
        slice". With one-hot weights this is exactly the sliced layer (zeros beyond its channels). The masks are
        vectors (and one kernel-sized one), so mixing saves about two activation tensors per layer for backward,
        not a weight-sized mask per value."""
        full = self.full
        if issubclass(self.base, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self._norm_mixed(x, parts)
        linear = issubclass(self.base, nn.Linear)
        in_key, out_key = ("in_features", "out_features") if linear else ("in_channels", "out_channels")
        n_in, n_out = (
            (full.in_features, full.out_features) if linear else (full.in_channels, full.out_channels)
        )
        in_mask = _prefix_mask(parts, in_key, n_in, x)
        out_mask = _prefix_mask(parts, out_key, n_out, x)
        bias = None
        if full.bias is not None:
            with_bias = [(a, w) for a, w in parts if a["bias"]]
            bias = full.bias * _prefix_mask(with_bias, out_key, n_out, x, always=True) if with_bias else None
        shape = [1] * x.dim()
        shape[-1 if linear else 1] = -1
        if in_mask is not None:
            x = x * in_mask.view(shape)
        if linear:
            y = F.linear(x, full.weight)
        else:
            weight = full.weight
            kernels = {a["kernel_size"] for a, _ in parts}
            if len(kernels) > 1 or next(iter(kernels)) != full.kernel_size:
                kmask = torch.zeros(full.kernel_size, device=x.device, dtype=x.dtype)
                for a, w in parts:
                    m = torch.zeros(full.kernel_size, device=x.device, dtype=x.dtype)
                    m[
                        tuple(
                            slice((kf - k) // 2, (kf - k) // 2 + k)
                            for kf, k in zip(full.kernel_size, a["kernel_size"])
                        )
                    ] = 1.0
                    kmask = kmask + (m if w is None else m * w)
                weight = weight * kmask
            a = parts[0][0]
            conv = F.conv1d if issubclass(self.base, nn.Conv1d) else F.conv2d
            # the largest kernel with the padding that keeps each smaller one's output (checked at the start)
            padding = tuple(
                p + (kf - k) // 2 * d
                for p, kf, k, d in zip(a["padding"], full.kernel_size, a["kernel_size"], a["dilation"])
            )
            groups = full.groups if len({p[0]["groups"] for p in parts}) > 1 else a["groups"]
            if groups != full.groups:
                weight = weight[:, : full.in_channels // groups]
            y = conv(x, weight, None, a["stride"], padding, a["dilation"], groups)
        if out_mask is not None:
            y = y * out_mask.view(shape)
        if bias is not None:
            y = y + bias.view(shape)
        return y

    def _norm_mixed(
        self, x: torch.Tensor, parts: list[tuple[dict[str, Any], torch.Tensor | None]]
    ) -> torch.Tensor:
        """Batch norm over the largest width, each channel scaled by the summed weight of the widths that have
        it (normalisation would otherwise undo the weighting of the layer before)."""
        full = self.full
        n = full.num_features
        cmask = torch.zeros(n, device=x.device, dtype=x.dtype)
        for a, w in parts:
            m = torch.zeros(n, device=x.device, dtype=x.dtype)
            m[: a["num_features"]] = 1.0
            cmask = cmask + (m if w is None else m * w)
        return _batch_norm(full, x, n) * cmask.view(1, -1, *([1] * (x.dim() - 2)))

    def sliced(self, arch: Mapping[str, Any]) -> nn.Module:
        """The plain layer ``arch`` picks, holding copies of the slices of the shared weights it uses."""
        a = self.args_for(arch)
        if not self.shared:
            return copy.deepcopy(
                self.copies[self._copy_index[canonical({la: arch[la] for la in self.labels})]]
            )
        layer = self.base(**{k: v for k, v in a.items()})
        with torch.no_grad():
            if issubclass(self.base, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = a["num_features"]
                for name in ("weight", "bias", "running_mean", "running_var"):
                    src = getattr(self.full, name)
                    if src is not None:
                        getattr(layer, name).copy_(src[:c])
                layer.num_batches_tracked.copy_(self.full.num_batches_tracked)
            else:
                w, b = self._slices(a)
                layer.weight.copy_(w)
                if layer.bias is not None and b is not None:
                    layer.bias.copy_(b)
        layer.train(self.training)
        return layer

    def extra_repr(self) -> str:
        return f"{self.base.__name__}, labels={self.labels}"


def _prefix_mask(
    parts: Sequence[tuple[Mapping[str, Any], torch.Tensor | None]],
    key: str,
    n: int,
    like: torch.Tensor,
    always: bool = False,
) -> torch.Tensor | None:
    """``sum_values weight * [i < value[key]]`` over ``i < n``; ``None`` when every value covers all ``n``."""
    if not always and all(a[key] == n for a, _ in parts):
        return None
    mask = torch.zeros(n, device=like.device, dtype=like.dtype)
    for a, w in parts:
        m = torch.zeros(n, device=like.device, dtype=like.dtype)
        m[: a[key]] = 1.0
        mask = mask + (m if w is None else m * w)
    return mask


def _offset(a: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple((k - 1) * d - 2 * p for k, d, p in zip(a["kernel_size"], a["dilation"], a["padding"]))


def _batch_norm(bn: nn.Module, x: torch.Tensor, c: int) -> torch.Tensor:
    use_batch = bn.training or bn.running_mean is None
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    # slices of the buffers are views: the statistics of the first c channels are updated in place
    return F.batch_norm(
        x,
        bn.running_mean[:c] if bn.running_mean is not None else None,
        bn.running_var[:c] if bn.running_var is not None else None,
        bn.weight[:c] if bn.weight is not None else None,
        bn.bias[:c] if bn.bias is not None else None,
        use_batch,
        momentum if bn.training else 0.0,
        bn.eps,
    )


# --------------------------------------------------------------------------------------------- building


class Supernet(nn.Module):
    """The transformed model space: call it like the space; :attr:`state` says which architecture(s) run.

    Attributes:
        state: the :class:`SupernetState` every mixed module reads.
        model: the transformed copy of the space.
    """

    def __init__(self, model: nn.Module, state: SupernetState) -> None:
        super().__init__()
        self.model = model
        object.__setattr__(self, "state", state)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)

    def mixed_modules(self) -> list[_Mixed]:
        return [m for m in self.model.modules() if isinstance(m, _Mixed)]

    def value_layers(self) -> list[MixedValueLayer]:
        return [m for m in self.model.modules() if isinstance(m, MixedValueLayer)]

    def path_labels(self) -> set[str]:
        """Labels whose values are separate paths (LayerChoice, InputChoice, Repeat depth), which gating
        strategies gate; a ValueChoice of layer arguments shares one weight across its values instead."""
        found: set[str] = set()
        for m in self.mixed_modules():
            if isinstance(m, (MixedLayerChoice, MixedInputChoice)):
                found.add(m.label)
            elif isinstance(m, MixedRepeat):
                found.update(m.labels)
        return found


# what each kind of strategy can search; the rest is refused at the start
_MIXING = {"DARTS", "GumbelDARTS"}
_GATES = {"Proxyless"}


def build_supernet(space: nn.Module, strategy: str = "RandomOneShot") -> Supernet:
    """A supernet of ``space`` (a copy; the space is left as it is) for the one-shot strategy named.

    ``strategy`` (``"DARTS"``, ``"GumbelDARTS"``, ``"ENAS"``, ``"RandomOneShot"``/``"SPOS"``, ``"Proxyless"``)
    decides what is refused: mixing and gating strategies (DARTS, GumbelDARTS, Proxyless) need candidates
    with outputs of one shape, convolutions whose kernel choices keep the output size and stride, and no
    ``ValueChoice`` kept as a plain attribute; no one-shot strategy searches ``ModelParameterChoice`` or
    ``NasBench101Cell``.

    Raises:
        OneShotError: a primitive of the space this strategy cannot search (the message names its label).
    """
    from nni_pl.nas.space import ModelSpace, collect_choices

    if isinstance(space, ModelSpace):
        params = space.__dict__.get("_nas_parameters") or {}
        if params and space.frozen_arch is None:
            label = next(iter(params))
            raise OneShotError(
                label,
                f"is a ModelParameterChoice, which changes how the space is built; {strategy} trains one "
                "network for every architecture, so it cannot search it (use a multi-trial strategy, or a "
                "ValueChoice/LayerChoice)",
            )
    decisions = collect_choices(space)
    state = SupernetState(decisions)
    model = copy.deepcopy(space)
    model = _transform(model, state, strategy)
    net = Supernet(model, state)
    if strategy in _MIXING or strategy in _GATES:
        for layer in net.value_layers():
            layer.check_mixable(strategy)
    return net


def _transform(module: nn.Module, state: SupernetState, strategy: str) -> nn.Module:
    from nni_pl.nas.cells import NasBench101Cell

    if isinstance(module, LayerChoice):
        return MixedLayerChoice(
            module.label,
            {n: _transform(m, state, strategy) for n, m in module._modules.items()},
            state,  # type: ignore[arg-type]
        )
    if isinstance(module, InputChoice):
        return MixedInputChoice(module, state)
    if isinstance(module, Repeat):
        for i, block in enumerate(list(module.blocks)):
            module.blocks[i] = _transform(block, state, strategy)
        if module.depth_choice is None and module.min_depth == module.max_depth:
            return module
        return MixedRepeat(module, state)
    if isinstance(module, NasBench101Cell):
        raise OneShotError(
            module.label,
            f"is a NasBench101Cell, whose architectures are constrained graphs; {strategy} cannot train them "
            "as one network (as in NNI); use a multi-trial strategy",
        )
    if getattr(module, "_nas_init", None) is not None:
        return MixedValueLayer(module, state)
    if isinstance(module, Mutable) and module.own_choices() and not _made_of_children(module):
        label = module.own_choices()[0][0]
        raise OneShotError(label, f"{type(module).__name__} is not searchable by {strategy}")
    for name, child in list(module._modules.items()):
        if child is not None:
            module._modules[name] = _transform(child, state, strategy)
    exprs = {k: v for k, v in vars(module).items() if isinstance(v, ValueExpr)}
    if exprs:
        name, expr = next(iter(exprs.items()))
        if strategy in _MIXING or strategy in _GATES:
            raise OneShotError(
                expr.leaves()[0].label,
                f"is a ValueChoice kept as the attribute {type(module).__name__}.{name}; {strategy} would have "
                "to mix plain values, which it cannot; pass it to a layer from nni_pl.nas.nn, or use "
                "RandomOneShot or ENAS",
            )
        module.register_forward_pre_hook(_AttributeSetter(exprs, state))
    return module


def _made_of_children(module: Mutable) -> bool:
    """Whether a mutable's decisions all belong to choices among its children (Cell, NasBench201Cell, ...)."""
    own = {label for label, _kind, _values in module.own_choices()}
    if not own:
        return True
    inner = {
        m.label for m in module.modules() if isinstance(m, (LayerChoice, InputChoice)) and m is not module
    }
    return own <= inner


class _AttributeSetter:
    """A forward pre-hook giving a module's ValueChoice attributes their sampled values."""

    def __init__(self, exprs: Mapping[str, ValueExpr], state: SupernetState) -> None:
        self.exprs, self.state = dict(exprs), state

    def __call__(self, module: nn.Module, args: Any) -> None:
        for name, expr in self.exprs.items():
            module.__dict__[name] = expr.evaluate(self.state.arch)


def freeze_supernet(net: Supernet, space: nn.Module, arch: Mapping[str, Any]) -> nn.Module:
    """``space`` frozen to ``arch`` with the supernet's trained weights copied in (a standalone sub-net).

    Works where every weight of the architecture has one place in the frozen model: candidates of chosen
    LayerChoices, blocks of Repeats, sliced ValueChoice layers and plain layers.
    """
    frozen = space.freeze(dict(arch)) if hasattr(space, "freeze") else None
    if frozen is None:
        raise TypeError("freeze_supernet needs a ModelSpace")
    state = net.state
    state.set_arch(arch)
    source = _plain_equivalent(net.model, arch)
    missing, _unexpected = frozen.load_state_dict(source.state_dict(), strict=False)
    if missing:
        raise OneShotError("", f"the frozen model has weights the supernet does not hold: {missing[:5]}")
    return frozen


def _plain_equivalent(module: nn.Module, arch: Mapping[str, Any]) -> nn.Module:
    """A copy of the supernet module with each mixed module replaced by what ``arch`` picks (same names as a
    frozen space: LayerChoice -> the candidate, Repeat -> Sequential of blocks, layer -> sliced layer)."""
    if isinstance(module, MixedLayerChoice):
        i = module.state.index(module.label, arch[module.label])
        return _plain_equivalent(list(module.candidates.values())[i], arch)
    if isinstance(module, MixedValueLayer):
        return module.sliced(arch)
    if isinstance(module, MixedRepeat):
        d = module._depth(arch)
        return nn.Sequential(*[_plain_equivalent(b, arch) for b in list(module.blocks)[:d]])
    if isinstance(module, MixedInputChoice):
        return nn.Module()
    out = copy.copy(module)
    out._modules = {
        k: (_plain_equivalent(v, arch) if v is not None else None) for k, v in module._modules.items()
    }  # type: ignore[assignment]
    out._parameters = dict(module._parameters)  # type: ignore[assignment]
    out._buffers = dict(module._buffers)  # type: ignore[assignment]
    if isinstance(module, Repeat):
        return nn.Sequential(*[out.blocks[i] for i in range(module.chosen_depth(arch))])
    return out
