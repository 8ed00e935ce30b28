"""The mask format shared by every pruner and by the speed-up.

Masks are ``dict[str, dict[str, torch.Tensor]]``: a module's qualified name (as in ``model.named_modules()``)
maps to ``{"weight": mask, "bias": mask}`` (``"bias"`` optional). A mask has the shape of the parameter and
holds 0.0 (pruned) or 1.0 (kept). A structured (channel/filter) mask zeroes whole output channels, i.e. slices
along dim 0 of a Conv/Linear weight (the bias mask zeroes the same channels).

Example:
    >>> import torch
    >>> from nni_pl.compression.pruning.masks import apply_masks, sparsity_of
    >>> lin = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> masks = {"0": {"weight": torch.tensor([[1.0, 0.0], [1.0, 0.0]])}}
    >>> _ = apply_masks(lin, masks)
    >>> bool((lin[0].weight[:, 1] == 0).all()), sparsity_of(masks)
    (True, 0.5)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from nni_pl.errors import ConfigError, did_you_mean

__all__ = ["Masks", "apply_masks", "layer_sparsity", "load_masks", "save_masks", "sparsity_of"]

logger = logging.getLogger(__name__)

Masks = dict[str, dict[str, torch.Tensor]]


def _check(model: nn.Module, masks: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, nn.Module]:
    modules = dict(model.named_modules())
    for name, entry in masks.items():
        if name not in modules:
            raise ConfigError(
                f"masks[{name!r}]",
                f"the model has no module named {name!r}{did_you_mean(name, modules)}; "
                "masks must come from a pruner run on this model's architecture",
            )
        module = modules[name]
        for pname, mask in entry.items():
            param = getattr(module, pname, None)
            if not isinstance(param, torch.Tensor):
                raise ConfigError(
                    f"masks[{name!r}][{pname!r}]",
                    f"module {name!r} ({type(module).__name__}) has no tensor {pname!r}; "
                    "mask keys are parameter names such as 'weight' or 'bias'",
                )
            if tuple(mask.shape) != tuple(param.shape):
                raise ConfigError(
                    f"masks[{name!r}][{pname!r}]",
                    f"mask shape {tuple(mask.shape)} does not match the parameter shape {tuple(param.shape)}; "
                    "the masks were made for a different model",
                )
    return modules


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, Mapping[str, torch.Tensor]]) -> nn.Module:
    """Multiply each masked parameter by its mask, in place.

    Args:
        model: the model the masks were computed for.
        masks: module name -> ``{"weight": mask, "bias": mask}``.

    Returns:
        The same ``model``, masked.

    Raises:
        ConfigError: a module or parameter is missing, or a shape differs.
    """
    modules = _check(model, masks)
    for name, entry in masks.items():
        module = modules[name]
        for pname, mask in entry.items():
            param = getattr(module, pname)
            param.mul_(mask.to(device=param.device, dtype=param.dtype))
    return model


def save_masks(masks: Mapping[str, Mapping[str, torch.Tensor]], path: str | Path) -> Path:
    """Save masks with ``torch.save`` (tensors moved to CPU); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = {name: {p: m.detach().cpu() for p, m in entry.items()} for name, entry in masks.items()}
    torch.save(plain, path)
    logger.info("Mask dict saved to %s", path)
    return path


def load_masks(path: str | Path, map_location: str | torch.device = "cpu") -> Masks:
    """Load masks written by :func:`save_masks`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("masks", f"no mask file at {str(path)!r}; pass the path given to save_masks")
    data = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(
            "masks", f"{str(path)!r} does not hold a mask dict (module name -> {{param: mask}})"
        )
    return data


def layer_sparsity(
    masks: Mapping[str, Mapping[str, torch.Tensor]], param: str = "weight"
) -> dict[str, float]:
    """Per-module fraction of zeros in the ``param`` mask."""
    return {
        name: float((entry[param] == 0).sum().item()) / max(entry[param].numel(), 1)
        for name, entry in masks.items()
        if param in entry
    }


def sparsity_of(masks: Mapping[str, Mapping[str, torch.Tensor]], param: str = "weight") -> float:
    """Overall fraction of zeros across all ``param`` masks (weighted by element count)."""
    zeros = total = 0
    for entry in masks.values():
        if param in entry:
            zeros += int((entry[param] == 0).sum().item())
            total += entry[param].numel()
    return zeros / total if total else 0.0
