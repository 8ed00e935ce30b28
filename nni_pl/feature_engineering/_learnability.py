"""The torch half of :class:`~nni_pl.feature_engineering.FeatureGradientSelector` (imported only by ``fit``).

Feature gradients (Mahabal et al.) score feature subsets by *learnability*: the fraction of ``y``'s variance a
linear model on the chosen features explains, ``v' Sigma^-1 v`` with ``v = E[x y]`` and ``Sigma = E[x x']``,
estimated without fitting a model (Kong and Valiant's sublinear estimator). ``Sigma^-1`` is replaced by a
polynomial ``sum_i c_i Sigma^i``, and each moment ``v' Sigma^i v`` has an unbiased estimate: the mean, over
chains of ``i + 2`` distinct rows ``r_1 < ... < r_{i+2}``, of ``y_1 <x_1, x_2> <x_2, x_3> ... y_{i+2}``. Sums over
increasing chains come from cumulative sums along the rows, so a batch of ``B`` rows and ``D`` columns costs
``O(order * B * D)``.

Subsets are relaxed to gates ``s = sigmoid(2 x)`` in ``(0, 1)`` that weight the inner products
(``<a, b>_s = sum_d a_d s_d b_d``). The loss is ``(1 - w) * error(s) + w * mean(s)`` with
``w = penalty / (penalty + 1)``, where ``error`` is ``1 - learnability`` for regression and
``(1 - sqrt(learnability)) / 2`` for a ±1 target; Adam on ``x`` with the gradient norm clipped to 1. A
multi-class target is split into binary ones (one-vs-rest, or ``y >= k`` when ordinal) whose losses add up,
each weighted equally (``balanced``) or by its class's support.

The polynomial coefficients are our own: the least-squares fit of ``lambda * p(lambda)`` to 1 on ``[0, 1]`` (the
data are scaled so that ``Sigma``'s largest eigenvalue is 1), ridge-regularised (0.1) so that high orders keep
small coefficients and the estimate a small variance (see ``_RIDGE``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

logger = logging.getLogger(__name__)

# Ridge of the polynomial fit. Unregularised fits alternate in sign with large coefficients (order 4:
# 12, -42, 56, -25); their chain estimates are so noisy that, with fewer rows than columns, the optimiser
# opens gates on noise features that happen to raise the estimate in the batch. 0.1 keeps the coefficients
# below ~1 (order 4: 0.99, 0.29, 0.05, -0.06): on 900x4000 and 90x2000 synthetic sets it kept every one of
# the top 20 features informative after 10-50 epochs, where 1e-4..1e-2 kept 4-19 of 20.
_RIDGE = 0.1


@cache
def polynomial_coefficients(order: int, ridge: float = _RIDGE) -> tuple[float, ...]:
    """Coefficients ``c_0..c_{order-1}`` with ``lambda * sum_i c_i lambda^i ~ 1`` on ``[0, 1]`` (ridge-regularised)."""
    i = np.arange(order)
    gram = 1.0 / (i[:, None] + i[None, :] + 3.0)  # int_0^1 lambda^(i+1) lambda^(j+1)
    rhs = 1.0 / (i + 2.0)  # int_0^1 lambda^(i+1)
    return tuple(float(c) for c in np.linalg.solve(gram + ridge * np.eye(order), rhs))


def chain_weights(order: int, n_rows: int) -> list[float]:
    """``c_i / C(n_rows, i + 2)``: the chain sums' weights (chains of ``i + 2`` rows out of ``n_rows``)."""
    return [c / math.comb(n_rows, i + 2) for i, c in enumerate(polynomial_coefficients(order))]


def learnability_error(s: torch.Tensor, X: torch.Tensor, y: torch.Tensor, weights: list[float], binary: bool):
    """The estimated error of the best linear model on the gated features (a scalar tensor).

    Args:
        s: gates ``[D, 1]`` in ``[0, 1]``.
        X: preprocessed rows ``[B, D]``.
        y: target ``[B, 1]`` (±1 when ``binary``, standardised otherwise).
        weights: :func:`chain_weights` for ``B`` rows.
        binary: a ±1 target (error ``(1 - sqrt(l)) / 2``) rather than a real one (``1 - l``).
    """
    left, right = y, y
    z = X.new_zeros(())
    gated = X * s.reshape(
        1, -1
    )  # <a, b>_s = <a * s, b>: one gated copy, so each order keeps one [B, D] tensor

    for i, a in enumerate(weights):
        if i % 2 == 0:  # extend chains to the right: right_r = sum_{q > r} <x_r, x_q>_s right_q
            suffix = (X * right).flip(0).cumsum(0).flip(0)
            carried = torch.cat([suffix[1:], suffix.new_zeros(1, suffix.shape[1])])
            right = (gated * carried).sum(1, keepdim=True)
        else:  # extend chains to the left: left_r = sum_{q < r} <x_q, x_r>_s left_q
            prefix = (X * left).cumsum(0)
            carried = torch.cat([prefix.new_zeros(1, prefix.shape[1]), prefix[:-1]])
            left = (gated * carried).sum(1, keepdim=True)
        if a != 0.0:
            z = z + a * (left * right).sum()
    if not binary:
        return 1.0 - z
    # clamp to [0, 1] but let a little gradient through outside, so a negative estimate can recover
    clamped = z.clamp(0.0, 1.0) + 0.01 * (z - z.detach())
    return 0.5 * (1.0 - torch.sqrt(clamped.clamp_min(0.0) + 1e-12))


