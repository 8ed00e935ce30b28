"""The one algorithm contract the experiment manager speaks: :class:`ManagedTuner` and :class:`ManagedAssessor`.

Tuners come in three kinds: nni-pl's own (:class:`~nni_pl.hpo.Tuner`, which accept customised trials and
rebuild themselves with ``resume``; the built-ins take the parsed :class:`~nni_pl.space.SearchSpace`, a user's
subclass NNI's JSON dict unless it sets ``parsed_search_space``), advisors
(tuners that also judge running trials: Hyperband, BOHB) and NNI-style tuner objects a user brings (JSON
search space, ``import_data`` on resume, customised results only with ``_accept_customized``, as in NNI).
:func:`managed_tuner` wraps any of them once, where the experiment builds its algorithms, so the manager
calls the same methods on all and never asks which kind it has; :func:`managed_assessor` does the same for
assessors, and :meth:`ManagedTuner.assessor_view` lets an advisor judge trials when no assessor is configured.

Example:
    >>> from nni_pl.hpo.tuners import RandomTuner
    >>> from nni_pl.space import SearchSpace
    >>> tuner = managed_tuner(RandomTuner(seed=0))
    >>> tuner.start(experiment_id="e", directory=None, space=SearchSpace.parse(
    ...     {"x": {"_type": "choice", "_value": [1, 2]}}))
    >>> sorted([tuner.generate(0)["x"], tuner.generate(1)["x"]])
    [1, 2]
    >>> managed_tuner(tuner) is tuner   # wrapping twice is wrapping once
    True
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nni_pl.errors import NoMoreTrialError
from nni_pl.hpo._base import Advisor, AssessResult, HistoryEntry, Tuner
from nni_pl.space import SearchSpace

__all__ = ["CUSTOMIZED", "ManagedAssessor", "ManagedTuner", "managed_assessor", "managed_tuner"]

logger = logging.getLogger(__name__)

CUSTOMIZED = "customized"  # NNI's parameter_source of a trial a user added by hand


class ManagedTuner:
    """A tuner or advisor as the manager uses it. Build it with :func:`managed_tuner`.

    Attributes:
        algorithm: the wrapped object (what the user configured).
        is_advisor: whether it also judges running trials (:meth:`assessor_view`).
        accepts_assessor: whether an assessor may stop its trials early (PBT's generations cannot be stopped).
    """

    def __init__(self, algorithm: Any) -> None:
        self.algorithm = algorithm
        self._ours = isinstance(algorithm, Tuner)
        # the built-ins take the parsed space; everything else NNI's JSON, as NNI hands its tuners
        self._parsed_space = self._ours and bool(getattr(type(algorithm), "parsed_search_space", False))
        self.is_advisor = isinstance(algorithm, Advisor)
        self.accepts_assessor = bool(getattr(type(algorithm), "accepts_assessor", True))
        # nni-pl's tuners rebuild themselves from the whole history; an NNI tuner learns through import_data
        self._resumes = callable(getattr(algorithm, "resume", None))

    @property
    def name(self) -> str:
        return type(self.algorithm).__name__

    # --- start and space ---------------------------------------------------------------------------------------------
    def start(self, *, experiment_id: str, directory: Path | None, space: SearchSpace) -> None:
        """Before the first suggestion: the experiment's identity (nni-pl tuners keep files there) and its space."""
        if self._ours and directory is not None:
            self.algorithm.attach(experiment_id=experiment_id, directory=Path(directory))
        self.update_search_space(space)

    def update_search_space(self, space: SearchSpace) -> None:
        self.algorithm.update_search_space(space if self._parsed_space else space.to_json())

    # --- suggestions and results ---------------------------------------------------------------------------------------
    def generate(self, parameter_id: int) -> dict[str, Any]:
        """One parameter set.

        Raises:
            NoMoreTrialError: the space is exhausted (also when an NNI tuner returns ``None``, its signal).
            WaitForResults: nothing to suggest until a running trial reports.
        """
        params = self.algorithm.generate_parameters(parameter_id)
        if params is None:
            raise NoMoreTrialError(f"{self.name} returned no parameters")
        return params

    @property
    def learns_customized(self) -> bool:
        """Whether results of customised (user-added) trials reach it: nni-pl's tuners always, an NNI tuner only
        when it sets ``_accept_customized``, as in NNI."""
        return self._ours or bool(getattr(self.algorithm, "_accept_customized", False))

    def receive(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, *, trial_id: str, customized: bool
    ) -> None:
        """The final result of a trial (a customised one only when :attr:`learns_customized`)."""
        if not customized:
            self.algorithm.receive_trial_result(parameter_id, parameters, value)
            return
        if not self.learns_customized:
            logger.info("customised trial %s: result not passed to the NNI tuner", trial_id)
            return
        try:
            self.algorithm.receive_trial_result(
                parameter_id, parameters, value, customized=True, trial_job_id=trial_id
            )
        except Exception:  # a tuner that cannot take foreign parameters must not end the experiment
            logger.warning(
                "the tuner did not accept the result of customised trial %s", trial_id, exc_info=True
            )

    def trial_end(self, parameter_id: int, success: bool, *, trial_id: str, status: str) -> None:
        if self._ours:
            self.algorithm.trial_end(parameter_id, success, trial_job_id=trial_id, status=status)
        else:
            self.algorithm.trial_end(parameter_id, success)

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        """Rebuild from stored trials (customised ones are dropped unless :attr:`learns_customized`)."""
        history = [h for h in history if h.source != CUSTOMIZED or self.learns_customized]
        if self._resumes:
            self.algorithm.resume(history)
        else:  # an NNI tuner: import_data is what it understands
            self.algorithm.import_data(
                [{"parameter": h.parameters, "value": h.value} for h in history if h.value is not None]
            )

    # --- an advisor judging trials -------------------------------------------------------------------------------------
    def assessor_view(self) -> ManagedAssessor | None:
        """The assessor role of an advisor (``None`` for a plain tuner)."""
        return _AdvisorAssessor(self.algorithm) if self.is_advisor else None


class ManagedAssessor:
    """An assessor as the manager uses it. Build it with :func:`managed_assessor`."""

    def __init__(self, algorithm: Any) -> None:
        self.algorithm = algorithm

    def should_stop(self, trial_id: str, history: list[float], *, parameter_id: int | None) -> bool:
        """Whether to stop the trial after this intermediate history (NNI: ``AssessResult.Bad`` or ``False``)."""
        return self.algorithm.assess_trial(trial_id, history) in (AssessResult.Bad, False)

    def trial_end(self, trial_id: str, success: bool) -> None:
        self.algorithm.trial_end(trial_id, success)

    def resume(self, records: Sequence[tuple[str, list[float], bool | None]]) -> None:
        """Every stored curve: ``(trial id, intermediate values, success or None while running)``."""
        if callable(getattr(self.algorithm, "resume", None)):
            self.algorithm.resume(records)


class _AdvisorAssessor(ManagedAssessor):
    """An advisor in its assessor role: it learns trial ends and its history as the tuner, not twice."""

    def should_stop(self, trial_id: str, history: list[float], *, parameter_id: int | None) -> bool:
        return self.algorithm.assess_trial(trial_id, history, parameter_id=parameter_id) in (
            AssessResult.Bad,
            False,
        )

    def trial_end(self, trial_id: str, success: bool) -> None:
        pass  # told through ManagedTuner.trial_end

    def resume(self, records: Sequence[tuple[str, list[float], bool | None]]) -> None:
        pass  # rebuilt through ManagedTuner.resume


def managed_tuner(algorithm: Any) -> ManagedTuner:
    """Wrap a tuner or advisor (nni-pl's or an NNI-style object) for the manager; a wrapped one is returned as is."""
    return algorithm if isinstance(algorithm, ManagedTuner) else ManagedTuner(algorithm)


def managed_assessor(algorithm: Any) -> ManagedAssessor | None:
    """Wrap an assessor for the manager (``None`` stays ``None``; a wrapped one is returned as is)."""
    if algorithm is None or isinstance(algorithm, ManagedAssessor):
        return algorithm
    return ManagedAssessor(algorithm)
