"""The observation store shared by the model-based tuners (TPE, Anneal, the evolutions, SMAC, GP, Metis, DNGO).

It keeps every learnt ``(parameters, loss)`` both as the user's nested dict and as a row of internal
coordinates (one column per :class:`~nni_pl.space.Dimension`, NaN where a conditional dimension was
inactive), so a suggestion reads a ready numpy matrix instead of re-parsing the history. Which points
were suggested or learnt of is kept by a :class:`~nni_pl.hpo.tuners._seen.SeenPoints`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from nni_pl._checks import check_optimize_mode, check_seed
from nni_pl.errors import SearchSpaceError
from nni_pl.hpo._base import HistoryEntry, Tuner, extract_scalar, to_loss
from nni_pl.hpo.tuners._common import make_rng
from nni_pl.hpo.tuners._parzen import DimCodec
from nni_pl.hpo.tuners._seen import SeenPoints
from nni_pl.space import Dimension, SearchSpace

__all__ = ["ObservationStore", "StoreTuner"]

log = logging.getLogger(__name__)


class ObservationStore:
    """Observations of one search space as a growing matrix of internal coordinates.

    Attributes:
        space: the search space.
        dims: its dimensions, parents before children.
        codecs: one :class:`DimCodec` per dimension.
        parent: for each dimension, the column of the ``choice`` that activates it (``-1`` at top level).
        parent_index: the option of that choice which activates it (``-1`` at top level).
        records: ``(parameters, loss, raw metric)`` in arrival order.
        seen: the points suggested or learnt of (results, pending trials, imports, resumed history).
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.dims: tuple[Dimension, ...] = space.dimensions()
        self.codecs = [DimCodec(d.param) for d in self.dims]
        column = {d.key: j for j, d in enumerate(self.dims)}
        self.parent = [column[d.parent] if d.parent is not None else -1 for d in self.dims]
        self.parent_index = [int(d.parent_index) if d.parent_index is not None else -1 for d in self.dims]
        self.records: list[tuple[dict[str, Any], float, float]] = []
        self.seen = SeenPoints(space)
        self._x = np.empty((64, len(self.dims)))
        self._loss = np.empty(64)
        self._n = 0
        # each column's stable argsort and sorted values, kept up to date by add() once column_orders() was asked
        self._orders: np.ndarray | None = None
        self._sorted: np.ndarray | None = None

    def __len__(self) -> int:
        return self._n

    @property
    def x(self) -> np.ndarray:
        """``(n, n_dims)`` internal coordinates of the observations (a view; do not modify)."""
        return self._x[: self._n]

    @property
    def loss(self) -> np.ndarray:
        """``(n,)`` losses (minimised; NaN/inf results are ``inf``)."""
        return self._loss[: self._n]

    def encode(self, params: Mapping[str, Any], *, quiet: bool = False) -> np.ndarray | None:
        """The row of ``params``, or ``None`` (and a warning) if it is not a point of the space."""
        try:
            self.space.check(params)
            flat = self.space.flatten(params)
        except SearchSpaceError as e:
            if not quiet:
                log.warning("ignoring a parameter set outside the search space: %s", e)
            return None
        row = np.full(len(self.dims), np.nan)
        for j, d in enumerate(self.dims):
            if d.key in flat:
                row[j] = self.codecs[j].encode(flat[d.key])
        return row

    def decode(self, values: Mapping[int, float]) -> dict[str, Any]:
        """Nested parameters from ``{column: internal coordinate}`` of the active dimensions."""
        return self.space.assemble({self.dims[j].key: self.codecs[j].decode(v) for j, v in values.items()})

    def add(self, params: dict[str, Any], loss: float, raw: float) -> bool:
        """Store one result; ``False`` if ``params`` is not a point of the space."""
        row = self.encode(params)
        if row is None:
            return False
        if self._n == self._x.shape[0]:
            self._x = np.concatenate([self._x, np.empty_like(self._x)])
            self._loss = np.concatenate([self._loss, np.empty_like(self._loss)])
        self._x[self._n] = row
        self._loss[self._n] = loss
        if self._orders is not None:
            self._insert_sorted(row)
        self._n += 1
        self.records.append((params, loss, raw))
        self.seen.add(params)
        return True

    # --- each column in sorted order (the Parzen bandwidths need it) ---------------------------------------
    def column_orders(self) -> np.ndarray:
        """``(n_dims, n)``: each column's stable argsort (NaN, an inactive dimension, last); a view, do not modify.

        Sorted once, then kept up to date by :meth:`add` (an insertion per column instead of a sort per
        suggestion).
        """
        n = self._n
        if self._orders is None or self._orders.shape[1] < self._x.shape[0]:
            cap = self._x.shape[0]
            cols = self._x[:n].T
            self._orders = np.empty((len(self.dims), cap), dtype=np.intp)
            self._sorted = np.empty((len(self.dims), cap))
            self._orders[:, :n] = np.argsort(cols, axis=1, kind="stable")
            self._sorted[:, :n] = np.take_along_axis(cols, self._orders[:, :n], axis=1)
        return self._orders[:, :n]

    def subset_orders(self, columns: list[int], rows: np.ndarray) -> np.ndarray:
        """``(len(columns), k)``: the stable argsort of ``x[rows][:, columns]``, in indices of that subset.

        ``rows`` is a boolean mask over the observations. Filtering the kept orders keeps ties in row order,
        so this equals sorting the subset.
        """
        order = self.column_orders()[columns]
        local = np.cumsum(rows) - 1
        keep = rows[order]
        return local[order[keep]].reshape(len(columns), -1)

    def _insert_sorted(self, row: np.ndarray) -> None:
        assert self._orders is not None and self._sorted is not None
        n = self._n
        if self._orders.shape[1] <= n:  # the matrix grew: sort again on the next request
            self._orders = self._sorted = None
            return
        for r, v in enumerate(row):
            # after every equal value (stable); NaN sorts last, as in np.argsort
            pos = n if v != v else int(np.searchsorted(self._sorted[r, :n], v, side="right"))
            self._orders[r, pos + 1 : n + 1] = self._orders[r, pos:n].copy()
            self._sorted[r, pos + 1 : n + 1] = self._sorted[r, pos:n].copy()
            self._orders[r, pos] = n
            self._sorted[r, pos] = v

    # --- which points were already generated or observed ---------------------------------------------
    def is_new(self, params: Mapping[str, Any] | None) -> bool:
        """Whether ``params`` is a point of the space that was not suggested or learnt of before."""
        return params is not None and params not in self.seen and self.seen.key(params) is not None

    def random_unseen(self, rng: np.random.Generator) -> dict[str, Any]:
        """A prior draw not seen before (in a finite space, a uniformly chosen unseen point if the prior
        keeps repeating); raises :class:`~nni_pl.errors.NoMoreTrialError` once the space is used up."""
        return self.seen.fresh(rng)

    def rebuilt(self, space: SearchSpace) -> ObservationStore:
        """A store for a new space holding the records and seen points that are still points of it."""
        new = ObservationStore(space)
        for params, loss, raw in self.records:
            new.add(params, loss, raw)
        new.seen = self.seen.rebuilt(space)
        return new