@dataclass
class Task:
    """What the target is: ``binary`` (±1), ``multiclass`` (codes ``0..n_classes-1``) or ``regression``."""

    kind: str
    n_classes: int = 0
    ordinal: bool = False
    balanced: bool = True

    def subproblems(self, y: torch.Tensor) -> Iterator[tuple[torch.Tensor, float]]:
        """``(binary target [B, 1], weight)`` pairs for a batch's target; ones with a single class skipped."""
        if self.kind != "multiclass":
            if self.kind == "regression" or torch.unique(y).numel() > 1:
                yield y.reshape(-1, 1), 1.0
            return
        present = torch.unique(y).numel()
        for k in range(self.n_classes):
            if self.ordinal:
                if k == 0:
                    continue
                hit = y >= k
            else:
                hit = y == k
            if hit.all() or not hit.any():
                continue
            target = torch.where(hit, 1.0, -1.0).to(y.dtype).reshape(-1, 1)
            if self.balanced:
                weight = 1.0 / max(present - 1, 1) if self.ordinal else 1.0 / present
            elif self.ordinal:
                weight = float((y >= k).float().mean()) / sum(
                    float((y >= j).float().mean()) for j in range(1, self.n_classes)
                )
            else:
                weight = float(hit.float().mean())
            yield target, weight


@dataclass
class Result:
    """What training left: the gate logits ``x`` and the mean gradient (ties' order), steps, last loss."""

    x: np.ndarray
    mean_gradient: np.ndarray
    steps: int
    loss: float
    seconds: float


Batches = Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]]


def train_gates(
    batch: Batches,
    n_rows: int,
    n_features: int,
    task: Task,
    *,
    order: int,
    penalty: float,
    learning_rate: float,
    x0: np.ndarray,
    batch_size: int,
    accum_steps: int,
    max_iter: int,
    max_time: float,
    shuffle: bool,
    groups: np.ndarray | None,
    soft_groups: np.ndarray | None,
    rng: np.random.Generator,
    device: str,
    dtype: torch.dtype,
    verbose: int,
) -> Result:
    """Run Adam on the gate logits until ``max_iter`` mini-batches (rounded up to whole steps) or ``max_time``.

    ``batch(rows)`` returns the preprocessed ``(X [B, D], y [B])`` for the given row indices, on ``device``.
    A hard group's columns share one gradient (their mean); soft groups add a penalty on the number of groups
    used (the mean over groups of the largest gate), half and half with the per-feature penalty.

    Raises:
        FloatingPointError: the loss became NaN (the caller retries in float64).
    """
    start = time.perf_counter()
    x = torch.nn.Parameter(torch.as_tensor(x0, dtype=dtype, device=device).reshape(-1, 1).clone())
    adam = _Adam(x, learning_rate)
    w = penalty / (penalty + 1.0)
    weights = chain_weights(order, batch_size)
    hard = torch.as_tensor(groups, device=device) if groups is not None else None
    soft = torch.as_tensor(soft_groups, device=device) if soft_groups is not None else None
    n_soft = int(soft.max()) + 1 if soft is not None else 0
    grad_sum = torch.zeros_like(x)
    x.grad = torch.zeros_like(x)
    it = steps = 0
    loss_acc = 0.0
    last_loss = math.nan

    def penalty_term(s: torch.Tensor) -> torch.Tensor:
        term = s.mean()
        if soft is not None:
            top = s.new_zeros(n_soft).scatter_reduce(
                0, soft, s.reshape(-1), reduce="amax", include_self=False
            )
            term = 0.5 * (term + top.mean())
        return term

    def epochs() -> Iterator[np.ndarray]:
        while True:
            order_rows = rng.permutation(n_rows) if shuffle else np.arange(n_rows)
            for lo in range(0, n_rows - batch_size + 1, batch_size):  # drop the last partial batch
                yield order_rows[lo : lo + batch_size]  # in shuffled order: chains follow row order

    for rows in epochs():
        Xb, yb = batch(rows)
        for target, weight in task.subproblems(yb):
            s = torch.sigmoid(2.0 * x)
            error = learnability_error(s, Xb, target, weights, binary=task.kind != "regression")
            loss = ((1.0 - w) * error + w * penalty_term(s)) * (weight / accum_steps)
            loss.backward()
            loss_acc += float(loss.detach())
        it += 1
        if math.isnan(loss_acc):
            raise FloatingPointError("the feature-gradient loss became NaN")
        if it % accum_steps:
            continue
        if hard is not None:  # a group moves as one: every member gets the group's mean gradient
            sums = torch.zeros(int(hard.max()) + 1, 1, dtype=dtype, device=device).index_add_(0, hard, x.grad)
            counts = torch.bincount(hard).to(dtype).reshape(-1, 1)
            x.grad.copy_((sums / counts)[hard])
        grad_sum += x.grad
        norm = float(x.grad.norm())
        if norm > 1.0:  # clip the gradient's norm to 1
            x.grad.mul_(1.0 / (norm + 1e-6))
        adam.step()
        x.grad.zero_()
        steps += 1
        last_loss, loss_acc = loss_acc, 0.0
        elapsed = time.perf_counter() - start
        if verbose and steps % verbose == 0:
            logger.info("[step %d, minibatch %d, %.3f s] loss %.5f", steps, it, elapsed, last_loss)
        if it >= max_iter or elapsed >= max_time:
            break
    return Result(
        x=x.detach().cpu().double().numpy().ravel(),
        mean_gradient=(grad_sum / max(steps, 1)).cpu().double().numpy().ravel(),
        steps=steps,
        loss=last_loss,
        seconds=time.perf_counter() - start,
    )


