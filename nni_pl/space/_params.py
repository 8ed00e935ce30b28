"""The ten NNI parameter types as immutable, validated value objects.

Each object knows how to sample itself with a seeded :class:`numpy.random.Generator`, test membership,
enumerate its values (when finite) and write itself back as NNI JSON (``{"_type": ..., "_value": [...]}``).
The sampling formulas are NNI's, verbatim (see ``shared/NNI-REFERENCE.md`` §1(a)).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from nni_pl.errors import SearchSpaceError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "Branch",
    "Choice",
    "LogNormal",
    "LogUniform",
    "Normal",
    "Param",
    "QLogNormal",
    "QLogUniform",
    "QNormal",
    "QUniform",
    "Randint",
    "Uniform",
]


def canonical_json(value: Any) -> str:
    """A stable text form of a JSON value, used for equality and hashing of options."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _decimals(q: float) -> int:
    """How many decimals ``q`` is written with (``0.1`` -> 1, ``1e-05`` -> 5, ``2`` -> 0)."""
    text = repr(float(q))
    if "e" in text:
        mantissa, exp = text.split("e")
        frac = mantissa.split(".")[1] if "." in mantissa else ""
        return max(0, len(frac.rstrip("0")) - int(exp))
    frac = text.split(".")[1]
    return len(frac.rstrip("0"))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class Param:
    """Base class of a search-space parameter.

    Subclasses are frozen dataclasses; ``to_json()`` gives back NNI's ``{"_type", "_value"}`` form.
    """

    TYPE: ClassVar[str]

    # --- the public surface every parameter has -------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def contains(self, value: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def is_finite(self) -> bool:
        return False

    def grid(self) -> list[Any]:
        """All values, in order, for a finite parameter (grid search)."""
        raise SearchSpaceError(
            "", f"a {self.TYPE!r} parameter has infinitely many values and cannot be enumerated"
        )

    @property
    def size(self) -> float:
        return len(self.grid()) if self.is_finite else math.inf

    @property
    def is_numeric(self) -> bool:
        return True

    def to_json(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------
# numeric parameters
# ------------------------------------------------------------------------------------------------


class _Numeric(Param):
    """Shared logic of the nine numeric types: bounds, log scale and quantisation."""

    log: ClassVar[bool] = False

    @property
    def q(self) -> float | None:
        return getattr(self, "_q", None)

    @property
    def integer_valued(self) -> bool:
        """Whether sampled values are returned as ``int`` (randint, or q-types whose numbers are all ints)."""
        return False

    def quantize(self, x: float) -> float | int:
        """Apply NNI's rounding (and clipping, for bounded types) to a raw continuous value."""
        return x

    def _finish(self, x: float) -> float | int:
        if self.integer_valued:
            return round(x)
        return float(x)

    def _round_to_q(self, x: float) -> float:
        q = self.q
        assert q is not None
        value = round(x / q) * q
        digits = _decimals(q)
        # 3 * 0.1 is 0.30000000000000004: round to the precision q was written with
        return round(value, digits) if digits < 15 else value

    def _on_q_grid(self, value: float) -> bool:
        q = self.q
        assert q is not None
        ratio = value / q
        return abs(ratio - round(ratio)) <= 1e-9 * max(1.0, abs(ratio))

    @staticmethod
    def _real(value: Any) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


@dataclass(frozen=True)
class Randint(_Numeric):
    """``randint [low, high)``: a random integer, lower bound inclusive, **upper bound exclusive**.

    Example:
        >>> import numpy as np
        >>> p = Randint(1, 4)
        >>> rng = np.random.default_rng(0)
        >>> sorted({p.sample(rng) for _ in range(50)}) == p.grid()
        True
        >>> p.grid()
        [1, 2, 3]
    """

    low: int
    high: int
    TYPE: ClassVar[str] = "randint"

    @property
    def integer_valued(self) -> bool:
        return True

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high))

    def quantize(self, x: float) -> int:
        return int(min(max(math.floor(x), self.low), self.high - 1))

    def contains(self, value: Any) -> bool:
        return _is_int(value) and self.low <= value < self.high

    @property
    def is_finite(self) -> bool:
        return True

    def grid(self) -> list[int]:
        return list(range(self.low, self.high))

    @property
    def size(self) -> float:
        return self.high - self.low

    def to_json(self) -> dict[str, Any]:
        return {"_type": self.TYPE, "_value": [self.low, self.high]}


