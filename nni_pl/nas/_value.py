"""ValueChoice: choose one value; and ValueExpr, arithmetic on choices whose value follows the architecture."""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from nni_pl.nas._labels import (
    ArchitectureError,
    _check_prior,
    _make_label,
    canonical,
    lookup,
    match_value,
    register_label,
)

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

    def inner_choices(self) -> Iterator[ValueChoice]:
        """Every :class:`ValueChoice` leaf of the expression, depth first, repeats included (NNI's order).

        Example:
            >>> a = ValueChoice([1, 2], label="a")
            >>> [c.label for c in (a + a * 2).inner_choices()]
            ['a', 'a']
        """
        raise NotImplementedError

    def evaluate(self, arch: Mapping[str, Any] | Iterable[Any]) -> Any:
        """The value under ``arch``: a dict label -> value, or (as NNI) the values of :meth:`inner_choices` in order.

        Raises:
            ArchitectureError: a label is missing, a value is not allowed, the list has too few or too many
                values, or it gives one label two different values.

        Example:
            >>> a, b = ValueChoice([1, 2], label="a"), ValueChoice([10, 20], label="b")
            >>> (a + b).evaluate({"a": 2, "b": 10}), (a + b).evaluate([2, 10])
            (12, 12)
        """
        if isinstance(arch, Mapping):
            return self._eval(arch)
        return self._eval(_values_by_label(self, arch))

    def _eval(self, arch: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def default(self) -> Any:
        """The value with every choice at its first candidate."""
        return self._eval({leaf.label: leaf.candidates[0] for leaf in self.leaves()})

    def dry_run(self) -> Any:
        """NNI's name for :meth:`default`."""
        return self.default()

    def all_options(self) -> Iterator[Any]:
        """Every value of the expression, one per combination of its choices' candidates (repeats kept, as NNI).

        Example:
            >>> list((ValueChoice([1, 2], label="a") * 2).all_options())
            [2, 4]
        """
        leaves = self.leaves()
        for combo in itertools.product(*(leaf.candidates for leaf in leaves)):
            yield self._eval({leaf.label: c for leaf, c in zip(leaves, combo)})

    def all_values(self) -> list[Any]:
        """Every value this expression can take, without duplicates, in order."""
        leaves = self.leaves()
        seen: dict[str, Any] = {}
        for combo in itertools.product(*(leaf.candidates for leaf in leaves)):
            v = self._eval({leaf.label: c for leaf, c in zip(leaves, combo)})
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

    def __lshift__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.lshift, "<<")

    def __rlshift__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.lshift, "<<", True)

    def __rshift__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.rshift, ">>")

    def __rrshift__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.rshift, ">>", True)

    def __divmod__(self, o: Any) -> ValueExpr:
        return self._binary(o, divmod, "divmod")

    def __rdivmod__(self, o: Any) -> ValueExpr:
        return self._binary(o, divmod, "divmod", True)

    # logic and comparison: lazy too (`==`/`!=` keep identity semantics so choices stay hashable and
    # usable in lists; compare with ValueChoice.apply(vc, lambda v: v == 3))
    def __and__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.and_, "&")

    def __rand__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.and_, "&", True)

    def __or__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.or_, "|")

    def __ror__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.or_, "|", True)

    def __xor__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.xor, "^")

    def __rxor__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.xor, "^", True)

    def __lt__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.lt, "<")

    def __le__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.le, "<=")

    def __gt__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.gt, ">")

    def __ge__(self, o: Any) -> ValueExpr:
        return self._binary(o, operator.ge, ">=")

    def __invert__(self) -> ValueExpr:
        return _Expr(operator.invert, (self,), "~")

    def __pos__(self) -> ValueExpr:
        return _Expr(operator.pos, (self,), "pos")

    def __getitem__(self, key: Any) -> ValueExpr:
        """``vc[0]``, ``vc["key"]``: an item of the chosen list or dict (the key may be a choice too)."""
        return _Expr(operator.getitem, (self, key), "getitem")

    def __iter__(self) -> Iterator[Any]:
        # without this, __getitem__ would make a choice look iterable (vc[0], vc[1], ... forever)
        raise TypeError(
            f"{self!r} cannot be iterated in the space; index it (`vc[0]`) for a value that follows the "
            "architecture, or call it (`vc()`) for its value in the space"
        )

    def __neg__(self) -> ValueExpr:
        return _Expr(operator.neg, (self,), "neg")

    def __abs__(self) -> ValueExpr:
        return _Expr(abs, (self,), "abs")

    def __round__(self, ndigits: int | None = None) -> ValueExpr:
        if ndigits is None:
            return _Expr(round, (self,), "round")
        return _Expr(round, (self, ndigits), "round")

    def __floor__(self) -> ValueExpr:
        return _Expr(math.floor, (self,), "floor")

    def __ceil__(self) -> ValueExpr:
        return _Expr(math.ceil, (self,), "ceil")

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
    def max(arg0: Any, *args: Any) -> Any:
        """The largest of the arguments (or of one iterable), as Python's ``max``.

        A value that follows the architecture when a choice is among them, else the plain maximum (as NNI).

        Example:
            >>> ValueChoice.max(3, 5), ValueChoice.max([3, 5])
            (5, 5)
            >>> ValueChoice.max(ValueChoice([1, 8], label="m"), 5).evaluate({"m": 8})
            8
        """
        items = _max_min_args("max", arg0, args)
        if any(isinstance(x, ValueExpr) for x in items):
            return _Expr(_max, tuple(items), "max")
        return max(items)

    @staticmethod
    def min(arg0: Any, *args: Any) -> Any:
        """The smallest of the arguments (or of one iterable); see :meth:`max`."""
        items = _max_min_args("min", arg0, args)
        if any(isinstance(x, ValueExpr) for x in items):
            return _Expr(_min, tuple(items), "min")
        return min(items)

    @staticmethod
    def to_int(x: Any) -> Any:
        """``int(x)`` (plain ``int`` when ``x`` is not a choice)."""
        return _Expr(int, (x,), "int") if isinstance(x, ValueExpr) else int(x)

    @staticmethod
    def to_float(x: Any) -> Any:
        """``float(x)`` (plain ``float`` when ``x`` is not a choice)."""
        return _Expr(float, (x,), "float") if isinstance(x, ValueExpr) else float(x)

    @staticmethod
    def condition(pred: Any, true: Any, false: Any) -> Any:
        """``true if pred else false``, where ``pred`` is usually a comparison such as ``vc > 3``."""
        if any(isinstance(x, ValueExpr) for x in (pred, true, false)):
            return _Expr(_condition, (pred, true, false), "condition")
        return true if pred else false

    @staticmethod
    def apply(x: Any, fn: Callable[[Any], Any]) -> ValueExpr:
        """``fn(x)`` for any function of the chosen value."""
        return _Expr(fn, (x,), getattr(fn, "__name__", "fn"))


