"""Resolve tuner/assessor names (NNI's registered names) and custom classes to instances."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from nni_pl._checks import ArgumentError
from nni_pl._imports import import_object
from nni_pl.errors import ConfigError, did_you_mean

__all__ = [
    "ALIASES",
    "BUILTIN_ADVISORS",
    "BUILTIN_ASSESSORS",
    "BUILTIN_TUNERS",
    "create_algorithm",
    "declares_free_form_space",
    "resolve_class",
]

# NNI's registered names -> where the class lives. Imported lazily: a name costs nothing until used.
BUILTIN_TUNERS: dict[str, str] = {
    "Auto": "nni_pl.hpo.tuners.auto:AutoTuner",
    "TPE": "nni_pl.hpo.tuners.tpe:TPETuner",
    "Random": "nni_pl.hpo.tuners.random:RandomTuner",
    "Anneal": "nni_pl.hpo.tuners.anneal:AnnealTuner",
    "GridSearch": "nni_pl.hpo.tuners.gridsearch:GridSearchTuner",
    "Evolution": "nni_pl.hpo.tuners.evolution:EvolutionTuner",
    "RegularizedEvolutionTuner": "nni_pl.hpo.tuners.regularized_evolution:RegularizedEvolutionTuner",
    "BatchTuner": "nni_pl.hpo.tuners.batch:BatchTuner",
    "SMAC": "nni_pl.hpo.tuners.smac:SMACTuner",
    "GPTuner": "nni_pl.hpo.tuners.gp:GPTuner",
    "MetisTuner": "nni_pl.hpo.tuners.metis:MetisTuner",
    "DNGOTuner": "nni_pl.hpo.tuners.dngo:DNGOTuner",
    "PBTTuner": "nni_pl.hpo.tuners.pbt:PBTTuner",
    "PPOTuner": "nni_pl.hpo.tuners.ppo:PPOTuner",
    "NetworkMorphism": "nni_pl.hpo.tuners.network_morphism:NetworkMorphismTuner",
}
BUILTIN_ASSESSORS: dict[str, str] = {
    "Medianstop": "nni_pl.hpo.assessors.medianstop:MedianstopAssessor",
    "Curvefitting": "nni_pl.hpo.assessors.curvefitting:CurvefittingAssessor",
    "ASHA": "nni_pl.hpo.assessors.asha:ASHAAssessor",
}
# NNI puts these under `advisor:`; they are tuners too, so `tuner: {name: Hyperband}` works as well.
BUILTIN_ADVISORS: dict[str, str] = {
    "Hyperband": "nni_pl.hpo.tuners.hyperband:Hyperband",
    "BOHB": "nni_pl.hpo.tuners.bohb:BOHB",
}

# Other spellings users type: NNI class names and short forms.
ALIASES: dict[str, str] = {
    "AutoTuner": "Auto",
    "RandomSearch": "Random",
    "Grid": "GridSearch",
    "GridSearchTuner": "GridSearch",
    "TPETuner": "TPE",
    "AnnealTuner": "Anneal",
    "RandomTuner": "Random",
    "EvolutionTuner": "Evolution",
    "NaiveEvolution": "Evolution",
    "RegularizedEvolution": "RegularizedEvolutionTuner",
    "Batch": "BatchTuner",
    "SMACTuner": "SMAC",
    "GP": "GPTuner",
    "Metis": "MetisTuner",
    "DNGO": "DNGOTuner",
    "PBT": "PBTTuner",
    "PPO": "PPOTuner",
    "NetworkMorphismTuner": "NetworkMorphism",
    "HyperbandAdvisor": "Hyperband",
    "BOHBAdvisor": "BOHB",
    "MedianStop": "Medianstop",
    "MedianstopAssessor": "Medianstop",
    "CurveFitting": "Curvefitting",
    "CurvefittingAssessor": "Curvefitting",
    "ASHAAssessor": "ASHA",
}

_HYPEROPT_ALGORITHMS = {"tpe": "TPE", "random_search": "Random", "anneal": "Anneal"}

_TABLES = {"tuner": BUILTIN_TUNERS, "assessor": BUILTIN_ASSESSORS, "advisor": BUILTIN_ADVISORS}


def resolve_class(
    kind: str,
    name: str | None = None,
    *,
    class_name: str | None = None,
    code_directory: str | Path | None = None,
    field: str = "",
) -> type:
    """The class behind a built-in ``name`` or a custom ``class_name`` (``module.Class``)."""
    field = field or kind
    if class_name:
        return import_object(class_name, f"{field}.className", code_directory=code_directory, what="class")
    table = _TABLES[kind] if kind == "assessor" else {**BUILTIN_TUNERS, **BUILTIN_ADVISORS}
    if name is None:
        raise ConfigError(f"{field}.name", f"give a {kind} name (one of {', '.join(table)}) or a className")
    name = ALIASES.get(name, name)
    if name not in table:
        from nni_pl.hpo import _user_registry

        user = _user_registry.lookup(kind, name)
        if user is not None:
            return import_object(user, f"{field}.name", what="class")
        known = list(table) + [a for a, t in ALIASES.items() if t in table]
        raise ConfigError(
            f"{field}.name",
            f"unknown {kind} {name!r}{did_you_mean(name, known)}; built-in {kind}s: {', '.join(table) or 'none'}",
        )
    return import_object(table[name], f"{field}.name", what="class")


def declares_free_form_space(
    kind: str,
    name: str | None = None,
    *,
    class_name: str | None = None,
    code_directory: str | Path | None = None,
) -> bool:
    """Whether a configured tuner/advisor takes any JSON as its search space (``free_form_search_space = True``).

    Built-ins never do (their spaces are validated before launch), so a built-in name imports nothing; a custom
    class is imported to ask. A class that cannot be imported answers ``False`` here and is reported when the
    experiment builds its algorithms.
    """
    if class_name is None and (
        name is None or name == "HyperoptTuner" or ALIASES.get(name, name) in _TABLES[kind]
    ):
        return False
    if class_name is None and kind == "tuner" and ALIASES.get(name, name) in BUILTIN_ADVISORS:  # type: ignore[arg-type]
        return False
    try:
        cls = resolve_class(kind, name, class_name=class_name, code_directory=code_directory)
    except Exception:  # the experiment reports it, with the config field, when it builds the tuner
        return False
    return bool(getattr(cls, "free_form_search_space", False))


def create_algorithm(
    kind: str,
    name: str | None = None,
    *,
    class_name: str | None = None,
    code_directory: str | Path | None = None,
    class_args: dict[str, Any] | None = None,
    field: str = "",
) -> Any:
    """Instantiate a tuner/assessor/advisor, checking ``classArgs`` against its constructor first.

    An argument the class itself rejects (an :class:`~nni_pl._checks.ArgumentError`, which names it
    ``<Class>.<arg>`` when built from Python) is reported under the config field it came from.

    Raises:
        ConfigError: naming ``<field>.classArgs.<arg>`` for an unknown, missing or invalid argument
            (``field`` defaults to ``kind``: ``tuner.classArgs.seed``).
    """
    field = field or kind
    args = dict(class_args or {})
    if name == "HyperoptTuner":  # NNI's class behind TPE/Random/Anneal, chosen by classArgs.algorithm_name
        algorithm = args.pop("algorithm_name", "tpe")
        name = _HYPEROPT_ALGORITHMS.get(algorithm)
        if name is None:
            raise ConfigError(
                f"{field}.classArgs.algorithm_name",
                f"got {algorithm!r}; HyperoptTuner takes one of {', '.join(_HYPEROPT_ALGORITHMS)}",
            )
    cls = resolve_class(kind, name, class_name=class_name, code_directory=code_directory, field=field)
    label = name or class_name
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        params = sig.parameters
        accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not accepts_kwargs:
            for arg in args:
                if arg not in named:
                    raise ConfigError(
                        f"{field}.classArgs.{arg}",
                        f"{label} has no argument {arg!r}{did_you_mean(arg, named)}; it accepts: {', '.join(named) or 'none'}",
                    )
        required = set(getattr(cls, "required_class_args", ()))  # NNI's validator demands these in a config
        for n in named:
            p = params[n]
            if (p.default is p.empty or n in required) and n not in args:
                raise ConfigError(
                    f"{field}.classArgs.{n}", f"{label} needs the argument {n!r}; add it under classArgs"
                )
    try:
        return cls(**args)
    except ArgumentError as e:  # named after the class it was built from Python; here it came from a config
        raise e.in_config(f"{field}.classArgs") from e
    except ConfigError as e:
        if e.field.startswith("classArgs"):  # a user's algorithm that names its arguments NNI's way
            raise ConfigError(f"{field}.{e.field}", str(e).split(": ", 1)[-1]) from e
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"{field}.classArgs", f"{label}({', '.join(f'{k}={v!r}' for k, v in args.items())}) failed: {e}"
        ) from e
