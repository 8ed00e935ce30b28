"""The experiment config: NNI's v2 YAML schema (v1 keys mapped), validated into typed objects.

Rules (NNI's): camelCase keys in YAML, snake_case attributes in Python; relative paths in a file resolve
against the file's folder (in Python, against the working directory); ``~`` is expanded; ``null`` means
unset. Unknown keys are errors with a did-you-mean.

Example:
    >>> cfg = ExperimentConfig.from_dict({
    ...     "trialCommand": "python train.py",
    ...     "trialConcurrency": 2,
    ...     "maxExperimentDuration": "1.5h",
    ...     "searchSpace": {"lr": {"_type": "loguniform", "_value": [1e-4, 0.1]}},
    ...     "tuner": {"name": "TPE", "classArgs": {"optimize_mode": "maximize"}},
    ...     "trainingService": {"platform": "local"},
    ... })
    >>> cfg.max_experiment_duration
    5400.0
    >>> cfg.tuner.name
    'TPE'
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

from nni_pl._config_readers import check_keys, read_bool, read_gpu_indices, read_int, read_path, read_str
from nni_pl._paths import default_working_directory
from nni_pl.errors import ConfigError, SearchSpaceError, did_you_mean
from nni_pl.experiment._config_v1 import is_v1, v1_to_v2
from nni_pl.space import FreeFormSpace, SearchSpace
from nni_pl.training.local import LocalConfig
from nni_pl.training.platforms import blank_section, parse_section

__all__ = [
    "AlgorithmConfig",
    "ExperimentConfig",
    "LocalConfig",
    "default_working_directory",
    "parse_duration",
]

logger = logging.getLogger(__name__)

LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "fatal")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any, field: str) -> float | None:
    """``"1.5h"`` -> 5400.0; a bare number is seconds; ``None`` is unlimited."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ConfigError(
            field, f"got {value!r}; write a number followed by s, m, h or d, e.g. '30m' or '1.5h'"
        )
    if seconds <= 0:
        raise ConfigError(field, f"got {value!r}; a duration must be positive (leave it out for no limit)")
    return seconds


def format_duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    for unit in ("d", "h", "m"):
        n = seconds / _UNITS[unit]
        if n >= 1 and float(n).is_integer():
            return f"{int(n)}{unit}"
    # Decimal(repr(x)) writes the float exactly, never in exponent form (which parse_duration rejects)
    return f"{Decimal(repr(float(seconds))).normalize():f}s"


# --- sections ------------------------------------------------------------------------------------------


