"""ValueChoice: choose one value; and ValueExpr, arithmetic on choices whose value follows the architecture."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nni_pl.nas._labels import ArchitectureError, _check_prior, _make_label, canonical, lookup, register_label

__all__ = ["FrozenValue", "ValueChoice", "ValueExpr", "expr_leaves", "resolve"]


# --------------------------------------------------------------------------------------------- ValueChoice


class ValueExpr:
    """A value that depends on one or more :class:`ValueChoice` s: a choice itself, or arithmetic on choices.

    ``vc * 2``, ``vc1 + vc2``, ``-vc``, ``vc // 2``, ``ValueChoice.max(a, b)`` ... all give a ``ValueExpr``
    whose value follows the architecture; layers built with it (see :mod:`nni_pl.nas.nn`) get the evaluated
    value. Calling it (``expr()``) gives its value in the space (every choice at its first value).
    """

    def leaves(self) -> list[ValueChoice]:
        """The :class:`ValueChoice` s this value depends on, each once (by label), in order of appearance."""
        raise NotImplementedError

    def evaluate(self, arch: Mapping[str, Any]) -> Any:
        """The value under ``arch`` (ArchitectureError when a label is missing or its value not allowed)."""
        raise NotImplementedError

    def default(self) -> Any:
        """The value with every choice at its first candidate."""
        return self.evaluate({leaf.label: leaf.candidates[0] for leaf in self.leaves()})

    def all_values(self) -> list[Any]:
        """Every value this expression can take, without duplicates, in order."""
        leaves = self.leaves()
        seen: dict[str, Any] = {}
        for combo in itertools.product(*(leaf.candidates for leaf in leaves)):
            v = self.evaluate({leaf.label: c for leaf, c in zip(leaves, combo)})
            seen.setdefault(canonical(v), v)
        return list(seen.values())

    def __call__(self) -> Any:
        return self.default()

    # arithmetic ---------------------------------------------------------------------------------
    def _binary(
        self, other: Any, fn: Callable[[Any, Any], Any], sym: str, reverse: bool = False
    ) -> ValueExpr:
        args = (other, self) if reverse else (self, other)
        return _Expr(fn, args, sym)

    def __add__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.add, "+")

    def __radd__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.add, "+", True)

    def __sub__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.sub, "-")

    def __rsub__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.sub, "-", True)

    def __mul__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.mul, "*")

    def __rmul__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.mul, "*", True)

    def __truediv__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.truediv, "/")

    def __rtruediv__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.truediv, "/", True)

    def __floordiv__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.floordiv, "//")

    def __rfloordiv__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.floordiv, "//", True)

    def __mod__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.mod, "%")

    def __rmod__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.mod, "%", True)

    def __pow__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.pow, "**")

    def __rpow__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.pow, "**", True)

    def __neg__(self) -> ValueExpr:
        return _Expr(operator.neg, (self,), "neg")

    def __abs__(self) -> ValueExpr:
        return _Expr(abs, (self,), "abs")

    def __round__(self, ndigits: int | None = None) -> ValueExpr:
        return _Expr(lambda x: round(x, ndigits), (self,), "round")

    def _not_a_number(self) -> TypeError:
        return TypeError(
            f"{self!r} was used where a plain number is needed; build the layer from nni_pl.nas.nn "
            "(`from nni_pl.nas import nn`), decorate your module class with nni_pl.nas.basic_unit, or call it "
            "(`choice()`) for its value in the space"
        )

    def __index__(self) -> int:
        raise self._not_a_number()

    def __int__(self) -> int:
        raise self._not_a_number()

    def __float__(self) -> float:
        raise self._not_a_number()

    def __bool__(self) -> bool:
        raise TypeError(
            "a ValueChoice has no truth value in the space; use ValueChoice.condition(...) to branch on it, "
            "or pass it to a layer from nni_pl.nas.nn"
        )

    # helpers (NNI's ValueChoice.max/min/to_int/condition) ---------------------------------------
    @staticmethod
    def max(*args: Any) -> ValueExpr:
        """The largest of the arguments (choices or constants), as a value that follows the architecture."""
        return _Expr(lambda *xs: max(xs), args, "max")

    @staticmethod
    def min(*args: Any) -> ValueExpr:
        """The smallest of the arguments."""
        return _Expr(lambda *xs: min(xs), args, "min")

    @staticmethod
    def to_int(x: Any) -> ValueExpr:
        """``int(x)``."""
        return _Expr(int, (x,), "int")

    @staticmethod
    def to_float(x: Any) -> ValueExpr:
        """``float(x)``."""
        return _Expr(float, (x,), "float")

    @staticmethod
    def condition(pred: Any, true: Any, false: Any) -> ValueExpr:
        """``true if pred else false``, where ``pred`` is usually ``ValueChoice.apply(vc, lambda v: v > 3)``."""
        return _Expr(lambda p, t, f: t if p else f, (pred, true, false), "condition")

    @staticmethod
    def apply(x: Any, fn: Callable[[Any], Any]) -> ValueExpr:
        """``fn(x)`` for any function of the chosen value."""
        return _Expr(fn, (x,), getattr(fn, "__name__", "fn"))


def _leaves_of(args: Sequence[Any]) -> list[ValueChoice]:
    out: dict[str, ValueChoice] = {}
    for a in args:
        if isinstance(a, ValueExpr):
            for leaf in a.leaves():
                out.setdefault(leaf.label, leaf)
    return list(out.values())


class _Expr(ValueExpr):
    def __init__(self, fn: Callable[..., Any], args: Sequence[Any], sym: str) -> None:
        self.fn = fn
        self.args = tuple(args)
        self.sym = sym

    def leaves(self) -> list[ValueChoice]:
        return _leaves_of(self.args)

    def evaluate(self, arch: Mapping[str, Any]) -> Any:
        vals = [a.evaluate(arch) if isinstance(a, ValueExpr) else a for a in self.args]
        return self.fn(*vals)

    def __repr__(self) -> str:
        return f"{self.sym}({', '.join(map(repr, self.args))})"


class ValueChoice(ValueExpr):
    """Choose one value from ``candidates``; usable as an argument of the layers in :mod:`nni_pl.nas.nn`.

    The same instance, or another ``ValueChoice`` with the same label and candidates, is the same decision.
    Values must be JSON-able (numbers, strings, booleans, None, lists, dicts); to choose between modules use
    :class:`LayerChoice`.

    Args:
        candidates: the values to choose from (at least one, no duplicates).
        prior: accepted for NNI compatibility and ignored (strategies sample uniformly).
        label: the decision's name; generated (``valuechoice_1``, ...) when not given.

    Example:
        >>> from nni_pl.nas import ValueChoice
        >>> from nni_pl.nas import nn
        >>> width = ValueChoice([16, 32], label="width")
        >>> conv = nn.Conv2d(3, width * 2, kernel_size=3)
        >>> conv.out_channels                      # the space runs with the first value
        32
        >>> conv_frozen = conv.freeze({"width": 32})
        >>> conv_frozen.out_channels
        64
    """

    def __init__(
        self, candidates: Sequence[Any], *, prior: Sequence[float] | None = None, label: str | None = None
    ) -> None:
        if (
            isinstance(candidates, (str, bytes))
            or not isinstance(candidates, Sequence)
            or len(candidates) == 0
        ):
            raise ArchitectureError(
                str(label or ""), f"ValueChoice needs a non-empty list of candidates, got {candidates!r}"
            )
        self.label = _make_label(label, "valuechoice")
        seen: set[str] = set()
        for c in candidates:
            try:
                key = canonical(c)
            except (TypeError, ValueError) as e:
                raise ArchitectureError(
                    self.label,
                    f"ValueChoice candidate {c!r} is not JSON-able; use numbers/strings/lists, or a LayerChoice "
                    "to choose between modules",
                ) from e
            if key in seen:
                raise ArchitectureError(self.label, f"duplicate candidate {c!r} in {list(candidates)!r}")
            seen.add(key)
        self.candidates: list[Any] = list(candidates)
        self.prior = _check_prior(self.label, prior, len(self.candidates))
        register_label(self.label, "ValueChoice", self.candidates)

    def leaves(self) -> list[ValueChoice]:
        return [self]

    def evaluate(self, arch: Mapping[str, Any]) -> Any:
        return lookup(arch, self.label, self.candidates)

    def default(self) -> Any:
        return self.candidates[0]

    def __repr__(self) -> str:
        return f"ValueChoice({self.candidates!r}, label={self.label!r})"


class FrozenValue:
    """What a ``ValueChoice`` attribute of a module becomes after freezing: ``self.rate()`` keeps working.

    Example:
        >>> FrozenValue(0.5)()
        0.5
    """

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self) -> Any:
        return self.value

    def __repr__(self) -> str:
        return f"FrozenValue({self.value!r})"


def resolve(obj: Any, arch: Mapping[str, Any] | None) -> Any:
    """``obj`` with every :class:`ValueExpr` inside (lists, tuples, dicts) evaluated (default values if no arch)."""
    if isinstance(obj, ValueExpr):
        return obj.default() if arch is None else obj.evaluate(arch)
    if isinstance(obj, (list, tuple)):
        out = [resolve(o, arch) for o in obj]
        return type(obj)(out) if not hasattr(obj, "_fields") else type(obj)(*out)
    if isinstance(obj, dict):
        return {k: resolve(v, arch) for k, v in obj.items()}
    return obj


def expr_leaves(obj: Any) -> list[ValueChoice]:
    """Every :class:`ValueChoice` inside ``obj`` (nested lists, tuples, dicts)."""
    if isinstance(obj, ValueExpr):
        return obj.leaves()
    if isinstance(obj, (list, tuple)):
        return _leaves_of([leaf for o in obj for leaf in expr_leaves(o)])
    if isinstance(obj, dict):
        return _leaves_of([leaf for o in obj.values() for leaf in expr_leaves(o)])
    return []
