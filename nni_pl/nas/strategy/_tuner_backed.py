"""A strategy whose proposals come from an HPO tuner: the base of :class:`TPE` and :class:`PolicyBasedRL`."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from nni_pl._checks import ArgumentError
from nni_pl.errors import NoMoreTrialError
from nni_pl.nas.strategy._base import SUCCEEDED, Strategy, TrialRecord

if TYPE_CHECKING:
    from nni_pl.hpo import Tuner

__all__ = ["TunerBackedStrategy"]


class TunerBackedStrategy(Strategy):
    """A strategy that delegates to an HPO :class:`~nni_pl.hpo.Tuner`: override :meth:`make_tuner` only.

    :meth:`setup` builds a fresh tuner on the architecture space; each proposal is the tuner's
    ``generate_parameters`` (a :class:`~nni_pl.errors.WaitForResults` passes through, a
    :class:`~nni_pl.errors.NoMoreTrialError` ends the search); every result, including those of trials the
    strategy did not propose (resumed or user-added ones), goes to ``receive_trial_result``, and a failed
    trial to ``trial_end``. A subclass calls :meth:`build_tuner` at the end of its ``__init__`` so that bad
    arguments fail at construction; the tuner's argument errors are named after the strategy's arguments
    (``TPE.n_startup_jobs``, or ``TPE.tpe_args.gamma`` for one given in :attr:`tuner_args_name`).

    Example:
        >>> from nni_pl.hpo.tuners import AnnealTuner
        >>> from nni_pl.nas.strategy import simulate
        >>> class Anneal(TunerBackedStrategy):
        ...     def __init__(self, *, optimize_mode="maximize", seed=None):
        ...         super().__init__(optimize_mode=optimize_mode, seed=seed)
        ...         self.build_tuner()
        ...     def make_tuner(self):
        ...         return AnnealTuner(optimize_mode=self.optimize_mode, seed=self.seed)
        >>> space = {"op": {"_type": "choice", "_value": ["conv", "pool", "skip"]}}
        >>> sorted(a["op"] for a, _ in simulate(Anneal(), space, lambda a: 1.0, budget=5, seed=0))
        ['conv', 'pool', 'skip']
    """

    #: the argument (a dict) whose entries the tuner gets as further arguments, e.g. ``"tpe_args"``.
    tuner_args_name: ClassVar[str] = ""

    def __init__(self, *, optimize_mode: str = "maximize", seed: int | None = None) -> None:
        super().__init__(optimize_mode=optimize_mode, seed=seed)
        self._tuner: Tuner | None = None

    @abstractmethod
    def make_tuner(self) -> Tuner:
        """A fresh tuner with this strategy's settings (``optimize_mode``, ``seed``, ...)."""

    def build_tuner(self) -> Tuner:
        """:meth:`make_tuner`, with the tuner's argument errors named after this strategy's arguments."""
        try:
            return self.make_tuner()
        except ArgumentError as e:
            top = e.argument.split(".", 1)[0]
            extra = getattr(self, self.tuner_args_name, None) if self.tuner_args_name else None
            if isinstance(extra, Mapping) and top in extra:
                raise e.nested(self, self.tuner_args_name) from e
            raise ArgumentError(type(self).__name__, e.argument, e.reason) from e  # passed on under its name

    @property
    def tuner(self) -> Tuner:
        """The tuner of the current search (built by :meth:`setup`)."""
        if self._tuner is None:
            raise RuntimeError(f"{type(self).__name__}: call setup(search_space) (or run()) first")
        return self._tuner

    def on_setup(self) -> None:
        self._tuner = self.build_tuner()
        self._tuner.update_search_space(self.space)

    def on_result(self, record: TrialRecord) -> None:
        if record.status == SUCCEEDED:
            self.tuner.receive_trial_result(record.id, dict(record.arch), record.metric)
        else:
            self.tuner.trial_end(record.id, False)

    def propose(self, history: Sequence[TrialRecord]) -> dict[str, Any] | None:
        try:
            return self.tuner.generate_parameters(self.proposing_id)
        except NoMoreTrialError:  # every architecture has been proposed
            return None
