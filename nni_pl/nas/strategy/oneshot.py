"""One-shot strategies: :class:`DARTS`, :class:`GumbelDARTS`, :class:`ENAS`, :class:`RandomOneShot` (SPOS),
:class:`Proxyless`.

These objects hold the strategy's settings only (importing them imports no torch); the search itself is the
LightningModule of :mod:`nni_pl.nas.oneshot.lightning`. They are used three ways:

* ``NasExperiment(space, evaluator, DARTS())``: the search runs as one trial of the experiment (store, CLI,
  dashboard, resume like any NAS experiment; the architecture probabilities are its intermediate results);
  ``export_top_models()`` gives the architectures it found;
* ``nni_pl.nas.oneshot.search(space, evaluator, DARTS())``: the same in this process;
* ``strategy.build_module(inner, supernet)``: the LightningModule, for your own ``Trainer``.

Example:
    >>> from nni_pl.nas.strategy import DARTS, RandomOneShot
    >>> DARTS(unrolled=True).to_config()["kwargs"]["unrolled"]
    True
    >>> RandomOneShot(max_latency=-1)
    Traceback (most recent call last):
    ...
    nni_pl._checks.ArgumentError: argument 'RandomOneShot.max_latency': must be > 0 (a limit in milliseconds), got -1
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from nni_pl._checks import check_bool, check_choice, check_int, check_number, fail
from nni_pl.nas.strategy._base import Strategy, TrialRecord

__all__ = ["DARTS", "ENAS", "SPOS", "GumbelDARTS", "OneShotStrategy", "Proxyless", "RandomOneShot"]

#: the label of the one "architecture" a one-shot experiment's manager proposes: the search runs in the trial
ONESHOT_LABEL = "oneshot_strategy"


class OneShotStrategy(Strategy):
    """Base of the one-shot strategies. In an experiment it proposes one trial, which runs the whole search.

    Subclasses list their module's keyword arguments in :attr:`module_args` (stored under the same names).
    """

    #: the name :func:`nni_pl.nas.oneshot.supernet.build_supernet` checks the space against
    name: ClassVar[str] = ""
    module_args: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, *, grad_clip: float = 5.0, optimize_mode: str = "maximize", seed: int | None = None
    ) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed)
        self.grad_clip = check_number(self, "grad_clip", grad_clip, low=0)

    def propose(self, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        return None if history else {ONESHOT_LABEL: self.name}

    def module_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.module_args} | {
            "grad_clip": self.grad_clip,
            "seed": self.seed,
        }

    def build_module(self, inner: Any, supernet: Any, **extra: Any) -> Any:
        """The strategy's LightningModule around ``inner`` (the evaluator's module, holding ``supernet``)."""
        from nni_pl.nas.oneshot.lightning import STRATEGY_MODULES

        return STRATEGY_MODULES[self.name](inner, supernet, **self.module_kwargs(), **extra)


class DARTS(OneShotStrategy):
    """DARTS: softmax-weighted mixing of every candidate; ``unrolled=True`` for the second-order gradient.

    Args: ``arc_learning_rate`` (3e-4), ``arc_weight_decay`` (1e-3), ``unrolled`` (False), ``grad_clip`` (5.0)
    as NNI's ``DartsTrainer``; ``seed``.
    """

    name = "DARTS"
    module_args = ("arc_learning_rate", "arc_weight_decay", "unrolled")

    def __init__(
        self,
        *,
        arc_learning_rate: float = 3e-4,
        arc_weight_decay: float = 1e-3,
        unrolled: bool = False,
        grad_clip: float = 5.0,
        optimize_mode: str = "maximize",
        seed: int | None = None,
    ) -> None:
        super().__init__(grad_clip=grad_clip, optimize_mode=optimize_mode, seed=seed)
        self.arc_learning_rate = check_number(
            self, "arc_learning_rate", arc_learning_rate, low=0, low_open=True
        )
        self.arc_weight_decay = check_number(self, "arc_weight_decay", arc_weight_decay, low=0)
        self.unrolled = check_bool(self, "unrolled", unrolled)


class GumbelDARTS(OneShotStrategy):
    """GumbelDARTS: Gumbel-softmax mixing; the temperature falls from ``gumbel_temperature`` to ``min_temp``
    over the epochs when ``use_temp_anneal``."""

    name = "GumbelDARTS"
    module_args = (
        "gumbel_temperature",
        "use_temp_anneal",
        "min_temp",
        "arc_learning_rate",
        "arc_weight_decay",
    )

    def __init__(
        self,
        *,
        gumbel_temperature: float = 1.0,
        use_temp_anneal: bool = True,
        min_temp: float = 0.33,
        arc_learning_rate: float = 3e-4,
        arc_weight_decay: float = 1e-3,
        grad_clip: float = 5.0,
        optimize_mode: str = "maximize",
        seed: int | None = None,
    ) -> None:
        super().__init__(grad_clip=grad_clip, optimize_mode=optimize_mode, seed=seed)
        self.gumbel_temperature = check_number(
            self, "gumbel_temperature", gumbel_temperature, low=0, low_open=True
        )
        self.use_temp_anneal = check_bool(self, "use_temp_anneal", use_temp_anneal)
        self.min_temp = check_number(self, "min_temp", min_temp, low=0, low_open=True)
        if self.min_temp > self.gumbel_temperature:
            fail(self, "min_temp", f"must be <= gumbel_temperature ({gumbel_temperature}), got {min_temp}")
        self.arc_learning_rate = check_number(
            self, "arc_learning_rate", arc_learning_rate, low=0, low_open=True
        )
        self.arc_weight_decay = check_number(self, "arc_weight_decay", arc_weight_decay, low=0)


class ENAS(OneShotStrategy):
    """ENAS: an LSTM controller samples one path per step and learns by REINFORCE (NNI's ``EnasTrainer``
    defaults: ``ctrl_lr`` 3.5e-4, ``entropy_weight`` 1e-4, ``skip_weight`` 0.8, ``baseline_decay`` 0.999,
    ``ctrl_steps_aggregate`` 20; ``ctrl_kwargs`` for :class:`~nni_pl.nas.oneshot.lightning.ReinforceController`)."""

    name = "ENAS"
    module_args = (
        "ctrl_lr",
        "entropy_weight",
        "skip_weight",
        "skip_target",
        "baseline_decay",
        "ctrl_steps_aggregate",
        "ctrl_kwargs",
    )

    def __init__(
        self,
        *,
        ctrl_lr: float = 3.5e-4,
        entropy_weight: float = 1e-4,
        skip_weight: float = 0.8,
        skip_target: float = 0.4,
        baseline_decay: float = 0.999,
        ctrl_steps_aggregate: int = 20,
        ctrl_kwargs: Mapping[str, Any] | None = None,
        grad_clip: float = 5.0,
        optimize_mode: str = "maximize",
        seed: int | None = None,
    ) -> None:
        super().__init__(grad_clip=grad_clip, optimize_mode=optimize_mode, seed=seed)
        self.ctrl_lr = check_number(self, "ctrl_lr", ctrl_lr, low=0, low_open=True)
        self.entropy_weight = check_number(self, "entropy_weight", entropy_weight, low=0)
        self.skip_weight = check_number(self, "skip_weight", skip_weight, low=0)
        self.skip_target = check_number(
            self, "skip_target", skip_target, low=0, high=1, low_open=True, high_open=True
        )
        self.baseline_decay = check_number(self, "baseline_decay", baseline_decay, low=0, high=1)
        self.ctrl_steps_aggregate = check_int(self, "ctrl_steps_aggregate", ctrl_steps_aggregate, minimum=1)
        if ctrl_kwargs is not None and not isinstance(ctrl_kwargs, Mapping):
            fail(self, "ctrl_kwargs", f"must be a dict of ReinforceController arguments, got {ctrl_kwargs!r}")
        allowed = {"lstm_size", "lstm_num_layers", "tanh_constant", "temperature"}
        for key in ctrl_kwargs or {}:
            if key not in allowed:
                fail(
                    self, f"ctrl_kwargs.{key}", f"is not a controller argument; use one of {sorted(allowed)}"
                )
        self.ctrl_kwargs = dict(ctrl_kwargs) if ctrl_kwargs is not None else None


def _limit(owner: object, name: str, value: Any, unit: str) -> float | None:
    if value is None:
        return None
    return check_number(owner, name, value, low=0, low_open=True, rule=f"> 0 (a limit in {unit})")


class RandomOneShot(OneShotStrategy):
    """RandomOneShot (SPOS): one uniformly sampled path per training step, then a search over the trained
    supernet: ``search="evolution"`` (NNI's SPOS flow) or ``"random"``, ``num_candidates`` architectures scored
    on the validation data with the shared weights (``search_batches`` of it; all when None), each after
    ``bn_recalibration_batches`` training batches recalibrate its batch norms (SPOS's recalibration; 0: off).

    Constraints: ``max_latency`` (ms, predicted by the table at ``latency_predictor``, a JSON file from
    :func:`nni_pl.nas.hardware.measure_latency_table`) and ``max_flops`` (counted on the frozen model at the
    validation batch's input shape, one sample): architectures over a limit are never scored or exported.
    """

    name = "RandomOneShot"
    module_args = ()

    def __init__(
        self,
        *,
        search: str = "evolution",
        num_candidates: int = 50,
        population_size: int = 20,
        mutation_prob: float = 0.1,
        search_batches: int | None = None,
        bn_recalibration_batches: int = 4,
        max_latency: float | None = None,
        latency_predictor: str | None = None,
        max_flops: float | None = None,
        grad_clip: float = 5.0,
        optimize_mode: str = "maximize",
        seed: int | None = None,
    ) -> None:
        super().__init__(grad_clip=grad_clip, optimize_mode=optimize_mode, seed=seed)
        self.search = check_choice(self, "search", search, ("evolution", "random"))
        self.num_candidates = check_int(self, "num_candidates", num_candidates, minimum=1)
        self.population_size = check_int(self, "population_size", population_size, minimum=2)
        self.mutation_prob = check_number(self, "mutation_prob", mutation_prob, low=0, high=1)
        self.search_batches = (
            None if search_batches is None else check_int(self, "search_batches", search_batches, minimum=1)
        )
        self.bn_recalibration_batches = check_int(
            self, "bn_recalibration_batches", bn_recalibration_batches, minimum=0
        )
        self.max_latency = _limit(self, "max_latency", max_latency, "milliseconds")
        self.max_flops = _limit(self, "max_flops", max_flops, "FLOPs")
        if self.max_latency is not None and latency_predictor is None:
            fail(
                self,
                "latency_predictor",
                "is needed with max_latency: the path of a table saved by "
                "nni_pl.nas.hardware (predictor.save(path))",
            )
        self.latency_predictor = latency_predictor

    def search_kwargs(self) -> dict[str, Any]:
        return {
            "method": self.search,
            "num_candidates": self.num_candidates,
            "population_size": self.population_size,
            "mutation_prob": self.mutation_prob,
        }


#: NNI's name (Single Path One-Shot)
SPOS = RandomOneShot


class Proxyless(OneShotStrategy):
    """ProxylessNAS: binary gates, two paths per architecture step; with ``latency_predictor`` (a table saved by
    :mod:`nni_pl.nas.hardware`) and ``latency_budget`` (ms) a latency loss, and an export within the budget."""

    name = "Proxyless"
    module_args = ("arc_learning_rate", "warmup_epochs", "latency_budget", "latency_weight")

    def __init__(
        self,
        *,
        arc_learning_rate: float = 1e-3,
        warmup_epochs: int = 0,
        latency_predictor: str | None = None,
        latency_budget: float | None = None,
        latency_weight: float = 1.0,
        grad_clip: float = 5.0,
        optimize_mode: str = "maximize",
        seed: int | None = None,
    ) -> None:
        super().__init__(grad_clip=grad_clip, optimize_mode=optimize_mode, seed=seed)
        self.arc_learning_rate = check_number(
            self, "arc_learning_rate", arc_learning_rate, low=0, low_open=True
        )
        self.warmup_epochs = check_int(self, "warmup_epochs", warmup_epochs, minimum=0)
        self.latency_budget = _limit(self, "latency_budget", latency_budget, "milliseconds")
        self.latency_weight = check_number(self, "latency_weight", latency_weight, low=0)
        if (latency_budget is None) != (latency_predictor is None):
            fail(
                self,
                "latency_budget" if latency_budget is None else "latency_predictor",
                "latency_budget and latency_predictor go together: the budget in ms and the path of a table "
                "saved by nni_pl.nas.hardware",
            )
        self.latency_predictor = latency_predictor

    def build_module(self, inner: Any, supernet: Any, **extra: Any) -> Any:
        if self.latency_predictor is not None and "predictor" not in extra:
            from nni_pl.nas.hardware import LatencyPredictor

            extra["predictor"] = LatencyPredictor.load(self.latency_predictor)
        return super().build_module(inner, supernet, **extra)
