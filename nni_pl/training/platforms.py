"""Training platforms: which service runs an experiment's trials, chosen by ``trainingService``.

A *platform* is a config section (the ``trainingService`` mapping of the experiment YAML, parsed by the
section class's ``from_dict``) plus a factory that builds the :class:`~nni_pl.training.service.TrainingService`
from that section and the experiment's :class:`ServiceSpec`. The experiment engine only calls
:func:`parse_section`, :func:`blank_section` and :func:`create_service`; it knows no platform by name.

Built in: ``local`` (:class:`~nni_pl.training.local.LocalTrainingService`) and ``remote`` (SSH hosts: the section
is :class:`~nni_pl.training.remote_config.RemoteConfig`, the service ``nni_pl.training.remote``, which needs the
``remote`` extra and is imported only when a remote service is built). A new platform is one module in
``nni_pl/training/`` with its section class and service, and one line in :data:`PLATFORMS`.

*Hybrid* (NNI's list form, ``trainingService: [{platform: remote, ...}, {platform: local}]``) runs trials on
several platforms at once: the list is a :class:`HybridConfig` whose service is
``nni_pl.training.hybrid.HybridTrainingService``. A list of one platform is that platform.

A service that is not a platform of its own (NAS's cross-graph optimisation, a user's service) is named by
class, as a custom tuner is: ``trainingService: {className: package.module:Class, classArgs: {...}}``.
The class builds itself with ``Class.from_spec(spec, **classArgs)``.

A section class may also have ``secret_environment()`` (the environment a detached manager needs to read its
secrets back, see :mod:`nni_pl.training.remote_config`), ``preflight()`` (checks of this machine's state run
before an experiment starts) and ``to_dict(secrets=True)`` (literal secrets kept, for re-reading in memory).

Example:
    >>> section = parse_section({"platform": "local", "maxTrialNumberPerGpu": 2}, "trainingService")
    >>> section.max_trial_number_per_gpu
    2
    >>> parse_section([{"platform": "local"}, {"className": "mypkg.svc:Service"}], "trainingService").platforms
    ['local', 'custom']
    >>> parse_section({"platform": "kubeflow"}, "trainingService")
    Traceback (most recent call last):
    ...
    nni_pl.errors.ConfigError: config field 'trainingService.platform': platform 'kubeflow' is not available in this version; supported: local, remote, or a custom service as {className: package.module:Class}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nni_pl._config_readers import check_keys, read_path, read_str
from nni_pl.errors import ConfigError, did_you_mean
from nni_pl.training.local import LocalConfig, LocalTrainingService
from nni_pl.training.service import TrainingService

__all__ = [
    "PLATFORMS",
    "UNAVAILABLE_PLATFORMS",
    "CustomServiceConfig",
    "Platform",
    "ServiceSpec",
    "create_service",
    "parse_section",
]


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    """What a training service needs to know of the experiment whose trials it runs.

    Example:
        >>> spec = ServiceSpec(section=LocalConfig(), trial_command="python train.py",
        ...                    trial_code_directory=Path("."), experiment_directory=Path("exp"))
        >>> spec.trial_concurrency
        1
    """

    section: Any  # the parsed trainingService section (LocalConfig, CustomServiceConfig, ...)
    trial_command: str | None
    trial_code_directory: Path
    experiment_directory: Path
    trial_concurrency: int = 1
    trial_gpu_number: int | None = None
    lightning_cli: str | bool = "auto"  # append LightningCLI-path parameters to the command (local trials)


@dataclass(frozen=True)
class Platform:
    """A training platform: its config section class and how to build its service."""

    name: str
    section: type
    build: Callable[[ServiceSpec], TrainingService]


PLATFORMS: dict[str, Platform] = {
    "local": Platform("local", LocalConfig, LocalTrainingService.from_spec),
}
# NNI 2.5's other platforms: named, so that a config using one gets "not available" rather than "unknown"
UNAVAILABLE_PLATFORMS = (
    "remote", "openpai", "pai", "kubeflow", "frameworkcontroller", "aml", "dlc", "adl", "dlts",
)  # fmt: skip


@dataclass
class CustomServiceConfig:
    """``trainingService: {className: ..., classArgs: {...}, codeDirectory: ...}``: a service named by class.

    Example:
        >>> CustomServiceConfig.from_dict({"className": "mypkg.svc:Service", "classArgs": {"n": 2}},
        ...                               "trainingService").to_dict()
        {'className': 'mypkg.svc:Service', 'classArgs': {'n': 2}}
    """

    class_name: str
    class_args: dict[str, Any] = field(default_factory=dict)
    code_directory: Path | None = None
    platform: str = "custom"

    KEYS = ("className", "classArgs", "codeDirectory")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], field: str, base: Path | None = None) -> CustomServiceConfig:
        check_keys(raw, list(cls.KEYS), field)
        class_name = read_str(raw.get("className"), f"{field}.className", optional=False)
        args = raw.get("classArgs") or {}
        if not isinstance(args, Mapping):
            raise ConfigError(f"{field}.classArgs", f"got {args!r}; write a mapping of argument: value")
        code_dir = read_path(raw.get("codeDirectory"), f"{field}.codeDirectory", base or Path.cwd())
        return cls(class_name=str(class_name), class_args=dict(args), code_directory=code_dir)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"className": self.class_name, "classArgs": dict(self.class_args)}
        if self.code_directory is not None:
            out["codeDirectory"] = str(self.code_directory)
        return out

    def build(self, spec: ServiceSpec) -> TrainingService:
        from nni_pl._imports import import_object

        cls = import_object(
            self.class_name, "trainingService.className", code_directory=self.code_directory, what="class"
        )
        from_spec = getattr(cls, "from_spec", None)
        if not callable(from_spec):
            raise ConfigError(
                "trainingService.className",
                f"{self.class_name} has no from_spec(spec, **classArgs) classmethod; a training service named "
                "by class builds itself from the experiment's ServiceSpec",
            )
        try:
            service = from_spec(spec, **self.class_args)
        except TypeError as e:
            raise ConfigError("trainingService.classArgs", f"{self.class_name}.from_spec: {e}") from e
        if not isinstance(service, TrainingService):
            raise ConfigError(
                "trainingService.className",
                f"{self.class_name}.from_spec returned {type(service).__name__}, not a TrainingService",
            )
        return service


def parse_section(raw: Any, field: str, base: Path | None = None) -> Any:
    """The ``trainingService`` section of a config: a platform's section object (``None`` means local)."""
    if raw is None:
        return LocalConfig()
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]  # a "hybrid" of one platform is that platform
    if isinstance(raw, list):
        raise ConfigError(
            field, "hybrid (a list of training services) is not supported yet; use a single {platform: local}"
        )
    if isinstance(raw, Mapping) and "className" in raw and "platform" not in raw:
        return CustomServiceConfig.from_dict(raw, field, base)
    if not isinstance(raw, Mapping) or "platform" not in raw:
        raise ConfigError(field, f"got {raw!r}; write {{platform: local}}")
    name = raw["platform"]
    platform = PLATFORMS.get(name) if isinstance(name, str) else None
    if platform is None:
        supported = f"{', '.join(PLATFORMS)}, or a custom service as {{className: package.module:Class}}"
        if name in UNAVAILABLE_PLATFORMS:
            raise ConfigError(
                f"{field}.platform",
                f"platform {name!r} is not available in this version; supported: {supported}",
            )
        raise ConfigError(
            f"{field}.platform",
            f"unknown platform {name!r}{did_you_mean(str(name), list(PLATFORMS))}; supported: {supported}",
        )
    return platform.section.from_dict(raw, field)


def create_service(spec: ServiceSpec) -> TrainingService:
    """Build the training service of ``spec.section`` (the experiment's ``trainingService``)."""
    section = spec.section
    if isinstance(section, CustomServiceConfig):
        return section.build(spec)
    platform = PLATFORMS.get(getattr(section, "platform", "local"))
    if platform is None:
        raise ConfigError("trainingService.platform", f"no training platform {section!r}")
    return platform.build(spec)