@dataclass(frozen=True)
class Uniform(_Numeric):
    """``uniform [low, high]``: a float drawn uniformly between the bounds (equal bounds allowed)."""

    low: float
    high: float
    TYPE: ClassVar[str] = "uniform"

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def quantize(self, x: float) -> float:
        return float(min(max(x, self.low), self.high))

    def contains(self, value: Any) -> bool:
        return self._real(value) and self.low <= value <= self.high

    def to_json(self) -> dict[str, Any]:
        return {"_type": self.TYPE, "_value": [self.low, self.high]}


@dataclass(frozen=True)
class QUniform(_Numeric):
    """``quniform [low, high, q]`` = ``clip(round(uniform(low, high) / q) * q, low, high)``.

    Values are ``int`` when ``low``, ``high`` and ``q`` are all integers.

    Example:
        >>> QUniform(0, 10, 2.5).grid()
        [0.0, 2.5, 5.0, 7.5, 10.0]
        >>> QUniform(2, 10, 5).grid()
        [2, 5, 10]
    """

    low: float
    high: float
    _q: float
    TYPE: ClassVar[str] = "quniform"

    @property
    def integer_valued(self) -> bool:
        return _is_int(self.low) and _is_int(self.high) and _is_int(self._q)

    def sample(self, rng: np.random.Generator) -> float | int:
        return self.quantize(float(rng.uniform(self.low, self.high)))

    def quantize(self, x: float) -> float | int:
        return self._finish(min(max(self._round_to_q(x), self.low), self.high))

    def contains(self, value: Any) -> bool:
        if not self._real(value) or not (self.low <= value <= self.high):
            return False
        if self.integer_valued and not _is_int(value):
            return False
        if value == self.low or value == self.high:
            # a bound is reachable when it is a multiple of q or the clip lands on it
            return self._on_q_grid(value) or self.quantize(value) == value
        return self._on_q_grid(value)

    @property
    def is_finite(self) -> bool:
        return True

    def grid(self) -> list[float | int]:
        # Every value the formula can produce: round(x / q) runs over round(low / q) .. round(high / q)
        # as x goes from low to high, and each multiple is then clipped into the bounds (so a bound is
        # included only when the clip can land on it). (NNI 2.5's grid tuner started at ``low``; that can
        # give values the quniform formula never produces, e.g. 7 for [2, 10, 5].)
        q = self._q
        first, last = round(self.low / q), round(self.high / q)
        return sorted({self.quantize(k * q) for k in range(first, last + 1)})

    def to_json(self) -> dict[str, Any]:
        return {"_type": self.TYPE, "_value": [self.low, self.high, self._q]}


@dataclass(frozen=True)
class LogUniform(_Numeric):
    """``loguniform [low, high]`` = ``exp(uniform(log(low), log(high)))``; both bounds positive."""

    low: float
    high: float
    TYPE: ClassVar[str] = "loguniform"
    log: ClassVar[bool] = True

    def sample(self, rng: np.random.Generator) -> float:
        x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return float(min(max(x, self.low), self.high))

    def quantize(self, x: float) -> float:
        return float(min(max(x, self.low), self.high))

    def contains(self, value: Any) -> bool:
        return self._real(value) and self.low <= value <= self.high

    def to_json(self) -> dict[str, Any]:
        return {"_type": self.TYPE, "_value": [self.low, self.high]}


@dataclass(frozen=True)
class QLogUniform(_Numeric):
    """``qloguniform [low, high, q]`` = ``clip(round(loguniform(low, high) / q) * q, low, high)``."""

    low: float
    high: float
    _q: float
    TYPE: ClassVar[str] = "qloguniform"
    log: ClassVar[bool] = True

    @property
    def integer_valued(self) -> bool:
        return _is_int(self.low) and _is_int(self.high) and _is_int(self._q)

    def sample(self, rng: np.random.Generator) -> float | int:
        return self.quantize(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def quantize(self, x: float) -> float | int:
        return self._finish(min(max(self._round_to_q(x), self.low), self.high))

    def contains(self, value: Any) -> bool:
        return QUniform.contains(self, value)  # same set of reachable values

    @property
    def is_finite(self) -> bool:
        return True

    def grid(self) -> list[float | int]:
        return QUniform.grid(self)

    def to_json(self) -> dict[str, Any]:
        return {"_type": self.TYPE, "_value": [self.low, self.high, self._q]}


@dataclass(frozen=True)
class Normal(_Numeric):
    """``normal [mu, sigma]``: an unbounded Gaussian; ``sigma > 0``."""

    mu: float
    sigma: float
    TYPE: ClassVar[str] = "normal"

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.normal(self.mu, self.sigma))

    def contains(self, value: Any) -> bool:
        return self._real(value)

    def to_json(self) -> dict[str, Any]:
        return {"_type": self.TYPE, "_value": [self.mu, self.sigma]}


