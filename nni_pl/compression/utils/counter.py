"""FLOPs and parameter counter (NNI's ``nni.compression.pytorch.utils.counter.count_flops_params``).

Forward hooks on the counted layers record, per call, the layer's FLOPs for one sample, its parameters, weight
shape and input/output sizes. The counter is mask-aware, as NNI's is with its pruner wrappers: nni-pl's pruners zero
masked weights in place, so a pruned but not yet sped-up model counts only its kept output channels (FLOPs) and its
unmasked weights (parameters); a fine-grained mask counts one multiply-add per unmasked weight and output position
(NNI's ``weight_mask.sum()`` rule). As in NNI, the input channels a pruned layer no longer receives are not taken off
(only :class:`~nni_pl.compression.speedup.ModelSpeedup` removes them), so FLOPs of a masked model lie above those of
the sped-up one.

Example:
    >>> import torch
    >>> from nni_pl.compression.utils import count_flops_params
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 1), torch.nn.Conv2d(5, 5, 1))
    >>> flops, params, results = count_flops_params(model, (1, 3, 2, 2), verbose=False)
    >>> flops, params, [r["flops"] for r in results]
    (160, 50, [60, 100])
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nni_pl.errors import ConfigError, did_you_mean

__all__ = ["ModelProfiler", "count_flops_params"]

MODES = ("default", "full")

# A custom op: fn(module, inputs, output) -> {"flops": int, "params": int, "weight_shape": tuple}
CustomOp = Callable[[nn.Module, tuple[Any, ...], Any], Mapping[str, Any]]


def _kept_channels(module: nn.Module, mask: torch.Tensor) -> int:
    """Output channels of ``module`` whose weight is not entirely masked."""
    return int(mask.detach().reshape(mask.shape[0], -1).ne(0).any(dim=1).sum())


class ModelProfiler:
    """Shared state of the counting hooks (NNI's ``ModelProfiler``).

    Args:
        custom_ops: module type -> ``fn(module, inputs, output)`` returning a dict with ``flops`` (and optionally
            ``params``, ``weight_shape``); it replaces the built-in rule for that type.
        mode: ``"default"`` counts Conv and Linear layers; ``"full"`` also transposed convs, batch norms,
            activations, pooling and upsampling, and bias additions.
        masks: module name -> ``{"weight": mask, ...}`` for the pruned layers.

    Example:
        >>> p = ModelProfiler(mode="full")
        >>> torch.nn.BatchNorm2d in p.ops, torch.nn.BatchNorm2d in ModelProfiler().ops
        (True, False)
    """

    def __init__(
        self,
        custom_ops: Mapping[type, CustomOp] | None = None,
        mode: str = "default",
        masks: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    ) -> None:
        self.ops: dict[type, CustomOp] = {
            nn.Conv1d: self._count_convNd,
            nn.Conv2d: self._count_convNd,
            nn.Conv3d: self._count_convNd,
            nn.Linear: self._count_linear,
        }
        self._count_bias = mode == "full"
        if mode == "full":
            self.ops.update(
                {
                    nn.ConvTranspose1d: self._count_convNd,
                    nn.ConvTranspose2d: self._count_convNd,
                    nn.ConvTranspose3d: self._count_convNd,
                    nn.BatchNorm1d: self._count_bn,
                    nn.BatchNorm2d: self._count_bn,
                    nn.BatchNorm3d: self._count_bn,
                    nn.ReLU: self._count_relu,
                    nn.ReLU6: self._count_relu,
                    nn.LeakyReLU: self._count_relu,
                    nn.AvgPool1d: self._count_avgpool,
                    nn.AvgPool2d: self._count_avgpool,
                    nn.AvgPool3d: self._count_avgpool,
                    nn.AdaptiveAvgPool1d: self._count_adap_avgpool,
                    nn.AdaptiveAvgPool2d: self._count_adap_avgpool,
                    nn.AdaptiveAvgPool3d: self._count_adap_avgpool,
                    nn.Upsample: self._count_upsample,
                    nn.UpsamplingBilinear2d: self._count_upsample,
                    nn.UpsamplingNearest2d: self._count_upsample,
                }
            )
        if custom_ops:
            self.ops.update(custom_ops)
        self.mode = mode
        self.masks = dict(masks or {})
        self.results: list[dict[str, Any]] = []
        self._names: dict[int, str] = {}

    # -- helpers --------------------------------------------------------------------------------------------------
    def _mask(self, m: nn.Module, pname: str = "weight") -> torch.Tensor | None:
        entry = self.masks.get(self._names.get(id(m), ""))
        return entry.get(pname) if entry else None

    def _params(self, m: nn.Module) -> int:
        total = 0
        for pname, p in m.named_parameters():
            mask = self._mask(m, pname)
            total += int(mask.ne(0).sum()) if mask is not None else p.numel()
        return total

    def _result(self, m: nn.Module, flops: int) -> dict[str, Any]:
        weight = getattr(m, "weight", None)
        return {
            "flops": int(flops),
            "params": self._params(m),
            "weight_shape": tuple(weight.size()) if isinstance(weight, torch.Tensor) else 0,
        }

    @staticmethod
    def _batch(t: torch.Tensor) -> int:
        return max(int(t.shape[0]), 1) if t.dim() > 0 else 1

    # -- built-in rules (FLOPs per sample) -------------------------------------------------------------------------
    def _count_convNd(self, m: Any, x: tuple[Any, ...], y: torch.Tensor) -> dict[str, Any]:
        kernel_ops = math.prod(m.kernel_size)
        output_size = math.prod(y.shape[2:])
        cout = y.shape[1]
        mask = None if m.transposed else self._mask(m)
        if mask is None:
            flops = cout * output_size * kernel_ops * m.in_channels // m.groups
        else:
            # each unmasked weight is one multiply-add per output position (NNI: weight_mask.sum() based)
            cout = _kept_channels(m, mask) or 0
            flops = int(mask.ne(0).sum()) * output_size
        if self._count_bias and m.bias is not None:
            flops += cout * output_size
        return self._result(m, flops)

    def _count_linear(self, m: nn.Linear, x: tuple[Any, ...], y: torch.Tensor) -> dict[str, Any]:
        out_features = m.out_features
        positions = math.prod(y.shape[1:-1]) if y.dim() > 2 else 1  # tokens of a (batch, seq, features) input
        mask = self._mask(m)
        if mask is None:
            flops = out_features * m.in_features * positions
        else:
            out_features = _kept_channels(m, mask) or 0
            flops = int(mask.ne(0).sum()) * positions
        if self._count_bias and m.bias is not None:
            flops += out_features * positions
        return self._result(m, flops)

    def _count_bn(self, m: nn.Module, x: tuple[Any, ...], y: torch.Tensor) -> dict[str, Any]:
        return self._result(m, 2 * x[0].numel() // self._batch(x[0]))

    def _count_relu(self, m: nn.Module, x: tuple[Any, ...], y: torch.Tensor) -> dict[str, Any]:
        return self._result(m, x[0].numel() // self._batch(x[0]))

    def _count_avgpool(self, m: nn.Module, x: tuple[Any, ...], y: torch.Tensor) -> dict[str, Any]:
        return self._result(m, y.numel() // self._batch(y))

    def _count_adap_avgpool(self, m: nn.Module, x: tuple[Any, ...], y: torch.Tensor) -> dict[str, Any]:
        kernel = 1
        for i_size, o_size in zip(x[0].shape[2:], y.shape[2:], strict=False):
            kernel *= max(int(i_size) // max(int(o_size), 1), 1)
        return self._result(m, (kernel + 1) * (y.numel() // self._batch(y)))

    def _count_upsample(self, m: Any, x: tuple[Any, ...], y: torch.Tensor) -> dict[str, Any]:
        per_element = {"linear": 5, "bilinear": 11, "bicubic": 224 + 35, "trilinear": 13 * 2 + 5}
        mode = getattr(m, "mode", "nearest")
        return self._result(m, per_element.get(mode, 0) * (y.numel() // self._batch(y)))

    # -- hooks and totals -------------------------------------------------------------------------------------------
    def count_module(self, m: nn.Module, x: tuple[Any, ...], y: Any, name: str) -> None:
        """The forward hook: record one call of ``m`` (named ``name``)."""
        rule = self.ops[type(m)]
        result = dict(rule(m, x, y))
        result.setdefault("params", self._params(m))
        weight = getattr(m, "weight", None)
        result.setdefault("weight_shape", tuple(weight.size()) if isinstance(weight, torch.Tensor) else 0)
        first = x[0] if x and isinstance(x[0], torch.Tensor) else None
        self.results.append(
            {
                "name": name,
                "input_size": tuple(first.size()) if first is not None else (),
                "output_size": tuple(y.size()) if isinstance(y, torch.Tensor) else (),
                "module_type": type(m).__name__,
                **result,
            }
        )

    def sum_flops(self) -> int:
        return sum(int(r["flops"]) for r in self.results)

    def sum_params(self) -> int:
        # a layer called several times has its parameters once
        return sum({r["name"]: int(r["params"]) for r in self.results}.values())

    def format_results(self) -> str:
        """NNI's table (Index, Name, Type, Weight Shape, FLOPs, #Params, and #Call for layers called again)."""
        calls = Counter(r["name"] for r in self.results)
        multi = any(c > 1 for c in calls.values())
        headers = ["Index", "Name", "Type", "Weight Shape", "FLOPs", "#Params"] + (["#Call"] if multi else [])
        seen: Counter[str] = Counter()
        rows = []
        for i, r in enumerate(self.results):
            seen[r["name"]] += 1
            row = [i, r["name"], r["module_type"], str(r["weight_shape"]), r["flops"], r["params"]]
            rows.append([str(v) for v in row + ([seen[r["name"]]] if multi else [])])
        widths = [
            max(len(h), *(len(row[j]) for row in rows)) if rows else len(h) for j, h in enumerate(headers)
        ]
        rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

        def line(cells: list[str]) -> str:
            return "|" + "|".join(f" {c:^{w}} " for c, w in zip(cells, widths, strict=True)) + "|"

        return "\n".join([rule, line(headers), rule, *(line(r) for r in rows), rule])


def _as_inputs(x: Any, device: torch.device) -> tuple[Any, ...]:
    if isinstance(x, torch.Tensor):
        return (x.to(device),)
    if isinstance(x, (tuple, list)) and x and all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        return (torch.zeros(tuple(x), device=device),)
    if isinstance(x, (tuple, list)) and x and all(isinstance(v, torch.Tensor) for v in x):
        return tuple(v.to(device) for v in x)
    raise ConfigError(
        "x",
        f"got {type(x).__name__} {x!r:.80}; pass an input shape such as (1, 3, 32, 32), a tensor, "
        "or a tuple of tensors (the positional inputs of forward)",
    )


def _load(masks: Any) -> Mapping[str, Mapping[str, torch.Tensor]]:
    if isinstance(masks, (str, Path)):
        from nni_pl.compression.pruning.masks import load_masks

        return load_masks(masks)
    if not isinstance(masks, Mapping):
        raise ConfigError(
            "masks",
            f"got {type(masks).__name__}; pass a mask dict (module name -> {{'weight': mask}}) or its path",
        )
    return masks


def _zero_masks(model: nn.Module, types: tuple[type, ...]) -> dict[str, dict[str, torch.Tensor]]:
    """Masks read from the model: weights that are exactly zero (nni-pl's pruners zero masked weights in place)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, m in model.named_modules():
        weight = getattr(m, "weight", None)
        # a quantized layer's ``weight`` is a buffer holding the quantized values (small ones round to zero): its
        # zeros are no mask
        if not isinstance(m, types) or not isinstance(weight, nn.Parameter) or weight.dim() < 2:
            continue
        zero = weight.detach().eq(0)
        if not bool(zero.any()):
            continue
        entry = {"weight": (~zero).to(weight.dtype)}
        bias = getattr(m, "bias", None)
        if isinstance(bias, torch.Tensor) and bias.shape[0] == weight.shape[0]:
            removed = zero.reshape(weight.shape[0], -1).all(dim=1)
            entry["bias"] = (~(removed & bias.detach().eq(0))).to(bias.dtype)
        out[name] = entry
    return out


def count_flops_params(
    model: nn.Module,
    x: Any,
    custom_ops: Mapping[type, CustomOp] | None = None,
    verbose: bool = True,
    mode: str = "default",
    *,
    masks: Any = None,
) -> tuple[int, int, list[dict[str, Any]]]:
    """Count the FLOPs (per sample) and parameters of ``model`` (NNI's ``count_flops_params``).

    Args:
        model: the model; a pruned (masked) model counts only its kept output channels and unmasked weights.
        x: an input shape (a tuple of ints: a zero tensor of that shape is used), a tensor, or a tuple of tensors
            (the positional inputs of ``forward``).
        custom_ops: module type -> ``fn(module, inputs, output)`` returning ``{"flops": ..., "params": ...,
            "weight_shape": ...}`` (``params``/``weight_shape`` optional); overrides the built-in rule for the type.
        verbose: print NNI's per-layer table and the totals.
        mode: ``"default"`` (Conv and Linear layers) or ``"full"`` (also transposed convs, batch norms, ReLUs,
            pooling, upsampling, and bias additions).
        masks: which weights are pruned. ``None`` (default): read from the model, where nni-pl's pruners leave
            masked weights at exactly zero; a mask dict or the path of one saved by ``save_masks``; ``False``:
            count the model as dense.

    Returns:
        ``(flops, params, results)``: total FLOPs per sample, total parameters of the counted layers (a layer
        called several times counts once), and one dict per layer call with ``name``, ``module_type``,
        ``weight_shape``, ``flops``, ``params``, ``input_size`` and ``output_size``.

    Raises:
        ConfigError: ``mode`` is not ``"default"``/``"full"``, ``x`` is not a shape/tensor, or ``masks`` names a
            module the model does not have.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> flops, params, results = count_flops_params(net, torch.randn(2, 4), verbose=False)
        >>> flops, params, results[0]["input_size"]
        (12, 15, (2, 4))
    """
    if mode not in MODES:
        raise ConfigError(
            "mode", f"got {mode!r}; use 'default' (Conv and Linear layers) or 'full' (all layers)"
        )
    if not isinstance(model, nn.Module):
        raise ConfigError("model", f"must be a torch.nn.Module, got {type(model).__name__}")
    if custom_ops is not None and (
        not isinstance(custom_ops, Mapping)
        or not all(isinstance(k, type) and callable(v) for k, v in custom_ops.items())
    ):
        raise ConfigError(
            "custom_ops", f"got {custom_ops!r:.80}; pass a dict of module type -> fn(module, inputs, output)"
        )
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    inputs = _as_inputs(x, device)
    profiler = ModelProfiler(custom_ops, mode)
    counted = tuple(profiler.ops)
    if masks is None:
        found = _zero_masks(model, counted)
    elif masks is False:
        found = {}
    else:
        found = dict(_load(masks))
        modules = dict(model.named_modules())
        for name, entry in found.items():
            if name not in modules:
                raise ConfigError(
                    f"masks[{name!r}]",
                    f"the model has no module named {name!r}{did_you_mean(name, modules)}; "
                    "pass the masks of this model",
                )
            layer = getattr(modules[name], "module", modules[name])  # a quantization wrapper's layer
            for pname, mask in entry.items():
                param = getattr(layer, pname, None)
                if not isinstance(param, torch.Tensor) or tuple(getattr(mask, "shape", ())) != tuple(
                    param.shape
                ):
                    raise ConfigError(
                        f"masks[{name!r}][{pname!r}]",
                        f"module {name!r} has no parameter {pname!r} of the mask's shape; pass the masks of this model",
                    )
    names: dict[int, str] = {}
    handles = []
    for name, m in model.named_modules():
        # a quantization wrapper (``.module`` holds the layer) is reported under the wrapper's name
        if type(m).__name__ == "QuantizerModuleWrapper" and isinstance(getattr(m, "module", None), nn.Module):
            names[id(m.module)] = name
            continue
        names.setdefault(id(m), name)
        if type(m) in profiler.ops:
            handles.append(m.register_forward_hook(functools.partial(_hook, profiler=profiler, names=names)))
    profiler._names = names
    profiler.masks = {names.get(id(m), n): found[n] for n, m in model.named_modules() if n in found}
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(training)
        for h in handles:
            h.remove()
    flops, params = profiler.sum_flops(), profiler.sum_params()
    if verbose:
        print(profiler.format_results())
        print(f"FLOPs total: {flops}")
        print(f"#Params total: {params}")
    return flops, params, profiler.results


def _hook(
    m: nn.Module, x: tuple[Any, ...], y: Any, *, profiler: ModelProfiler, names: dict[int, str]
) -> None:
    profiler.count_module(m, x, y, names.get(id(m), type(m).__name__))
