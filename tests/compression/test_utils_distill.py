from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nni_pl.compression.pruning import L1NormPruner
from nni_pl.compression.utils import DistillationLoss, KnowledgeDistill, kd_loss
from nni_pl.errors import ConfigError


def test_kd_loss_value_matches_nni_formula() -> None:
    torch.manual_seed(0)
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    y = torch.tensor([0, 1, 2, 3])
    T = 3.0
    # NNI's example: F.kl_div(log_softmax(s/T), softmax(t/T), size_average=False) * T**2 / batch + CE
    p_t = F.softmax(t / T, dim=1)
    manual_kl = (p_t * (p_t.log() - F.log_softmax(s / T, dim=1))).sum() * T**2 / 4
    want = F.cross_entropy(s, y) + manual_kl
    torch.testing.assert_close(kd_loss(s, t, y, temperature=T), want)
    torch.testing.assert_close(kd_loss(s, t, temperature=T), manual_kl)
    torch.testing.assert_close(
        kd_loss(s, t, y, temperature=T, hard_weight=0.5, soft_weight=2.0),
        0.5 * F.cross_entropy(s, y) + 2 * manual_kl,
    )
    torch.testing.assert_close(DistillationLoss(T)(s, t, y), want)


def test_kd_loss_gradient_is_temperature_scaled_difference_of_soft_targets() -> None:
    torch.manual_seed(1)
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    T = 2.0
    kd_loss(s, t, temperature=T).backward()
    # d/ds [T^2 KL(p_t || p_s)] / batch = T (p_s - p_t) / batch
    want = T * (F.softmax(s.detach() / T, 1) - F.softmax(t.detach() / T, 1)) / 3
    torch.testing.assert_close(s.grad, want)
    assert t.grad is None  # the teacher gets no gradient


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0}, "'temperature'"),
        ({"hard_weight": -1}, "'hard_weight'"),
        ({"soft_weight": "x"}, "'soft_weight'"),
    ],
)
def test_kd_loss_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), **kwargs)
    with pytest.raises(ConfigError, match=r"'teacher_logits'.*shape"):
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 3))


def _agreement(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a(x).argmax(1) == b(x).argmax(1)).float().mean())


def test_pruned_student_distilled_gets_closer_to_teacher() -> None:
    from sklearn.datasets import make_classification

    xs, ys = make_classification(n_samples=1200, n_features=20, n_informative=12, n_classes=4, random_state=0)
    x, y = torch.tensor(xs, dtype=torch.float32), torch.tensor(ys)
    train, test = slice(0, 200), slice(200, None)  # few labels: the teacher's soft targets carry information
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
    opt = torch.optim.Adam(teacher.parameters(), lr=0.01)
    for _ in range(300):  # the teacher learned on all data
        opt.zero_grad()
        F.cross_entropy(teacher(x), y).backward()
        opt.step()
    teacher.eval()
    base = copy.deepcopy(teacher)
    _, masks = L1NormPruner(base, [{"sparsity": 0.75, "op_names": ["0"]}]).compress()

    def finetune(use_kd: bool) -> nn.Module:
        torch.manual_seed(1)
        student = copy.deepcopy(base)
        kd = KnowledgeDistill(teacher, student, temperature=4.0)
        opt = torch.optim.SGD(student.parameters(), lr=0.05)
        for _ in range(100):
            opt.zero_grad()
            if (
                use_kd
            ):  # the transfer set: the labelled samples plus unlabelled ones the teacher labels softly
                loss = kd(x[train], y[train]) + kd(x[test][:500])
            else:
                loss = F.cross_entropy(student(x[train]), y[train])
            loss.backward()
            opt.step()
            with torch.no_grad():
                for name, entry in masks.items():
                    student.get_submodule(name).weight.mul_(entry["weight"])
        return student

    pruned = _agreement(base, teacher, x[test])
    with_kd, without = (
        _agreement(finetune(True), teacher, x[test]),
        _agreement(finetune(False), teacher, x[test]),
    )
    assert with_kd > pruned
    print(
        f"agreement with the teacher: pruned {pruned:.3f}, fine-tuned with KD {with_kd:.3f}, without {without:.3f}"
    )
    assert with_kd > without + 0.02, (pruned, with_kd, without)
    assert teacher.training is False


def test_knowledge_distill_keeps_teacher_frozen_in_eval() -> None:
    teacher = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    kd = KnowledgeDistill(teacher, nn.Linear(3, 3)).train()
    assert not teacher.training and kd.student.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert kd.predict(torch.zeros(2, 3)).shape == (2, 3)
    with pytest.raises(ConfigError, match="'teacher'"):
        KnowledgeDistill("model", nn.Linear(3, 3))
