"""ModelSpeedup: rebuild Conv/Linear/norm layers with the channels that structured masks removed.

How a channel is chosen for removal: the masks are applied first (the result is the *masked model*); an
output channel of a Conv/Linear is *empty* when its weight mask (or, without a mask, its weight) is all
zero there. A filter whose weight is empty is pruned together with its bias (the bias is zeroed too, as
NNI's filter pruners do). Within a group of coupled layers (see :mod:`~nni_pl.compression.speedup.dependency`)
a channel is removed only when it is empty in *every* producer of the group — i.e. the group keeps the
union of the kept channels, so coupled tensors stay aligned and nothing non-zero is dropped.

Batch norm: a removed channel of a conv followed by batch norm would still output the norm's constant
``beta - gamma * mean / sqrt(var + eps)``. Speed-up removes the channel from the norm too, so it treats the
norm as masked (weight and bias zeroed for removed channels); ``speedup.masks`` holds these *effective*
masks (including the norms and zeroed biases) and the sped-up model matches the model with them applied.
With a freshly initialised norm (beta = 0, mean = 0) the constant is 0 and both agree exactly.

Ops that map 0 to non-zero (sigmoid, adding a constant) in front of a Conv/Linear, layer/group norm over
the channels, channel shuffles and anything speed-up does not know keep the channels they touch; they are
listed in ``speedup.report`` with the layers they block, and everything else still shrinks.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nni_pl.compression.speedup._analysis import ChanInfo, ChannelAnalysis
from nni_pl.compression.speedup._graph import SpeedupError

__all__ = ["ModelSpeedup", "SpeedupReport"]

_log = logging.getLogger(__name__)

Masks = dict[str, dict[str, torch.Tensor]]


@dataclass
class SpeedupReport:
    """What speed-up did.

    Attributes:
        replaced: module name -> ``"Conv2d(64->32, 64->32)"`` style before/after channel counts.
        unsupported: ``(op, reason, blocked layers)`` for every op that kept channels.
        opaque: user modules that torch.fx could not trace (kept as one call each).
        blocked: ``(layer, n, why)``: ``n`` channels the masks prune in ``layer`` that speed-up keeps, and why
            (the coupled layer that keeps them, the grouped conv whose groups would become unequal, the op that
            pins them).
        unreached: layers with parameters the dummy input reaches in neither train nor eval mode (a branch
            behind a flag); they keep their shapes, so such a path may no longer fit after speed-up.
        params_before / params_after: parameter counts.
    """

    replaced: dict[str, str] = field(default_factory=dict)
    unsupported: list[tuple[str, str, list[str]]] = field(default_factory=list)
    opaque: list[str] = field(default_factory=list)
    blocked: list[tuple[str, int, str]] = field(default_factory=list)
    unreached: list[str] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0

    def __str__(self) -> str:
        lines = [
            f"speed-up: parameters {self.params_before} -> {self.params_after}, {len(self.replaced)} layers"
        ]
        lines += [f"  {name}: {what}" for name, what in self.replaced.items()]
        for op, reason, blocked in self.unsupported:
            lines.append(f"  unsupported {op}: {reason}; keeps channels of {', '.join(blocked) or '-'}")
        lines += [f"  keeps {n} masked channel(s) of {layer}: {why}" for layer, n, why in self.blocked]
        lines += [f"  not traceable, kept as one call: {name}" for name in self.opaque]
        if self.unreached:
            lines.append(f"  not reached by the dummy input (unchanged): {', '.join(self.unreached)}")
        return "\n".join(lines)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class ModelSpeedup:
    """Turn a model with structured channel masks into a smaller dense model.

    Args:
        model: the model; it is modified in place (masks applied, layers replaced) and returned.
        dummy_input: a tensor or tuple of positional inputs; batch first. The model is traced in train and in
            eval mode (branches such as inception's auxiliary head run in one mode only), so the result runs in
            both; a layer whose channels line up differently in the two modes keeps them.
        masks: ``{module name: {"weight": 0/1 tensor, "bias": 0/1 tensor (optional)}}`` or a path saved
            with ``torch.save``.

    Attributes:
        report: a :class:`SpeedupReport` after :meth:`speedup_model`.
        masks: the effective masks (including batch norms and zeroed biases) the result matches.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
        >>> mask = torch.ones(8, 3, 3, 3)
        >>> mask[:4] = 0
        >>> small = ModelSpeedup(net, torch.randn(1, 3, 16, 16), {"0": {"weight": mask}}).speedup_model()
        >>> small[0], small[2]
        (Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1)), Conv2d(4, 4, kernel_size=(3, 3), stride=(1, 1)))
    """

    def __init__(self, model: nn.Module, dummy_input: Any, masks: Masks | str, **_nni_args: Any) -> None:
        if isinstance(masks, str):
            masks = torch.load(masks, map_location="cpu")
        if not isinstance(masks, dict):
            raise SpeedupError(
                f"masks must be a dict of module name -> {{'weight': mask}}, got {type(masks).__name__}"
            )
        names = dict(model.named_modules())
        for name, m in masks.items():
            if name not in names:
                raise SpeedupError(f"masks[{name!r}]: no module of that name in {type(model).__name__}")
            for key, mask in m.items():
                p = getattr(names[name], key, None)
                if not isinstance(p, torch.Tensor) or p.shape != mask.shape:
                    got = None if p is None else tuple(p.shape)
                    raise SpeedupError(
                        f"masks[{name!r}][{key!r}]: shape {tuple(mask.shape)} does not match the parameter ({got})"
                    )
        self.model = model
        self.dummy_input = dummy_input
        self.masks: Masks = {n: dict(m) for n, m in masks.items()}
        self.report = SpeedupReport()

    # ---------------------------------------------------------------------------------------------
    def speedup_model(self) -> nn.Module:
        """Apply the masks, remove empty channels, and return the (same, now smaller) model."""
        model = self.model
        self.report.params_before = _count(model)
        modules = dict(model.named_modules())
        with torch.no_grad():
            for name, m in self.masks.items():
                for key, mask in m.items():
                    getattr(modules[name], key).mul_(mask.to(getattr(modules[name], key)))
        a = ChannelAnalysis(model, self.dummy_input)
        self._norm_masks_to_producers(a, modules)
        self.report.opaque = list(a.opaque)
        called = {str(n.target) for gm in a.graphs for n in gm.graph.nodes if n.op == "call_module"}
        self.report.unreached = [
            name
            for name, m in modules.items()
            if name
            and any(True for _ in m.parameters(recurse=False))
            and name not in called
            and not any(name.startswith(f"{c}.") for c in called | set(a.opaque))
        ]
        if self.report.unreached:
            _log.warning(
                "speed-up: the dummy input never reaches %s; they keep their shapes",
                ", ".join(self.report.unreached),
            )
        self.report.unsupported = [(u.op, u.reason, a.blocked_layers(u.spaces)) for u in a.unsupported]
        if self.report.unsupported:
            first = self.report.unsupported[0]
            _log.warning(
                "speed-up: %d op(s) keep the channels they touch (all listed in speedup.report), e.g. %s: %s; "
                "it blocks %s",
                len(self.report.unsupported),
                first[0],
                first[1],
                ", ".join(first[2][:6]) or "-",
            )
        keep = {r: self._keep_of(a, r, modules) for r, sp in enumerate(a.spaces) if sp.parent < 0}
        self._zero_removed(a, keep, modules)

        def idx(info: ChanInfo | None) -> torch.Tensor | None:
            if info is None:
                return None
            parts, off, full = [], 0, True
            for s in info.segs:
                r = a.find(s)
                k = keep[r]
                size = a.spaces[r].size
                full = full and k is None
                parts.append((torch.arange(size) if k is None else k) + off)
                off += size
            if full:
                return None
            i = torch.cat(parts)
            if info.inner > 1:
                i = (i[:, None] * info.inner + torch.arange(info.inner)).flatten()
            return i

        with torch.no_grad():
            for name, io in a.layers.items():
                new = self._rebuild(modules[name], io.kind, idx(io.inp), idx(io.out))
                if new is not None:
                    self.report.replaced[name] = self._describe(modules[name], new)
                    _set(model, name, new)
            for target, (pdim, info) in a.param_slices.items():
                i = idx(info)
                if i is None:
                    continue
                owner_name, _, attr = target.rpartition(".")
                owner = model.get_submodule(owner_name)
                old = getattr(owner, attr)
                sliced = old.detach().index_select(pdim, i.to(old.device)).clone()
                setattr(
                    owner,
                    attr,
                    nn.Parameter(sliced, old.requires_grad) if isinstance(old, nn.Parameter) else sliced,
                )
                self.report.replaced[target] = f"{tuple(old.shape)}->{tuple(sliced.shape)}"
        self.report.params_after = _count(model)
        args = self.dummy_input if isinstance(self.dummy_input, (tuple, list)) else (self.dummy_input,)
        training = model.training
        try:
            with torch.no_grad():
                # both modes must still run (inception's auxiliary head runs only in train mode); norms stay in
                # eval mode so the check updates no running statistics
                for mode in (False, True):
                    model.train(mode)
                    for m in model.modules():
                        if isinstance(m, nn.modules.batchnorm._NormBase):
                            m.eval()
                    model(*args)
        except Exception as e:
            raise SpeedupError(
                f"the sped-up {type(model).__name__} fails on the dummy input in {'train' if mode else 'eval'} "
                f"mode ({e}); a shape is probably hard-coded in forward (e.g. x.view(-1, 800)): compute it from "
                "the tensor (x.flatten(1)) and retry"
            ) from e
        finally:
            model.train(training)
        _log.info("%s", self.report)
        return model

    # ---------------------------------------------------------------------------------------------
    def _norm_masks_to_producers(self, a: ChannelAnalysis, modules: dict[str, nn.Module]) -> None:
        """A masked norm channel (weight and bias 0, e.g. from SlimPruner) outputs 0 whatever its input, so
        the conv/linear that feeds only this norm loses that filter too (the outputs do not change)."""
        # the producer must feed only this norm in every traced mode
        feeds: dict[str, set[str | None]] = {}
        for gm in a.graphs:
            for n in gm.graph.nodes:
                if n.op == "call_module":
                    users = list(n.users)
                    only = users[0] if len(users) == 1 and users[0].op == "call_module" else None
                    feeds.setdefault(str(n.target), set()).add(None if only is None else str(only.target))
        with torch.no_grad():
            for node in a.gm.graph.nodes:
                if node.op != "call_module" or node.target not in self.masks:
                    continue
                norm = modules[node.target]
                src = node.args[0] if node.args else None
                if not isinstance(norm, nn.modules.batchnorm._NormBase) or not isinstance(src, torch.fx.Node):
                    continue
                if src.op != "call_module" or feeds.get(str(src.target)) != {node.target}:
                    continue
                if a.layers.get(str(src.target)) is None:
                    continue
                if a.layers[str(src.target)].kind not in ("conv", "linear"):
                    continue
                wm = self.masks[node.target].get("weight")
                if wm is None or norm.weight is None:
                    continue
                bias = norm.bias.detach() * self.masks[node.target].get("bias", torch.ones_like(norm.bias))
                dead = ((wm == 0) & (bias == 0)).cpu()
                if not dead.any():
                    continue
                name = str(src.target)
                layer = modules[name]
                entry = self.masks.setdefault(name, {})
                for key in ("weight", "bias"):
                    p = getattr(layer, key, None)
                    if isinstance(p, torch.Tensor):
                        mask = entry.get(key, torch.ones_like(p)).clone()
                        mask[dead.to(mask.device)] = 0
                        entry[key] = mask
                        p.mul_(mask)

    def _keep_of(self, a: ChannelAnalysis, root: int, modules: dict[str, nn.Module]) -> torch.Tensor | None:
        sp = a.spaces[root]
        producers = [(n, off, role) for n, off, role in sp.members if role in ("producer", "depthwise")]
        has_source = any(role == "producer" for _, _, role in producers)
        if not producers:
            return None
        empty = torch.ones(sp.size, dtype=torch.bool)
        own: dict[str, torch.Tensor] = {}  # each producer's empty channels, for the report
        for name, off, role in producers:
            m = modules[name]
            mask = self.masks.get(name, {}).get("weight")
            w = m.weight.detach() if mask is None else mask
            if a.layers.get(name) is not None and a.layers[name].kind == "conv_transpose":
                w = w.transpose(0, 1)  # ConvTranspose weights are (in, out, ...)
            e = (w.flatten(1).abs().sum(1) == 0).cpu()
            bias_mask = self.masks.get(name, {}).get("bias")
            if bias_mask is not None:
                e &= (bias_mask == 0).cpu()
            if role == "depthwise" and has_source:
                # An empty input channel stays empty through a depthwise conv without bias there.
                e |= torch.ones_like(e) if m.bias is None else (m.bias.detach() == 0).cpu()
            else:
                own[name] = own.get(name, torch.zeros(sp.size, dtype=torch.bool)) | e[off : off + sp.size]
            empty &= e[off : off + sp.size]
        if sp.pins:
            self._report_blocked(own, torch.zeros_like(empty), lambda _c: sp.pins[0])
            return None
        if sp.grouped:
            empty = _equal_per_group(empty, sp.grouped)

        def blockers(channels: torch.Tensor) -> str:
            coupled = [n for n, e in own.items() if not e[channels].all()]
            if coupled:
                return f"coupled with {', '.join(coupled)}, which keeps them"
            grouped = list(dict.fromkeys(layer for *_, layer in sp.grouped))
            return (
                f"grouped conv {', '.join(grouped)} needs the same number of channels removed from all groups"
            )

        spared = torch.zeros_like(empty)
        if empty.all():  # a layer needs at least one channel; the kept one is all zero anyway
            empty = empty.clone()
            empty[0] = False
            spared[0] = True
        self._report_blocked(own, empty | spared, blockers)
        if not empty.any():
            return None
        return (~empty).nonzero().flatten()

    def _report_blocked(self, own: dict[str, torch.Tensor], removed: torch.Tensor, reason: Any) -> None:
        """Record, per layer, the masked (empty) channels that are kept anyway and the layer that keeps them."""
        for name, e in own.items():
            kept = e & ~removed
            if kept.any():
                self.report.blocked.append((name, int(kept.sum()), reason(kept)))

    def _zero_removed(
        self, a: ChannelAnalysis, keep: dict[int, torch.Tensor | None], modules: dict[str, nn.Module]
    ) -> None:
        """Zero bias/norm entries of removed channels and record them in the effective masks."""
        with torch.no_grad():
            for r, k in keep.items():
                if k is None:
                    continue
                sp = a.spaces[r]
                removed = torch.ones(sp.size, dtype=torch.bool)
                removed[k] = False
                for name, off, _role in sp.members:
                    m = modules[name]
                    for key in ("weight", "bias"):
                        p = getattr(m, key, None)
                        if not isinstance(p, torch.Tensor):
                            continue
                        mask = self.masks.setdefault(name, {}).get(key)
                        if mask is None:
                            mask = torch.ones_like(p)
                        mask = mask.clone()
                        transposed = key == "weight" and a.layers.get(name) is not None
                        transposed = transposed and a.layers[name].kind == "conv_transpose"
                        view = mask.transpose(0, 1) if transposed else mask
                        view[off : off + sp.size][removed.to(mask.device)] = 0
                        self.masks[name][key] = mask
                        p.mul_(mask)

    @staticmethod
    def _describe(old: nn.Module, new: nn.Module) -> str:
        def io(m: nn.Module) -> tuple[int, int]:
            if isinstance(m, nn.Linear):
                return m.in_features, m.out_features
            if isinstance(m, nn.modules.conv._ConvNd):
                return m.in_channels, m.out_channels
            return m.num_features, m.num_features

        (i0, o0), (i1, o1) = io(old), io(new)
        return f"{type(old).__name__}(in {i0}->{i1}, out {o0}->{o1})"

    @staticmethod
    def _rebuild(m: nn.Module, kind: str, i: torch.Tensor | None, o: torch.Tensor | None) -> nn.Module | None:
        if kind in ("depthwise", "norm"):
            i = o = i if i is not None else o
        if i is None and o is None:
            return None
        new = copy.deepcopy(m)

        def take(t: torch.Tensor | None, dim: int, index: torch.Tensor | None) -> torch.Tensor | None:
            if t is None or index is None:
                return t
            return t.detach().index_select(dim, index.to(t.device)).clone()

        def param(t: torch.Tensor | None, like: Any) -> Any:
            if t is None:
                return None
            return nn.Parameter(t, like.requires_grad) if isinstance(like, nn.Parameter) else t

        if kind == "grouped":
            g = m.groups
            cin_g, cout_g = m.in_channels // g, m.out_channels // g
            i = torch.arange(m.in_channels) if i is None else i.cpu()
            o = torch.arange(m.out_channels) if o is None else o.cpu()
            rows = [
                m.weight[oc, i[(i // cin_g) == oc // cout_g] - (oc // cout_g) * cin_g] for oc in o.tolist()
            ]
            new.weight = param(torch.stack(rows).detach().clone(), m.weight)
            if m.bias is not None:
                new.bias = param(take(m.bias, 0, o), m.bias)
            new.in_channels, new.out_channels = len(i), len(o)
        elif kind == "conv_transpose":
            w = take(take(m.weight, 1, o), 0, i)
            new.weight = param(w, m.weight)
            if m.bias is not None:
                new.bias = param(take(m.bias, 0, o), m.bias)
            new.in_channels, new.out_channels = w.shape[0], w.shape[1]
        elif kind == "conv" or kind == "linear":
            w = take(take(m.weight, 0, o), 1, i)
            new.weight = param(w, m.weight)
            if m.bias is not None:
                new.bias = param(take(m.bias, 0, o), m.bias)
            if kind == "conv":
                new.in_channels, new.out_channels = w.shape[1], w.shape[0]
            else:
                new.in_features, new.out_features = w.shape[1], w.shape[0]
        elif kind == "depthwise":
            new.weight = param(take(m.weight, 0, o), m.weight)
            if m.bias is not None:
                new.bias = param(take(m.bias, 0, o), m.bias)
            new.in_channels = new.out_channels = new.groups = len(o)
        else:  # batch / instance norm
            if m.weight is not None:
                new.weight = param(take(m.weight, 0, o), m.weight)
                new.bias = param(take(m.bias, 0, o), m.bias)
            if getattr(m, "running_mean", None) is not None:
                new.running_mean = take(m.running_mean, 0, o)
                new.running_var = take(m.running_var, 0, o)
            new.num_features = len(o)
        return new


def _equal_per_group(empty: torch.Tensor, grouped: list[tuple[int, int, int, str]]) -> torch.Tensor:
    """Un-remove channels until each grouped conv's groups lose equally many (the first ones removed)."""
    empty = empty.clone()
    for _ in range(len(grouped) + 1):
        changed = False
        for off, length, groups, _layer in grouped:
            chunks = empty[off : off + length].view(groups, -1)
            if chunks.shape[1] == 0:
                continue
            n = int(chunks.sum(1).min())
            if n == chunks.shape[1]:  # every channel empty: keep one per group
                n -= 1
            limited = chunks & (chunks.cumsum(1) <= n)
            if not torch.equal(limited, chunks):
                empty[off : off + length] = limited.flatten()
                changed = True
        if not changed:
            return empty
    return torch.zeros_like(empty)


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, new)
