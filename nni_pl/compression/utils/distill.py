"""Knowledge distillation for fine-tuning a pruned model (NNI's ``KnowledgeDistill`` example).

The student (the pruned model) learns from the labels and from the teacher's softened outputs:
``loss = hard_weight * CE(y_s, target) + soft_weight * T**2 * KL(softmax(y_t / T) || softmax(y_s / T))``, the KL
summed over classes and averaged over the batch (NNI's ``F.kl_div(..., reduction='sum') * T**2 / batch``). The
``T**2`` keeps the soft term's gradient on the scale of the hard one whatever the temperature.

Example:
    >>> import torch
    >>> from nni_pl.compression.utils import kd_loss
    >>> y = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> float(kd_loss(y, y, temperature=4.0)) < 1e-5  # no target, same logits: nothing to learn
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nni_pl.errors import ConfigError

__all__ = ["DistillationLoss", "KnowledgeDistill", "kd_loss"]


def _check_weights(temperature: float, hard_weight: float, soft_weight: float) -> None:
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ConfigError("temperature", f"got {temperature!r}; use a positive number such as 4.0")
    for field, value in (("hard_weight", hard_weight), ("soft_weight", soft_weight)):
        if not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(field, f"got {value!r}; use a number >= 0")


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor | None = None,
    *,
    temperature: float = 4.0,
    hard_weight: float = 1.0,
    soft_weight: float = 1.0,
) -> torch.Tensor:
    """The distillation loss: cross-entropy on ``target`` plus the temperature-softened KL to the teacher.

    Args:
        student_logits: ``(batch, classes)`` logits of the student.
        teacher_logits: the teacher's logits, same shape (detached here: no gradient reaches the teacher).
        target: class indices ``(batch,)``; ``None`` leaves out the hard-label term.
        temperature: the softening temperature ``T`` (NNI's ``kd_T``).
        hard_weight: weight of the cross-entropy term.
        soft_weight: weight of the distillation term.

    Raises:
        ConfigError: the shapes differ or a weight/temperature is out of range.

    Example:
        >>> import torch
        >>> s, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
        >>> round(float(kd_loss(s, t, temperature=1.0)), 4)  # KL(softmax(t) || softmax(s))
        0.4621
    """
    _check_weights(temperature, hard_weight, soft_weight)
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(
            "teacher_logits",
            f"shape {tuple(teacher_logits.shape)} differs from the student's {tuple(student_logits.shape)}; "
            "teacher and student must predict the same classes",
        )
    batch = student_logits.shape[0] if student_logits.dim() > 1 else 1
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    p_t = F.softmax(teacher_logits.detach() / temperature, dim=-1)
    soft = F.kl_div(log_p_s, p_t, reduction="sum") * (temperature**2) / batch
    loss = soft_weight * soft
    if target is not None:
        loss = loss + hard_weight * F.cross_entropy(student_logits, target)
    return loss


class DistillationLoss(nn.Module):
    """:func:`kd_loss` as a module: ``criterion(student_logits, teacher_logits, target)``.

    Example:
        >>> import torch
        >>> criterion = DistillationLoss(temperature=2.0)
        >>> criterion(torch.zeros(3, 5), torch.zeros(3, 5), torch.tensor([0, 1, 2])).item() > 0
        True
    """

    def __init__(self, temperature: float = 4.0, hard_weight: float = 1.0, soft_weight: float = 1.0) -> None:
        super().__init__()
        _check_weights(temperature, hard_weight, soft_weight)
        self.temperature, self.hard_weight, self.soft_weight = float(temperature), hard_weight, soft_weight

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        return kd_loss(
            student_logits,
            teacher_logits,
            target,
            temperature=self.temperature,
            hard_weight=self.hard_weight,
            soft_weight=self.soft_weight,
        )


class KnowledgeDistill(nn.Module):
    """A student with a frozen teacher; ``kd(x, target)`` returns the distillation loss of a batch.

    Use it as a submodule of a LightningModule (``loss = self.kd(x, y)`` in ``training_step``) or in a plain loop.
    The teacher stays in eval mode with gradients off; ``forward`` of the student alone is :meth:`predict`.

    Args:
        teacher: the trained, unpruned model.
        student: the model to fine-tune (e.g. the pruned one).
        temperature, hard_weight, soft_weight: as in :func:`kd_loss`.

    Example:
        >>> import torch
        >>> teacher, student = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
        >>> kd = KnowledgeDistill(teacher, student, temperature=2.0)
        >>> loss = kd(torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))
        >>> loss.backward()
        >>> teacher.weight.grad is None, student.weight.grad is not None
        (True, True)
    """

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        temperature: float = 4.0,
        hard_weight: float = 1.0,
        soft_weight: float = 1.0,
    ) -> None:
        super().__init__()
        for field, m in (("teacher", teacher), ("student", student)):
            if not isinstance(m, nn.Module):
                raise ConfigError(field, f"must be a torch.nn.Module, got {type(m).__name__}")
        self.criterion = DistillationLoss(temperature, hard_weight, soft_weight)
        self.student = student
        self.teacher = teacher
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher.eval()

    def train(self, mode: bool = True) -> KnowledgeDistill:
        super().train(mode)
        self.teacher.eval()  # the teacher's batch norms and dropout stay in inference mode
        return self

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        return self.student(*args, **kwargs)

    def forward(self, x: Any, target: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        return self.criterion(self.student(x), teacher_logits, target)