class StoreTuner(Tuner):
    """Bookkeeping shared by the model-based tuners: results, pending trials, import, resume, and the
    finite-space rule.

    A subclass implements :meth:`_suggest`. :meth:`generate_parameters` hands out its proposal when that
    is a point not suggested or learnt of before, else an unseen draw from the prior (the fallback of
    :meth:`SeenPoints.fresh <nni_pl.hpo.tuners._seen.SeenPoints.fresh>`), and raises
    :class:`~nni_pl.errors.NoMoreTrialError` once every point of a finite space has been seen. Results,
    imported records, customised trials and every resumed trial (finished, failed or running) count as
    seen. Parameter sets handed out but not yet reported are kept in ``_pending``.
    """

    parsed_search_space = True  # a built-in: the experiment hands it the parsed SearchSpace

    #: how many results to collect from random sampling before :meth:`_suggest` is used.
    n_startup_jobs: int = 1

    def __init__(self, *, optimize_mode: str, seed: int | None) -> None:
        self.optimize_mode = check_optimize_mode(self, optimize_mode)
        self.seed = check_seed(self, seed)
        self._rng = make_rng(self.seed)
        self._store: ObservationStore | None = None
        self._pending: dict[int, dict[str, Any]] = {}
        self._received: set[int] = set()

    def _suggest(self, store: ObservationStore) -> dict[str, Any] | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _proposals(self, store: ObservationStore) -> Iterator[dict[str, Any] | None]:
        """The model's proposals for the next suggestion, best first (computed lazily, none during start-up)."""
        if len(store) >= max(1, self.n_startup_jobs):
            for _ in range(2):
                yield self._suggest(store)

    def _hand_out(self, parameter_id: int, params: dict[str, Any]) -> dict[str, Any]:
        """Record ``params`` as suggested (seen, and pending until its trial reports) and return it."""
        self._require_store().seen.add(params)
        self._pending[parameter_id] = params
        return params

    # --- Tuner interface ---------------------------------------------------------------------------------
    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        space = SearchSpace.parse(search_space)
        self._store = self._store.rebuilt(space) if self._store is not None else ObservationStore(space)
        for pid, params in list(self._pending.items()):
            if self._store.encode(params, quiet=True) is None:
                del self._pending[pid]
            else:
                self._store.seen.add(params)

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        store = self._require_store()
        if not store.dims:
            return {}
        return self._hand_out(parameter_id, store.seen.fresh(self._rng, self._proposals(store)))

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        if parameter_id in self._received:
            log.info("ignoring a second final result for parameter id %s", parameter_id)
            return
        params = self._pending.pop(parameter_id, None)
        if params is None:
            params = dict(parameters)
        else:
            self._received.add(parameter_id)
        self._require_store().add(params, to_loss(value, self.optimize_mode), extract_scalar(value))

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        """Forget a pending parameter set whose trial ended without a result (failed, killed); it stays seen."""
        self._pending.pop(parameter_id, None)

    def import_data(self, data: Sequence[Mapping[str, Any]]) -> None:
        """Learn from earlier results: ``[{"parameter": {...}, "value": metric}, ...]`` (all of them count as
        seen, records without a value too)."""
        store = self._require_store()
        n = 0
        for record in data:
            params, value = record.get("parameter"), record.get("value")
            if not isinstance(params, Mapping):
                continue
            if value is not None:
                n += store.add(dict(params), to_loss(value, self.optimize_mode), extract_scalar(value))
            else:
                store.seen.add(params)
        log.info("%s imported %d of %d records", type(self).__name__, n, len(data))

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        """Reload stored trials: results become observations, unfinished trials stay pending, and every
        stored point (failed ones too) counts as seen."""
        store = self._require_store()
        self._rng = make_rng(self.seed, len(history))
        for h in history:
            if h.value is not None:
                store.add(dict(h.parameters), to_loss(h.value, self.optimize_mode), extract_scalar(h.value))
                if h.parameter_id is not None:
                    self._received.add(h.parameter_id)
            elif not h.finished and h.parameter_id is not None:
                if store.encode(h.parameters) is not None:
                    self._pending[h.parameter_id] = dict(h.parameters)
            store.seen.add(h.parameters)

    def observations(self) -> list[tuple[dict[str, Any], float]]:
        """The results learnt so far as ``(parameters, loss)``; the loss is minimised (NaN/inf -> inf)."""
        return [(params, loss) for params, loss, _ in (self._store.records if self._store else [])]

    def _require_store(self) -> ObservationStore:
        if self._store is None:
            raise RuntimeError("update_search_space() must be called before using the tuner")
        return self._store
