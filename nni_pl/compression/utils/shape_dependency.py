"""Topology analysis (NNI's ``nni.compression.pytorch.utils.shape_dependency``).

:class:`ChannelDependency` lists the convolutions whose output channels must stay equal in number (their outputs
meet in a residual addition or a multiplication, or pass through one depthwise convolution);
:class:`GroupDependency` gives, per convolution, the number its filter count must stay divisible by (grouped
convolutions reading or writing the channels); :func:`not_safe_to_prune` names the layers whose output reaches a
``view``/``reshape``. All three read the channel analysis that dependency-aware pruning and
:class:`~nni_pl.compression.speedup.ModelSpeedup` use (``torch.fx`` tracing), so they agree with what speed-up does.

Example:
    >>> import torch
    >>> from nni_pl.compression.utils import ChannelDependency
    >>> class Res(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
    ...         self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
    ...         self.conv3 = torch.nn.Conv2d(8, 4, 1)
    ...     def forward(self, x):
    ...         x = self.conv1(x)
    ...         return self.conv3(x + self.conv2(x))
    >>> [sorted(s) for s in ChannelDependency(Res(), torch.randn(1, 3, 8, 8)).dependency_sets]
    [['conv1', 'conv2'], ['conv3']]
"""

from __future__ import annotations

import csv
import itertools
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from nni_pl.compression.speedup.dependency import ChannelSet, channel_sets
from nni_pl.errors import ConfigError

__all__ = ["ChannelDependency", "GroupDependency", "ReshapeDependency", "not_safe_to_prune"]

logger = logging.getLogger(__name__)

_CONV = nn.modules.conv._ConvNd
_RESHAPE_METHODS = {"view", "reshape", "view_as", "reshape_as"}
_RESHAPE_FUNCTIONS = {torch.reshape}


def _check(model: Any, dummy_input: Any) -> None:
    if not isinstance(model, nn.Module):
        raise ConfigError("model", f"must be a torch.nn.Module, got {type(model).__name__}")
    inputs = dummy_input if isinstance(dummy_input, (tuple, list)) else (dummy_input,)
    if not inputs or not any(isinstance(t, torch.Tensor) for t in inputs):
        raise ConfigError(
            "dummy_input",
            f"got {type(dummy_input).__name__}; pass an example input tensor (or a tuple of the positional inputs "
            "of forward), e.g. torch.randn(1, 3, 224, 224)",
        )


def _is_conv(m: nn.Module) -> bool:
    return isinstance(m, _CONV) and not m.transposed


def _is_depthwise(m: nn.Module) -> bool:
    return _is_conv(m) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


class _Union:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


