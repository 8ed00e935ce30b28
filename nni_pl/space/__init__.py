"""Search spaces in NNI's format: the ten ``_type`` s, nested ``choice`` with ``_name``, JSON and YAML.

Example:
    >>> from nni_pl.space import SearchSpace
    >>> space = SearchSpace.parse('{"lr": {"_type": "loguniform", "_value": [1e-4, 0.1]}}')
    >>> space["lr"]
    LogUniform(low=0.0001, high=0.1)

Besides the parameter types: :class:`Dimension` (one searched parameter, at a :data:`Key` path inside
nested choices), :func:`canonical_json` (the stable text form options are compared by) and
:class:`FreeFormSpace` (any JSON, unread, for a custom tuner that declares its own format).
"""

from nni_pl.space._free_form import FreeFormSpace
from nni_pl.space._params import (
    ALL_TYPES,
    Branch,
    Choice,
    LogNormal,
    LogUniform,
    Normal,
    Param,
    QLogNormal,
    QLogUniform,
    QNormal,
    QUniform,
    Randint,
    Uniform,
    canonical_json,
)
from nni_pl.space._space import Dimension, Key, SearchSpace

__all__ = [
    "ALL_TYPES",
    "Branch",
    "Choice",
    "Dimension",
    "FreeFormSpace",
    "Key",
    "LogNormal",
    "LogUniform",
    "Normal",
    "Param",
    "QLogNormal",
    "QLogUniform",
    "QNormal",
    "QUniform",
    "Randint",
    "SearchSpace",
    "Uniform",
    "canonical_json",
]
