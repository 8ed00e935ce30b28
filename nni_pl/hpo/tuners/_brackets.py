"""Hyperband's brackets of successive halving, shared by the ``Hyperband`` and ``BOHB`` advisors.

A *bracket* ``s`` (``s = s_max, ..., 0``) is a run of successive halving: ``n`` configurations at a
small budget, then the best ``n / eta`` of them at ``eta`` times the budget, and so on up to the
largest budget. Each step is a *rung*. A promoted configuration becomes a new trial with the same
parameters and a larger ``TRIAL_BUDGET``: the one deliberate re-evaluation. A configuration is sampled
only once per experiment (no bracket starts one that an earlier bracket, an import or a customised trial
already had); once a finite space has no unseen point left, the open brackets finish with the
configurations they have, and then :class:`~nni_pl.errors.NoMoreTrialError` ends the experiment.

:class:`BracketScheduler` keeps the open brackets and rungs; :class:`HyperbandBase` is the advisor
around it (trial bookkeeping, failures, resume), with one hook for where new configurations come from
(random sampling for Hyperband, a KDE model for BOHB).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nni_pl._checks import check_optimize_mode, check_seed
from nni_pl.errors import NoMoreTrialError, SearchSpaceError, WaitForResults
from nni_pl.hpo._base import Advisor, HistoryEntry, to_loss
from nni_pl.hpo.tuners._common import make_rng, param_key
from nni_pl.hpo.tuners._seen import SeenPoints
from nni_pl.space import SearchSpace
from nni_pl.trial.protocol import TRIAL_BUDGET

__all__ = [
    "TRIAL_BUDGET",
    "Bracket",
    "BracketScheduler",
    "HyperbandBase",
    "Rung",
    "bohb_rungs",
    "hyperband_rungs",
    "s_max_for",
    "schedule_warnings",
]

log = logging.getLogger(__name__)

Budget = int | float
_EPS = 1e-6


def s_max_for(ratio: float, eta: int) -> int:
    """``floor(log_eta(ratio))``: the most aggressive bracket (``ratio`` = largest / smallest budget)."""
    return max(0, math.floor(math.log(ratio) / math.log(eta) + _EPS))


def _budget_value(x: float) -> Budget:
    """A budget as an ``int`` when it is a whole number (epochs), else a ``float``."""
    r = round(x)
    return int(r) if abs(x - r) <= 1e-9 * max(1.0, abs(x)) else float(x)


def hyperband_rungs(s: int, s_max: int, eta: int, R: int) -> list[tuple[int, int]]:
    """Bracket ``s`` of NNI's Hyperband: ``[(n_i, r_i), ...]``, the rungs' sizes and integer budgets.

    ``n = floor((s_max + 1) / (s + 1)) * eta**s`` configurations start at ``r = R / eta**s``; rung ``i``
    keeps ``floor(n / eta**i)`` of them at ``floor(r * eta**i)``. This reproduces the table in NNI's
    Hyperband documentation (R=81, eta=3: 81/27/9/6/5 configurations at 1/3/9/27/81).

    Example:
        >>> hyperband_rungs(1, 4, 3, 81)
        [(6, 27), (2, 81)]
    """
    n = ((s_max + 1) // (s + 1)) * eta**s
    r = R / eta**s
    return [(math.floor(n / eta**i + _EPS), math.floor(r * eta**i + _EPS)) for i in range(s + 1)]


def bohb_rungs(s: int, s_max: int, eta: int, max_budget: float) -> list[tuple[int, Budget]]:
    """Bracket ``s`` of BOHB (as HpBandSter and NNI's BOHB advisor): ``n = ceil((s_max + 1) eta**s / (s + 1))``.

    Budgets are ``max_budget / eta**(s - i)``: whole numbers come back as ``int``.

    Example:
        >>> bohb_rungs(2, 2, 3, 9)
        [(9, 1), (3, 3), (1, 9)]
    """
    n = math.ceil((s_max + 1) * eta**s / (s + 1) - _EPS)
    return [(math.floor(n / eta**i + _EPS), _budget_value(max_budget / eta ** (s - i))) for i in range(s + 1)]


def schedule_warnings(
    name: str,
    settings: str,
    *,
    s_max: int,
    eta: int,
    first_bracket_trials: int,
    max_trial_number: int | None,
    one_bracket_fix: str,
    top_for: Callable[[int], str],
) -> list[str]:
    """Why a bracket schedule is degenerate for the experiment's budget (for ``check_budget``).

    One bracket (``s_max = 0``) runs every configuration once at the largest budget: random search. A first
    bracket of more trials than ``maxTrialNumber`` ends the experiment before any configuration reaches the
    largest budget. ``top_for(k)`` names the setting whose schedule has ``s_max = k`` (e.g. ``"R: 9"``).
    """
    if s_max == 0:
        return [
            f"{name}: {settings} give a single bracket (s_max = 0): every configuration runs once at the "
            f"largest budget, which is random search; {one_bracket_fix}"
        ]
    if max_trial_number is None or max_trial_number >= first_bracket_trials:
        return []
    # the top bracket of s_max = k runs eta**k, eta**(k-1), ..., 1 configurations
    fits = [k for k in range(1, s_max) if sum(eta**i for i in range(k + 1)) <= max_trial_number]
    fix = (
        f"set {top_for(fits[-1])} (its first bracket: {sum(eta**i for i in range(fits[-1] + 1))} trials) or "
        if fits
        else ""
    )
    return [
        f"{name}: with {settings} the first bracket (s={s_max}) runs {first_bracket_trials} trials before a "
        f"configuration reaches the largest budget, more than maxTrialNumber={max_trial_number}, so none does; "
        f"{fix}raise maxTrialNumber to at least {first_bracket_trials}"
    ]


# --- the schedule ---------------------------------------------------------------------------------------------
@dataclass
class Trial:
    """One trial of a rung: a configuration at the rung's budget."""

    parameter_id: int
    config: dict[str, Any]
    key: str
    budget: Budget
    loss: float | None = None  # minimised; inf for failed trials and NaN/inf metrics
    done: bool = False


@dataclass
class Rung:
    """A step of successive halving: ``size`` configurations at ``budget``."""

    planned: int
    budget: Budget
    size: int = -1
    trials: list[Trial] = field(default_factory=list)
    #: promoted configurations waiting to be handed out, as ``(config, key)``.
    queue: deque[tuple[dict[str, Any], str]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.size < 0:
            self.size = self.planned

    @property
    def open_slots(self) -> int:
        return self.size - len(self.trials)

    @property
    def complete(self) -> bool:
        return len(self.trials) >= self.size and all(t.done for t in self.trials)

    def keys(self) -> set[str]:
        return {t.key for t in self.trials} | {k for _, k in self.queue}


@dataclass
class Bracket:
    """A run of successive halving; ``i`` is the rung being handed out or waited on."""

    number: int
    s: int
    rungs: list[Rung]
    i: int = 0

    @property
    def finished(self) -> bool:
        return self.i == len(self.rungs) - 1 and self.rungs[-1].complete


class BracketScheduler:
    """Which configuration runs next, at which budget, and when a rung's best move up.

    Brackets are created in the order ``s = s_max, ..., 0`` and then again from ``s_max`` (NNI loops
    until ``maxTrialNumber`` or ``maxExperimentDuration`` ends the experiment). Work is handed out from
    the oldest open bracket first. With ``parallel=True`` a new bracket starts whenever no open bracket
    has anything to hand out (free slots never idle); otherwise :meth:`next_trial` raises
    :class:`WaitForResults` until the open bracket has finished. When no new configuration can be
    sampled any more (a used-up finite space), first rungs close with what they have, no bracket
    starts, and once the open brackets are done :meth:`next_trial` raises :class:`NoMoreTrialError`.

    Args:
        plan: ``s -> [(n_i, budget_i), ...]``.
        s_max: the first bracket of each round.
        parallel: NNI's ``exec_mode="parallelism"``.
        name: for log messages.
    """

    def __init__(
        self, plan: Callable[[int], list[tuple[int, Budget]]], s_max: int, *, parallel: bool, name: str
    ) -> None:
        self.plan = plan
        self.s_max = s_max
        self.parallel = parallel
        self.name = name
        self.active: list[Bracket] = []
        self.trials: dict[int, tuple[Bracket, int, Trial]] = {}
        self.brackets_created = 0
        self.brackets_finished = 0
        self.next_s = s_max
        self._numbered: dict[int, Bracket] = {}
        self._pending: dict[int, Trial] = {}

    # --- handing out work --------------------------------------------------------------------------------
    def _new_bracket(self, s: int | None = None) -> Bracket:
        s = self.next_s if s is None else s
        rungs = [Rung(n, budget) for n, budget in self.plan(s)]
        b = Bracket(self.brackets_created, s, rungs)
        self.brackets_created += 1
        self.next_s = s - 1 if s > 0 else self.s_max
        self.active.append(b)
        self._numbered[b.number] = b
        log.info(
            "%s: bracket %d (s=%d): %s",
            self.name,
            b.number,
            s,
            ", ".join(f"{r.planned}@{r.budget}" for r in rungs),
        )
        return b

    def next_trial(
        self,
        parameter_id: int,
        sample: Callable[[Bracket, Budget], tuple[dict[str, Any], str]],
        *,
        used_up: Callable[[], bool] = lambda: False,
    ) -> tuple[dict[str, Any], Budget]:
        """The configuration and budget of trial ``parameter_id``; ``sample`` makes a new configuration,
        which is impossible once ``used_up()`` says so.

        Raises:
            WaitForResults: nothing to hand out until a running trial reports.
            NoMoreTrialError: nothing can be sampled any more and every bracket is done.
        """
        exhausted = used_up()
        if exhausted:
            self.close_first_rungs()
        b = next((b for b in self.active if b.rungs[b.i].open_slots > 0), None)
        if b is None:
            if exhausted and self._pending:
                raise WaitForResults(
                    f"{self.name}: every point of the search space has been sampled; the open "
                    "brackets wait for results to promote their best"
                )
            if exhausted:
                raise NoMoreTrialError(
                    f"{self.name}: every point of the finite search space has been sampled and every "
                    "bracket is done"
                )
            if self.active and not self.parallel:
                raise WaitForResults(
                    f"{self.name} (exec_mode=serial): bracket {self.active[0].number} waits for its "
                    f"rung at budget {self.active[0].rungs[self.active[0].i].budget} to report"
                )
            b = self._new_bracket()
        rung = b.rungs[b.i]
        config, key = sample(b, rung.budget) if b.i == 0 else rung.queue.popleft()
        t = Trial(parameter_id, config, key, rung.budget)
        rung.trials.append(t)
        self.trials[parameter_id] = (b, b.i, t)
        self._pending[parameter_id] = t
        if b.i == 0 and used_up():  # that was the last unseen point: first rungs take no more
            self.close_first_rungs()
        return config, rung.budget

    def close_first_rungs(self) -> None:
        """No new configuration can be sampled: first rungs keep what they have (an empty bracket is
        dropped), and the later rungs shrink in proportion, keeping at least the best configuration."""
        for b in list(self.active):
            if b.i != 0 or b.rungs[0].open_slots <= 0:
                continue
            self._shrink(b)
            log.info(
                "%s: bracket %d starts %d of its %d configurations (no unseen point is left)",
                self.name,
                b.number,
                b.rungs[0].size,
                b.rungs[0].planned,
            )
            if b.rungs[0].size == 0:
                self.active.remove(b)
            else:
                self._advance(b)

    @staticmethod
    def _shrink(b: Bracket) -> None:
        """Size a bracket for the configurations its first rung got (fewer than planned)."""
        first = b.rungs[0]
        first.size = len(first.trials)
        for rung in b.rungs[1:]:
            rung.planned = rung.size = max(1, rung.planned * first.size // first.planned)

    def pending(self) -> list[Trial]:
        """Trials handed out whose result has not arrived."""
        return list(self._pending.values())

    # --- results -----------------------------------------------------------------------------------------
    def record(self, parameter_id: int, loss: float) -> Trial | None:
        """Store a trial's result (``inf`` for a failure); ``None`` if unknown or already known."""
        entry = self.trials.get(parameter_id)
        if entry is None or entry[2].done:
            return None
        b, _, t = entry
        t.loss, t.done = loss, True
        self._pending.pop(parameter_id, None)
        self._advance(b)
        return t

    def _advance(self, b: Bracket) -> None:
        while b.rungs[b.i].complete:
            if b.i == len(b.rungs) - 1:
                if b in self.active:
                    self.active.remove(b)
                    self.brackets_finished += 1
                    best = min(b.rungs[-1].trials, key=_rank, default=None)
                    log.info(
                        "%s: bracket %d (s=%d) finished; best at budget %s: %s (loss %s)",
                        self.name,
                        b.number,
                        b.s,
                        b.rungs[-1].budget,
                        best.config if best else None,
                        best.loss if best else None,
                    )
                return
            self._promote(b)

    @staticmethod
    def _fill(rung: Rung, nxt: Rung) -> None:
        """Queue the best configurations of ``rung`` that ``nxt`` lacks, up to its planned size."""
        have = nxt.keys()
        want = nxt.planned - len(nxt.trials) - len(nxt.queue)
        for t in sorted(rung.trials, key=_rank):  # stable: the earlier trial wins a tie
            if want <= 0:
                break
            if t.key not in have:  # duplicates of a finite space are not run twice at one budget
                nxt.queue.append((t.config, t.key))
                have.add(t.key)
                want -= 1
        nxt.size = len(nxt.trials) + len(nxt.queue)

    def _promote(self, b: Bracket) -> None:
        nxt = b.rungs[b.i + 1]
        self._fill(b.rungs[b.i], nxt)
        b.i += 1
        log.info(
            "%s: bracket %d rung %d done; %d configurations move up to budget %s",
            self.name,
            b.number,
            b.i - 1,
            len(nxt.queue),
            nxt.budget,
        )

    # --- resume --------------------------------------------------------------------------------------------
    def rebuild(
        self,
        entries: Iterable[tuple[int, dict[str, Any], str, Budget, float | None, bool]],
        placements: Mapping[int, tuple[int, int, int]] | None = None,
    ) -> None:
        """Put stored trials ``(parameter_id, config, key, budget, loss, done)`` back into brackets.

        Entries come in generation order. ``placements`` (``parameter_id -> (bracket number, s, rung)``,
        from the advisor's journal) says exactly where a trial ran. Without it, a configuration that is
        one of the best of a finished rung of an open bracket is that rung's promotion, and any other
        fills the oldest bracket still handing out its first rung, or starts the next bracket of the
        cycle (exact for continuous spaces; in small finite spaces, where brackets share
        configurations, a guess). Rungs whose results are all in are then promoted, so a resumed
        experiment neither repeats finished rungs nor runs a (configuration, budget) pair twice in a
        bracket.
        """
        placements = placements or {}
        for pid, config, key, budget, loss, done in entries:
            where = self._placed(placements.get(pid), budget) or self._place(key, budget)
            if where is None:
                log.warning(
                    "%s: stored trial %s (budget %s) fits no bracket of this schedule; "
                    "it is not resumed as part of a bracket",
                    self.name,
                    pid,
                    budget,
                )
                continue
            b, i = where
            t = Trial(pid, config, key, budget, loss if done else None, done)
            b.rungs[i].trials.append(t)
            self.trials[pid] = (b, i, t)
            if not done:
                self._pending[pid] = t
            b.i = max(b.i, i)
        for b in list(self.active):
            if b.i > 0 and len(b.rungs[0].trials) < b.rungs[0].planned:
                self._shrink(b)  # it moved on with fewer configurations: the space was used up
            if b.i > 0:  # the promotions not handed out before the restart
                self._fill(b.rungs[b.i - 1], b.rungs[b.i])
            self._advance(b)

    def _placed(self, where: tuple[int, int, int] | None, budget: Budget) -> tuple[Bracket, int] | None:
        """The bracket and rung a journal entry names, if they fit this schedule."""
        if where is None:
            return None
        number, s, i = where
        b = self._numbered.get(number)
        if b is None:
            if number < self.brackets_created or not 0 <= s <= self.s_max:
                return None
            self.brackets_created = number
            b = self._new_bracket(s)
        if b.s != s or not 0 <= i < len(b.rungs) or b.rungs[i].budget != budget:
            return None
        if len(b.rungs[i].trials) >= b.rungs[i].planned:
            return None
        return b, i

    def _place(self, key: str, budget: Budget) -> tuple[Bracket, int] | None:
        """Where a stored trial ran: as the scheduler hands out work, the oldest bracket that fits."""
        for b in self.active:
            for i in range(min(b.i, len(b.rungs) - 2) + 1):
                rung, nxt = b.rungs[i], b.rungs[i + 1]
                if (
                    nxt.budget == budget
                    and len(nxt.trials) < nxt.planned
                    and rung.complete  # promotions follow a rung whose results are all in
                    and key in self._promotions(rung, nxt.planned)
                    and all(t.key != key for t in nxt.trials)
                ):
                    return b, i + 1
            first = b.rungs[0]
            if b.i == 0 and first.budget == budget and len(first.trials) < first.planned:
                return b, 0
        if self.plan(self.next_s)[0][1] != budget:
            return None
        return self._new_bracket(), 0

    @staticmethod
    def _promotions(rung: Rung, n: int) -> list[str]:
        """The keys of the best ``n`` distinct configurations of a rung (what :meth:`_promote` picks)."""
        keys: list[str] = []
        for t in sorted(rung.trials, key=_rank):
            if len(keys) >= n:
                break
            if t.key not in keys:
                keys.append(t.key)
        return keys


def _rank(t: Trial) -> float:
    return math.inf if t.loss is None else t.loss


# --- the advisor ------------------------------------------------------------------------------------------------
class HyperbandBase(Advisor):
    """What Hyperband and BOHB share: the schedule, ``TRIAL_BUDGET``, failures, resume.

    A subclass sets ``self._sched`` and implements :meth:`_new_config`; it may override :meth:`_observe`
    to learn from results.
    """

    parsed_search_space = True  # a built-in: the experiment hands it the parsed SearchSpace

    def __init__(self, *, optimize_mode: str, seed: int | None) -> None:
        self.optimize_mode = check_optimize_mode(self, optimize_mode)
        self.seed = check_seed(self, seed)
        self._rng = make_rng(self.seed)
        self._space: SearchSpace | None = None
        self._seen: SeenPoints | None = None  # configurations sampled, imported or run by hand
        self._sched: BracketScheduler
        self._journal: Path | None = None

    # --- hooks ------------------------------------------------------------------------------------------
    def _new_config(self, bracket: Bracket, budget: Budget) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def _observe(self, config: dict[str, Any], budget: Budget, loss: float) -> None:
        """Learn from one result (``loss`` is minimised; ``inf`` for failures)."""

    # --- helpers ----------------------------------------------------------------------------------------
    def _require_space(self) -> SearchSpace:
        if self._space is None:
            raise RuntimeError("update_search_space() must be called before generate_parameters()")
        return self._space

    def _key(self, config: Mapping[str, Any]) -> str:
        key = param_key(self._require_space(), config)
        return key if key is not None else json.dumps(config, sort_keys=True, default=str)

    def _require_seen(self) -> SeenPoints:
        if self._seen is None:
            raise RuntimeError("update_search_space() must be called before generate_parameters()")
        return self._seen

    def _sample_new(self, bracket: Bracket, budget: Budget) -> tuple[dict[str, Any], str]:
        """A configuration not sampled (nor imported, nor run by hand) before: :meth:`_new_config`'s, else
        an unseen draw from the prior."""
        seen = self._require_seen()

        def proposals() -> Iterator[dict[str, Any]]:
            yield self._new_config(bracket, budget)

        config = seen.fresh(self._rng, proposals(), mark=True)
        return config, self._key(config)

    @staticmethod
    def _split(parameters: Mapping[str, Any]) -> tuple[dict[str, Any], Budget | None]:
        config = dict(parameters)
        budget = config.pop(TRIAL_BUDGET, None)
        if isinstance(budget, bool) or not isinstance(budget, (int, float)):
            budget = None
        return config, budget

    # --- the journal: where each trial ran, so that a resume puts it back exactly ---------------------------
    def attach(self, *, experiment_id: str, directory: Path) -> None:
        """Keep a journal of bracket placements in ``<experiment>/advisor/`` (read by :meth:`resume`)."""
        self._journal = Path(directory) / "advisor" / f"{type(self).__name__.lower()}-brackets.jsonl"

    def _log_placement(self, parameter_id: int) -> None:
        if self._journal is None:
            return
        b, i, _ = self._sched.trials[parameter_id]
        line = json.dumps({"parameter_id": parameter_id, "bracket": b.number, "s": b.s, "rung": i})
        try:
            self._journal.parent.mkdir(parents=True, exist_ok=True)
            with self._journal.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError as e:
            log.warning(
                "%s cannot write its journal %s (%s); a resume will infer brackets",
                type(self).__name__,
                self._journal,
                e,
            )
            self._journal = None

    def _read_placements(self) -> dict[int, tuple[int, int, int]]:
        out: dict[int, tuple[int, int, int]] = {}
        if self._journal is None or not self._journal.is_file():
            return out
        for line in self._journal.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                out[int(rec["parameter_id"])] = (int(rec["bracket"]), int(rec["s"]), int(rec["rung"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
        return out

    # --- Tuner interface ----------------------------------------------------------------------------------
    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        space = SearchSpace.parse(search_space)
        if TRIAL_BUDGET in space:
            raise SearchSpaceError(
                TRIAL_BUDGET,
                f"is the key {type(self).__name__} uses to send each trial its budget",
                "",
                "rename this parameter",
            )
        self._space = space
        self._seen = self._seen.rebuilt(space) if self._seen is not None else SeenPoints(space)

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        """The next trial: a promotion, or a new configuration at a bracket's smallest budget.

        Raises:
            WaitForResults: nothing to hand out until a running trial reports (``exec_mode="serial"``, or
                a used-up finite space whose open brackets still promote).
            NoMoreTrialError: every point of a finite space has been sampled and every bracket is done.
        """
        seen = self._require_seen()
        config, budget = self._sched.next_trial(
            parameter_id, self._sample_new, used_up=lambda: seen.exhausted
        )
        self._log_placement(parameter_id)
        return {**copy.deepcopy(config), TRIAL_BUDGET: budget}  # the caller may change it

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        """Record the result; when it completes a rung, the rung's best are promoted."""
        t = self._sched.record(parameter_id, to_loss(value, self.optimize_mode))
        if t is None:
            log.debug("%s ignores a result for parameter id %s", type(self).__name__, parameter_id)
            self._require_seen().add(self._split(parameters)[0])  # e.g. a customised trial: not sampled later
            return
        self._observe(t.config, t.budget, t.loss)  # type: ignore[arg-type]

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        """A trial that ended without a final result (failed, early-stopped, killed) counts as the worst."""
        t = self._sched.record(parameter_id, math.inf)
        if t is not None:
            status = kwargs.get("status", "SUCCEEDED" if success else "FAILED")
            log.info(
                "%s: trial of parameter id %s ended (%s) without a result; it ranks last",
                type(self).__name__,
                parameter_id,
                status,
            )
            self._observe(t.config, t.budget, math.inf)

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        """Rebuild the brackets from stored trials (their parameters carry ``TRIAL_BUDGET``).

        Each trial goes back into its bracket and rung (exactly, from the journal kept in the
        experiment folder; without one, inferred from the budgets and configurations). Finished rungs
        are not run again; unfinished trials stay pending (the manager runs them again); new
        configurations come from a fresh random stream and are none of the stored ones.
        """
        self._require_space()
        seen = self._require_seen()
        for h in history:
            seen.add(self._split(h.parameters)[0])
        self._rng = make_rng(self.seed, len(history))
        entries = []
        for h in sorted(
            (h for h in history if h.parameter_id is not None and h.parameter_id >= 0),
            key=lambda h: h.parameter_id,  # type: ignore[arg-type, return-value]
        ):
            config, budget = self._split(h.parameters)
            done = h.finished or h.value is not None
            loss = to_loss(h.value, self.optimize_mode) if h.value is not None else math.inf
            if h.value is not None or h.finished:
                self._observe_history(config, budget, loss)
            if budget is None or h.source == "imported":
                continue
            entries.append((int(h.parameter_id), config, self._key(config), budget, loss, done))  # type: ignore[arg-type]
        self._sched.rebuild(entries, self._read_placements())
        if seen.exhausted:
            self._sched.close_first_rungs()
        log.info(
            "%s resumed %d trials: %d open brackets, next bracket s=%d",
            type(self).__name__,
            len(entries),
            len(self._sched.active),
            self._sched.next_s,
        )

    def _observe_history(self, config: dict[str, Any], budget: Budget | None, loss: float) -> None:
        """Learn from a stored result on resume (Hyperband learns nothing)."""

    # --- introspection ------------------------------------------------------------------------------------
    @property
    def schedule(self) -> dict[int, list[tuple[int, Budget]]]:
        """Every bracket of one round: ``{s: [(n_i, budget_i), ...]}``, from ``s_max`` down to 0."""
        return {s: self._sched.plan(s) for s in range(self._sched.s_max, -1, -1)}
