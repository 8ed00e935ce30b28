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

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

from nni_pl.errors import ConfigError, SearchSpaceError, did_you_mean
from nni_pl.space import SearchSpace

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


def default_working_directory() -> Path:
    """Where experiments live unless the config says otherwise: ``$NNI_PL_HOME`` or ``~/nni-pl-experiments``."""
    return Path(os.environ.get("NNI_PL_HOME") or Path.home() / "nni-pl-experiments").expanduser()


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


# --- small typed readers ---------------------------------------------------------------------------------


def _int(value: Any, field: str, *, minimum: int | None = None, optional: bool = True) -> int | None:
    if value is None:
        if optional:
            return None
        raise ConfigError(field, "is required; give a whole number")
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(field, f"got {value!r} ({type(value).__name__}); give a whole number")
    if minimum is not None and value < minimum:
        raise ConfigError(field, f"got {value}; it must be at least {minimum}")
    return value


def _bool(value: Any, field: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(field, f"got {value!r}; write true or false")
    return value


def _str(value: Any, field: str, *, optional: bool = True) -> str | None:
    if value is None:
        if optional:
            return None
        raise ConfigError(field, "is required")
    if not isinstance(value, str):
        raise ConfigError(field, f"got {value!r} ({type(value).__name__}); give a string")
    return value


def _path(value: Any, field: str, base: Path) -> Path | None:
    text = _str(value, field)
    if text is None:
        return None
    path = Path(os.path.expanduser(text))
    return (path if path.is_absolute() else base / path).resolve()


def _gpu_indices(value: Any, field: str) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        items: list[Any] = [value]
    elif isinstance(value, str):
        items = [s.strip() for s in value.split(",") if s.strip()]
    elif isinstance(value, list):
        items = value
    else:
        raise ConfigError(field, f"got {value!r}; give a list of GPU indices such as [0, 1] or '0,1'")
    out = []
    for item in items:
        try:
            idx = int(item)
        except (TypeError, ValueError):
            raise ConfigError(field, f"got {value!r}; {item!r} is not a GPU index") from None
        if idx < 0:
            raise ConfigError(field, f"got {value!r}; GPU indices are >= 0")
        out.append(idx)
    return out


def _check_keys(raw: Mapping[str, Any], known: list[str], prefix: str) -> None:
    for key in raw:
        if key not in known:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(
                where, f"unknown key{did_you_mean(str(key), known)}; valid keys here: {', '.join(known)}"
            )


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
        _check_keys(raw, list(cls.KEYS), field)
        name = _str(raw.get("name"), f"{field}.name")
        class_name = _str(raw.get("className"), f"{field}.className")
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
        code_dir = _path(raw.get("codeDirectory"), f"{field}.codeDirectory", base)
        if class_name and code_dir is None:
            code_dir = base
        return cls(
            name=name,
            class_name=class_name,
            code_directory=code_dir,
            class_args=dict(args),
            include_intermediate_results=_bool(
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


@dataclass
class LocalConfig:
    """``trainingService: {platform: local, ...}``: trials as process groups on this machine."""

    platform: str = "local"
    use_active_gpu: bool = False
    max_trial_number_per_gpu: int = 1
    gpu_indices: list[int] | None = None

    KEYS = ("platform", "useActiveGpu", "maxTrialNumberPerGpu", "gpuIndices", "reuseMode")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], field: str) -> LocalConfig:
        _check_keys(raw, list(cls.KEYS), field)
        return cls(
            use_active_gpu=_bool(raw.get("useActiveGpu"), f"{field}.useActiveGpu", False),
            max_trial_number_per_gpu=_int(
                raw.get("maxTrialNumberPerGpu", 1), f"{field}.maxTrialNumberPerGpu", minimum=1
            )
            or 1,
            gpu_indices=_gpu_indices(raw.get("gpuIndices"), f"{field}.gpuIndices"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "useActiveGpu": self.use_active_gpu,
            "maxTrialNumberPerGpu": self.max_trial_number_per_gpu,
            "gpuIndices": self.gpu_indices,
        }


TRAINING_SERVICES: dict[str, Callable[[Mapping[str, Any], str], Any]] = {"local": LocalConfig.from_dict}
_FUTURE_PLATFORMS = (
    "remote",
    "openpai",
    "pai",
    "kubeflow",
    "frameworkcontroller",
    "aml",
    "dlc",
    "adl",
    "dlts",
)


def _training_service(raw: Any, field: str) -> Any:
    if raw is None:
        return LocalConfig()
    if isinstance(raw, list):
        raise ConfigError(
            field, "hybrid (a list of training services) is not supported yet; use a single {platform: local}"
        )
    if not isinstance(raw, Mapping) or "platform" not in raw:
        raise ConfigError(field, f"got {raw!r}; write {{platform: local}}")
    platform = raw["platform"]
    if platform not in TRAINING_SERVICES:
        if platform in _FUTURE_PLATFORMS:
            raise ConfigError(
                f"{field}.platform",
                f"platform {platform!r} is not available in this version; supported: {', '.join(TRAINING_SERVICES)}",
            )
        raise ConfigError(
            f"{field}.platform",
            f"unknown platform {platform!r}{did_you_mean(str(platform), list(TRAINING_SERVICES))}",
        )
    return TRAINING_SERVICES[platform](raw, field)


# --- NNI v1 -> v2 ------------------------------------------------------------------------------------------

_V1_ONLY = (
    "authorName", "maxExecDuration", "maxTrialNum", "trainingServicePlatform", "searchSpacePath",
    "trial", "localConfig", "logDir", "versionCheck", "multiThread", "logCollection",
)  # fmt: skip
_V1_RENAMES = {
    "maxExecDuration": "maxExperimentDuration",
    "maxTrialNum": "maxTrialNumber",
    "searchSpacePath": "searchSpaceFile",
    "logDir": "experimentWorkingDirectory",
}
_V1_DROPPED = ("authorName", "versionCheck", "multiThread", "logCollection")


def _v1_algorithm(raw: Any, kind: str, notes: list[str]) -> Any:
    if not isinstance(raw, Mapping):
        return raw
    out = dict(raw)
    builtin = f"builtin{kind.capitalize()}Name"
    if builtin in out:
        out["name"] = out.pop(builtin)
        notes.append(f"{kind}.{builtin} -> {kind}.name")
    if "codeDir" in out:
        out["codeDirectory"] = out.pop("codeDir")
        notes.append(f"{kind}.codeDir -> {kind}.codeDirectory")
    if "classFileName" in out:
        module = Path(out.pop("classFileName")).stem
        out["className"] = f"{module}.{out['className']}" if "className" in out else module
        notes.append(f"{kind}.classFileName+className -> {kind}.className")
    if "gpuNum" in out:
        out.pop("gpuNum")
        notes.append(f"{kind}.gpuNum dropped")
    return out


def is_v1(raw: Mapping[str, Any]) -> bool:
    if any(k in raw for k in _V1_ONLY):
        return True
    return any(
        isinstance(raw.get(k), Mapping) and f"builtin{k.capitalize()}Name" in raw[k]
        for k in ("tuner", "assessor", "advisor")
    )


def v1_to_v2(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Map an NNI v1 config to v2 keys; returns the new dict and the list of mappings applied."""
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in raw.items():
        if key in _V1_DROPPED:
            notes.append(f"{key} dropped")
        elif key in _V1_RENAMES:
            out[_V1_RENAMES[key]] = value
            notes.append(f"{key} -> {_V1_RENAMES[key]}")
        elif key == "trainingServicePlatform":
            out.setdefault("trainingService", {})["platform"] = value
            notes.append("trainingServicePlatform -> trainingService.platform")
        elif key == "localConfig":
            ts = out.setdefault("trainingService", {})
            local_keys = {
                "gpuIndices": "gpuIndices",
                "maxTrialNumPerGpu": "maxTrialNumberPerGpu",
                "useActiveGpu": "useActiveGpu",
            }
            if not isinstance(value, Mapping):
                raise ConfigError("localConfig", f"got {value!r}; v1 'localConfig' is a mapping")
            _check_keys(value, list(local_keys), "localConfig")
            for k1, k2 in local_keys.items():
                if k1 in value:
                    ts[k2] = value[k1]
            notes.append("localConfig -> trainingService")
        elif key == "trial":
            if not isinstance(value, Mapping):
                raise ConfigError(
                    "trial", f"got {value!r}; v1 'trial' is a mapping with command, codeDir, gpuNum"
                )
            for k1, k2 in (
                ("command", "trialCommand"),
                ("codeDir", "trialCodeDirectory"),
                ("gpuNum", "trialGpuNumber"),
            ):
                if k1 in value:
                    out[k2] = value[k1]
                    notes.append(f"trial.{k1} -> {k2}")
            extra = [k for k in value if k not in ("command", "codeDir", "gpuNum")]
            if extra:
                raise ConfigError(
                    f"trial.{extra[0]}",
                    "is a v1 key of a platform this version does not support; only command, codeDir and gpuNum map",
                )
        elif key in ("tuner", "assessor", "advisor"):
            if isinstance(value, Mapping) and "gpuIndices" in value:
                # v1 gave each algorithm its own gpuIndices; v2 has one tunerGpuIndices for their shared process
                out["tunerGpuIndices"] = value["gpuIndices"]
                notes.append(f"{key}.gpuIndices -> tunerGpuIndices")
                value = {k: v for k, v in value.items() if k != "gpuIndices"}
            out[key] = _v1_algorithm(value, key, notes)
        else:
            out[key] = value
    return out, notes


# --- the experiment config ------------------------------------------------------------------------------------

_KEYS = [
    "experimentName", "searchSpaceFile", "searchSpace", "trialCommand", "trialCodeDirectory", "trialConcurrency",
    "trialGpuNumber", "maxExperimentDuration", "maxTrialNumber", "maxTrialDuration", "nniManagerIp", "useAnnotation",
    "debug", "logLevel", "experimentWorkingDirectory", "tunerGpuIndices", "tuner", "assessor", "advisor",
    "trainingService", "sharedStorage", "storeUrl", "lightningCli",
]  # fmt: skip


@dataclass
class ExperimentConfig:
    """A validated experiment config. Build it with :meth:`load` (a YAML/JSON file), :meth:`from_dict`,
    or directly with snake_case keywords and call :meth:`validate`.

    Beyond NNI's keys there are two of ours: ``storeUrl`` (a peewee database URL such as
    ``postgresql://user@host/db``; default: SQLite in the experiment folder) and ``lightningCli``
    (``auto``: search-space keys written as LightningCLI paths like ``model.lr`` are appended to the trial
    command as ``--model.lr=...``; ``true``/``false`` force it on/off).
    """

    trial_command: str | None = None
    trial_concurrency: int = 1
    search_space: SearchSpace = field(default_factory=SearchSpace)
    search_space_file: Path | None = None
    experiment_name: str | None = None
    trial_code_directory: Path = field(default_factory=Path.cwd)
    trial_gpu_number: int | None = None
    max_experiment_duration: float | None = None
    max_trial_number: int | None = None
    max_trial_duration: float | None = None
    nni_manager_ip: str | None = None
    debug: bool = False
    log_level: str = "info"
    experiment_working_directory: Path = field(default_factory=default_working_directory)
    tuner_gpu_indices: list[int] | None = None
    tuner: AlgorithmConfig | None = None
    assessor: AlgorithmConfig | None = None
    advisor: AlgorithmConfig | None = None
    training_service: Any = field(default_factory=LocalConfig)
    store_url: str | None = None
    lightning_cli: str | bool = "auto"
    config_file: Path | None = None  # where it was loaded from (not a config key)

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
        except ValueError as e:
            raise ConfigError("", f"config file {str(path)!r} is not valid YAML/JSON: {e}") from e
        cfg = cls.from_dict(raw, base_dir=path.parent)
        cfg.config_file = path
        return cfg

    @classmethod
    def from_dict(
        cls, raw: Any, *, base_dir: str | os.PathLike[str] | None = None, function_trial: bool = False
    ) -> ExperimentConfig:
        """Validate a config dict (v2 camelCase keys; v1 keys are mapped with a one-line notice)."""
        if not isinstance(raw, Mapping):
            raise ConfigError("", f"an experiment config must be a mapping of keys, got {type(raw).__name__}")
        base = Path(base_dir).resolve() if base_dir is not None else Path.cwd()
        if is_v1(raw):
            raw, notes = v1_to_v2(raw)
            if notes:
                logger.warning("NNI v1 config keys mapped to v2: %s", "; ".join(notes))
        _check_keys(raw, _KEYS, "")

        if _bool(raw.get("useAnnotation"), "useAnnotation", False):
            raise ConfigError(
                "useAnnotation",
                "NNI annotations are not supported; call nni_pl.get_next_parameter() in the trial and give a searchSpace",
            )
        if raw.get("sharedStorage") is not None:
            raise ConfigError(
                "sharedStorage",
                "shared storage is only for remote platforms, which this version does not support; remove it",
            )
        if raw.get("searchSpace") is not None and raw.get("searchSpaceFile") is not None:
            raise ConfigError("searchSpace", "give either searchSpace (inline) or searchSpaceFile, not both")

        space_file = _path(raw.get("searchSpaceFile"), "searchSpaceFile", base)
        try:
            if space_file is not None:
                space = SearchSpace.load(space_file)
            else:
                space = SearchSpace.parse(raw.get("searchSpace") or {})
        except SearchSpaceError as e:
            raise ConfigError("searchSpaceFile" if space_file else "searchSpace", str(e)) from e

        log_level = _str(raw.get("logLevel"), "logLevel") or ("debug" if raw.get("debug") else "info")
        if log_level not in LOG_LEVELS:
            raise ConfigError(
                "logLevel",
                f"got {log_level!r}{did_you_mean(log_level, LOG_LEVELS)}; use one of {', '.join(LOG_LEVELS)}",
            )

        lightning_cli = raw.get("lightningCli", "auto")
        if lightning_cli not in ("auto", True, False):
            raise ConfigError("lightningCli", f"got {lightning_cli!r}; use auto, true or false")

        cfg = cls(
            experiment_name=_str(raw.get("experimentName"), "experimentName"),
            search_space=space,
            search_space_file=space_file,
            trial_command=_str(raw.get("trialCommand"), "trialCommand"),
            trial_code_directory=_path(raw.get("trialCodeDirectory"), "trialCodeDirectory", base) or base,
            trial_concurrency=_int(raw.get("trialConcurrency"), "trialConcurrency", minimum=1, optional=False)
            or 1,
            trial_gpu_number=_int(raw.get("trialGpuNumber"), "trialGpuNumber", minimum=0),
            max_experiment_duration=parse_duration(raw.get("maxExperimentDuration"), "maxExperimentDuration"),
            max_trial_number=_int(raw.get("maxTrialNumber"), "maxTrialNumber", minimum=1),
            max_trial_duration=parse_duration(raw.get("maxTrialDuration"), "maxTrialDuration"),
            nni_manager_ip=_str(raw.get("nniManagerIp"), "nniManagerIp"),
            debug=_bool(raw.get("debug"), "debug", False),
            log_level=log_level,
            experiment_working_directory=_path(
                raw.get("experimentWorkingDirectory"), "experimentWorkingDirectory", base
            )
            or default_working_directory(),
            tuner_gpu_indices=_gpu_indices(raw.get("tunerGpuIndices"), "tunerGpuIndices"),
            tuner=AlgorithmConfig.from_dict(raw.get("tuner"), "tuner", base),
            assessor=AlgorithmConfig.from_dict(raw.get("assessor"), "assessor", base),
            advisor=AlgorithmConfig.from_dict(raw.get("advisor"), "advisor", base),
            training_service=_training_service(raw.get("trainingService"), "trainingService"),
            store_url=_str(raw.get("storeUrl"), "storeUrl"),
            lightning_cli=lightning_cli,
        )
        cfg.validate(function_trial=function_trial)
        return cfg

    # --- cross-field rules ---------------------------------------------------------------------------------
    def validate(self, *, function_trial: bool = False) -> ExperimentConfig:
        """Check the rules that span several fields; returns ``self``."""
        if not function_trial and not (self.trial_command and self.trial_command.strip()):
            raise ConfigError(
                "trialCommand", "is required (the command that runs one trial, e.g. 'python train.py')"
            )
        if not isinstance(self.search_space, SearchSpace):
            self.search_space = SearchSpace.parse(self.search_space)
        if not function_trial and not self.trial_code_directory.is_dir():
            raise ConfigError("trialCodeDirectory", f"{str(self.trial_code_directory)!r} is not a folder")
        if self.advisor is not None and (self.tuner is not None or self.assessor is not None):
            raise ConfigError(
                "advisor",
                "an advisor replaces the tuner and the assessor; remove tuner/assessor or the advisor",
            )
        if self.advisor is None and self.tuner is None:
            self.tuner = AlgorithmConfig(name="TPE", class_args={"optimize_mode": "maximize"})
            logger.info("no tuner configured: using TPE (optimize_mode: maximize)")
        ts = self.training_service
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
        space_file = data.pop("searchSpaceFile", None)  # the inline copy is the one the experiment ran with
        cfg = cls.from_dict(data, base_dir="/", function_trial=not data.get("trialCommand"))
        cfg.search_space_file = Path(space_file) if space_file else None
        return cfg

    def replace(self, **changes: Any) -> ExperimentConfig:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return type(self)(**values)
