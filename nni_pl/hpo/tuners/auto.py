"""The default tuner (``Auto``): Gaussian-process Bayesian optimisation while results are few, TPE after.

In ``benchmarks/results/hpo.md`` (12 problems, 10 seeds) the GP tuner finds far better points than TPE
in its first 50 to 100 trials on low-dimensional continuous problems (synthetic functions, sequential:
normalised regret 0.0068 against 0.047 at 50 trials, 0.00049 against 0.0061 at 100), but a GP
suggestion costs ``O(n^3)`` in the number of results (about 47 ms of CPU at 100 results, 70 ms at 200,
against 1-2 ms for TPE at 1,000: ``benchmarks/results/gp_latency.md``), it models many dimensions poorly,
and TPE catches up as results accumulate. ``Auto`` takes the best of both: GP for the first ``switch_after`` results
when the space has at most ``max_gp_dims`` dimensions and the GP tuner accepts it, then TPE, given
every result, pending trial and failure so far, for the rest of the experiment.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from nni_pl._checks import ArgumentError, check_bool, check_int, check_optimize_mode, check_seed, fail
from nni_pl.errors import SearchSpaceError
from nni_pl.hpo._base import HistoryEntry, Tuner
from nni_pl.hpo.tuners.gp import GPTuner
from nni_pl.hpo.tuners.tpe import TPETuner
from nni_pl.space import SearchSpace

__all__ = ["AutoTuner"]

log = logging.getLogger(__name__)

#: GP's random start-up when the experiment's budget is unknown or large (GPTuner's own default).
_GP_COLD_START = 10


class AutoTuner(Tuner):
    """The default tuner: GP-based Bayesian optimisation for the first results, TPE after.

    This is the tuner an experiment gets when its config names neither a tuner nor an advisor (NNI's
    default is TPE). The rule, made before each suggestion:

    - **GP** (:class:`~nni_pl.hpo.tuners.gp.GPTuner`) while fewer than ``switch_after`` results have
      been received, if the space has at most ``max_gp_dims`` dimensions (a nested option's parameters
      count too) and the GP tuner accepts every parameter (``GPTuner.check_search_space``);
    - **TPE** (:class:`~nni_pl.hpo.tuners.tpe.TPETuner`) from then on, never back. At the switch, TPE
      is resumed with everything GP knew: results, imported records, failures and the trials still
      running, so no point is suggested twice and the pending ones get TPE's constant liar. A search
      space GP refuses (or a space update it refuses) gives TPE at once.

    Every ``_type`` and nested choice is accepted. A finite space ends with
    :class:`~nni_pl.errors.NoMoreTrialError` once every point has been suggested, in either phase.
    After the switch a suggestion costs what a TPE suggestion costs.

    When the experiment's ``maxTrialNumber`` is known (passed as ``max_trial_number`` or at launch by
    :meth:`check_budget`) and is below 100, GP's random start-up shrinks from 10 trials to a tenth of the
    budget, but never below the number of dimensions + 1: a 20-trial experiment on 2 parameters models
    from its 4th result on.

    Args:
        optimize_mode: ``"maximize"`` (NNI's default) or ``"minimize"`` the reported metric.
        parallel_optimize: TPE's constant liar for pending trials (the experiment turns it on when
            ``trialConcurrency > 1``); GP always gives pending trials a constant liar.
        constant_liar_type: TPE's lie: ``"min"``, ``"max"`` or ``"mean"`` (default: the worst result).
        switch_after: the number of results after which TPE takes over (0: TPE from the start).
        max_gp_dims: the most dimensions GP is used for; larger spaces get TPE from the start.
        max_trial_number: the experiment's trial budget, if known (see above).
        seed: makes the suggestions reproducible for the same sequence of results.
        gp_args: further :class:`~nni_pl.hpo.tuners.gp.GPTuner` arguments (e.g. ``{"utility": "ucb"}``).
        tpe_args: further :class:`~nni_pl.hpo.tuners.tpe.TPETuner` arguments (e.g. ``{"n_ei_candidates": 48}``).

    Example:
        >>> tuner = AutoTuner(optimize_mode="minimize", switch_after=12, seed=0,
        ...                   gp_args={"selection_num_warm_up": 1000, "selection_num_starting_points": 5})
        >>> tuner.update_search_space({"x": {"_type": "uniform", "_value": [-5, 5]}})
        >>> models = []
        >>> for i in range(20):
        ...     p = tuner.generate_parameters(i)
        ...     models.append(tuner.model)
        ...     tuner.receive_trial_result(i, p, (p["x"] - 1.0) ** 2)
        >>> models[11], models[12]
        ('GP', 'TPE')
        >>> best = min(tuner.observations(), key=lambda o: o[1])
        >>> abs(best[0]["x"] - 1.0) < 0.3
        True
    """

    parsed_search_space = True  # a built-in: the experiment hands it the parsed SearchSpace

    def __init__(
        self,
        optimize_mode: str = "maximize",
        parallel_optimize: bool = False,
        constant_liar_type: str | None = None,
        *,
        switch_after: int = 100,
        max_gp_dims: int = 10,
        max_trial_number: int | None = None,
        seed: int | None = None,
        gp_args: Mapping[str, Any] | None = None,
        tpe_args: Mapping[str, Any] | None = None,
    ) -> None:
        self.optimize_mode = check_optimize_mode(self, optimize_mode)
        self.parallel_optimize = check_bool(self, "parallel_optimize", parallel_optimize)
        self.constant_liar_type = constant_liar_type
        self.switch_after = check_int(self, "switch_after", switch_after, minimum=0)
        self.max_gp_dims = check_int(self, "max_gp_dims", max_gp_dims, minimum=0)
        self.max_trial_number = (
            None
            if max_trial_number is None
            else check_int(self, "max_trial_number", max_trial_number, minimum=1)
        )
        self.seed = check_seed(self, seed)
        self.gp_args = self._extra_args("gp_args", gp_args)
        self.tpe_args = self._extra_args("tpe_args", tpe_args)
        # built now so that a wrong argument fails here, not at the first suggestion or the switch
        self._tpe: TPETuner = self._build("tpe_args", self._make_tpe)
        self._build("gp_args", self._make_gp)
        self._gp: GPTuner | None = None
        self._space: SearchSpace | None = None
        self._model: str | None = None
        # until the switch: what GP learnt, keyed by parameter id (or ("import", n)), in arrival order
        self._ledger: dict[Any, HistoryEntry] = {}
        self._imports = 0

    # --- construction ------------------------------------------------------------------------------------
    def _extra_args(self, name: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            fail(self, name, f"must be a mapping of argument names to values, got {value!r}")
        fixed = {"optimize_mode", "seed", "parallel_optimize", "constant_liar_type"} & set(value)
        if fixed:
            fail(self, name, f"sets {', '.join(sorted(fixed))}; give it to Auto itself")
        return dict(value)

    def _build(self, name: str, make: Any) -> Any:
        try:
            return make()
        except ArgumentError as e:
            raise e.nested(self, name) from e
        except TypeError as e:  # an argument name the tuner does not have
            fail(self, name, str(e))

    def _make_tpe(self) -> TPETuner:
        return TPETuner(
            self.optimize_mode,
            self.parallel_optimize,
            self.constant_liar_type,
            seed=self.seed,
            **self.tpe_args,
        )

    def _make_gp(self, cold_start: int | None = None) -> GPTuner:
        args = dict(self.gp_args)
        if cold_start is not None:
            args.setdefault("cold_start_num", cold_start)
        return GPTuner(self.optimize_mode, seed=self.seed, **args)

    def _gp_cold_start(self, space: SearchSpace) -> int:
        """GP's random start-up: 10, or a tenth of a known budget below 100, at least dimensions + 1."""
        if self.max_trial_number is None:
            return _GP_COLD_START
        tenth = math.ceil(self.max_trial_number / 10)
        return min(_GP_COLD_START, max(tenth, len(space.dimensions()) + 1))

    # --- which model -------------------------------------------------------------------------------------
    @property
    def model(self) -> str | None:
        """``"GP"`` or ``"TPE"``: the model of the next suggestion (``None`` before the search space)."""
        return self._model

    def gp_refusal(self, space: SearchSpace) -> str | None:
        """Why GP is not used for ``space`` (``None``: it is, until ``switch_after`` results)."""
        if self.switch_after == 0:
            return "switch_after is 0"
        n = len(space.dimensions())
        if n > self.max_gp_dims:
            return f"the space has {n} dimensions, more than max_gp_dims={self.max_gp_dims}"
        try:
            GPTuner.check_search_space(space, name="GPTuner")
        except SearchSpaceError as e:
            return str(e)
        return None

    def _switch(self, reason: str) -> None:
        """Hand over to TPE with everything GP learnt (results, failures, running trials)."""
        assert self._space is not None
        history = list(self._ledger.values())
        log.info("Auto: TPE takes over from GP (%s) with %d stored trials", reason, len(history))
        self._tpe.update_search_space(self._space)
        if history:
            self._tpe.resume(history)
        self._gp, self._ledger, self._model = None, {}, "TPE"

    def _results(self) -> int:
        return sum(1 for h in self._ledger.values() if h.value is not None)

    @property
    def _current(self) -> Tuner:
        if self._model is None:
            raise RuntimeError("update_search_space() must be called before using the tuner")
        return self._gp if self._model == "GP" and self._gp is not None else self._tpe

    # --- Tuner interface ---------------------------------------------------------------------------------
    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        space = SearchSpace.parse(search_space)
        self._space = space
        if self._model == "TPE":
            self._current.update_search_space(space)
            return
        refusal = self.gp_refusal(space)
        if self._model is None and refusal is None:
            gp = self._build("gp_args", lambda: self._make_gp(self._gp_cold_start(space)))
            refusal = self._gp_update(gp, space)
            if refusal is None:
                self._gp, self._model = gp, "GP"
                log.info("Auto: GP for the first %d results, then TPE", self.switch_after)
                return
        if self._model is None:
            log.info("Auto: TPE (GP is not used: %s)", refusal)
            self._tpe.update_search_space(space)
            self._gp, self._ledger, self._model = None, {}, "TPE"
            return
        if refusal is None:
            assert self._gp is not None
            refusal = self._gp_update(self._gp, space)
        if refusal is not None:
            self._switch(f"the new search space: {refusal}")

    @staticmethod
    def _gp_update(gp: GPTuner, space: SearchSpace) -> str | None:
        """Give ``gp`` the space; the reason if it refuses it (its settings may restrict it further)."""
        try:
            gp.update_search_space(space)
        except SearchSpaceError as e:
            return str(e)
        return None

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if self._model == "GP" and self._results() >= self.switch_after:
            self._switch(f"{self.switch_after} results")
        params = self._current.generate_parameters(parameter_id, **kwargs)
        if self._model == "GP":
            self._ledger[parameter_id] = HistoryEntry(parameter_id, dict(params), None, finished=False)
        return params

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        self._current.receive_trial_result(parameter_id, parameters, value, **kwargs)
        if self._model == "GP" and value is not None:
            known = self._ledger.get(parameter_id)
            if known is None or known.value is None:
                params = known.parameters if known is not None else dict(parameters)
                source = "algorithm" if known is not None else "customized"
                self._ledger[parameter_id] = HistoryEntry(parameter_id, params, value, source=source)

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        self._current.trial_end(parameter_id, success, **kwargs)
        known = self._ledger.get(parameter_id)
        if known is not None and not known.finished:  # ended without a result: seen, not pending
            self._ledger[parameter_id] = HistoryEntry(parameter_id, known.parameters, None, finished=True)

    def import_data(self, data: Sequence[Mapping[str, Any]]) -> None:
        """Learn from earlier results ``[{"parameter": {...}, "value": metric}, ...]`` (all count as seen)."""
        self._current.import_data(data)
        if self._model != "GP":
            return
        for record in data:
            params = record.get("parameter")
            if isinstance(params, Mapping):
                self._imports += 1
                self._ledger[("import", self._imports)] = HistoryEntry(
                    None, dict(params), record.get("value"), source="imported"
                )

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        """Rebuild from stored trials: TPE if they hold ``switch_after`` results or more, else GP."""
        n = sum(1 for h in history if h.value is not None)
        if self._model == "GP" and n >= self.switch_after:
            self._ledger = {}
            self._switch(f"resumed with {n} results")
        if self._model == "TPE":
            self._current.resume(history)
            return
        self._current.resume(history)
        for i, h in enumerate(history):
            key = h.parameter_id if h.parameter_id is not None else ("resumed", i)
            self._ledger[key] = h

    def check_budget(self, *, max_trial_number: int | None, max_duration_s: float | None) -> list[str]:
        """Learn the experiment's trial budget (a budget below 100 shortens GP's random start-up)."""
        if max_trial_number is not None and self.max_trial_number is None and self._model is None:
            self.max_trial_number = int(max_trial_number)
        return []

    def observations(self) -> list[tuple[dict[str, Any], float]]:
        """The results learnt so far as ``(parameters, loss)``; the loss is minimised (NaN/inf -> inf)."""
        if self._model is None:
            return []
        return (
            self._gp.observations()
            if self._model == "GP" and self._gp is not None
            else self._tpe.observations()
        )