class ChannelDependency:
    """Sets of convolutions whose output channels must be pruned alike (NNI's ``ChannelDependency``).

    Args:
        model: the model (traced with ``torch.fx``; untraceable user submodules stay opaque calls).
        dummy_input: an example input (tensor or tuple of positional inputs).
        traced_model: accepted for NNI's signature and ignored (the model is traced here).
        prune_type: ``"Filter"`` (NNI's default: the sets list convolutions) or ``"Batchnorm"`` (the batch norms
            carrying the channels).

    Attributes:
        dependency: layer name -> the set of layers (itself included) it shares output channels with; Linear
            layers coupled with a convolution are members too.
        channel_sets: the underlying :class:`~nni_pl.compression.speedup.dependency.ChannelSet` list (with the
            channel offsets, for layers whose output is cut into several sets).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3, groups=8))
        >>> [sorted(s) for s in ChannelDependency(net, torch.randn(1, 3, 8, 8)).dependency_sets]
        [['0', '1']]
    """

    def __init__(
        self, model: nn.Module, dummy_input: Any, traced_model: Any = None, prune_type: str = "Filter"
    ) -> None:
        if prune_type not in ("Filter", "Batchnorm"):
            raise ConfigError(
                "prune_type", f"got {prune_type!r}; use 'Filter' (convolutions) or 'Batchnorm' (batch norms)"
            )
        _check(model, dummy_input)
        self.model = model
        self.prune_type = prune_type
        self.channel_sets: list[ChannelSet] = channel_sets(model, dummy_input)
        self._modules = dict(model.named_modules())
        self._order = {name: i for i, name in enumerate(self._modules)}
        self.dependency: dict[str, set[str]] = {}
        self.build_dependency()

    def _wanted(self, name: str) -> bool:
        m = self._modules.get(name)
        if self.prune_type == "Batchnorm":
            return isinstance(m, nn.modules.batchnorm._BatchNorm)
        return m is not None and (_is_conv(m) or isinstance(m, nn.Linear))

    def _listed(self, name: str) -> bool:
        m = self._modules.get(name)
        if self.prune_type == "Batchnorm":
            return isinstance(m, nn.modules.batchnorm._BatchNorm)
        return m is not None and _is_conv(m)

    def build_dependency(self) -> dict[str, set[str]]:
        """Group the layers whose output channels are coupled; returns :attr:`dependency`."""
        union = _Union()
        for cs in self.channel_sets:
            names = [n for n, _off in cs.members if self._wanted(n)]
            for n in names:
                union.find(n)
            for a, b in itertools.pairwise(names):
                union.union(a, b)
        groups: dict[str, set[str]] = {}
        for n in union.parent:
            groups.setdefault(union.find(n), set()).add(n)
        self.dependency = {}
        for members in groups.values():
            if len(members) > 1:
                for n in members:
                    self.dependency[n] = members
        return self.dependency

    @property
    def dependency_sets(self) -> list[set[str]]:
        """One set per group of coupled convolutions, every convolution in exactly one set (in model order)."""
        out: list[set[str]] = []
        seen: set[str] = set()
        for name in self._modules:
            if not self._listed(name) or name in seen:
                continue
            group = {n for n in self.dependency.get(name, {name}) if self._listed(n)} or {name}
            seen |= group
            out.append(group)
        return out

    def export(self, filepath: str | Path) -> None:
        """Write NNI's CSV: ``Dependency Set,Convolutional Layers`` then ``Set 1,conv_a,conv_b`` per set."""
        with open(filepath, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["Dependency Set", "Convolutional Layers"])
            for i, group in enumerate(self.dependency_sets, 1):
                writer.writerow([f"Set {i}", *sorted(group, key=self._order.__getitem__)])


class GroupDependency:
    """Per convolution, the number its filter count must stay divisible by (NNI's ``GroupDependency``).

    A grouped convolution (``groups=g``) needs its own filters and the channels it reads (the filters of the
    convolutions feeding it) in ``g`` equal blocks; several constraints on one set of channels combine to their
    least common multiple. A depthwise convolution is no constraint: speed-up shrinks it together with the layers
    feeding it (:class:`ChannelDependency` lists them together), so it reports 1.

    Args:
        model: the model.
        dummy_input: an example input.
        traced_model: ignored (NNI's signature).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3, groups=4))
        >>> GroupDependency(net, torch.randn(1, 3, 8, 8)).dependency
        {'0': 4, '1': 4}
    """

    def __init__(self, model: nn.Module, dummy_input: Any, traced_model: Any = None) -> None:
        _check(model, dummy_input)
        self.model = model
        self.channel_sets: list[ChannelSet] = channel_sets(model, dummy_input)
        self._modules = dict(model.named_modules())
        self.dependency: dict[str, int] = {}
        self.build_dependency()

    def build_dependency(self) -> dict[str, int]:
        """Conv layer name -> the number its output channel count must be divisible by."""
        dep: dict[str, int] = {}
        for name, m in self._modules.items():
            if _is_conv(m):
                dep[name] = 1 if _is_depthwise(m) else m.groups
        for cs in self.channel_sets:
            if cs.chunks <= 1:
                continue
            for n, _off in cs.members:
                m = self._modules.get(n)
                if m is not None and _is_conv(m) and not _is_depthwise(m):
                    dep[n] = math.lcm(dep.get(n, 1), cs.chunks)
        self.dependency = dep
        return dep

    @property
    def dependency_sets(self) -> dict[str, int]:
        """The same as :attr:`dependency` (NNI's alias)."""
        return self.dependency

    def export(self, filepath: str | Path) -> None:
        """Write NNI's CSV: ``Conv Layer Name,Group`` then one ``name,groups`` row per convolution."""
        with open(filepath, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["Conv Layer Name", "Group"])
            for name, groups in self.dependency.items():
                writer.writerow([name, groups])