class _Adam:
    """Adam (Kingma and Ba; torch's defaults) on one tensor. ``torch.optim``'s first step imports
    ``torch._dynamo`` (seconds and ~150 MB), which a selector that runs a few steps should not pay."""

    def __init__(
        self, x: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ):
        self.x, self.lr, self.betas, self.eps = x, lr, betas, eps
        self.m = torch.zeros_like(x)
        self.v = torch.zeros_like(x)
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        g = self.x.grad
        self.m.mul_(b1).add_(g, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        m_hat = self.m / (1 - b1**self.t)
        v_hat = self.v / (1 - b2**self.t)
        self.x.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))


def elbow_number(
    batch: Batches,
    n_rows: int,
    task: Task,
    ranking: np.ndarray,
    max_features: int,
    *,
    order: int,
    batch_size: int,
    n_batches: int,
    rng: np.random.Generator,
    max_time: float,
    device: str,
    dtype: torch.dtype,
) -> int:
    """The number of top-ranked features at the elbow of the error curve (``max_features`` at most).

    The error of the top ``k`` features with every gate open is averaged over up to ``n_batches`` batches at up
    to 200 values of ``k`` in ``1..max_features``; the elbow is the point furthest below the chord between the
    curve's ends.
    """
    step = max(max_features / 200.0, 1.0)
    ks = np.unique(np.ceil(np.arange(1, max_features + 1, step)).astype(int))
    weights = chain_weights(order, batch_size)
    rows_all = rng.permutation(n_rows)
    curves = []
    start = time.perf_counter()
    with torch.no_grad():
        for b in range(min(n_batches, n_rows // batch_size)):
            if curves and time.perf_counter() - start > max_time:
                break
            Xb, yb = batch(rows_all[b * batch_size : (b + 1) * batch_size])
            for target, weight in task.subproblems(yb):
                curve = []
                for k in ks:
                    cols = torch.as_tensor(ranking[:k], device=device)
                    ones = torch.ones(int(k), 1, dtype=dtype, device=device)
                    error = learnability_error(ones, Xb[:, cols], target, weights, task.kind != "regression")
                    curve.append(float(error) * weight)
                curves.append(curve)
    if not curves or len(ks) < 3:
        return int(ks[-1]) if len(ks) else 1
    scores = np.mean(np.asarray(curves), axis=0)
    first, last = np.array([0.0, scores[0]]), np.array([len(scores) - 1.0, scores[-1]])
    chord = last - first
    norm = np.linalg.norm(chord)
    if norm == 0:
        return int(ks[-1])
    points = np.stack([np.arange(len(scores), dtype=float), scores], axis=1) - first
    distance = (points[:, 0] * chord[1] - points[:, 1] * chord[0]) / norm  # > 0 below the chord
    return int(ks[int(np.argmax(distance))])
