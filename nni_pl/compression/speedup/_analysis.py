"""Channel analysis: which layers' channels are coupled, and which can be removed at all.

Every Conv/Linear output starts a *channel space* (one id per output channel set). Ops either carry a
space through (activations, pooling, batch norm, dropout, upsampling, ...), couple spaces (residual
additions and multiplications, depthwise convolutions), lay spaces side by side (concatenation along the
channel dimension), or move the channel dimension (permute, flatten before a Linear). A space is
*pinned* (kept whole) when an op that speed-up does not understand touches it, when it reaches the
model's output, or when removed channels would not be zero where they are consumed.
"""

from __future__ import annotations

import logging
import math
import operator
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from nni_pl.compression.speedup._graph import shape_of, trace

__all__ = ["ChanInfo", "ChannelAnalysis", "LayerIO", "Space", "Unsupported"]

_log = logging.getLogger(__name__)

_ADD = {
    operator.add,
    operator.iadd,
    operator.sub,
    operator.isub,
    torch.add,
    torch.sub,
    "add",
    "add_",
    "sub",
    "sub_",
}
_MUL = {operator.mul, operator.imul, torch.mul, "mul", "mul_"}
_DIV = {operator.truediv, operator.itruediv, torch.div, "div", "div_", "truediv"}
_CAT = {torch.cat, torch.concat, "cat", "concat"}
_RESHAPE = {torch.flatten, torch.reshape, "flatten", "view", "reshape"}
_REDUCE = {torch.mean, torch.sum, torch.amax, torch.amin, "mean", "sum", "amax", "amin"}
_NON_TENSOR = {getattr, "size", "dim", "numel", operator.getitem}