@dataclass(frozen=True)
class QNormal(_Numeric):
    """``qnormal [mu, sigma, q]`` = ``round(normal(mu, sigma) / q) * q`` (no clipping)."""

    mu: float
    sigma: float
    _q: float
    TYPE: ClassVar[str] = "qnormal"

    @property
    def integer_valued(self) -> bool:
        return _is_int(self._q)

    def sample(self, rng: np.random.Generator) -> float | int:
        return self.quantize(float(rng.normal(self.mu, self.sigma)))

    def quantize(self, x: float) -> float | int:
        return self._finish(self._round_to_q(x))

    def contains(self, value: Any) -> bool:
        if not self._real(value) or (self.integer_valued and not _is_int(value)):
            return False
        return self._on_q_grid(value)

    def to_json(self) -> dict[str, Any]:
        return {"_type": self.TYPE, "_value": [self.mu, self.sigma, self._q]}


@dataclass(frozen=True)
class LogNormal(_Numeric):
    """``lognormal [mu, sigma]`` = ``exp(normal(mu, sigma))``: positive values."""

    mu: float
    sigma: float
    TYPE: ClassVar[str] = "lognormal"
    log: ClassVar[bool] = True

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.normal(self.mu, self.sigma)))

    def contains(self, value: Any) -> bool:
        return self._real(value) and value > 0

    def to_json(self) -> dict[str, Any]:
        return {"_type": self.TYPE, "_value": [self.mu, self.sigma]}


@dataclass(frozen=True)
class QLogNormal(_Numeric):
    """``qlognormal [mu, sigma, q]`` = ``round(exp(normal(mu, sigma)) / q) * q``: non-negative multiples of q."""

    mu: float
    sigma: float
    _q: float
    TYPE: ClassVar[str] = "qlognormal"
    log: ClassVar[bool] = True

    @property
    def integer_valued(self) -> bool:
        return _is_int(self._q)

    def sample(self, rng: np.random.Generator) -> float | int:
        return self.quantize(math.exp(rng.normal(self.mu, self.sigma)))

    def quantize(self, x: float) -> float | int:
        return self._finish(max(self._round_to_q(x), 0.0))

    def contains(self, value: Any) -> bool:
        if not self._real(value) or value < 0 or (self.integer_valued and not _is_int(value)):
            return False
        return self._on_q_grid(value)

    def to_json(self) -> dict[str, Any]:
        return {"_type": self.TYPE, "_value": [self.mu, self.sigma, self._q]}


# ------------------------------------------------------------------------------------------------
# choice and nested sub-spaces
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Branch:
    """One option of a nested ``choice``: a sub-space named by ``_name``.

    ``params`` maps each key to a :class:`Param` (searched) or to a constant JSON value (passed through).
    A sampled branch is ``{"_name": name, key: value, ...}``.
    """

    name: Any
    params: Mapping[str, Param | Any]

    def searched(self) -> Iterator[tuple[str, Param]]:
        for key, p in self.params.items():
            if isinstance(p, (Param, Choice)):
                yield key, p

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"_name": self.name}
        for key, p in self.params.items():
            out[key] = p.to_json() if isinstance(p, (Param, Choice)) else json.loads(canonical_json(p))
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Branch) and canonical_json(self.to_json()) == canonical_json(other.to_json())

    def __hash__(self) -> int:
        return hash(canonical_json(self.to_json()))


