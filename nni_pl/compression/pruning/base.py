"""The Pruner base: config_list -> per-layer importance scores -> masks.

A pruner subclass says which module types it prunes and how important each unit of a layer is (a whole output
channel for structured pruners, a single weight for fine-grained ones). The base turns scores into masks:

1. how many units each layer loses: ``sparsity`` per layer, or, for a ``total_sparsity`` entry, a global ranking
   of all units of the entry's layers (scores must then be comparable across layers) capped by
   ``max_sparsity_per_layer``;
2. which units: the lowest scores of the layer; in ``mode="dependency_aware"`` (structured pruners, with
   ``dummy_input``) layers whose output channels are coupled (residual additions, depthwise convolutions: the
   sets of ``nni_pl.compression.speedup.dependency.channel_sets``) lose the same channels, chosen by their
   summed scores, as many as the least-pruned member asks; members that ask for more then lose extra channels of
   their own. Channels that a grouped convolution reads or writes are chosen group by group, the same number
   in each group (NNI: "grouped convs pruned equally per group"), for every layer of the set: a layer whose
   count (``round(sparsity * channels)``) is a multiple of the groups can then be shrunk by speed-up by exactly
   that count; the remainder is spread one per group and stays masked (speed-up reports it).

Example:
    >>> import torch
    >>> from nni_pl.compression.pruning import L1NormPruner
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
    >>> model, masks = L1NormPruner(model, [{"sparsity": 0.5, "op_types": ["Conv2d"]}]).compress()
    >>> int(masks["0"]["weight"].sum(dim=(1, 2, 3)).gt(0).sum())
    4
"""

from __future__ import annotations

import heapq
import importlib
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from nni_pl.compression.pruning.config import DEFAULT_OP_TYPES, LayerTarget, resolve
from nni_pl.compression.pruning.masks import Masks, apply_masks, save_masks
from nni_pl.errors import ConfigError, NniPlError

__all__ = ["Pruner"]

logger = logging.getLogger(__name__)


def _channel_sets(model: nn.Module, dummy_input: Any) -> list[Any]:
    try:
        dependency = importlib.import_module("nni_pl.compression.speedup.dependency")
        channel_sets = dependency.channel_sets
    except (ImportError, AttributeError) as e:
        raise NniPlError(
            "mode='dependency_aware' needs nni_pl.compression.speedup.dependency.channel_sets, which is not "
            f"available in this installation ({e}); use mode='normal'"
        ) from e
    return list(channel_sets(model, dummy_input))


def _pick_balanced(score: torch.Tensor, chunks: int, k: int, already: torch.Tensor) -> torch.Tensor:
    """``already`` plus the lowest-scored units until ``k`` are picked, spread over ``chunks`` equal blocks as
    evenly as possible (a block with fewer picks goes first; ties: the lower next score); each block keeps one."""
    n = score.numel()
    per = n // chunks
    out = already.clone()
    need = k - int(already.sum())
    queues: list[list[int]] = []
    heap: list[tuple[int, float, int, int]] = []
    for j in range(chunks):
        idx = torch.arange(j * per, (j + 1) * per)
        free = idx[~already[idx]]
        queues.append(free[torch.argsort(score[free], stable=True)].tolist())
        count = per - free.numel()
        if queues[j] and count < per - 1:
            heapq.heappush(heap, (count, float(score[queues[j][0]]), j, 0))
    while need > 0 and heap:
        count, _, j, pos = heapq.heappop(heap)
        out[queues[j][pos]] = True
        need -= 1
        count, pos = count + 1, pos + 1
        if pos < len(queues[j]) and count < per - 1:
            heapq.heappush(heap, (count, float(score[queues[j][pos]]), j, pos))
    return out


def _finite_max(s: torch.Tensor) -> torch.Tensor:
    """The largest ``|score|`` that is finite (units ranked first by ``previous_masks`` hold ``-inf``)."""
    finite = s.detach().float().cpu()
    finite = finite[torch.isfinite(finite)]
    return finite.abs().max() if finite.numel() else torch.tensor(1.0)


