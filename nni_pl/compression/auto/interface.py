"""What the user gives auto compression (NNI's ``AbstractAutoCompressionModule``).

A subclass says, with class methods, which (pre-trained) model to compress and how to score it; for pruners that
train while they prune (``slim``, ``taylorfo``, ``apoz``, ``mean_activation``) and for fine-tuning after
compression it also gives an optimizer factory, a criterion and trainers
``trainer(model, optimizer, criterion, current_epoch)`` that run one epoch.

Example:
    >>> import torch
    >>> from nni_pl.compression.auto import AbstractAutoCompressionModule
    >>> class Module(AbstractAutoCompressionModule):
    ...     @classmethod
    ...     def model(cls):
    ...         return torch.nn.Linear(4, 2)
    ...     @classmethod
    ...     def evaluator(cls):
    ...         return lambda model: 1.0
    >>> Module.post_compress_finetuning_epochs("l1"), Module.criterion()
    (0, None)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["AbstractAutoCompressionModule", "Trainer"]

# trainer(model, optimizer, criterion, current_epoch): one epoch of training
Trainer = Callable[[Any, Any, Callable[..., Any], int], None]


class AbstractAutoCompressionModule(ABC):
    """The container a user subclasses; every method is a ``classmethod``.

    Implement :meth:`model` and :meth:`evaluator`; for training pruners also :meth:`optimizer_factory`,
    :meth:`criterion` and :meth:`sparsifying_trainer`; to fine-tune after compression :meth:`optimizer_factory`,
    :meth:`criterion`, :meth:`post_compress_finetuning_trainer` and :meth:`post_compress_finetuning_epochs`.
    The trial calls :meth:`model` once, so it may build or load the model on each call.
    """

    @classmethod
    @abstractmethod
    def model(cls) -> Any:
        """The pre-trained ``torch.nn.Module`` to compress (each trial compresses its own copy)."""

    @classmethod
    @abstractmethod
    def evaluator(cls) -> Callable[[Any], float]:
        """``evaluator(model) -> float``: the score a trial reports (its final result)."""

    @classmethod
    def optimizer_factory(cls) -> Callable[[Iterable[Any]], Any] | None:
        """``factory(model.parameters()) -> torch.optim.Optimizer``, or ``None`` (no training)."""
        return None

    @classmethod
    def criterion(cls) -> Callable[..., Any] | None:
        """The loss ``criterion(output, target)`` the trainers use, or ``None``."""
        return None

    @classmethod
    def sparsifying_trainer(cls, compress_algorithm_name: str) -> Trainer | None:
        """The trainer that training pruners run while they compute masks (one epoch per call), or ``None``."""
        return None

    @classmethod
    def post_compress_finetuning_trainer(cls, compress_algorithm_name: str) -> Trainer | None:
        """The trainer for fine-tuning after compression (one epoch per call), or ``None``."""
        return None

    @classmethod
    def post_compress_finetuning_epochs(cls, compress_algorithm_name: str) -> int:
        """How many epochs of fine-tuning after compression (0: none)."""
        return 0
