"""Sparsity schedules and the one pruning step that builds on earlier masks.

The scheduled pruners (:mod:`nni_pl.compression.pruning.scheduled`) and the Lightning
:class:`~nni_pl.callbacks.PruningCallback` prune in steps; both take the share of the final sparsity reached
after each step from :func:`schedule_fraction` and run each step with :func:`prune_step`:

1. the masks of the earlier steps are applied to the model;
2. the one-shot pruner computes masks for this step's sparsities, ranking the units pruned before below every
   other unit: they stay pruned and count toward this step's target, so a step reaches its target and no more
   (even when the pruner's scores would have preferred other units, e.g. Taylor scores of weights that regrew
   while the pruner trained);
3. :func:`merge_masks` combines the result with the earlier masks (a pruned weight stays pruned; layers this
   step did not target keep their masks) and the merged masks are applied.

Example:
    >>> from nni_pl.compression.pruning.schedule import schedule_fraction, with_sparsity
    >>> [round(schedule_fraction("agp", i, 3), 3) for i in (1, 2, 3)]
    [0.704, 0.963, 1.0]
    >>> with_sparsity([{"sparsity": 0.5, "op_types": ["Conv2d"]}], lambda s: s / 2)
    [{'sparsity': 0.25, 'op_types': ['Conv2d']}]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nni_pl.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from nni_pl.compression.pruning.masks import Masks

__all__ = [
    "SCHEDULES",
    "SPARSITY_KEYS",
    "final_sparsities",
    "merge_masks",
    "prune_step",
    "schedule_fraction",
    "with_sparsity",
]

#: The schedules of sparsity over the steps: all at once, rising evenly, rising cubically (AGP).
SCHEDULES: tuple[str, ...] = ("oneshot", "linear", "agp")

#: The config_list keys that hold a sparsity.
SPARSITY_KEYS: tuple[str, ...] = ("sparsity", "sparsity_per_layer", "total_sparsity")


def schedule_fraction(schedule: str, step: int, total: int) -> float:
    """The share of the final sparsity reached after step ``step`` of ``total`` (1-based).

    ``"oneshot"``: 1; ``"linear"``: ``step / total``; ``"agp"`` (Zhu & Gupta, NNI's AGPPruner with
    ``s_0 = 0``): ``1 - (1 - step / total) ** 3``.

    Example:
        >>> schedule_fraction("linear", 1, 4), schedule_fraction("oneshot", 1, 4)
        (0.25, 1.0)
    """
    if schedule not in SCHEDULES:
        raise ConfigError("schedule", f"must be one of {list(SCHEDULES)}, got {schedule!r}")
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ConfigError("total", f"must be an integer >= 1, got {total!r}")
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= total:
        raise ConfigError("step", f"must be an integer in [1, {total}], got {step!r}")
    if schedule == "oneshot" or total == 1:
        return 1.0
    if schedule == "linear":
        return step / total
    return 1.0 - (1.0 - step / total) ** 3


def with_sparsity(
    config_list: Sequence[Mapping[str, Any]], fn: Callable[[float], float]
) -> list[dict[str, Any]]:
    """A copy of ``config_list`` with every sparsity value mapped through ``fn`` (other keys untouched)."""
    out = []
    for entry in config_list:
        new = dict(entry)
        for key in SPARSITY_KEYS:
            if key in new:
                new[key] = fn(float(new[key]))
        out.append(new)
    return out


def final_sparsities(config_list: Sequence[Mapping[str, Any]]) -> list[float]:
    """Every sparsity value of ``config_list``, in order."""
    return [float(entry[key]) for entry in config_list for key in SPARSITY_KEYS if key in entry]


def merge_masks(new: Masks, previous: Mapping[str, Mapping[str, torch.Tensor]] | None) -> Masks:
    """``new`` combined with the masks of earlier steps: a weight pruned before stays pruned.

    Masks of the same parameter (and shape) are multiplied; layers only in ``previous`` keep their masks.
    ``new`` is updated in place and returned.
    """
    for name, entry in (previous or {}).items():
        if name not in new:
            new[name] = dict(entry)
            continue
        for pname, old in entry.items():
            mask = new[name].get(pname)
            if mask is not None and mask.shape == old.shape:
                new[name][pname] = mask * old.to(device=mask.device, dtype=mask.dtype)
    return new


def prune_step(
    model: nn.Module,
    pruner_cls: type,
    config_list: Sequence[Mapping[str, Any]],
    previous: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    **pruner_kwargs: Any,
) -> Masks:
    """One step of a schedule: prune ``model`` in place to ``config_list``'s sparsities, keeping ``previous``.

    Args:
        model: the model (masked in place).
        pruner_cls: a one-shot pruner class (:class:`~nni_pl.compression.pruning.base.Pruner` subclass).
        config_list: this step's config_list (sparsities of this step, relative to ``model``).
        previous: the masks of the earlier steps, or ``None``.
        **pruner_kwargs: the pruner's other arguments (``mode``, ``dummy_input``, ``evaluator``, ...).

    Returns:
        The merged masks, already applied to ``model``.

    Example:
        >>> import torch
        >>> from nni_pl.compression.pruning import L1NormPruner
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8))
        >>> first = prune_step(model, L1NormPruner, [{"sparsity": 0.25, "op_types": ["Linear"]}])
        >>> second = prune_step(model, L1NormPruner, [{"sparsity": 0.5, "op_types": ["Linear"]}], first)
        >>> int(second["0"]["bias"].sum()), bool((second["0"]["bias"] <= first["0"]["bias"]).all())
        (4, True)
    """
    from nni_pl.compression.pruning.masks import apply_masks

    if previous:
        apply_masks(model, previous)
    pruner = pruner_cls(model, list(config_list), **pruner_kwargs)
    _, masks = pruner.compress(previous_masks=previous or None)
    masks = merge_masks(masks, previous)
    apply_masks(model, masks)
    return masks
