"""ENAS: the LSTM controller and the module it drives (see :mod:`nni_pl.nas.oneshot.lightning`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from nni_pl.nas.oneshot._base import OneShotModule
from nni_pl.nas.oneshot.supernet import Supernet

__all__ = ["EnasModule", "ReinforceController"]


class ReinforceController(nn.Module):
    """ENAS's controller: an LSTM that emits one decision per label, each from a softmax over its values.

    Logits pass through ``tanh_constant * tanh(logits / temperature)`` as in ENAS. ``sample`` returns the
    architecture, the summed log-probability and entropy, and the expected fraction of inputs selected by
    multi-input choices (for the skip penalty).

    Example:
        >>> ctrl = ReinforceController({"op": ["a", "b", "c"], "act": ["relu", "tanh"]})
        >>> arch, logp, entropy, _ = ctrl.sample(torch.Generator().manual_seed(0))
        >>> sorted(arch), logp.shape, entropy.item() > 0
        (['act', 'op'], torch.Size([]), True)
    """

    def __init__(
        self,
        decisions: Mapping[str, Sequence[Any]],
        *,
        lstm_size: int = 64,
        lstm_num_layers: int = 1,
        tanh_constant: float = 1.5,
        temperature: float | None = None,
    ) -> None:
        super().__init__()
        self.decisions = {k: list(v) for k, v in decisions.items()}
        self.labels = list(self.decisions)
        self.lstm = nn.LSTM(lstm_size, lstm_size, lstm_num_layers)
        self.g_emb = nn.Parameter(torch.randn(1, 1, lstm_size) * 0.1)
        self.soft = nn.ModuleList(nn.Linear(lstm_size, len(v), bias=False) for v in self.decisions.values())
        self.emb = nn.ModuleList(nn.Embedding(len(v), lstm_size) for v in self.decisions.values())
        self.tanh_constant, self.temperature = tanh_constant, temperature

    def _logits(self, h: torch.Tensor, i: int) -> torch.Tensor:
        logits = self.soft[i](h).reshape(-1)
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def sample(
        self, generator: torch.Generator | None = None, *, greedy: bool = False
    ) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs = self.g_emb
        hidden = None
        logp = torch.zeros(())
        entropy = torch.zeros(())
        skip = []
        arch: dict[str, Any] = {}
        for i, label in enumerate(self.labels):
            out, hidden = self.lstm(inputs, hidden)
            logits = self._logits(out, i)
            probs = logits.softmax(-1)
            if greedy:
                idx = int(torch.argmax(probs))
            else:
                idx = int(torch.multinomial(probs.detach().cpu(), 1, generator=generator))
            lp = logits.log_softmax(-1)
            logp = logp + lp[idx]
            entropy = entropy - (probs * lp).sum()
            values = self.decisions[label]
            if values and all(isinstance(v, list) for v in values):  # an InputChoice: which inputs it takes
                n = max(max(v) for v in values if v) + 1
                skip.append(sum(probs[j] * len(v) / n for j, v in enumerate(values)))
            arch[label] = values[idx]
            inputs = self.emb[i](torch.tensor([[idx]], device=self.g_emb.device))
        density = torch.stack(skip).mean() if skip else torch.zeros(())
        return arch, logp, entropy, density


class EnasModule(OneShotModule):
    """ENAS (Pham et al. 2018): each step trains the weights of one architecture sampled by the
    :class:`ReinforceController`, then the controller by REINFORCE on the architecture's score on a validation
    batch, with NNI's ``EnasTrainer`` defaults: reward baseline ``b = decay * b + (1 - decay) * reward``,
    entropy bonus ``entropy_weight``, skip penalty ``skip_weight * KL(density || skip_target)`` on multi-input
    choices, gradients of ``ctrl_steps_aggregate`` steps summed before each controller update.
    """

    strategy_name = "ENAS"

    def __init__(
        self,
        inner: pl.LightningModule,
        supernet: Supernet,
        *,
        ctrl_lr: float = 3.5e-4,
        entropy_weight: float = 1e-4,
        skip_weight: float = 0.8,
        skip_target: float = 0.4,
        baseline_decay: float = 0.999,
        ctrl_steps_aggregate: int = 20,
        ctrl_grad_clip: float = 0.0,
        ctrl_kwargs: Mapping[str, Any] | None = None,
        grad_clip: float = 5.0,
        seed: int | None = None,
        score: Callable[[pl.LightningModule, Any], float] | None = None,
    ) -> None:
        super().__init__(inner, supernet, grad_clip=grad_clip, seed=seed, score=score)
        with (
            torch.random.fork_rng()
        ):  # the controller's initial weights from the module's seed, not the global RNG
            torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=self.generator)))
            self.controller = ReinforceController(self.state.decisions, **dict(ctrl_kwargs or {}))
        self.ctrl_lr, self.entropy_weight, self.skip_weight, self.skip_target = (
            ctrl_lr,
            entropy_weight,
            skip_weight,
            skip_target,
        )
        self.baseline_decay, self.ctrl_steps_aggregate, self.ctrl_grad_clip = (
            baseline_decay,
            ctrl_steps_aggregate,
            ctrl_grad_clip,
        )
        self.register_buffer("baseline", torch.zeros(()))
        self.register_buffer("ctrl_step", torch.zeros((), dtype=torch.long))

    def architecture_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.controller.parameters(), lr=self.ctrl_lr)]

    def step(self, train_batch: Any, val_batch: Any, batch_idx: int) -> None:
        with torch.no_grad():
            arch, *_ = self.controller.sample(self.generator)
        self.state.set_arch(self.broadcast(arch))
        self.weight_step(train_batch, batch_idx)
        _, (ctrl_opt,) = self._optimizers()
        arch, logp, entropy, density = self.controller.sample(self.generator)
        self.state.set_arch(arch)
        was_training = self.inner.training
        self.inner.eval()
        reward = self.score(val_batch)
        self.inner.train(was_training)
        if self.entropy_weight:
            reward += self.entropy_weight * float(entropy.detach())
        self.baseline.mul_(self.baseline_decay).add_((1 - self.baseline_decay) * reward)
        loss = -logp * (reward - float(self.baseline))
        if self.skip_weight and density.requires_grad:
            t = self.skip_target
            d = density.clamp(1e-6, 1 - 1e-6)
            loss = loss + self.skip_weight * (d * (d / t).log() + (1 - d) * ((1 - d) / (1 - t)).log())
        self.manual_backward(loss / self.ctrl_steps_aggregate)
        self.ctrl_step += 1
        if int(self.ctrl_step) % self.ctrl_steps_aggregate == 0:
            self.sync_grads(list(self.controller.parameters()))
            if self.ctrl_grad_clip > 0:
                nn.utils.clip_grad_norm_(self.controller.parameters(), self.ctrl_grad_clip)
            ctrl_opt.step()
            ctrl_opt.zero_grad()
        self.log("reward", reward, prog_bar=False)

    def export(self) -> dict[str, Any]:
        with torch.no_grad():
            arch, *_ = self.controller.sample(greedy=True)
        return arch

    def probabilities(self) -> dict[str, torch.Tensor]:
        return {}

    def export_top_models(self, top_k: int = 1) -> list[dict[str, Any]]:
        """The greedy architecture first, then distinct samples of the controller, most probable first."""
        best = self.export()
        seen = {repr(sorted(best.items()))}
        scored: list[tuple[float, dict[str, Any]]] = []
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for _ in range(max(50, 10 * top_k)):
                arch, logp, *_ = self.controller.sample(gen)
                key = repr(sorted(arch.items()))
                if key not in seen:
                    seen.add(key)
                    scored.append((float(logp), arch))
        scored.sort(key=lambda t: -t[0])
        return [best] + [a for _, a in scored[: top_k - 1]]