def _max(*xs: Any) -> Any:
    return max(xs)


def _min(*xs: Any) -> Any:
    return min(xs)


def _condition(pred: Any, true: Any, false: Any) -> Any:
    return true if pred else false


def _max_min_args(name: str, arg0: Any, args: tuple[Any, ...]) -> list[Any]:
    if args:
        return [arg0, *args]
    if isinstance(arg0, ValueExpr) or not isinstance(arg0, Iterable):
        raise TypeError(f"ValueChoice.{name} takes an iterable or at least two arguments, got only {arg0!r}")
    items = list(arg0)
    if not items:
        raise ValueError(f"ValueChoice.{name} of an empty iterable")
    return items


def _values_by_label(expr: ValueExpr, values: Iterable[Any]) -> dict[str, Any]:
    """NNI's list form of an architecture: one value per :meth:`~ValueExpr.inner_choices` entry, in order."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ArchitectureError(
            "", f"evaluate takes a dict label -> value or a list of values, got {values!r}"
        )
    given = list(values)
    choices = list(expr.inner_choices())
    if len(given) != len(choices):
        raise ArchitectureError(
            "",
            f"evaluate got {len(given)} values {given!r} for {len(choices)} choices "
            f"{[c.label for c in choices]} (one per inner_choices() entry, repeats included)",
        )
    arch: dict[str, Any] = {}
    for choice, value in zip(choices, given):
        value = match_value(choice.label, value, choice.candidates)
        if choice.label in arch and canonical(arch[choice.label]) != canonical(value):
            raise ArchitectureError(
                choice.label,
                f"evaluate got two values for the same choice: {arch[choice.label]!r} and {value!r}",
            )
        arch[choice.label] = value
    return arch


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

    def inner_choices(self) -> Iterator[ValueChoice]:
        for a in self.args:
            if isinstance(a, ValueExpr):
                yield from a.inner_choices()

    def _eval(self, arch: Mapping[str, Any]) -> Any:
        vals = [a._eval(arch) if isinstance(a, ValueExpr) else a for a in self.args]
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

    def inner_choices(self) -> Iterator[ValueChoice]:
        yield self

    def _eval(self, arch: Mapping[str, Any]) -> Any:
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