@dataclass
class Space:
    """A set of channels that must be kept or removed together.

    Attributes:
        size: number of channels.
        members: ``(module name, offset, role)``: channel ``i`` of the space is channel ``offset + i`` of
            the module's output; role ``"producer"`` (conv/linear whose output it is, depthwise conv) or
            ``"depthwise"`` (a depthwise conv: output channel ``i`` reads only input channel ``i``) or
            ``"norm"`` (batch norm carrying it).
        pins: why the space must be kept whole (empty when it can shrink).
    """

    size: int
    members: list[tuple[str, int, str]] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)
    parent: int = -1
    derived: bool = False  # the output of an unsupported op (already reported)
    # (offset, length, groups, layer): channels [offset, offset + length) feed or leave the grouped conv
    # ``layer``, so every one of the ``groups`` equal chunks must lose the same number of channels.
    grouped: list[tuple[int, int, int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ChanInfo:
    """Where a tensor's channels come from: ``segs`` laid side by side along ``dim``; each channel spans
    ``inner`` consecutive entries (after a flatten); ``zero_ok`` says removed channels are exactly 0 here."""

    dim: int
    segs: tuple[int, ...]
    inner: int = 1
    zero_ok: bool = True


@dataclass
class LayerIO:
    """A layer speed-up may rebuild, with the channel layout of its input and output."""

    kind: str  # "conv", "depthwise", "linear", "norm"
    inp: ChanInfo | None
    out: ChanInfo | None


@dataclass
class Unsupported:
    """An op that keeps the channels it touches; ``spaces`` are the spaces it pinned."""

    op: str
    reason: str
    spaces: list[int]


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{node.target} ({type(modules[node.target]).__name__})"
    if node.op == "call_method":
        return f"{node.name} (Tensor.{node.target})"
    return f"{node.name} ({getattr(node.target, '__name__', node.target)})"


def _tensor_nodes(node: fx.Node) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: out.append(n) or n)
    return [n for n in out if shape_of(n) is not None]


class ChannelAnalysis:
    """Trace ``model`` on ``dummy_input`` and work out its channel spaces.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
        >>> a = ChannelAnalysis(net, torch.randn(1, 3, 16, 16))
        >>> a.groups()
        [['0', '1']]
    """

    def __init__(self, model: nn.Module, dummy_input: Any) -> None:
        # The graph is traced in the mode the model was handed in and then in the other one (inception's auxiliary
        # head runs only in train mode), so the result fits both; shapes and channel probes run in eval mode,
        # which keeps dropout deterministic and the batch norms' running statistics untouched.
        training = model.training
        try:
            self._analyse(model, dummy_input, (training, not training))
        finally:
            model.train(training)

    def _analyse(self, model: nn.Module, dummy_input: Any, modes: tuple[bool, ...]) -> None:
        inputs = dummy_input if isinstance(dummy_input, (tuple, list)) else (dummy_input,)
        self.device = next((t.device for t in inputs if isinstance(t, torch.Tensor)), torch.device("cpu"))
        self.graphs: list[fx.GraphModule] = []
        self.opaque: list[str] = []
        self.spaces: list[Space] = []
        self.info: dict[fx.Node, ChanInfo | None] = {}
        self.layers: dict[str, LayerIO] = {}
        self.unsupported: list[Unsupported] = []
        self.param_slices: dict[str, tuple[int, ChanInfo]] = {}
        self._produced: dict[str, int] = {}  # module -> the space of its output, shared by both modes' graphs
        self._order: dict[Any, int] = {}
        for i, training in enumerate(modes):
            try:
                gm, opaque = trace(model, dummy_input, training=training)
            except Exception as e:
                if i == 0:
                    raise
                _log.warning(
                    "speed-up: the model cannot be traced in %s mode (%s); only %s mode is checked",
                    "train" if training else "eval",
                    e,
                    "eval" if training else "train",
                )
                continue
            model.eval()  # channel probes call the modules: no dropout, no batch statistics
            self.graphs.append(gm)
            self.opaque += [o for o in opaque if o not in self.opaque]
            self.modules = dict(gm.named_modules())
            calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
            self._shared = {
                t for t, c in calls.items() if c > 1 and any(True for _ in self.modules[t].parameters())
            }
            base = len(self._order)
            for j, n in reversed(list(enumerate(gm.graph.nodes))):
                if n.op == "call_module" and (i == 0 or n.target not in self._order):
                    self._order[n.target] = base + j
            with torch.no_grad():
                for node in gm.graph.nodes:
                    self.info[node] = self._visit(node)
        self.gm = self.graphs[0]

    # ---- union-find over spaces --------------------------------------------------------------
    def find(self, s: int) -> int:
        while self.spaces[s].parent >= 0:
            s = self.spaces[s].parent
        return s

    def _new(self, size: int, member: tuple[str, int, str] | None = None, pin: str | None = None) -> int:
        sp = Space(size)
        if member:
            sp.members.append(member)
        if pin:
            sp.pins.append(pin)
        self.spaces.append(sp)
        return len(self.spaces) - 1

    def _union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        sa, sb = self.spaces[a], self.spaces[b]
        sb.parent = a
        sa.members += sb.members
        sa.pins += sb.pins
        sa.grouped += sb.grouped

    def size(self, info: ChanInfo) -> int:
        return sum(self.spaces[self.find(s)].size for s in info.segs)

    def _pin(self, info: ChanInfo | None, reason: str) -> list[int]:
        if info is None:
            return []
        roots = sorted({self.find(s) for s in info.segs})
        for r in roots:
            self.spaces[r].pins.append(reason)
        return roots

    def _unsupported(self, node: fx.Node, reason: str) -> ChanInfo | None:
        """Pin the channels ``node`` reads, report it, and give its output fresh pinned channels."""
        what = _describe(node, self.modules)
        pinned: list[int] = []
        for t in _tensor_nodes(node):
            pinned += self._pin(self.info.get(t), f"{what}: {reason}")
        pinned = sorted(set(pinned))
        if any(not self.spaces[s].derived for s in pinned):
            self.unsupported.append(Unsupported(what, reason, pinned))
        out = shape_of(node)
        if out is None or len(out) < 2:
            return None
        s = self._new(out[1], pin=f"{what}: output of an unsupported op")
        self.spaces[s].derived = True
        return ChanInfo(1, (s,))

    def _add_members(self, info: ChanInfo, name: str, role: str) -> None:
        off = 0
        for s in info.segs:
            r = self.find(s)
            if (name, off, role) not in self.spaces[r].members:
                self.spaces[r].members.append((name, off, role))
            off += self.spaces[r].size

    def _producer(self, name: str, size: int) -> int:
        """The space of ``name``'s output channels (the same one when the module shows up in both modes' graphs)."""
        if name not in self._produced:
            self._produced[name] = self._new(size, (name, 0, "producer"))
        return self._produced[name]

    def _set_layer(self, name: str, io: LayerIO) -> None:
        """Record a layer; seen again in the other mode's graph, its channel layouts must agree (spaces are
        merged) or the layer keeps its channels there."""
        old = self.layers.get(name)
        if old is None:
            self.layers[name] = io
            return
        io.inp = self._merge(name, old.inp, io.inp, "input")
        io.out = self._merge(name, old.out, io.out, "output")
        if io.kind in ("depthwise", "norm"):
            io.out = io.inp
        self.layers[name] = io

    def _merge(self, name: str, a: ChanInfo | None, b: ChanInfo | None, what: str) -> ChanInfo | None:
        if a is None and b is None:
            return None
        sizes = [[self.spaces[self.find(s)].size for s in i.segs] if i else None for i in (a, b)]
        if a is None or b is None or a.dim != b.dim or a.inner != b.inner or sizes[0] != sizes[1]:
            reason = f"{name}: its {what} channels are laid out differently in train and eval mode"
            self._pin(a, reason)
            self._pin(b, reason)
            return None
        for s1, s2 in zip(a.segs, b.segs, strict=True):
            self._union(s1, s2)
        return ChanInfo(a.dim, a.segs, a.inner, a.zero_ok and b.zero_ok)

    # ---- results -----------------------------------------------------------------------------
    def groups(self) -> list[list[str]]:
        """Module names whose output channels are coupled (groups of two or more), in graph order."""
        by_root: dict[int, list[str]] = {}
        for i, sp in enumerate(self.spaces):
            if sp.parent < 0:
                names = sorted(dict.fromkeys(m[0] for m in sp.members), key=lambda n: self._order.get(n, 0))
                if len(names) > 1:
                    by_root[i] = names
        return sorted(by_root.values(), key=lambda g: self._order.get(g[0], 0))

    def channel_sets(self) -> list[tuple[int, list[tuple[str, int]], int]]:
        """Every channel space as ``(size, [(module, offset)], chunks)``: the Conv/Linear/norm layers whose output
        channels ``offset .. offset + size`` it is, and into how many equal chunks grouped convolutions cut it
        (each chunk must lose as many channels as the others for speed-up to remove any)."""
        out = []
        for sp in self.spaces:
            if sp.parent >= 0:
                continue
            members = list(dict.fromkeys((name, off) for name, off, _role in sp.members))
            if not members:
                continue
            chunks = 1
            for _off, length, groups, _layer in sp.grouped:
                if length == sp.size:
                    chunks = math.lcm(chunks, groups)
            out.append((sp.size, members, chunks))
        return out

    def blocked_layers(self, spaces: list[int]) -> list[str]:
        names: dict[str, None] = {}
        for s in spaces:
            for m in self.spaces[self.find(s)].members:
                names[m[0]] = None
        return list(names)

    # ---- visitors ----------------------------------------------------------------------------
    def _visit(self, node: fx.Node) -> ChanInfo | None:
        if node.op in ("placeholder", "get_attr"):
            return None
        if node.op == "output":
            for t in _tensor_nodes(node):
                self._pin(self.info.get(t), "reaches the model output")
            return None
        if node.op == "call_module":
            if node.target in self._shared:
                return self._unsupported(node, "module called more than once")
            return self._module(node)
        return self._function(node)

    def _consume(self, node: fx.Node, xi: ChanInfo | None, dim: int, inner_ok: bool) -> ChanInfo | None:
        if xi is None:
            return None
        what = _describe(node, self.modules)
        if xi.dim != dim or (xi.inner != 1 and not inner_ok):
            self._unsupported(node, f"input channels are on dim {xi.dim}, the layer reads dim {dim}")
            return None
        if not xi.zero_ok:
            self._pin(xi, f"{what}: removed channels reach it as non-zero values (an op maps 0 to non-zero)")
            return None
        return xi

    def _module(self, node: fx.Node) -> ChanInfo | None:
        name = str(node.target)
        m = self.modules[name]
        x = node.args[0] if node.args else None
        xi = self.info.get(x) if isinstance(x, fx.Node) else None
        in_shape = shape_of(x) if isinstance(x, fx.Node) else None
        out_shape = shape_of(node)
        if isinstance(m, nn.modules.conv._ConvNd) and m.transposed and m.groups == 1:
            inp = self._consume(node, xi, 1, inner_ok=False)
            out = ChanInfo(1, (self._producer(name, m.out_channels),))
            self._set_layer(name, LayerIO("conv_transpose", inp, out))
            return out
        if isinstance(m, nn.modules.conv._ConvNd) and not m.transposed:
            if m.groups == 1:
                inp = self._consume(node, xi, 1, inner_ok=False)
                out = ChanInfo(1, (self._producer(name, m.out_channels),))
                self._set_layer(name, LayerIO("conv", inp, out))
                return out
            if m.groups == m.in_channels == m.out_channels:
                if xi is None or xi.dim != 1 or xi.inner != 1:
                    if xi is not None:
                        self._unsupported(node, "input channels are not on dim 1")
                    xi = ChanInfo(1, (self._new(m.in_channels, pin=f"{name}: its input is not tracked"),))
                self._add_members(xi, name, "depthwise")
                out = ChanInfo(1, xi.segs)
                self._set_layer(name, LayerIO("depthwise", xi, out))
                return out
            inp = self._consume(node, xi, 1, inner_ok=False)
            if inp is not None:
                if len(inp.segs) != 1:
                    self._pin(inp, f"{name}: a grouped conv reading concatenated channels")
                else:
                    r = self.find(inp.segs[0])
                    self.spaces[r].grouped.append((0, self.spaces[r].size, m.groups, name))
            new = name not in self._produced
            sid = self._producer(name, m.out_channels)
            if new:
                self.spaces[sid].grouped.append((0, m.out_channels, m.groups, name))
            out = ChanInfo(1, (sid,))
            self._set_layer(name, LayerIO("grouped", inp, out))
            return out
        if isinstance(m, nn.Linear):
            if in_shape is None or out_shape is None:
                return self._unsupported(node, "input is not a tensor")
            inp = self._consume(node, xi, len(in_shape) - 1, inner_ok=True)
            out = ChanInfo(len(out_shape) - 1, (self._producer(name, m.out_features),))
            self._set_layer(name, LayerIO("linear", inp, out))
            return out
        if isinstance(m, nn.modules.batchnorm._NormBase):
            if xi is None:
                return None
            if xi.dim != 1 or xi.inner != 1:
                return self._unsupported(node, "channels are not on dim 1")
            self._add_members(xi, name, "norm")
            self._set_layer(name, LayerIO("norm", xi, xi))
            return xi
        if isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
            if xi is None:
                return None
            if type(m) is nn.LayerNorm and in_shape and xi.dim < len(in_shape) - len(m.normalized_shape):
                return xi
            self._unsupported(node, "normalizes across channels, so removing channels would change it")
            return xi
        if isinstance(m, nn.Flatten):
            return self._reshape(node, xi)
        if xi is None:
            return None
        if any(True for _ in m.parameters()):
            return self._unsupported(node, "a layer with parameters that speed-up does not rebuild")
        if len(_tensor_nodes(node)) != 1:
            return self._unsupported(node, "takes several tensors")
        return self._probe(node, xi, lambda t: m(t))

    def _probe(self, node: fx.Node, xi: ChanInfo, fn: Any) -> ChanInfo | None:
        """Treat ``fn`` as channel-wise if changing one input channel changes only that output channel."""
        x = node.args[0]
        in_shape, out_shape = shape_of(x), shape_of(node)
        if in_shape is None or out_shape is None or len(in_shape) != len(out_shape):
            return self._unsupported(node, "changes the number of dimensions")
        if out_shape[xi.dim] != in_shape[xi.dim]:
            return self._unsupported(node, "changes the channel count")
        meta = x.meta["tensor_meta"]
        try:
            with torch.no_grad():
                t = (
                    torch.randn(in_shape, dtype=meta.dtype, device=self.device)
                    if meta.dtype.is_floating_point
                    else None
                )
                if t is None:
                    return self._unsupported(node, "non-float tensor")
                t2 = t.clone()
                t2.select(xi.dim, 0).add_(1.0)
                y = self._seeded(fn, t.clone())
                y2 = self._seeded(fn, t2)
                same = torch.allclose(
                    y.narrow(xi.dim, 1, y.shape[xi.dim] - 1), y2.narrow(xi.dim, 1, y.shape[xi.dim] - 1)
                )
                zeros = torch.zeros(in_shape, dtype=meta.dtype, device=self.device)
                zero = bool((self._seeded(fn, zeros) == 0).all())
        except Exception as e:
            return self._unsupported(node, f"could not be probed ({e})")
        if not same:
            return self._unsupported(node, "mixes channels")
        return ChanInfo(xi.dim, xi.segs, xi.inner, xi.zero_ok and zero)

    def _seeded(self, fn: Any, t: torch.Tensor) -> Any:
        """``fn(t)`` with a fixed random state: a train-mode graph may call dropout with ``training=True``."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)
            return fn(t)

    def _function(self, node: fx.Node) -> ChanInfo | None:
        tensors = _tensor_nodes(node)
        tracked = [t for t in tensors if self.info.get(t) is not None]
        if not tracked:
            return None
        t = node.target
        if shape_of(node) is None:
            if t in _NON_TENSOR:
                return None
            if node.users and all(u.op == "output" for u in node.users):
                # e.g. a named tuple of outputs (inception's InceptionOutputs in train mode)
                for a in tracked:
                    self._pin(self.info.get(a), "reaches the model output")
                return None
            return self._unsupported(node, "returns several tensors")
        if t in _ADD or t in _MUL or t in _DIV:
            return self._binary(node)
        if t in _CAT:
            return self._cat(node)
        if t in _RESHAPE:
            return self._reshape(node, self.info[node.args[0]])
        if t in _REDUCE:
            return self._reduce(node)
        if t in ("permute", torch.permute, "transpose", torch.transpose, "unsqueeze", torch.unsqueeze):
            return self._move(node)
        x = node.args[0] if node.args else None
        if len(tensors) == 1 and x is tracked[0]:
            missing: list[fx.Node] = []

            def concrete(a: fx.Node) -> Any:
                if "value" not in a.meta:
                    missing.append(a)
                return a.meta.get("value")

            rest = fx.node.map_arg(tuple(node.args[1:]), concrete)
            kwargs = fx.node.map_arg(dict(node.kwargs), concrete)
            if not missing:
                if node.op == "call_method":
                    return self._probe(node, self.info[x], lambda v: getattr(v, t)(*rest, **kwargs))
                return self._probe(node, self.info[x], lambda v: t(v, *rest, **kwargs))
        return self._unsupported(node, "an op speed-up does not know")

    def _binary(self, node: fx.Node) -> ChanInfo | None:
        t = node.target
        out_shape = shape_of(node)
        nd = len(out_shape)
        operands = list(node.args[:2]) + [v for k, v in node.kwargs.items() if k == "other"]
        tracked = [
            (a, self.info[a]) for a in operands if isinstance(a, fx.Node) and self.info.get(a) is not None
        ]
        first_node, first = tracked[0]
        od = first.dim + nd - len(shape_of(first_node))
        for a, ai in tracked[1:]:
            if (
                ai.dim + nd - len(shape_of(a)) != od
                or ai.inner != first.inner
                or [self.spaces[self.find(s)].size for s in ai.segs]
                != [self.spaces[self.find(s)].size for s in first.segs]
            ):
                return self._unsupported(node, "combines tensors whose channels do not line up")
        for _, ai in tracked[1:]:
            for s1, s2 in zip(first.segs, ai.segs, strict=True):
                self._union(s1, s2)
        tracked_nodes = [a for a, _ in tracked]
        plain_zero = True  # the other operands leave removed channels at zero
        for a in operands:
            if a in tracked_nodes:
                continue
            if not isinstance(a, fx.Node):
                plain_zero = plain_zero and (a == 0 if t in _ADD else True)
                continue
            shp = shape_of(a)
            if shp is None:
                plain_zero = False
                continue
            pos = od - (nd - len(shp))
            if pos < 0 or shp[pos] == 1:
                plain_zero = plain_zero and t not in _ADD
                continue
            if a.op == "get_attr":
                self.param_slices[str(a.target)] = (pos, ChanInfo(od, first.segs, first.inner))
                plain_zero = plain_zero and t not in _ADD
                continue
            return self._unsupported(node, "combines tracked channels with an untracked tensor")
        if t in _DIV and node.args[0] not in tracked_nodes:
            return self._unsupported(node, "divides by tracked channels")
        if t in _MUL:
            zero = any(ai.zero_ok for _, ai in tracked) or plain_zero
        elif t in _DIV:
            zero = self.info[node.args[0]].zero_ok
        else:
            zero = all(ai.zero_ok for _, ai in tracked) and plain_zero
        return ChanInfo(od, first.segs, first.inner, zero)

    def _cat(self, node: fx.Node) -> ChanInfo | None:
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        nd = len(shape_of(node))
        dim = dim % nd
        segs: list[int] = []
        zero = True
        for a in tensors:
            ai = self.info.get(a)
            if ai is None:
                segs.append(
                    self._new(shape_of(a)[dim], pin=f"{_describe(node, self.modules)}: untracked input")
                )
                continue
            if ai.dim != dim or ai.inner != 1:
                return self._unsupported(node, "concatenates along a dimension other than the channels")
            segs += ai.segs
            zero = zero and ai.zero_ok
        return ChanInfo(dim, tuple(segs), 1, zero)

    def _reshape(self, node: fx.Node, xi: ChanInfo | None) -> ChanInfo | None:
        if xi is None:
            return None
        s, o = shape_of(node.args[0]), shape_of(node)
        c = xi.dim
        passthrough = o[: c + 1] == s[: c + 1]
        flatten = len(o) == c + 1 and o[:c] == s[:c] and o[c] == math.prod(s[c:])
        if not (passthrough or flatten):
            return self._unsupported(node, f"reshapes the channel dimension ({list(s)} -> {list(o)})")
        if node.target in ("view", "reshape", torch.reshape):
            shape = node.args[1:] if node.op == "call_method" else node.args[1:2]
            if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
                shape = tuple(shape[0])
            if c < len(shape) and isinstance(shape[c], int) and shape[c] != -1:
                return self._unsupported(
                    node, f"the channel size {shape[c]} is hard-coded in forward (write -1 or x.flatten(1))"
                )
        if passthrough:
            return xi
        return ChanInfo(c, xi.segs, xi.inner * math.prod(s[c + 1 :]), xi.zero_ok)

    def _reduce(self, node: fx.Node) -> ChanInfo | None:
        xi = self.info[node.args[0]]
        s = shape_of(node.args[0])
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        if dims is None:
            return self._unsupported(node, "reduces over the channels")
        dims = [d % len(s) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
        if xi.dim in dims or xi.inner != 1:
            return self._unsupported(node, "reduces over the channels")
        new = xi.dim if keep else xi.dim - sum(d < xi.dim for d in dims)
        return ChanInfo(new, xi.segs, 1, xi.zero_ok)

    def _move(self, node: fx.Node) -> ChanInfo | None:
        xi = self.info[node.args[0]]
        if xi.inner != 1:
            return self._unsupported(node, "moves flattened channels")
        nd = len(shape_of(node.args[0]))
        t = node.target
        rest = list(node.args[1:])
        if t in ("permute", torch.permute):
            dims = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
            dims = [d % nd for d in dims]
            return ChanInfo(dims.index(xi.dim), xi.segs, 1, xi.zero_ok)
        if t in ("transpose", torch.transpose):
            a, b = (d % nd for d in rest[:2])
            new = b if xi.dim == a else a if xi.dim == b else xi.dim
            return ChanInfo(new, xi.segs, 1, xi.zero_ok)
        d = rest[0] % (nd + 1)
        return ChanInfo(xi.dim + (d <= xi.dim), xi.segs, 1, xi.zero_ok)