@dataclass(frozen=True, eq=False)
class Choice(Param):
    """``choice [options]``: one of the options, which may be any JSON values or nested :class:`Branch` es.

    Example:
        >>> c = Choice((16, 32, None, "auto"))
        >>> c.contains(None), c.contains(64)
        (True, False)
        >>> c.to_json()
        {'_type': 'choice', '_value': [16, 32, None, 'auto']}
    """

    options: tuple[Any, ...]
    TYPE: ClassVar[str] = "choice"

    @property
    def is_nested(self) -> bool:
        return any(isinstance(o, Branch) for o in self.options)

    @property
    def is_numeric(self) -> bool:
        return all(isinstance(o, numbers.Real) and not isinstance(o, bool) for o in self.options)

    @property
    def is_finite(self) -> bool:
        return all(
            all(p.is_finite for _, p in o.searched()) if isinstance(o, Branch) else True for o in self.options
        )

    def sample(self, rng: np.random.Generator) -> Any:
        return self.value_at(int(rng.integers(len(self.options))), rng)

    def value_at(self, index: int, rng: np.random.Generator | None = None) -> Any:
        """The value of option ``index``; a branch's own parameters are sampled with ``rng``."""
        opt = self.options[index]
        if isinstance(opt, Branch):
            if rng is None:
                raise ValueError("sampling a nested branch needs an rng")
            out: dict[str, Any] = {"_name": opt.name}
            for key, p in opt.params.items():
                out[key] = p.sample(rng) if isinstance(p, (Param, Choice)) else json.loads(canonical_json(p))
            return out
        return json.loads(canonical_json(opt))  # a fresh copy: callers may mutate what they get

    def index_of(self, value: Any) -> int | None:
        """The option index ``value`` selects (a branch is matched by ``_name``), or ``None``."""
        if isinstance(value, Mapping) and "_name" in value:
            for i, opt in enumerate(self.options):
                if isinstance(opt, Branch) and canonical_json(opt.name) == canonical_json(value["_name"]):
                    return i
        try:
            key = canonical_json(value)
        except (TypeError, ValueError):
            return None
        for i, opt in enumerate(self.options):
            if not isinstance(opt, Branch) and canonical_json(opt) == key:
                return i
        # tolerate 1 vs 1.0 for numeric options (JSON round trips through other tools can change it)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            for i, opt in enumerate(self.options):
                if isinstance(opt, numbers.Real) and not isinstance(opt, bool) and opt == value:
                    return i
        return None

    def contains(self, value: Any) -> bool:
        from nni_pl.space._space import _branch_problem

        i = self.index_of(value)
        if i is None:
            return False
        opt = self.options[i]
        return not isinstance(opt, Branch) or _branch_problem(opt, value, "") is None

    def grid(self) -> list[Any]:
        from nni_pl.space._space import _grid_of_mapping

        out: list[Any] = []
        for opt in self.options:
            if isinstance(opt, Branch):
                for sub in _grid_of_mapping(opt.params):
                    out.append({"_name": opt.name, **sub})
            else:
                out.append(json.loads(canonical_json(opt)))
        return out

    @property
    def size(self) -> float:
        total = 0.0
        for opt in self.options:
            if isinstance(opt, Branch):
                n = 1.0
                for _, p in opt.searched():
                    n *= p.size
                total += n
            else:
                total += 1
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "_type": self.TYPE,
            "_value": [
                o.to_json() if isinstance(o, Branch) else json.loads(canonical_json(o)) for o in self.options
            ],
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Choice) and canonical_json(self.to_json()) == canonical_json(other.to_json())

    def __hash__(self) -> int:
        return hash(canonical_json(self.to_json()))


NUMERIC_TYPES: dict[str, tuple[type[_Numeric], int]] = {
    "randint": (Randint, 2),
    "uniform": (Uniform, 2),
    "quniform": (QUniform, 3),
    "loguniform": (LogUniform, 2),
    "qloguniform": (QLogUniform, 3),
    "normal": (Normal, 2),
    "qnormal": (QNormal, 3),
    "lognormal": (LogNormal, 2),
    "qlognormal": (QLogNormal, 3),
}
ALL_TYPES: tuple[str, ...] = ("choice", *NUMERIC_TYPES)


def value_names(type_name: str) -> Sequence[str]:
    """The names of the ``_value`` entries of a type, for error messages."""
    if type_name == "randint":
        return ("low", "high")
    if type_name in ("uniform", "loguniform"):
        return ("low", "high")
    if type_name in ("quniform", "qloguniform"):
        return ("low", "high", "q")
    if type_name in ("normal", "lognormal"):
        return ("mu", "sigma")
    return ("mu", "sigma", "q")
