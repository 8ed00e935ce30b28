"""The finite-space rule, in one place: no point is suggested twice, and a used-up space says so.

Every built-in tuner that samples keeps a :class:`SeenPoints` of the points it has suggested or learnt of
(results, imported records, customised trials, resumed history). A suggestion is taken from
:meth:`SeenPoints.fresh`: the tuner's own proposals first, then draws from the prior, then, in a finite
space, a uniformly chosen point that was not seen. Once every point of a finite space has been seen,
:meth:`SeenPoints.fresh` raises :class:`~nni_pl.errors.NoMoreTrialError`, which ends the experiment.

A finite space (every parameter ``choice``, ``randint``, ``quniform`` or ``qloguniform``; nested
``_name`` options count by their sub-spaces) is indexed: each point has a *rank* ``0 .. size - 1`` in
:meth:`SearchSpace.grid` order, computed from the parameter values (mixed radix) without enumerating
the space, and a rank turns back into its point. Seen points are stored as ranks, exhaustion is
``len(seen) == size`` (exact integers, so it is only declared when it is certain), and the fallback
draw probes ranks from a random start, which finds an unseen point within ``len(seen) + 1`` steps,
whatever the size of the space (10^12 points cost what 12 do).
"""

from __future__ import annotations

import bisect
import json
import logging
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from nni_pl.errors import NoMoreTrialError, SearchSpaceError
from nni_pl.hpo.tuners._common import param_key
from nni_pl.space import Branch, Choice, Param, SearchSpace, canonical_json

if TYPE_CHECKING:
    import numpy as np

    from nni_pl.hpo.tuners._common import PythonRng

__all__ = ["FiniteIndex", "SeenPoints"]

log = logging.getLogger(__name__)

#: prior draws tried before a finite space falls back to a uniformly chosen unseen point.
PRIOR_TRIES = 32
#: a q-type with at most this many grid values keeps its grid as a list (exact, as ``grid()`` says).
_SMALL_GRID = 100_000


def _same_number(value: Any) -> float:
    """A number as a lookup key: ``2`` and ``2.0``, ``0.30000000000000004`` and ``0.3`` agree."""
    return float(f"{float(value):.12g}") + 0.0