@dataclass
class AlgorithmConfig:
    """A tuner, assessor or advisor: a built-in ``name`` or a custom ``class_name`` (+ ``code_directory``)."""

    name: str | None = None
    class_name: str | None = None
    code_directory: Path | None = None
    class_args: dict[str, Any] = field(default_factory=dict)
    include_intermediate_results: bool = False  # v1 tuner key: an early-stopped trial's last result counts

    KEYS = ("name", "className", "codeDirectory", "classArgs", "includeIntermediateResults")

    @classmethod
    def from_dict(cls, raw: Any, field: str, base: Path) -> AlgorithmConfig | None:
        if raw is None:
            return None
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, Mapping):
            raise ConfigError(field, f"got {raw!r}; write {{name: TPE, classArgs: {{...}}}}")
        check_keys(raw, list(cls.KEYS), field)
        name = read_str(raw.get("name"), f"{field}.name")
        class_name = read_str(raw.get("className"), f"{field}.className")
        if not name and not class_name:
            raise ConfigError(
                field, "give a built-in 'name' (e.g. TPE) or a custom 'className' (module.Class)"
            )
        if name and class_name:
            raise ConfigError(
                field, f"give either 'name' ({name!r}) or 'className' ({class_name!r}), not both"
            )
        args = raw.get("classArgs") or {}
        if not isinstance(args, Mapping):
            raise ConfigError(f"{field}.classArgs", f"got {args!r}; write a mapping of argument: value")
        code_dir = read_path(raw.get("codeDirectory"), f"{field}.codeDirectory", base)
        if class_name and code_dir is None:
            code_dir = base
        return cls(
            name=name,
            class_name=class_name,
            code_directory=code_dir,
            class_args=dict(args),
            include_intermediate_results=read_bool(
                raw.get("includeIntermediateResults"), f"{field}.includeIntermediateResults", False
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        if self.class_name:
            out["className"] = self.class_name
            out["codeDirectory"] = str(self.code_directory) if self.code_directory else None
        out["classArgs"] = dict(self.class_args)
        if self.include_intermediate_results:
            out["includeIntermediateResults"] = True
        return out


def _training_service(raw: Any, field: str, base: Path | None = None) -> Any:
    return parse_section(raw, field, base)


# --- the experiment config ------------------------------------------------------------------------------------

_KEYS = [
    "experimentName", "searchSpaceFile", "searchSpace", "trialCommand", "trialCodeDirectory", "trialConcurrency",
    "trialGpuNumber", "maxExperimentDuration", "maxTrialNumber", "maxTrialDuration", "nniManagerIp", "useAnnotation",
    "debug", "logLevel", "experimentWorkingDirectory", "tunerGpuIndices", "tuner", "assessor", "advisor",
    "trainingService", "sharedStorage", "storeUrl", "lightningCli",
]  # fmt: skip


_FIELD_OF_KEY = {
    key: re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower() for key in _KEYS
}  # camelCase -> snake_case
_KEY_OF_FIELD = {name: key for key, name in _FIELD_OF_KEY.items()}
_ALGORITHMS = ("tuner", "assessor", "advisor")


def _platform_config(platform: Any) -> Any:
    """``ExperimentConfig('local')`` / ``(['remote', 'local'])``: the platform's blank section, filled in Python
    (``config.training_service.machine_list.append(...)``) and checked with the rest of the config."""
    return blank_section(platform, "trainingService")


def _read_space(
    inline: Any, file: Path | None, tuner: AlgorithmConfig | None, advisor: AlgorithmConfig | None
) -> SearchSpace:
    """The experiment's search space: NNI's format, validated, unless its tuner takes any JSON.

    A custom tuner (or advisor) that declares ``free_form_search_space = True`` gets the JSON as given, in a
    :class:`~nni_pl.space.FreeFormSpace`; a space set as a ``FreeFormSpace`` in Python stays one.
    """
    from nni_pl.hpo._registry import declares_free_form_space

    if isinstance(inline, FreeFormSpace):
        return inline
    algo, kind = (tuner, "tuner") if tuner is not None else (advisor, "advisor")
    free_form = algo is not None and declares_free_form_space(
        kind, algo.name, class_name=algo.class_name, code_directory=algo.code_directory
    )
    if free_form:
        return FreeFormSpace.load(file) if file is not None else FreeFormSpace(inline)
    if file is not None:
        return SearchSpace.load(file)
    return SearchSpace.parse(inline or {})


def _algorithm_value(value: Any, field: str) -> Any:
    """A tuner/assessor/advisor set in Python: a dict or a name becomes an :class:`AlgorithmConfig` at once,
    so ``config.tuner.class_args[...] = ...`` works; anything else is checked by :meth:`ExperimentConfig.validate`."""
    if isinstance(value, str):
        return AlgorithmConfig(name=value)
    if isinstance(value, Mapping):
        return AlgorithmConfig.from_dict(value, field, Path.cwd())
    return value


def _algorithm_raw(value: Any) -> Any:
    if not isinstance(value, AlgorithmConfig):
        return value
    if not (value.name or value.class_name or value.class_args or value.code_directory):
        return None  # the blank placeholder of ExperimentConfig('local'): not configured
    raw: dict[str, Any] = {"classArgs": value.class_args}
    if value.name is not None:
        raw["name"] = value.name
    if value.class_name is not None:
        raw["className"] = value.class_name
    if value.code_directory is not None:
        raw["codeDirectory"] = str(value.code_directory)
    if value.include_intermediate_results:
        raw["includeIntermediateResults"] = value.include_intermediate_results
    return raw


def _service_raw(value: Any) -> Any:
    if isinstance(value, list):
        return [_service_raw(v) for v in value]
    if isinstance(value, str):
        return {"platform": value}
    if hasattr(value, "secret_environment"):
        return value.to_dict(secrets=True)  # to_dict() masks literal secrets; this copy is re-read in memory
    return value.to_dict() if hasattr(value, "to_dict") else value


@dataclass(init=False)
class ExperimentConfig:
    """An experiment config: NNI's v2 fields as snake_case attributes, validated into canonical form.

    Build it from a file (:meth:`load`), a camelCase dict (:meth:`from_dict`), or in Python as NNI does:
    ``ExperimentConfig('local')`` (the training platform first; the tuner, assessor and advisor start as blank
    sections, so ``config.tuner.name = 'TPE'`` works) or keywords in either spelling
    (``ExperimentConfig(trial_command=...)`` or ``ExperimentConfig(trialCommand=...)``). A config built in
    Python is checked by :meth:`validate` (``Experiment.run``/``start`` call it), whose errors name the
    camelCase field; relative paths resolve against the working directory then.

    Beyond NNI's keys there are two of ours: ``storeUrl`` (a peewee database URL such as
    ``postgresql://user@host/db``; default: SQLite in the experiment folder) and ``lightningCli``
    (``auto``: search-space keys written as LightningCLI paths like ``model.lr`` are appended to the trial
    command as ``--model.lr=...``; ``true``/``false`` force it on/off).

    Example:
        >>> config = ExperimentConfig("local")
        >>> config.trial_command = "python train.py"
        >>> config.search_space = {"lr": {"_type": "loguniform", "_value": [1e-4, 0.1]}}
        >>> config.tuner.name = "TPE"
        >>> config.tuner.class_args["optimize_mode"] = "maximize"
        >>> config.max_trial_number = 10
        >>> config.json()["tuner"]
        {'name': 'TPE', 'classArgs': {'optimize_mode': 'maximize'}}
    """

    trial_command: str | None = None
    trial_concurrency: int = 1
    search_space: Any = field(default_factory=SearchSpace)  # a SearchSpace once validated
    search_space_file: Path | None = None
    experiment_name: str | None = None
    trial_code_directory: Path = field(default_factory=Path.cwd)
    trial_gpu_number: int | None = None
    max_experiment_duration: float | None = None  # seconds once validated ("1h" may be given)
    max_trial_number: int | None = None
    max_trial_duration: float | None = None
    nni_manager_ip: str | None = None
    use_annotation: bool = False
    debug: bool = False
    log_level: str | None = None  # "debug" when debug is set, else "info", unless given
    experiment_working_directory: Path = field(default_factory=default_working_directory)
    tuner_gpu_indices: list[int] | None = None
    tuner: AlgorithmConfig | None = None
    assessor: AlgorithmConfig | None = None
    advisor: AlgorithmConfig | None = None
    training_service: Any = field(default_factory=LocalConfig)
    shared_storage: Any = None
    store_url: str | None = None
    lightning_cli: str | bool = "auto"
    config_file: Path | None = None  # where it was loaded from (not a config key)

    def __init__(self, training_service_platform: str | list[str] | None = None, **values: Any) -> None:
        for f in fields(self):
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            object.__setattr__(self, f.name, default)
        # the file the inline space was read from: validate() keeps that copy instead of reading the file again
        self._space_source: tuple[Path, SearchSpace] | None = None
        # useAnnotation: the space generated from the code (or stored), and whether it came from the store
        self._generated_space: SearchSpace | None = None
        self._annotation_stored = False
        given: dict[str, str] = {}
        for key, value in values.items():
            name = _FIELD_OF_KEY.get(key, key)
            if name not in _FIELD_NAMES:
                known = sorted(_KEY_OF_FIELD) + list(_KEYS)
                raise ConfigError(
                    key,
                    f"unknown field{did_you_mean(key, known)}; fields: {', '.join(sorted(_KEY_OF_FIELD))}",
                )
            if name in given:
                raise ConfigError(_KEY_OF_FIELD.get(name, name), f"given twice, as {given[name]} and {key}")
            given[name] = key
            setattr(self, name, value)
        if training_service_platform is not None:
            if "training_service" in given:
                raise ConfigError(
                    "trainingService",
                    "give the platform either first (ExperimentConfig('local')) or as training_service, not both",
                )
            self.training_service = _platform_config(training_service_platform)
            for kind in _ALGORITHMS:  # blank sections, so that `config.tuner.name = 'TPE'` works (as in NNI)
                if getattr(self, kind) is None:
                    setattr(self, kind, AlgorithmConfig())

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            if name not in _FIELD_NAMES:
                hint = (
                    f"; in Python write the snake_case name {_FIELD_OF_KEY[name]!r}"
                    if name in _FIELD_OF_KEY
                    else did_you_mean(name, sorted(_FIELD_NAMES))
                )
                raise ConfigError(name, f"ExperimentConfig has no such field{hint}")
            if name in _ALGORITHMS:
                value = _algorithm_value(value, name)
            elif name == "training_service" and isinstance(value, (str, list, tuple)):
                value = _platform_config(value)
            elif name == "training_service" and isinstance(value, Mapping):
                value = _training_service(value, "trainingService")
        object.__setattr__(self, name, value)

    # --- loading -----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ExperimentConfig:
        """Read a YAML/JSON config file; relative paths in it resolve against its folder."""
        from nni_pl._files import load_structured_file

        path = Path(path).expanduser().resolve()
        try:
            raw = load_structured_file(path)
        except FileNotFoundError:
            raise ConfigError("", f"config file {str(path)!r} does not exist") from None
        except IsADirectoryError:
            raise ConfigError(
                "", f"config file {str(path)!r} is a folder; give the path of a YAML or JSON config file"
            ) from None
        except OSError as e:
            raise ConfigError("", f"config file {str(path)!r} cannot be read: {e.strerror or e}") from None
        except ValueError as e:
            raise ConfigError("", f"config file {str(path)!r} is not valid YAML/JSON: {e}") from e
        cfg = cls.from_dict(raw, base_dir=path.parent)
        cfg.config_file = path
        return cfg

    @classmethod
    def from_dict(
        cls,
        raw: Any,
        *,
        base_dir: str | os.PathLike[str] | None = None,
        function_trial: bool = False,
        _annotation_space: SearchSpace | None = None,
    ) -> ExperimentConfig:
        """Validate a config dict (v2 camelCase keys; v1 keys are mapped with a one-line notice).

        With ``useAnnotation: true`` the search space is generated from the annotations of the ``.py`` files under
        ``trialCodeDirectory`` (:mod:`nni_pl.annotation`); ``_annotation_space`` is the one a stored experiment
        was started with, kept instead.
        """
        if not isinstance(raw, Mapping):
            raise ConfigError("", f"an experiment config must be a mapping of keys, got {type(raw).__name__}")
        base = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
        if is_v1(raw):
            raw, notes = v1_to_v2(raw)
            if notes:
                logger.warning("NNI v1 config keys mapped to v2: %s", "; ".join(notes))
        check_keys(raw, _KEYS, "")

        use_annotation = read_bool(raw.get("useAnnotation"), "useAnnotation", False)
        if use_annotation:
            given = " and ".join(k for k in ("searchSpace", "searchSpaceFile") if raw.get(k) is not None)
            if given:
                raise ConfigError(
                    "useAnnotation",
                    f"useAnnotation: true generates the search space from the annotations in the trial code, so "
                    f"{given} must not be given with it; remove {given} (or set useAnnotation: false)",
                )
        if raw.get("sharedStorage") is not None:
            raise ConfigError(
                "sharedStorage",
                "shared storage (NNI's NFS/Azure Blob mount for remote platforms) is not supported in this version; "
                "remove it",
            )
        if raw.get("searchSpace") is not None and raw.get("searchSpaceFile") is not None:
            raise ConfigError("searchSpace", "give either searchSpace (inline) or searchSpaceFile, not both")

        space_file = read_path(raw.get("searchSpaceFile"), "searchSpaceFile", base)
        tuner = AlgorithmConfig.from_dict(raw.get("tuner"), "tuner", base)
        advisor = AlgorithmConfig.from_dict(raw.get("advisor"), "advisor", base)
        try:  # with annotations, _check generates it from the trial code
            space = (
                SearchSpace()
                if use_annotation
                else _read_space(raw.get("searchSpace"), space_file, tuner, advisor)
            )
        except SearchSpaceError as e:
            raise ConfigError("searchSpaceFile" if space_file else "searchSpace", str(e)) from e

        log_level = read_str(raw.get("logLevel"), "logLevel") or ("debug" if raw.get("debug") else "info")
        if log_level not in LOG_LEVELS:
            raise ConfigError(
                "logLevel",
                f"got {log_level!r}{did_you_mean(log_level, LOG_LEVELS)}; use one of {', '.join(LOG_LEVELS)}",
            )

        lightning_cli = raw.get("lightningCli", "auto")
        if lightning_cli not in ("auto", True, False):
            raise ConfigError("lightningCli", f"got {lightning_cli!r}; use auto, true or false")

        cfg = cls(
            experiment_name=read_str(raw.get("experimentName"), "experimentName"),
            search_space=space,
            search_space_file=space_file,
            trial_command=read_str(raw.get("trialCommand"), "trialCommand"),
            trial_code_directory=read_path(raw.get("trialCodeDirectory"), "trialCodeDirectory", base) or base,
            trial_concurrency=read_int(
                raw.get("trialConcurrency"), "trialConcurrency", minimum=1, optional=False
            )
            or 1,
            trial_gpu_number=read_int(raw.get("trialGpuNumber"), "trialGpuNumber", minimum=0),
            max_experiment_duration=parse_duration(raw.get("maxExperimentDuration"), "maxExperimentDuration"),
            max_trial_number=read_int(raw.get("maxTrialNumber"), "maxTrialNumber", minimum=1),
            max_trial_duration=parse_duration(raw.get("maxTrialDuration"), "maxTrialDuration"),
            nni_manager_ip=read_str(raw.get("nniManagerIp"), "nniManagerIp"),
            use_annotation=use_annotation,
            debug=read_bool(raw.get("debug"), "debug", False),
            log_level=log_level,
            experiment_working_directory=read_path(
                raw.get("experimentWorkingDirectory"), "experimentWorkingDirectory", base
            )
            or default_working_directory(),
            tuner_gpu_indices=read_gpu_indices(raw.get("tunerGpuIndices"), "tunerGpuIndices"),
            tuner=tuner,
            assessor=AlgorithmConfig.from_dict(raw.get("assessor"), "assessor", base),
            advisor=advisor,
            training_service=_training_service(raw.get("trainingService"), "trainingService", base),
            store_url=read_str(raw.get("storeUrl"), "storeUrl"),
            lightning_cli=lightning_cli,
        )
        if space_file is not None:
            cfg._space_source = (space_file, space)
        cfg._check(function_trial=function_trial, annotation_space=_annotation_space)
        return cfg

    # --- checking --------------------------------------------------------------------------------------------
    def validate(self, *, function_trial: bool = False) -> ExperimentConfig:
        """Check every field and bring it into canonical form, in place; returns ``self``.

        Values set in Python are read as the YAML keys would be (``max_experiment_duration = '1h'`` becomes
        3600.0 seconds, a dict ``search_space`` a :class:`SearchSpace`, ``search_space_file`` is read, relative
        paths resolve against the working directory), and every error names the camelCase field.

        Args:
            function_trial: the trials are a Python function (no ``trialCommand`` needed).

        Raises:
            ConfigError: naming the field, the value given and how to fix it.
        """
        file_kept = self._file_kept()
        stored = self._generated_space if self._annotation_stored and self.use_annotation else None
        checked = type(self).from_dict(
            self._raw(keep_inline=file_kept), function_trial=function_trial, _annotation_space=stored
        )
        for f in fields(self):
            if f.name != "config_file":
                object.__setattr__(self, f.name, getattr(checked, f.name))
        self._space_source = checked._space_source
        self._generated_space, self._annotation_stored = checked._generated_space, checked._annotation_stored
        if file_kept is not None:
            self.search_space_file = file_kept
            self._space_source = (file_kept, self.search_space)
        return self

    def json(self, *, function_trial: bool = False) -> dict[str, Any]:
        """NNI's ``ExperimentConfig.json()``: the validated config as a camelCase dict (this object is not changed).

        Raises:
            ConfigError: the config is incomplete or invalid (see :meth:`validate`).
        """
        return copy.deepcopy(self).validate(function_trial=function_trial).to_dict()

    def _file_kept(self) -> Path | None:
        """The search-space file whose inline copy is still the search space (so the file is not read again)."""
        source = self._space_source
        file = self.search_space_file
        if source is None or self.search_space is not source[1] or not isinstance(file, (str, os.PathLike)):
            return None
        return source[0] if Path(file).expanduser().resolve() == source[0] else None

    def _raw(self, *, keep_inline: Path | None = None) -> dict[str, Any]:
        """The attributes as a camelCase dict for :meth:`from_dict` (values as they were set)."""

        def path(value: Any) -> Any:
            return str(value) if isinstance(value, os.PathLike) else value

        space = self.search_space
        if isinstance(space, SearchSpace) and not isinstance(space, FreeFormSpace):
            space = space.to_json()  # a free-form space stays one: from_dict keeps it as set
        raw: dict[str, Any] = {
            "experimentName": self.experiment_name,
            "trialCommand": self.trial_command,
            "trialCodeDirectory": path(self.trial_code_directory),
            "trialConcurrency": self.trial_concurrency,
            "trialGpuNumber": self.trial_gpu_number,
            "maxExperimentDuration": self.max_experiment_duration,
            "maxTrialNumber": self.max_trial_number,
            "maxTrialDuration": self.max_trial_duration,
            "nniManagerIp": self.nni_manager_ip,
            "useAnnotation": self.use_annotation,
            "debug": self.debug,
            "logLevel": self.log_level,
            "experimentWorkingDirectory": path(self.experiment_working_directory),
            "tunerGpuIndices": self.tuner_gpu_indices,
            "tuner": _algorithm_raw(self.tuner),
            "assessor": _algorithm_raw(self.assessor),
            "advisor": _algorithm_raw(self.advisor),
            "trainingService": _service_raw(self.training_service),
            "sharedStorage": self.shared_storage,
            "storeUrl": self.store_url,
            "lightningCli": self.lightning_cli,
        }
        if self.use_annotation and (self.search_space is self._generated_space or not space):
            pass  # generated from the annotations again by from_dict (a space set in Python is kept: an error)
        elif self.search_space_file is not None and keep_inline is None:
            raw["searchSpaceFile"] = path(self.search_space_file)  # set in Python: read it now
            if space:
                raw["searchSpace"] = space  # and a space inline too: from_dict asks to pick one
        else:
            raw["searchSpace"] = space
        return {k: v for k, v in raw.items() if v is not None}

    def _check(
        self, *, function_trial: bool = False, annotation_space: SearchSpace | None = None
    ) -> ExperimentConfig:
        """The rules that span several fields (the fields themselves are read by :meth:`from_dict`)."""
        if function_trial and self.use_annotation:
            raise ConfigError(
                "useAnnotation",
                "annotations are read from the files of a trialCommand's code; a Python function trial gets its "
                "parameters from its argument: remove useAnnotation and give a searchSpace",
            )
        if not function_trial and not (self.trial_command and self.trial_command.strip()):
            raise ConfigError(
                "trialCommand", "is required (the command that runs one trial, e.g. 'python train.py')"
            )
        if not isinstance(self.search_space, SearchSpace):
            self.search_space = SearchSpace.parse(self.search_space)
        if not function_trial and not self.trial_code_directory.is_dir():
            raise ConfigError("trialCodeDirectory", f"{str(self.trial_code_directory)!r} is not a folder")
        if self.use_annotation:
            self._annotate(annotation_space)
        if self.advisor is not None and (self.tuner is not None or self.assessor is not None):
            raise ConfigError(
                "advisor",
                "an advisor replaces the tuner and the assessor; remove tuner/assessor or the advisor",
            )
        if self.advisor is None and self.tuner is None:
            # nni-pl's default (NNI's is TPE): GP while results are few, TPE after (nni_pl/hpo/tuners/auto.py)
            self.tuner = AlgorithmConfig(name="Auto", class_args={"optimize_mode": "maximize"})
            logger.info(
                "no tuner configured: using Auto (GP for the first results, then TPE; optimize_mode: maximize)"
            )
        for ts in getattr(self.training_service, "services", [self.training_service]):  # a hybrid's too
            if isinstance(ts, LocalConfig) and self.trial_gpu_number and ts.gpu_indices is not None:
                if len(ts.gpu_indices) < self.trial_gpu_number:
                    raise ConfigError(
                        "trialGpuNumber",
                        f"each trial needs {self.trial_gpu_number} GPUs but gpuIndices lists only {ts.gpu_indices}",
                    )
        if self.store_url is not None and "://" not in self.store_url:
            raise ConfigError(
                "storeUrl",
                f"got {self.store_url!r}; write a database URL such as postgresql://user@127.0.0.1:5432/nni or sqlite:///path/store.sqlite",
            )
        return self

    def _annotate(self, stored: SearchSpace | None) -> None:
        """``useAnnotation``: the search space of the annotations in the trial code (or ``stored``, a resumed
        experiment's); a wrong annotation is a ConfigError naming its file and line."""
        if stored is None:
            from nni_pl.annotation import AnnotationError, generate_search_space

            try:
                stored = generate_search_space(
                    self.trial_code_directory, exclude=[self.experiment_working_directory]
                )
            except AnnotationError as e:
                raise ConfigError("useAnnotation", str(e)) from e
            logger.info(
                "useAnnotation: search space of %d parameters generated from the annotations in %s",
                len(stored),
                self.trial_code_directory,
            )
        else:
            self._annotation_stored = True
        self.search_space = self._generated_space = stored

    @property
    def optimize_mode(self) -> str:
        algo = self.tuner or self.advisor
        mode = (algo.class_args.get("optimize_mode") if algo else None) or "maximize"
        return mode if mode in ("maximize", "minimize") else "maximize"

    # --- writing back ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The v2 camelCase form, absolute paths, search space inline (what the store keeps)."""

        def algo(a: AlgorithmConfig | None) -> Any:
            return a.to_dict() if a else None

        out: dict[str, Any] = {
            "experimentName": self.experiment_name,
            "searchSpaceFile": str(self.search_space_file) if self.search_space_file else None,
            "searchSpace": self.search_space.to_json(),
            "trialCommand": self.trial_command,
            "trialCodeDirectory": str(self.trial_code_directory),
            "trialConcurrency": self.trial_concurrency,
            "trialGpuNumber": self.trial_gpu_number,
            "maxExperimentDuration": format_duration(self.max_experiment_duration),
            "maxTrialNumber": self.max_trial_number,
            "maxTrialDuration": format_duration(self.max_trial_duration),
            "nniManagerIp": self.nni_manager_ip,
            "useAnnotation": True if self.use_annotation else None,
            "debug": self.debug,
            "logLevel": self.log_level,
            "experimentWorkingDirectory": str(self.experiment_working_directory),
            "tunerGpuIndices": self.tuner_gpu_indices,
            "tuner": algo(self.tuner),
            "assessor": algo(self.assessor),
            "advisor": algo(self.advisor),
            "trainingService": self.training_service.to_dict(),
            "storeUrl": self.store_url,
            "lightningCli": self.lightning_cli,
        }
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> ExperimentConfig:
        """Rebuild from :meth:`to_dict` output (paths are already absolute; the space is inline)."""
        data = dict(data)
        for key in ("trialFunction", "trialFunctionImport"):  # the experiment's, not the config's
            data.pop(key, None)
        space_file = data.pop("searchSpaceFile", None)  # the inline copy is the one the experiment ran with
        annotated = None
        if (
            data.get("useAnnotation") is True
        ):  # the space generated when it started: kept, not generated again
            annotated = SearchSpace.parse(data.pop("searchSpace", None) or {})
        cfg = cls.from_dict(
            data, base_dir="/", function_trial=not data.get("trialCommand"), _annotation_space=annotated
        )
        if space_file:
            cfg.search_space_file = Path(space_file)
            cfg._space_source = (cfg.search_space_file, cfg.search_space)
        return cfg

    def replace(self, **changes: Any) -> ExperimentConfig:
        """A copy with some fields changed (snake_case names), not validated."""
        new = copy.copy(self)
        for name, value in changes.items():
            setattr(new, name, value)
        return new


_FIELD_NAMES = frozenset(f.name for f in fields(ExperimentConfig))
