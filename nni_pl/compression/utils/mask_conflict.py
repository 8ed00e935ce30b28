"""Mask conflicts (NNI's ``nni.compression.pytorch.utils.mask_conflict``).

Structured masks conflict when layers whose output channels are coupled (see
:class:`~nni_pl.compression.utils.ChannelDependency`) prune different channels, or when a grouped convolution's
channel blocks lose different numbers of channels. Such masks still work as masks, but speed-up can then remove
only what all of them agree on. :func:`fix_mask_conflict` makes them consistent, as NNI does: a coupled channel is
kept when any layer of its set keeps it (a layer of the set without a mask keeps all of them), and every block of a
grouped channel set loses as many channels as the block that loses the fewest. Only ones are added, never zeros, so
no layer becomes sparser than its pruner made it.

Example:
    >>> import torch
    >>> from nni_pl.compression.utils import fix_mask_conflict
    >>> class Res(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a, self.b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    ...     def forward(self, x):
    ...         return self.a(x) + self.b(x)
    >>> masks = {"a": {"weight": torch.tensor([[1.0] * 4, [0.0] * 4, [0.0] * 4])},
    ...          "b": {"weight": torch.tensor([[0.0] * 4, [1.0] * 4, [0.0] * 4])}}
    >>> fixed = fix_mask_conflict(masks, Res(), torch.randn(1, 4))
    >>> fixed["a"]["weight"][:, 0].tolist(), fixed["b"]["weight"][:, 0].tolist()
    ([1.0, 1.0, 0.0], [1.0, 1.0, 0.0])
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nni_pl.compression.speedup.dependency import ChannelSet, channel_sets
from nni_pl.errors import ConfigError, did_you_mean

__all__ = ["ChannelMaskConflict", "GroupMaskConflict", "MaskConflict", "fix_mask_conflict"]

logger = logging.getLogger(__name__)

Masks = dict[str, dict[str, torch.Tensor]]


def _load_masks(masks: Any, model: nn.Module) -> Masks:
    """A validated, copied mask dict from a dict or a path saved by ``save_masks``/``torch.save``."""
    if isinstance(masks, (str, Path)):
        from nni_pl.compression.pruning.masks import load_masks

        masks = load_masks(masks)
    if not isinstance(masks, Mapping):
        raise ConfigError(
            "masks",
            f"got {type(masks).__name__}; pass a mask dict (module name -> {{'weight': mask}}) or the path of one",
        )
    modules = dict(model.named_modules())
    out: Masks = {}
    for name, entry in masks.items():
        if name not in modules:
            raise ConfigError(
                f"masks[{name!r}]",
                f"the model has no module named {name!r}{did_you_mean(name, modules)}; pass masks made for this model",
            )
        if not isinstance(entry, Mapping):
            raise ConfigError(
                f"masks[{name!r}]", f"got {type(entry).__name__}; expected {{'weight': mask, ...}}"
            )
        for pname, mask in entry.items():
            param = getattr(modules[name], pname, None)
            if not isinstance(mask, torch.Tensor) or not isinstance(param, torch.Tensor):
                raise ConfigError(
                    f"masks[{name!r}][{pname!r}]",
                    f"module {name!r} has no tensor {pname!r} or the mask is not a tensor; keys are parameter names",
                )
            if tuple(mask.shape) != tuple(param.shape):
                raise ConfigError(
                    f"masks[{name!r}][{pname!r}]",
                    f"mask shape {tuple(mask.shape)} does not match the parameter shape {tuple(param.shape)}",
                )
        out[name] = {p: m.detach().clone() for p, m in entry.items()}
    return out


def _is_structured(mask: torch.Tensor) -> bool:
    """Whether every output channel of the mask is either all kept or all pruned."""
    if mask.dim() <= 1:
        return True
    rows = mask.reshape(mask.shape[0], -1).ne(0)
    return bool((rows.all(dim=1) | ~rows.any(dim=1)).all())


def _kept(mask: torch.Tensor) -> torch.Tensor:
    """Per output channel: True where it is kept."""
    return mask.reshape(mask.shape[0], -1).ne(0).any(dim=1) if mask.dim() > 1 else mask.ne(0)


def _set_channels(entry: dict[str, torch.Tensor], keep: torch.Tensor, offset: int) -> None:
    """Write ``keep`` into channels ``offset ..`` of every mask of the entry (weight and bias alike)."""
    for pname, mask in entry.items():
        if mask.dim() == 0:
            continue
        view = mask.reshape(mask.shape[0], -1)
        part = view[offset : offset + keep.numel()]
        part[keep.to(part.device)] = 1
        entry[pname] = view.reshape(mask.shape)


class MaskConflict:
    """Base of the two fixers: ``MaskConflict(masks, model, dummy_input).fix_mask()`` -> fixed masks."""

    def __init__(self, masks: Any, model: nn.Module, dummy_input: Any, traced: Any = None) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError("model", f"must be a torch.nn.Module, got {type(model).__name__}")
        if dummy_input is None:
            raise ConfigError("dummy_input", "is required to trace the model; pass an example input tensor")
        self.model = model
        self.dummy_input = dummy_input
        self.masks = _load_masks(masks, model)
        self._sets: list[ChannelSet] | None = None

    def channel_sets(self) -> list[ChannelSet]:
        if self._sets is None:
            self._sets = channel_sets(self.model, self.dummy_input)
        return self._sets

    def _structured(self, name: str) -> bool:
        entry = self.masks.get(name)
        return entry is not None and all(_is_structured(m) for m in entry.values())

    def _produces(self, name: str) -> bool:
        """Whether ``name`` computes the channels (a Conv/Linear), rather than carrying them (a norm, a depthwise
        conv, which speed-up shrinks along with the channels)."""
        m = self.model.get_submodule(name) if name else self.model
        if isinstance(m, nn.modules.conv._ConvNd):
            return not (m.groups > 1 and m.groups == m.in_channels == m.out_channels)
        return isinstance(m, nn.Linear)

    def fix_mask(self) -> Masks:
        raise NotImplementedError


class ChannelMaskConflict(MaskConflict):
    """Coupled layers keep the union of the channels they keep (NNI's ``ChannelMaskConflict``).

    A Conv/Linear layer of a set that has no mask keeps every channel of the set; norms and depthwise convolutions
    without a mask only carry the channels and do not count. A set with a fine-grained (unstructured) mask among its
    members is left alone, as in NNI.

    Example:
        >>> import torch
        >>> class Add(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.a, self.b = torch.nn.Conv2d(1, 2, 1), torch.nn.Conv2d(1, 2, 1)
        ...     def forward(self, x):
        ...         return self.a(x) + self.b(x)
        >>> masks = {"a": {"weight": torch.tensor([1.0, 0.0]).view(2, 1, 1, 1)}}
        >>> fixed = ChannelMaskConflict(masks, Add(), torch.randn(1, 1, 4, 4)).fix_mask()
        >>> fixed["a"]["weight"].flatten().tolist()  # "b" is not pruned: "a" must keep both channels
        [1.0, 1.0]
    """

    def fix_mask(self) -> Masks:
        for cs in self.channel_sets():
            masked = [(n, off) for n, off in cs.members if n in self.masks and "weight" in self.masks[n]]
            if not masked or len(cs.members) < 2:
                continue
            if not all(self._structured(n) for n, _ in masked):
                logger.info(
                    "mask conflict: %s has fine-grained masks; left as they are", [n for n, _ in masked]
                )
                continue
            union = torch.zeros(cs.size, dtype=torch.bool)
            for n, off in cs.members:
                entry = self.masks.get(n)
                if entry is not None and "weight" in entry:
                    union |= _kept(entry["weight"])[off : off + cs.size].cpu()
                elif self._produces(n):
                    union[:] = True  # an unpruned layer writing these channels keeps every one of them
                    break
            for n, off in masked:
                before = _kept(self.masks[n]["weight"])[off : off + cs.size].cpu()
                if bool((union & ~before).any()):
                    logger.info("mask conflict: %s keeps %d more channels", n, int((union & ~before).sum()))
                    _set_channels(self.masks[n], union, off)
        return self.masks


class GroupMaskConflict(MaskConflict):
    """Every block of a grouped channel set loses as many channels as the block losing fewest (NNI's
    ``GroupMaskConflict``); the lowest-index pruned channels of each block stay pruned.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 1), torch.nn.Conv2d(4, 4, 1, groups=2))
        >>> masks = {"0": {"weight": torch.tensor([0.0, 0.0, 1.0, 0.0]).view(4, 1, 1, 1)}}
        >>> fixed = GroupMaskConflict(masks, net, torch.randn(1, 1, 4, 4)).fix_mask()
        >>> fixed["0"]["weight"].flatten().tolist()
        [0.0, 1.0, 1.0, 0.0]
    """

    def fix_mask(self) -> Masks:
        for cs in self.channel_sets():
            if cs.chunks <= 1 or cs.size % cs.chunks:
                continue
            per = cs.size // cs.chunks
            for n, off in cs.members:
                entry = self.masks.get(n)
                if entry is None or "weight" not in entry or not self._structured(n):
                    continue
                kept = _kept(entry["weight"])[off : off + cs.size].cpu()
                blocks = kept.view(cs.chunks, per)
                least = int((~blocks).sum(dim=1).min())
                restore = torch.zeros_like(kept)
                for j in range(cs.chunks):
                    pruned = torch.nonzero(~blocks[j]).flatten().tolist()
                    for i in pruned[least:]:
                        restore[j * per + i] = True
                if bool(restore.any()):
                    logger.info(
                        "mask conflict: %s keeps %d channels so its groups stay equal", n, int(restore.sum())
                    )
                    _set_channels(entry, restore, off)
        return self.masks


def fix_mask_conflict(masks: Any, model: nn.Module, dummy_input: Any, traced: Any = None) -> Masks:
    """Make structured masks consistent with the model's channel and group dependencies (NNI's function).

    Args:
        masks: a mask dict (module name -> ``{"weight": mask, "bias": mask}``) or the path of one (``save_masks``).
        model: the model the masks are for.
        dummy_input: an example input (the model is traced with ``torch.fx``).
        traced: ignored (NNI's signature).

    Returns:
        New masks (the given ones are not changed): group conflicts then channel conflicts fixed, repeated until
        both hold.

    Raises:
        ConfigError: a mask names a module or parameter the model does not have, or has the wrong shape.
    """
    fixer = GroupMaskConflict(masks, model, dummy_input, traced)
    sets = fixer.channel_sets()
    current = fixer.masks
    for _ in range(8):  # each pass only adds ones, so this settles in a pass or two
        before = {n: {p: m.clone() for p, m in e.items()} for n, e in current.items()}
        for cls in (GroupMaskConflict, ChannelMaskConflict):
            step = cls.__new__(cls)
            step.model, step.dummy_input, step.masks, step._sets = model, dummy_input, current, sets
            current = step.fix_mask()
        if all(torch.equal(before[n][p], current[n][p]) for n in current for p in current[n]):
            break
    return current