class _Node:
    """The finite values of one parameter (or of a mapping of them) as ranks ``0 .. size - 1``."""

    size: int

    def rank(self, value: Any) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def value(self, rank: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class _RandintNode(_Node):
    def __init__(self, low: int, high: int) -> None:
        self.low, self.size = low, high - low

    def rank(self, value: Any) -> int | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            return None
        r = int(value) - self.low
        return r if 0 <= r < self.size else None

    def value(self, rank: int) -> int:
        return self.low + rank


class _QNode(_Node):
    """``quniform`` / ``qloguniform``: the grid ``p.grid()`` gives, kept as a list when it is small.

    A large grid is computed: ``round(x / q)`` runs over ``first .. last`` as ``x`` goes from low to
    high, and only the two ends can be clipped onto a bound, so the ``i``-th value is
    ``quantize((first + i) * q)``.
    """

    def __init__(self, p: Any) -> None:
        self.p = p
        self.first = round(p.low / p.q)
        n = round(p.high / p.q) - self.first + 1
        self.values: list[Any] | None = None
        if n <= _SMALL_GRID:
            self.values = p.grid()
            self.lookup = {_same_number(v): i for i, v in enumerate(self.values)}
            n = len(self.values)
        self.size = n

    def rank(self, value: Any) -> int | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if self.values is not None:
            return self.lookup.get(_same_number(value))
        for end in (0, self.size - 1):
            if _same_number(self.value(end)) == _same_number(value):
                return end
        r = round(value / self.p.q) - self.first
        if 0 < r < self.size - 1 and _same_number(self.value(r)) == _same_number(value):
            return r
        return None

    def value(self, rank: int) -> Any:
        if self.values is not None:
            return self.values[rank]
        return self.p.quantize((self.first + rank) * self.p.q)


class _MappingNode(_Node):
    """Named parameters (a space, or a nested option's keys) in mixed radix, the last one fastest."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.items: list[tuple[str, _Node | None, Any]] = []  # (name, node, constant)
        for name, p in params.items():
            if isinstance(p, Param):
                self.items.append((name, _node(p), None))
            else:
                self.items.append((name, None, p))
        self.strides: dict[str, int] = {}
        stride = 1
        for name, node, _ in reversed(self.items):
            if node is not None:
                self.strides[name] = stride
                stride *= node.size
        self.size = stride

    def rank(self, value: Any) -> int | None:
        if not isinstance(value, Mapping):
            return None
        total = 0
        for name, node, _ in self.items:
            if node is None:
                continue
            if name not in value:
                return None
            r = node.rank(value[name])
            if r is None:
                return None
            total += r * self.strides[name]
        return total

    def value(self, rank: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, node, constant in self.items:
            if node is None:
                out[name] = json.loads(canonical_json(constant))
            else:
                out[name] = node.value((rank // self.strides[name]) % node.size)
        return out


class _ChoiceNode(_Node):
    """A ``choice``: its options in order, a nested option standing for all the points of its sub-space."""

    def __init__(self, p: Choice) -> None:
        self.p = p
        self.branches: list[_MappingNode | None] = []
        self.offsets: list[int] = []
        total = 0
        for opt in p.options:
            self.offsets.append(total)
            branch = _MappingNode(opt.params) if isinstance(opt, Branch) else None
            self.branches.append(branch)
            total += branch.size if branch is not None else 1
        self.size = total

    def rank(self, value: Any) -> int | None:
        i = self.p.index_of(value)
        if i is None:
            return None
        branch = self.branches[i]
        if branch is None:
            return self.offsets[i]
        r = branch.rank(value)
        return None if r is None else self.offsets[i] + r

    def value(self, rank: int) -> Any:
        i = bisect.bisect_right(self.offsets, rank) - 1
        branch = self.branches[i]
        if branch is None:
            return self.p.value_at(i)
        opt = self.p.options[i]
        return {"_name": json.loads(canonical_json(opt.name)), **branch.value(rank - self.offsets[i])}


def _node(p: Param) -> _Node:
    if isinstance(p, Choice):
        return _ChoiceNode(p)
    if p.TYPE == "randint":
        return _RandintNode(p.low, p.high)  # type: ignore[attr-defined]
    if p.TYPE in ("quniform", "qloguniform"):
        return _QNode(p)
    raise SearchSpaceError("", f"a {p.TYPE!r} parameter has infinitely many values and cannot be indexed")


class FiniteIndex:
    """Every point of a finite search space numbered ``0 .. size - 1``, in :meth:`SearchSpace.grid` order.

    ``size`` is an exact integer, and :meth:`rank` / :meth:`point` convert without enumerating the space.

    Example:
        >>> space = SearchSpace.parse({"bs": {"_type": "choice", "_value": [16, 32]},
        ...                            "layers": {"_type": "randint", "_value": [1, 1000001]}})
        >>> index = FiniteIndex(space)
        >>> index.size
        2000000
        >>> index.rank({"bs": 32, "layers": 7}), index.point(1000006)
        (1000006, {'bs': 32, 'layers': 7})
    """

    def __init__(self, space: SearchSpace) -> None:
        if not space.is_finite:
            raise SearchSpaceError("", "the space has a continuous parameter: it has no finite index")
        self.space = space
        self._root = _MappingNode(dict(space.items()))
        self.size: int = self._root.size

    def rank(self, params: Mapping[str, Any]) -> int | None:
        """The number of ``params`` (a point of the space), or ``None`` if it is not one."""
        try:
            self.space.check(params)
        except SearchSpaceError:
            return None
        return self._root.rank(params)

    def point(self, rank: int) -> dict[str, Any]:
        """The point numbered ``rank``."""
        if not 0 <= rank < self.size:
            raise IndexError(f"rank {rank} is outside 0 .. {self.size - 1}")
        return self._root.value(rank)


def _uniform_int(rng: np.random.Generator | PythonRng, n: int) -> int:
    """A uniform integer in ``[0, n)``, also for ``n`` beyond 64 bits."""
    if n <= 2**62:
        return int(rng.integers(n))
    bits = n.bit_length() + 64  # the extra bits make the modulo bias negligible
    value = 0
    for _ in range(0, bits, 62):
        value = (value << 62) | int(rng.integers(2**62))
    return value % n


class SeenPoints:
    """The points of a search space a tuner has suggested or learnt of, and unseen ones on demand.

    Identity is the point itself: ``1`` and ``1.0`` agree, extra keys such as ``TRIAL_BUDGET`` must be
    removed by the caller. A space without parameters has nothing to search and is never used up (every
    trial gets ``{}``).

    Args:
        space: the search space.

    Example:
        >>> import numpy as np
        >>> seen = SeenPoints(SearchSpace.parse({"x": {"_type": "choice", "_value": ["a", "b", "c"]}}))
        >>> rng = np.random.default_rng(0)
        >>> picks = []
        >>> for _ in range(3):
        ...     picks.append(seen.fresh(rng)["x"])
        ...     _ = seen.add({"x": picks[-1]})
        >>> sorted(picks), seen.exhausted
        (['a', 'b', 'c'], True)
        >>> seen.fresh(rng)
        Traceback (most recent call last):
        ...
        nni_pl.errors.NoMoreTrialError: all 3 points of the finite search space have been suggested
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.index: FiniteIndex | None = FiniteIndex(space) if space.is_finite and len(space) else None
        self._keys: set[Hashable] = set()
        self._points: list[dict[str, Any]] = []  # for rebuilding on a new space

    @property
    def size(self) -> int | None:
        """The number of points of a finite space (``None``: infinite, or no parameters)."""
        return self.index.size if self.index is not None else None

    def key(self, params: Mapping[str, Any]) -> Hashable | None:
        """The identity of ``params``: its rank in a finite space, else a canonical text (``None``: not a point)."""
        if self.index is not None:
            return self.index.rank(params)
        return param_key(self.space, params)

    def add(self, params: Mapping[str, Any] | None) -> bool:
        """Mark ``params`` as seen; ``True`` if it is a point of the space that was not seen before."""
        if not isinstance(params, Mapping):
            return False
        k = self.key(params)
        if k is None or k in self._keys:
            return False
        self._note(params, k)
        return True

    def _note(self, params: Mapping[str, Any], key: Hashable) -> None:
        self._keys.add(key)
        self._points.append(dict(params))

    def __contains__(self, params: object) -> bool:
        if not isinstance(params, Mapping):
            return False
        k = self.key(params)
        return k is not None and k in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._points)

    @property
    def exhausted(self) -> bool:
        """Whether every point of a finite space has been seen (never for an infinite one)."""
        return self.index is not None and len(self._keys) >= self.index.size

    def check(self) -> None:
        """Raise :class:`NoMoreTrialError` if the space is used up."""
        if self.exhausted:
            raise NoMoreTrialError(f"all {self.size} points of the finite search space have been suggested")

    def fresh(
        self,
        rng: np.random.Generator | PythonRng,
        candidates: Iterable[Mapping[str, Any] | None] = (),
        *,
        sample: Callable[[], dict[str, Any]] | None = None,
        tries: int = PRIOR_TRIES,
        mark: bool = False,
    ) -> dict[str, Any]:
        """An unseen point: the first unseen of ``candidates``, else a draw from the prior, else (in a
        finite space) a uniformly chosen unseen point. It is not marked seen unless ``mark``: :meth:`add` does
        that (``mark=True`` saves working out the point's identity a second time).

        Args:
            rng: the tuner's generator.
            candidates: the tuner's own proposals, best first (may be lazy; ``None`` entries are skipped).
            sample: draws one point from the tuner's prior (default: the space's).
            tries: prior draws before the fallback.
            mark: mark the point seen, as :meth:`add` would.

        Raises:
            NoMoreTrialError: every point of the finite space has been seen.

        Example:
            >>> import numpy as np
            >>> seen = SeenPoints(SearchSpace.parse({"x": {"_type": "choice", "_value": [1, 2]}}))
            >>> rng = np.random.default_rng(0)
            >>> sorted([seen.fresh(rng, mark=True)["x"], seen.fresh(rng, mark=True)["x"]]), len(seen)
            ([1, 2], 2)
        """
        params, key = self._draw(rng, candidates, sample, tries)
        if mark:
            if key is None:
                self.add(params)
            else:
                self._note(params, key)
        return params

    def _draw(
        self,
        rng: np.random.Generator | PythonRng,
        candidates: Iterable[Mapping[str, Any] | None],
        sample: Callable[[], dict[str, Any]] | None,
        tries: int,
    ) -> tuple[dict[str, Any], Hashable | None]:
        """:meth:`fresh`'s point and its key (``None`` where the point is not an unseen one of the space)."""
        self.check()
        for cand in candidates:
            if cand is not None:
                key = self._unseen_key(cand)
                if key is not None:
                    return dict(cand), key
        draw = sample if sample is not None else lambda: self.space.sample(rng)
        params = draw()
        if self.index is None and not len(self.space):
            return params, None
        for _ in range(tries):
            key = self._unseen_key(params)
            if key is not None:
                return params, key
            params = draw()
        if self.index is None:  # an infinite space whose prior keeps landing on seen points: degenerate
            log.debug("no unseen prior draw in %d tries; suggesting %s", tries, params)
            return params, None
        start = _uniform_int(rng, self.index.size)
        for step in range(len(self._keys) + 1):  # at most len(seen) ranks in a row are taken
            rank = (start + step) % self.index.size
            if rank not in self._keys:
                return self.index.point(rank), rank
        raise AssertionError("unreachable: fewer points seen than the space has")  # pragma: no cover

    def _unseen_key(self, params: Mapping[str, Any]) -> Hashable | None:
        """The key of ``params`` if it is an unseen point of the space, else ``None``."""
        k = self.key(params)
        return k if k is not None and k not in self._keys else None

    def rebuilt(self, space: SearchSpace) -> SeenPoints:
        """The points seen so far that are points of ``space``, as a ledger of ``space``."""
        new = SeenPoints(space)
        for params in self._points:
            new.add(params)
        return new
