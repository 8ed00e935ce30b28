"""Population Based Training: a population trains in generations, and the worst copy the best (NNI's ``PBTTuner``).

Each trial is one *step* of one *member* of the population: it loads the checkpoint named by its
``load_checkpoint_dir`` parameter, trains for a while (one epoch, say), saves to ``save_checkpoint_dir``
and reports a final result. When every member of a generation has reported, the bottom ``fraction``
take over the checkpoint and hyperparameters of a random member of the top ``fraction`` (*exploit*)
and perturb those hyperparameters (*explore*); every member then runs the next step.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nni_pl._checks import check_int, check_number, check_optimize_mode, check_seed, fail
from nni_pl.errors import SearchSpaceError, WaitForResults
from nni_pl.hpo._base import HistoryEntry, Tuner, to_loss
from nni_pl.hpo.tuners._common import make_rng
from nni_pl.hpo.tuners._seen import SeenPoints
from nni_pl.space import Choice, Key, SearchSpace
from nni_pl.trial.protocol import LOAD_CHECKPOINT_DIR, SAVE_CHECKPOINT_DIR

__all__ = ["LOAD_CHECKPOINT_DIR", "SAVE_CHECKPOINT_DIR", "PBTTuner"]

log = logging.getLogger(__name__)

_DIR_KEYS = (LOAD_CHECKPOINT_DIR, SAVE_CHECKPOINT_DIR)

#: probability that explore redraws a hyperparameter from its prior instead of perturbing it (NNI's value).
RESAMPLE_PROBABILITY = 0.25

# independent random streams, so that replaying a generation on resume draws the same numbers
_STREAM_INIT, _STREAM_EXPLORE, _STREAM_RESPACE = 0, 1, 2


@dataclass
class _Member:
    """One model of the population: its hyperparameters and the checkpoint its next step starts from."""

    index: int
    params: dict[str, Any]
    load_dir: str | None = None  # None: start from scratch


def _check_factors(owner: object, factors: Any) -> tuple[float, ...]:
    bad = (
        isinstance(factors, (str, bytes, Mapping))
        or not isinstance(factors, Sequence)
        or len(factors) == 0
        or any(
            isinstance(f, bool) or not isinstance(f, numbers.Real) or not math.isfinite(f) or f <= 0
            for f in factors
        )
    )
    if bad:
        fail(
            owner,
            "factors",
            f"must be a non-empty list of positive numbers to multiply hyperparameters by, got {factors!r}; "
            "e.g. factors: [1.2, 0.8]",
        )
    return tuple(float(f) for f in factors)


def _check_dir(owner: object, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        fail(
            owner,
            "all_checkpoint_dir",
            f"must be a folder path (every trial must be able to read and write it), got {value!r}; "
            "leave it out to use <experiment folder>/checkpoint",
        )
    return os.path.abspath(os.path.expanduser(os.fspath(value)))


class PBTTuner(Tuner):
    """Population Based Training (Jaderberg et al. 2017): a population of models trained in synchronous steps.

    The first generation samples ``population_size`` configurations from the search space. Every trial
    gets two extra parameters, ``load_checkpoint_dir`` and ``save_checkpoint_dir``, folders of the form
    ``all_checkpoint_dir/<member>/<step>``: it loads a checkpoint from the first (if there is one),
    trains one step, saves a checkpoint to the second and reports its result. In the first generation
    ``load_checkpoint_dir`` equals ``save_checkpoint_dir``, an empty folder (NNI's convention: NNI trial
    code that checks ``os.path.isfile(load_path)`` runs unchanged). With Lightning,
    :class:`nni_pl.callbacks.PBTCheckpoint` does the loading and saving.

    When every member of a generation has reported, the members are ranked by their results:

    * **exploit**: each of the bottom ``fraction`` (at least one, at most half the population) continues
      from the checkpoint of a random member of the top ``fraction``, with that member's hyperparameters;
    * **explore**: those copied hyperparameters are then perturbed, each independently: with
      probability 0.25 it is redrawn from its prior, otherwise a number is multiplied by a factor drawn
      from ``factors`` (then clipped into its range and rounded onto its ``q`` grid; a rounded value
      that did not move steps one grid point in the factor's direction) and a ``choice`` moves to the
      next option up (factor > 1) or down (factor < 1);
    * everyone else continues from their own checkpoint with unchanged hyperparameters.

    A member whose trial failed (or reported NaN/inf) counts as the worst and, whatever ``fraction``,
    restarts from a top member's checkpoint; if the whole generation failed, each member retries its step
    from the checkpoint it started from. A generation starts only when the previous one has completed:
    until then :meth:`generate_parameters` raises :class:`~nni_pl.errors.WaitForResults`. So
    ``trialConcurrency`` should be ``population_size`` (a smaller one works, a larger one idles), and
    ``maxTrialNumber`` a multiple of it (generations x population). A member counts as done when its
    final result arrives (save the checkpoint *before* reporting; ``PBTCheckpoint`` does) or when its
    trial ends without one.

    An assessor cannot be configured with PBT (``accepts_assessor = False``): its trials are steps of
    a longer training, not independent runs to cut short.

    PBT is the documented exception to the finite-space rule of the other sampling tuners (never suggest
    a point twice, ``NoMoreTrialError`` once a finite space is used up): re-running hyperparameters is
    what it does. Every member's next step trains on with the same (or copied and perturbed) values, and
    the generations go on until ``maxTrialNumber`` or ``maxExperimentDuration``. What it samples fresh,
    the first generation, has distinct hyperparameters wherever the space has enough points.

    Args:
        optimize_mode: ``"maximize"`` (NNI's default) or ``"minimize"`` the reported metric.
        all_checkpoint_dir: where the checkpoints go; every trial must be able to read and write it (use
            shared storage for remote training services). Default: ``<experiment folder>/checkpoint``
            inside an experiment; for a tuner used on its own (ask/tell, no experiment),
            ``$NNI_PL_HOME/pbt-checkpoints`` (``~/nni-pl-experiments/pbt-checkpoints``).
        population_size: number of members, i.e. trials per generation.
        factors: the factors explore multiplies numeric hyperparameters by.
        fraction: share of the population in the top and in the bottom group, in (0, 0.5].
        seed: makes the initial population and every exploit/explore decision reproducible.

    Example:
        >>> tuner = PBTTuner(optimize_mode="maximize", all_checkpoint_dir="/tmp/ckpt", population_size=2, seed=0)
        >>> tuner.update_search_space({"lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]}})
        >>> p0, p1 = tuner.generate_parameters(0), tuner.generate_parameters(1)
        >>> p0["save_checkpoint_dir"], p0["load_checkpoint_dir"] == p0["save_checkpoint_dir"]
        ('/tmp/ckpt/0/0', True)
        >>> tuner.receive_trial_result(0, p0, 0.9); tuner.receive_trial_result(1, p1, 0.5)
        >>> q0, q1 = tuner.generate_parameters(2), tuner.generate_parameters(3)  # the next generation
        >>> q0["load_checkpoint_dir"], q1["load_checkpoint_dir"], q1["save_checkpoint_dir"]  # 1 copies 0
        ('/tmp/ckpt/0/0', '/tmp/ckpt/0/0', '/tmp/ckpt/1/1')
    """

    parsed_search_space = True  # a built-in: the experiment hands it the parsed SearchSpace

    accepts_assessor = False
    #: NNI's classArgs validator requires it in a config (in Python it defaults to ``"maximize"``, as in NNI).
    required_class_args = ("optimize_mode",)

    def __init__(
        self,
        optimize_mode: str = "maximize",
        all_checkpoint_dir: str | os.PathLike[str] | None = None,
        population_size: int = 10,
        factors: Sequence[float] = (1.2, 0.8),
        fraction: float = 0.2,
        *,
        seed: int | None = None,
    ) -> None:
        self.optimize_mode = check_optimize_mode(self, optimize_mode)
        self.all_checkpoint_dir = _check_dir(self, all_checkpoint_dir)
        self.population_size = check_int(self, "population_size", population_size, minimum=1)
        self.factors = _check_factors(self, factors)
        self.fraction = check_number(
            self,
            "fraction",
            fraction,
            low=0,
            low_open=True,
            high=0.5,
            rule="a number in (0, 0.5] (the share of the population that is copied, and that is copied from)",
            hint="e.g. fraction: 0.2",
        )
        self.seed = check_seed(self, seed)

        self._root: str | None = self.all_checkpoint_dir
        self._make_dirs = self.all_checkpoint_dir is not None
        self._space: SearchSpace | None = None
        self._members: list[_Member] = []
        self._generation = 0
        self._queue: list[int] = []  # members of this generation not handed out yet
        self._issued: dict[int, int] = {}  # parameter id -> member, this generation
        self._losses: dict[int, float] = {}  # member -> loss (inf: failed), this generation

    # --- the tuner contract ----------------------------------------------------------------------------------
    def attach(self, *, experiment_id: str, directory: Path) -> None:
        if self.all_checkpoint_dir is None:
            self._root = os.path.abspath(os.fspath(Path(directory) / "checkpoint"))
            self._make_dirs = True

    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        space = SearchSpace.parse(search_space)
        for key in _DIR_KEYS:
            if key in space:
                raise SearchSpaceError(
                    key,
                    "is a name PBT gives every trial (the checkpoint folders)",
                    "",
                    "rename the parameter",
                )
        first = self._space is None
        self._space = space
        if self._root is None:
            from nni_pl._paths import default_working_directory

            self._root = os.fspath(default_working_directory() / "pbt-checkpoints")
            log.warning(
                "PBTTuner outside an experiment and without all_checkpoint_dir: checkpoints go to %s",
                self._root,
            )
        if first:
            rng = make_rng(self.seed, _STREAM_INIT)
            seen = SeenPoints(space)
            self._members = [_Member(i, _distinct(seen, rng)) for i in range(self.population_size)]
            self._queue = list(range(self.population_size))
            return
        # a new space mid-run: members whose hyperparameters left it draw new ones (their weights stay)
        rng = make_rng(self.seed, _STREAM_RESPACE, self._generation)
        seen = SeenPoints(space)
        for m in self._members:
            seen.add(m.params)
        for m in self._members:
            if not space.contains(m.params):
                m.params = _distinct(seen, rng)
                log.info("PBT member %d: hyperparameters redrawn for the new search space", m.index)

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        """The next member's step of the current generation.

        Raises:
            WaitForResults: every member of this generation is running; the next generation starts
                when they have all reported.
        """
        if self._space is None:
            raise RuntimeError("update_search_space() must be called before generate_parameters()")
        if not self._queue:
            raise WaitForResults()
        index = self._queue.pop(0)
        self._issued[parameter_id] = index
        params = self._parameters(self._members[index])
        if self._make_dirs:
            try:
                os.makedirs(params[SAVE_CHECKPOINT_DIR], exist_ok=True)
            except OSError as e:  # e.g. shared storage mounted only on the workers
                log.debug(
                    "cannot create %s here (%s); the trial must create it", params[SAVE_CHECKPOINT_DIR], e
                )
        return params

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        index = self._issued.get(parameter_id)
        if index is None or index in self._losses:
            log.debug("PBT ignores the result of parameter id %s (not a running member)", parameter_id)
            return
        self._complete(index, to_loss(value, self.optimize_mode))

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        index = self._issued.get(parameter_id)
        if index is None or index in self._losses:
            return
        log.warning(
            "PBT member %d failed at step %d (%s): it counts as the worst of its generation",
            index,
            self._generation,
            kwargs.get("status", "no final result"),
        )
        self._complete(index, math.inf)

    def import_data(self, data: Sequence[Mapping[str, Any]]) -> int | None:
        """Start from a completed generation of an earlier run, as NNI's ``PBTTuner.import_data`` does.

        Each record is ``{"parameter": {..., "save_checkpoint_dir": "<root>/<member>/<step>"}, "value": metric}``
        (what this tuner's trials ran with; a record without a value counts as the worst). The last step with
        a record for every member whose checkpoint folders exist becomes the population: its results are
        ranked, exploit and explore run, and the next :meth:`generate_parameters` hands out the step after it.
        Call it after :meth:`update_search_space` and before the first suggestion.

        Returns:
            The step the population continues at, or ``None`` if nothing was imported (the reason is logged).
        """
        if self._space is None:
            raise RuntimeError("update_search_space() must be called before import_data()")
        if self._generation or self._issued:
            log.warning(
                "PBTTuner imports data only before its first suggestion; %d records ignored", len(data)
            )
            return None
        steps: dict[int, dict[int, tuple[dict[str, Any], float]]] = {}
        for record in data:
            params = record.get("parameter")
            where = self._where(params.get(SAVE_CHECKPOINT_DIR) if isinstance(params, Mapping) else None)
            if where is None:
                log.warning(
                    "PBT import: a record's %s is not <all_checkpoint_dir>/<member>/<step> under %s; ignored",
                    SAVE_CHECKPOINT_DIR,
                    self._root,
                )
                continue
            member, step = where
            assert isinstance(params, Mapping)
            steps.setdefault(step, {})[member] = (
                dict(params),
                to_loss(record.get("value"), self.optimize_mode),
            )
        complete = [
            step
            for step, members in steps.items()
            if len(members) == self.population_size
            and all(os.path.isdir(self._dir(i, step)) for i in members)
        ]
        if not complete:
            log.warning(
                "PBT import: no step has a result and a checkpoint folder for all %d members; starting afresh",
                self.population_size,
            )
            return None
        step = max(complete)
        for member, (params, _) in steps[step].items():
            self._members[member].params = {k: v for k, v in params.items() if k not in _DIR_KEYS}
        self._generation = step
        self._queue = []
        self._losses = {member: loss for member, (_, loss) in steps[step].items()}
        self._advance()
        log.info(
            "PBT imported step %d of %d records; the population continues at step %d",
            step,
            len(data),
            step + 1,
        )
        return self._generation

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        """Rebuild the population and the current generation from the stored trials.

        Each trial's ``save_checkpoint_dir`` (``<root>/<member>/<step>``) says which member and step it
        was. The stored steps are replayed in order through the normal path (exploit and explore draw
        from a stream per generation, so with a seed the replay makes the same decisions); trials of the
        last step that are still unfinished stay running members (the experiment re-runs them), and its
        members that never started are handed out next.
        """
        if self._space is None:
            raise RuntimeError("update_search_space() must be called before resume()")
        steps: dict[int, dict[int, HistoryEntry]] = {}
        for h in history:
            where = self.locate(h)
            if where is None:
                continue
            member, step = where
            best = steps.setdefault(step, {}).get(member)
            if best is None or _rank(h) > _rank(best):
                steps[step][member] = h
        for step in sorted(steps):
            if step < self._generation:
                log.warning(
                    "PBT resume: ignoring stored trials of step %d (the population is at step %d)",
                    step,
                    self._generation,
                )
                continue
            while self._generation < step:  # an earlier step lacks some members' records: count them failed
                missing = [i for i in range(self.population_size) if i not in self._losses]
                for index in missing:
                    self._complete(index, math.inf)
            for member, h in sorted(steps[step].items()):
                assert h.parameter_id is not None
                m = self._members[member]
                m.params = {k: v for k, v in h.parameters.items() if k not in _DIR_KEYS}
                load = h.parameters.get(LOAD_CHECKPOINT_DIR)
                m.load_dir = None if load in (None, h.parameters.get(SAVE_CHECKPOINT_DIR)) else str(load)
                if member in self._queue:
                    self._queue.remove(member)
                self._issued[h.parameter_id] = member
            for member, h in sorted(steps[step].items()):
                if h.value is not None:
                    self.receive_trial_result(h.parameter_id, h.parameters, h.value)  # type: ignore[arg-type]
                elif h.finished:
                    self._complete(member, math.inf)
        log.info(
            "PBT resumed at step %d: %d members running, %d to start",
            self._generation,
            len(self._issued) - len(self._losses),
            len(self._queue),
        )

    # --- introspection -------------------------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        """The current step (generation) of the population, from 0."""
        return self._generation

    @property
    def population(self) -> list[dict[str, Any]]:
        """The parameters each member runs (or will run) in the current generation, by member."""
        return [self._parameters(m) for m in self._members]

    # --- internals -------------------------------------------------------------------------------------------------
    def _dir(self, index: int, step: int) -> str:
        assert self._root is not None
        return os.path.join(self._root, str(index), str(step))

    def _parameters(self, m: _Member) -> dict[str, Any]:
        out = copy.deepcopy(m.params)
        save = self._dir(m.index, self._generation)
        out[LOAD_CHECKPOINT_DIR] = m.load_dir if m.load_dir is not None else save
        out[SAVE_CHECKPOINT_DIR] = save
        return out

    def locate(self, h: HistoryEntry) -> tuple[int, int] | None:
        save = h.parameters.get(SAVE_CHECKPOINT_DIR) if isinstance(h.parameters, Mapping) else None
        if h.parameter_id is None or not isinstance(save, str):
            return None
        path = Path(save)
        try:
            member, step = int(path.parent.name), int(path.name)
        except ValueError:
            log.warning("PBT resume: cannot read member/step from %s %r; ignored", SAVE_CHECKPOINT_DIR, save)
            return None
        if not 0 <= member < self.population_size or step < 0:
            log.warning(
                "PBT resume: member %d is outside population_size=%d; ignored", member, self.population_size
            )
            return None
        return member, step

    def _where(self, save: Any) -> tuple[int, int] | None:
        """``(member, step)`` of a ``save_checkpoint_dir`` of this tuner's layout (``<root>/<member>/<step>``)."""
        if not isinstance(save, (str, os.PathLike)):
            return None
        path = Path(os.path.abspath(os.path.expanduser(os.fspath(save))))
        try:
            member, step = int(path.parent.name), int(path.name)
        except ValueError:
            return None
        if (
            not 0 <= member < self.population_size
            or step < 0
            or os.fspath(path) != os.path.abspath(self._dir(member, step))
        ):
            return None
        return member, step

    def _complete(self, index: int, loss: float) -> None:
        self._losses[index] = loss
        if len(self._losses) == self.population_size:
            self._advance()

    def _advance(self) -> None:
        """Exploit and explore, then start the next generation."""
        n, g = self.population_size, self._generation
        losses = [self._losses[i] for i in range(n)]
        ranked = sorted(range(n), key=lambda i: (losses[i], i))
        cutoff = min(math.ceil(self.fraction * n), n // 2)
        tops = [i for i in ranked[:cutoff] if math.isfinite(losses[i])]
        bottoms = [
            i for i in ranked if i not in tops and (i in ranked[n - cutoff :] or not math.isfinite(losses[i]))
        ]
        rng = make_rng(self.seed, _STREAM_EXPLORE, g)
        old = [copy.deepcopy(m.params) for m in self._members]
        finite = [x for x in losses if math.isfinite(x)]
        log.info(
            "PBT step %d done: best %s, %d failed; top %s, bottom %s",
            g,
            _metric(min(finite), self.optimize_mode) if finite else "none",
            n - len(finite),
            tops,
            bottoms,
        )
        for m in self._members:
            i = m.index
            if i in bottoms and tops:
                top = tops[int(rng.integers(len(tops)))]
                m.params = self._explore(old[top], rng)
                m.load_dir = self._dir(top, g)
                log.info("PBT member %d continues from member %d with %s", i, top, m.params)
            elif math.isfinite(losses[i]):
                m.load_dir = self._dir(i, g)
            # else: the whole generation failed; retry this step from the same checkpoint
        self._generation = g + 1
        self._queue = list(range(n))
        self._issued = {}
        self._losses = {}

    def _explore(self, params: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Perturb every searched value of ``params`` (a branch newly chosen draws its values)."""
        space = self._space
        assert space is not None
        flat = space.flatten(params)
        new: dict[Key, Any] = {}
        for dim in space.dimensions():
            if dim.parent is not None and new.get(dim.parent) != dim.parent_index:
                continue  # inside a branch that is not selected
            p = dim.param
            if dim.key not in flat:  # a branch explore just switched to: draw its values
                new[dim.key] = int(rng.integers(len(p.options))) if isinstance(p, Choice) else p.sample(rng)
                continue
            value = flat[dim.key]
            factor = float(self.factors[int(rng.integers(len(self.factors)))])
            if rng.random() < RESAMPLE_PROBABILITY:
                new[dim.key] = int(rng.integers(len(p.options))) if isinstance(p, Choice) else p.sample(rng)
            elif isinstance(p, Choice):
                step = (factor > 1) - (factor < 1)
                new[dim.key] = min(max(value + step, 0), len(p.options) - 1)
            else:
                new[dim.key] = _perturb(p, value, factor)
        return space.assemble(new)


def _distinct(seen: SeenPoints, rng: np.random.Generator) -> dict[str, Any]:
    """A prior draw that no member has yet (any draw once a finite space has fewer points than members)."""
    if not seen.exhausted:
        return seen.fresh(rng, mark=True)
    params = seen.space.sample(rng)
    seen.add(params)
    return params


def _perturb(p: Any, value: float, factor: float) -> float | int:
    """Multiply ``value`` by ``factor`` inside ``p``'s range and grid (a stuck rounded value takes one step)."""
    if value != 0 or p.log:
        x = value * factor
    else:  # zero stays zero under multiplication: move by the same share of the range instead
        span = (p.high - p.low) if hasattr(p, "high") else p.sigma
        x = (factor - 1.0) * span
    out = p.quantize(x)
    direction = (factor > 1) - (factor < 1)
    if out == value and direction and (p.q is not None or p.integer_valued):
        unit = p.q if p.q is not None else 1
        out = p.quantize(value + direction * unit)
    return out if p.integer_valued else float(out)


def _rank(h: HistoryEntry) -> int:
    """Which of two stored trials of the same member and step tells more: one with a result, then a finished one."""
    return 2 if h.value is not None else 1 if h.finished else 0


def _metric(loss: float, optimize_mode: str) -> str:
    return f"{-loss if optimize_mode == 'maximize' else loss:.6g}"
