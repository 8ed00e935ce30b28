"""Read a ConfigSpace file (BOHB's ``config_space`` classArg) as an NNI search space.

Only imported when ``config_space`` is given; needs the optional ``ConfigSpace`` package (the ``bohb``
extra). ConfigSpace types map to NNI's: ``Categorical``/``Ordinal``/``Constant`` -> ``choice``,
``UniformFloat`` -> ``uniform``/``loguniform``, ``UniformInteger`` -> ``randint`` (``qloguniform``
with ``q=1`` on a log scale). ConfigSpace 1.x bounds its normal and beta types, so those become the
uniform type over their bounds (their prior shape is not kept). Conditions and forbidden clauses have
no flat NNI equivalent and are rejected.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from nni_pl._checks import ArgumentError, fail, owner_name
from nni_pl.errors import MissingDependencyError
from nni_pl.space import SearchSpace

__all__ = ["load_config_space"]

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _numeric(hp: Any, integer: bool) -> dict[str, Any]:
    lower, upper = _plain(hp.lower), _plain(hp.upper)
    q = getattr(hp, "q", None)
    log_scale = bool(getattr(hp, "log", False))
    if integer:
        lower, upper = int(lower), int(upper)
        if log_scale:
            return {"_type": "qloguniform", "_value": [lower, upper, 1]}
        return {"_type": "randint", "_value": [lower, upper + 1]}
    if q:
        return {"_type": "qloguniform" if log_scale else "quniform", "_value": [lower, upper, _plain(q)]}
    return {"_type": "loguniform" if log_scale else "uniform", "_value": [lower, upper]}


def load_config_space(path: str | Path, *, owner: object = "BOHB") -> SearchSpace:
    """The NNI search space equivalent to the ConfigSpace file at ``path`` (``pcs new``, JSON or YAML).

    Raises:
        MissingDependencyError: ConfigSpace is not installed.
        ConfigError: the file is missing, unreadable, or uses conditions / forbidden clauses (an error about
            ``owner``'s argument ``config_space``).
    """
    if not isinstance(path, (str, Path)):
        fail(owner, "config_space", f"must be the path of a ConfigSpace file, got {path!r}")
    file = Path(path).expanduser()
    if not file.is_file():
        fail(
            owner,
            "config_space",
            f"no such file: {str(path)!r}; give the path of a ConfigSpace 'pcs new', .json or .yaml file",
        )
    try:
        import ConfigSpace as CS
    except ImportError as e:
        raise MissingDependencyError("ConfigSpace", "bohb", "BOHB's classArgs.config_space") from e
    try:
        if file.suffix.lower() == ".json":
            cs = CS.ConfigurationSpace.from_json(file)
        elif file.suffix.lower() in (".yaml", ".yml"):
            cs = CS.ConfigurationSpace.from_yaml(file)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                from ConfigSpace.read_and_write import pcs_new

                cs = pcs_new.read(file.read_text(encoding="utf-8").splitlines())
    except Exception as e:  # ConfigSpace raises many kinds of errors for a malformed file
        reason = f"cannot read {str(path)!r} as a ConfigSpace file: {e}"
        raise ArgumentError(owner_name(owner), "config_space", reason) from e
    if list(cs.conditions) or list(cs.forbidden_clauses):
        fail(
            owner,
            "config_space",
            f"{str(path)!r} has conditions or forbidden clauses, which are not supported; "
            "express conditional parameters as a nested choice (_name) in an NNI search space instead",
        )
    spec: dict[str, Any] = {}
    for hp in cs.values():
        if isinstance(hp, CS.Constant):
            spec[hp.name] = {"_type": "choice", "_value": [_plain(hp.value)]}
        elif isinstance(hp, CS.CategoricalHyperparameter):
            spec[hp.name] = {"_type": "choice", "_value": [_plain(c) for c in hp.choices]}
        elif isinstance(hp, CS.OrdinalHyperparameter):
            spec[hp.name] = {"_type": "choice", "_value": [_plain(c) for c in hp.sequence]}
        elif isinstance(hp, (CS.UniformIntegerHyperparameter, CS.UniformFloatHyperparameter)):
            spec[hp.name] = _numeric(hp, isinstance(hp, CS.UniformIntegerHyperparameter))
        elif hasattr(hp, "lower") and hasattr(hp, "upper"):  # normal / beta: bounded in ConfigSpace 1.x
            integer = "Integer" in type(hp).__name__
            spec[hp.name] = _numeric(hp, integer)
            log.info(
                "config_space: %s (%s) is searched uniformly between its bounds", hp.name, type(hp).__name__
            )
        else:
            fail(
                owner,
                "config_space",
                f"hyperparameter {hp.name!r} of type {type(hp).__name__} is not supported",
            )
    return SearchSpace.parse(spec)
