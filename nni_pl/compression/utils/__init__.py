"""Compression utilities: FLOPs counter, sensitivity analysis, topology analysis, mask conflicts, distillation.

NNI's ``nni.compression.pytorch.utils`` (its modules ``counter``, ``sensitivity_analysis``, ``shape_dependency``,
``mask_conflict`` have the same names here). Names resolve lazily: importing this package does not import torch.

Example:
    >>> from nni_pl.compression.utils import count_flops_params
    >>> count_flops_params.__name__
    'count_flops_params'
"""

from __future__ import annotations

from nni_pl._imports import lazy_exports

_LAZY = {
    "ModelProfiler": "counter",
    "count_flops_params": "counter",
    "SensitivityAnalysis": "sensitivity_analysis",
    "ChannelDependency": "shape_dependency",
    "GroupDependency": "shape_dependency",
    "ReshapeDependency": "shape_dependency",
    "not_safe_to_prune": "shape_dependency",
    "ChannelMaskConflict": "mask_conflict",
    "GroupMaskConflict": "mask_conflict",
    "fix_mask_conflict": "mask_conflict",
    "DistillationLoss": "distill",
    "KnowledgeDistill": "distill",
    "kd_loss": "distill",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