class Pruner:
    """Base of the one-shot pruners.

    Args:
        model: the model to prune (masked in place by :meth:`compress`).
        config_list: NNI ``config_list`` (see :mod:`nni_pl.compression.pruning.config`).
        mode: ``"normal"`` or, for structured pruners, ``"dependency_aware"`` (needs ``dummy_input``).
        dummy_input: an example input, used to trace channel dependencies.
        evaluator: an :class:`~nni_pl.compression.Evaluator`, for pruners that train or need activations.

    Subclasses set ``supported_op_types``, ``default_op_types``, ``structured`` and implement :meth:`scores`.

    Example:
        >>> import torch
        >>> from nni_pl.compression.pruning import LevelPruner
        >>> model = torch.nn.Sequential(torch.nn.Linear(10, 10))
        >>> pruner = LevelPruner(model, [{"sparsity": 0.3, "op_types": ["default"]}])
        >>> _, masks = pruner.compress()
        >>> int((masks["0"]["weight"] == 0).sum())
        30
    """

    supported_op_types: ClassVar[tuple[str, ...] | None] = ("Conv2d", "Linear")
    default_op_types: ClassVar[tuple[str, ...]] = ("Conv2d", "Linear")
    structured: ClassVar[bool] = True
    modes: ClassVar[tuple[str, ...]] = ("normal", "dependency_aware")
    extra_keys: ClassVar[tuple[str, ...]] = ()
    needs_evaluator: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        config_list: Sequence[Mapping[str, Any]],
        *,
        mode: str = "normal",
        dummy_input: Any = None,
        evaluator: Any = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ConfigError("model", f"must be a torch.nn.Module, got {type(model).__name__}")
        if mode not in self.modes:
            raise ConfigError("mode", f"{type(self).__name__} takes mode in {list(self.modes)}, got {mode!r}")
        if mode == "dependency_aware" and dummy_input is None:
            raise ConfigError(
                "dummy_input",
                "mode='dependency_aware' traces the model, so dummy_input is required; pass an example input "
                "such as torch.randn(1, 3, 224, 224)",
            )
        if self.needs_evaluator and evaluator is None:
            raise ConfigError(
                "evaluator",
                f"{type(self).__name__} trains or runs the model, so it needs an evaluator: "
                "Evaluator.from_lightning(module, trainer_kwargs, datamodule) or Evaluator.from_function(train_fn)",
            )
        self.model = model
        self.config_list = (
            [dict(c) for c in config_list] if isinstance(config_list, (list, tuple)) else config_list
        )
        self.mode = mode
        self.dummy_input = dummy_input
        self.evaluator = evaluator
        self.targets: list[LayerTarget] = resolve(
            model,
            config_list,
            default_op_types=self.default_op_types if self.default_op_types else DEFAULT_OP_TYPES,
            supported_op_types=self.supported_op_types,
            extra_keys=self.extra_keys,
        )
        self._masks: Masks | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layers={len(self.targets)}, mode={self.mode!r})"

    # -- to implement ---------------------------------------------------------------------------------------------
    def scores(self, targets: list[LayerTarget]) -> dict[str, torch.Tensor]:
        """Importance per unit (higher = keep): shape ``(out_channels,)`` when structured, else the weight shape.

        Scores of layers sharing a ``total_sparsity`` entry are ranked together, so keep them comparable.
        """
        raise NotImplementedError

    # -- public -----------------------------------------------------------------------------------------------------
    def compress(
        self, *, previous_masks: Mapping[str, Mapping[str, torch.Tensor]] | None = None
    ) -> tuple[nn.Module, Masks]:
        """Compute the masks, apply them to the model in place and return ``(model, masks)``.

        Args:
            previous_masks: the masks of an earlier step of a schedule (see
                :func:`~nni_pl.compression.pruning.schedule.prune_step`). The units they prune rank below every
                other unit, so they are pruned again and count toward this config_list's sparsity: the layer
                reaches its target and no more, whatever the scores say about them.
        """
        if self.mode == "global":
            # NNI's global mode: every entry's layers share one budget, as with total_sparsity
            for t in self.targets:
                if t.group_total is None:
                    t.group_total = t.sparsity
        scores = self.scores(self.targets)
        if previous_masks:
            scores = self._rank_pruned_first(scores, previous_masks)
        self._masks = self._masks_from_scores(scores)
        apply_masks(self.model, self._masks)
        logger.info("%s pruned %d layers", type(self).__name__, len(self._masks))
        return self.model, self._masks

    def export_masks(self, path: str | Path | None = None) -> Masks:
        """Return the masks of the last :meth:`compress` (and save them to ``path`` when given)."""
        if self._masks is None:
            raise NniPlError(f"{type(self).__name__}.export_masks(): call compress() first")
        if path is not None:
            save_masks(self._masks, path)
        return self._masks

    def show_pruned_weights(self) -> dict[str, float]:
        """Log and return each pruned layer's weight sparsity."""
        masks = self.export_masks()
        out = {}
        for name, entry in masks.items():
            w = entry["weight"]
            out[name] = float((w == 0).sum()) / w.numel()
            logger.info("%s: sparsity %.3f, shape %s", name, out[name], tuple(w.shape))
        return out

    # -- allocation -------------------------------------------------------------------------------------------------
    def _rank_pruned_first(
        self, scores: Mapping[str, torch.Tensor], previous: Mapping[str, Mapping[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Scores with the units that ``previous`` prunes set to ``-inf`` (every other unit ranks above them)."""
        out = dict(scores)
        for t in self.targets:
            mask = previous.get(t.name, {}).get("weight")
            if mask is None or t.name not in out or tuple(mask.shape) != tuple(t.module.weight.shape):
                continue
            if self.structured and mask.dim() > 1:
                pruned = mask.detach().flatten(1).eq(0).all(dim=1)  # a whole output channel
            else:
                pruned = mask.detach().eq(0)
            s = out[t.name].detach().float().clone()
            if pruned.shape != s.shape:
                continue
            s[pruned.to(s.device)] = float("-inf")
            out[t.name] = s
        return out

    def _unit_size(self, t: LayerTarget) -> int:
        return t.module.weight[0].numel() if self.structured else 1

    def _n_units(self, t: LayerTarget) -> int:
        return t.module.weight.shape[0] if self.structured else t.module.weight.numel()

    def _max_units(self, t: LayerTarget, cap: float) -> int:
        n = self._n_units(t)
        k = math.floor(cap * n + 1e-9)
        # a structured layer keeps at least one channel, or the network is cut
        return min(k, n - 1) if self.structured else k

    def _counts(self, scores: Mapping[str, torch.Tensor]) -> dict[str, int]:
        counts: dict[str, int] = {}
        groups: dict[int, list[LayerTarget]] = {}
        for t in self.targets:
            if t.group_total is None:
                counts[t.name] = min(round(t.sparsity * self._n_units(t)), self._max_units(t, 1.0))
            else:
                groups.setdefault(t.entry, []).append(t)
        for members in groups.values():
            counts.update(self._global_counts(members, scores))
        return counts

    def _global_counts(
        self, members: list[LayerTarget], scores: Mapping[str, torch.Tensor]
    ) -> dict[str, int]:
        total = members[0].group_total or 0.0
        cap = members[0].max_sparsity
        flat, owner, sizes = [], [], []
        for j, t in enumerate(members):
            s = scores[t.name].detach().flatten().float().cpu()
            flat.append(s)
            owner.append(torch.full_like(s, j, dtype=torch.long))
            sizes.append(self._unit_size(t))
        all_scores = torch.cat(flat)
        all_owner = torch.cat(owner)
        order = torch.argsort(all_scores, stable=True)
        budget = total * sum(t.module.weight.numel() for t in members)
        limits = [self._max_units(t, cap) for t in members]
        counts = [0] * len(members)
        pruned = 0.0
        for idx in order.tolist():
            j = int(all_owner[idx])
            if counts[j] >= limits[j]:
                continue
            if pruned + sizes[j] / 2 > budget:
                if all(sizes[j] == 1 for j in range(len(members))):
                    break
                continue
            counts[j] += 1
            pruned += sizes[j]
        return {t.name: counts[j] for j, t in enumerate(members)}

    def _masks_from_scores(self, scores: Mapping[str, torch.Tensor]) -> Masks:
        counts = self._counts(scores)
        keep: dict[str, torch.Tensor] = {}
        done: set[str] = set()
        if self.mode == "dependency_aware" and self.structured:
            keep.update(self._coupled_keep(scores, counts))
            done.update(keep)
        for t in self.targets:
            if t.name in done:
                continue
            s = scores[t.name].detach().float().cpu()
            keep[t.name] = self._lowest_out(t, s, counts[t.name])
        masks: Masks = {}
        for t in self.targets:
            weight = t.module.weight
            m = keep[t.name]
            entry: dict[str, torch.Tensor] = {}
            if self.structured:
                entry["weight"] = m.view(-1, *([1] * (weight.dim() - 1))).expand_as(weight).contiguous()
                if isinstance(getattr(t.module, "bias", None), torch.Tensor):
                    entry["bias"] = m.clone()
            else:
                entry["weight"] = m.view_as(weight).contiguous()
            masks[t.name] = {k: v.to(device=weight.device, dtype=weight.dtype) for k, v in entry.items()}
        return masks

    def _coupled_keep(
        self, scores: Mapping[str, torch.Tensor], counts: Mapping[str, int]
    ) -> dict[str, torch.Tensor]:
        """Keep masks of the layers in channel sets (``mode="dependency_aware"``), chosen set by set.

        In a set, every member loses the channels the set's summed (per layer normalised) scores rank lowest, as
        many as the least-pruned member asks; a member that asks for more loses extra channels by its own scores.
        Both are spread evenly over the set's chunks (grouped convolutions), so when a layer's count is a multiple
        of the chunks every chunk loses the same number and speed-up removes all of them.
        """
        by_name = {t.name: t for t in self.targets}
        pruned: dict[str, torch.Tensor] = {}
        for cs in _channel_sets(self.model, self.dummy_input):
            members = [
                (n, off)
                for n, off in cs.members
                if n in by_name and off + cs.size <= self._n_units(by_name[n])
            ]
            if not members or cs.size % cs.chunks:
                continue
            want, local = {}, {}
            for n, off in members:
                total = self._n_units(by_name[n])
                want[n, off] = counts[n] if cs.size == total else round(counts[n] * cs.size / total)
                local[n, off] = scores[n].detach().float().cpu().flatten()[off : off + cs.size]
            joint = sum(s / (_finite_max(s) + 1e-12) for s in local.values())
            shared = _pick_balanced(
                joint, cs.chunks, min(want.values()), torch.zeros(cs.size, dtype=torch.bool)
            )
            for (n, off), s in local.items():
                own = _pick_balanced(s, cs.chunks, want[n, off], shared)
                p = pruned.setdefault(n, torch.zeros(self._n_units(by_name[n]), dtype=torch.bool))
                p[off : off + cs.size] |= own
        return {n: (~p).float() for n, p in pruned.items()}

    def _lowest_out(self, t: LayerTarget, s: torch.Tensor, k: int) -> torch.Tensor:
        flat = s.flatten()
        mask = torch.ones_like(flat)
        groups = getattr(t.module, "groups", 1)
        n = flat.numel()
        if self.structured and self.mode == "dependency_aware" and 1 < groups < n and n % groups == 0:
            per = n // groups
            k_per = round(k / groups)
            for g in range(groups):
                block = flat[g * per : (g + 1) * per]
                mask[g * per + torch.argsort(block, stable=True)[: min(k_per, per - 1)]] = 0
            return mask
        if k > 0:
            mask[torch.argsort(flat, stable=True)[:k]] = 0
        return mask
