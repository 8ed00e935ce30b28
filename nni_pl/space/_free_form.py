"""A search space that nni-pl does not read, for custom tuners with their own format."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_pl.errors import SearchSpaceError
from nni_pl.space._params import canonical_json
from nni_pl.space._space import Key, SearchSpace

__all__ = ["FreeFormSpace"]

if TYPE_CHECKING:
    import numpy as np


class FreeFormSpace(SearchSpace):
    """Any JSON value as a search space, kept exactly as given and never validated.

    NNI hands a custom tuner whatever JSON the config holds. In nni-pl a custom tuner asks for that by
    declaring ``free_form_search_space = True``; the experiment then keeps its ``searchSpace`` as a
    ``FreeFormSpace`` (the tuner gets :meth:`to_json`, the JSON as given) instead of checking it against
    NNI's ten ``_type`` s. Only the tuner understands such a space: it has no dimensions, every parameter
    set counts as inside it (customised trials are not checked), and nni-pl cannot sample or enumerate it.

    Example:
        >>> space = FreeFormSpace({"x": [1, 100]})
        >>> space.to_json(), len(space), space.contains({"x": 7})
        ({'x': [1, 100]}, 0, True)
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: Any = None) -> None:
        super().__init__()
        if isinstance(raw, SearchSpace):
            raw = raw.to_json()
        try:
            json.dumps(raw, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise SearchSpaceError(
                "",
                "a free-form search space must be JSON",
                f"got {type(raw).__name__}: {e}",
                "use JSON values",
            ) from None
        self._raw = copy.deepcopy({} if raw is None else raw)

    @classmethod
    def parse(cls, source: Any) -> FreeFormSpace:  # type: ignore[override]
        """Any JSON value, or JSON/YAML text of one (nothing is checked but that it is JSON)."""
        from nni_pl._files import load_structured

        if isinstance(source, bytes):
            source = source.decode("utf-8")
        if isinstance(source, str):
            try:
                source = load_structured(source)
            except ValueError as e:
                raise SearchSpaceError(
                    "", "is neither valid JSON nor YAML", str(e), "check the syntax"
                ) from e
        return cls(source)

    @classmethod
    def load(cls, path: str | Path) -> FreeFormSpace:  # type: ignore[override]
        """Read any JSON/YAML value from a file."""
        from nni_pl._files import load_structured_file

        try:
            return cls(load_structured_file(Path(path)))
        except FileNotFoundError as e:
            raise SearchSpaceError("", "file not found", f"got {str(path)!r}", "check the path") from e
        except ValueError as e:
            raise SearchSpaceError(
                "", f"file {str(path)!r} is neither valid JSON nor YAML", str(e), "check the syntax"
            ) from e

    def to_json(self) -> Any:  # type: ignore[override]
        """The JSON exactly as given (a copy)."""
        return copy.deepcopy(self._raw)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SearchSpace):
            return NotImplemented
        return isinstance(other, FreeFormSpace) and canonical_json(self._raw) == canonical_json(other._raw)

    def __hash__(self) -> int:
        return hash(canonical_json(self._raw))

    def __repr__(self) -> str:
        return f"FreeFormSpace({self._raw!r})"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    # what only the tuner can do
    def _unreadable(self, what: str) -> SearchSpaceError:
        return SearchSpaceError(
            "",
            f"is free-form (its tuner's own format): nni-pl cannot {what} it",
            "",
            "ask the tuner for parameters",
        )

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        raise self._unreadable("sample")

    def grid(self) -> Iterator[dict[str, Any]]:
        raise self._unreadable("enumerate")

    @property
    def is_finite(self) -> bool:
        return False

    @property
    def size(self) -> float:
        return float("inf")

    def check(self, params: Mapping[str, Any]) -> None:
        """Any parameter set is accepted: only the tuner knows its format."""

    def flatten(self, params: Mapping[str, Any]) -> dict[Key, Any]:
        raise self._unreadable("flatten parameters of")

    def assemble(self, flat: Mapping[Key, Any]) -> dict[str, Any]:
        raise self._unreadable("assemble parameters of")
