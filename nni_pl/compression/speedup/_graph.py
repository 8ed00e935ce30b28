"""Trace a model with ``torch.fx`` and record every node's output shape.

Standard layers (everything from ``torch.nn`` and subclasses of the layer types speed-up rebuilds) stay
leaves; user modules are traced through, and a user module that cannot be traced (data-dependent control
flow, ...) is kept as a single call instead, so custom activations and blocks still work.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from nni_pl.errors import NniPlError

__all__ = ["SpeedupError", "trace"]

_log = logging.getLogger(__name__)

# Subclasses of these (torchvision's LayerNorm2d, Conv2dNormActivation's pieces, ...) stay leaves too.
_LEAF_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.MultiheadAttention,
    nn.Embedding,
)


class _ValueProp(ShapeProp):
    """ShapeProp that also keeps small non-tensor results (sizes, ints) for later probing."""

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, (int, float, bool, torch.Size)) or (
            isinstance(result, (tuple, list)) and all(isinstance(v, (int, float)) for v in result)
        ):
            n.meta["value"] = result
        return result


class SpeedupError(NniPlError):
    """The model cannot be traced or sped up; the message names the module and how to fix it."""


class _Tracer(fx.Tracer):
    def __init__(self) -> None:
        super().__init__()
        self.opaque: list[str] = []

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, _LEAF_TYPES):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        name = self.path_of_module(m)
        if self.is_leaf_module(m, name) or not name:
            return super().call_module(m, forward, args, kwargs)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as e:
            # Nodes recorded before the failure become dead code and are removed after tracing.
            _log.info(
                "module %r (%s) is not traceable (%s); keeping it as one call", name, type(m).__name__, e
            )
            self.opaque.append(name)
            return self.create_proxy("call_module", name, args, kwargs)


def trace(
    model: nn.Module, dummy_input: Any, training: bool | None = None
) -> tuple[fx.GraphModule, list[str]]:
    """Trace ``model`` and annotate every node with its output shape (``node.meta["tensor_meta"]``).

    Args:
        model: the model.
        dummy_input: a tensor or a tuple of tensors (positional arguments of ``forward``).
        training: trace the graph with the model in this mode (``None``: its current mode); the shapes are
            then computed in eval mode (no batch statistics are updated) and the model's mode is restored.

    Returns:
        The graph module and the names of user modules kept as opaque calls.

    Raises:
        SpeedupError: the top-level ``forward`` itself cannot be traced.

    Example:
        >>> import torch
        >>> gm, opaque = trace(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()), torch.randn(1, 3, 8, 8))
        >>> [n.op for n in gm.graph.nodes]
        ['placeholder', 'call_module', 'call_module', 'output']
    """
    was_training = model.training
    tracer = _Tracer()
    try:
        if training is not None:
            model.train(training)
        graph = tracer.trace(model)
    except Exception as e:
        raise SpeedupError(
            f"torch.fx cannot trace {type(model).__name__}.forward: {e}; move data-dependent control flow "
            "into a submodule (it is then kept as one opaque call) or pass the sub-network that can be traced"
        ) from e
    finally:
        model.train(was_training)
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    if tracer.opaque:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    args = dummy_input if isinstance(dummy_input, (tuple, list)) else (dummy_input,)
    try:
        if training is not None:
            model.eval()
        with torch.no_grad():
            _ValueProp(gm).propagate(*args)
    finally:
        model.train(was_training)
    return gm, tracer.opaque


def shape_of(node: Any) -> tuple[int, ...] | None:
    """The output shape of ``node`` when it is a single tensor, else None."""
    if not isinstance(node, fx.Node):
        return None
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(meta.shape)