class ReshapeDependency:
    """The Conv/Linear layers whose output reaches a ``view``/``reshape`` before any other Conv/Linear layer.

    Args:
        model: the model (traced with ``torch.fx``).
        dummy_input: an example input.
        traced_model: ignored (NNI's signature).

    Attributes:
        dependency: reshape node name -> the layers feeding it.

    Example:
        >>> import torch
        >>> class Net(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = torch.nn.Conv2d(1, 4, 3)
        ...         self.fc = torch.nn.Linear(4 * 4 * 4, 2)
        ...     def forward(self, x):
        ...         return self.fc(self.conv(x).view(-1, 64))
        >>> sorted(ReshapeDependency(Net(), torch.randn(1, 1, 6, 6)).dependency_sets)
        ['conv']
    """

    def __init__(self, model: nn.Module, dummy_input: Any, traced_model: Any = None) -> None:
        from nni_pl.compression.speedup._graph import trace

        _check(model, dummy_input)
        gm, _opaque = trace(model, dummy_input)
        modules = dict(gm.named_modules())
        self.dependency: dict[str, list[str]] = {}
        for node in gm.graph.nodes:
            if not _is_reshape(node):
                continue
            parents = _parent_layers(node.args[0], modules) if node.args else []
            if parents:
                self.dependency[node.name] = parents

    @property
    def dependency_sets(self) -> set[str]:
        """The names of every layer feeding a reshape."""
        return {n for names in self.dependency.values() for n in names}


def _is_reshape(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _RESHAPE_METHODS
    return node.op == "call_function" and node.target in _RESHAPE_FUNCTIONS


def _parent_layers(start: Any, modules: dict[str, nn.Module]) -> list[str]:
    """The nearest Conv/Linear layers upstream of ``start`` (breadth first, as NNI walks its graph)."""
    out: list[str] = []
    queue: list[fx.Node] = [start] if isinstance(start, fx.Node) else []
    seen: set[fx.Node] = set()
    while queue:
        node = queue.pop(0)
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_module":
            m = modules.get(str(node.target))
            if m is not None and (_is_conv(m) or isinstance(m, nn.Linear)):
                if node.target not in out:
                    out.append(str(node.target))
                continue
        queue.extend(_inputs(node))
    return out


def _inputs(node: fx.Node) -> Iterable[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
    return found


def not_safe_to_prune(model: nn.Module, dummy_input: Any) -> list[str]:
    """The layers whose output reaches a ``view``/``reshape`` (NNI's ``not_safe_to_prune``).

    Pruning such a layer may change the shape the reshape sees (``x.view(-1, 1024)`` after pruning the conv's
    filters). nni-pl's speed-up keeps the channels of a reshape it cannot follow (and says so), so this is advice:
    if a sped-up model still meets a shape error, exclude these layers (``{'exclude': True, 'op_names': [...]}``).

    Args:
        model: the model.
        dummy_input: an example input.

    Returns:
        The layer names, in model order.

    Example:
        >>> import torch
        >>> class Net(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv1 = torch.nn.Conv2d(1, 4, 3)
        ...         self.conv2 = torch.nn.Conv2d(4, 4, 3)
        ...         self.fc = torch.nn.Linear(4 * 2 * 2, 2)
        ...     def forward(self, x):
        ...         x = self.conv2(self.conv1(x))
        ...         return self.fc(x.reshape(x.size(0), 16))
        >>> not_safe_to_prune(Net(), torch.randn(1, 1, 6, 6))
        ['conv2']
    """
    names = ReshapeDependency(model, dummy_input).dependency_sets
    return [n for n, _m in model.named_modules() if n in names]
