"""Training platforms: which service runs an experiment's trials, chosen by ``trainingService``.

A *platform* is a config section (the ``trainingService`` mapping of the experiment YAML, parsed by the
section class's ``from_dict``) plus a factory that builds the :class:`~nni_pl.training.service.TrainingService`
from that section and the experiment's :class:`ServiceSpec`. The experiment engine only calls
:func:`parse_section`, :func:`blank_section` and :func:`create_service`; it knows no platform by name.

Built in: ``local`` (:class:`~nni_pl.training.local.LocalTrainingService`), ``remote`` (SSH hosts: the section
is :class:`~nni_pl.training.remote_config.RemoteConfig`, the service ``nni_pl.training.remote``), ``ray``
(:mod:`~nni_pl.training.ray_config`, service ``nni_pl.training.ray_service``), ``kubeflow``
(:mod:`~nni_pl.training.kubeflow_config`, ``nni_pl.training.kubeflow``) and ``aml``
(:mod:`~nni_pl.training.aml_config`, ``nni_pl.training.aml``). Each service but the local one needs the extra of
its name and is imported only when it is built; its section module imports no client library. A new platform is
a section module and a service module in ``nni_pl/training/``, and one line in :data:`PLATFORMS`.

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
    >>> parse_section({"platform": "openpai"}, "trainingService")
    Traceback (most recent call last):
    ...
    nni_pl.errors.ConfigError: config field 'trainingService.platform': platform 'openpai' is not available in this version; supported: local, ..., or a custom service as {className: package.module:Class}
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nni_pl._config_readers import check_keys, read_path, read_str
from nni_pl.errors import ConfigError, MissingDependencyError, did_you_mean
from nni_pl.training.local import LocalConfig, LocalTrainingService
from nni_pl.training.service import TrainingService

__all__ = [
    "PLATFORMS",
    "UNAVAILABLE_PLATFORMS",
    "CustomServiceConfig",
    "HybridConfig",
    "Platform",
    "ServiceSpec",
    "blank_section",
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
    #: a function trial by import path (``"package.module:function"``), for services that run it where the
    #: function is importable (remote hosts); ``None`` for command trials
    trial_function: str | None = None
    #: the experiment is being resumed: a service may wait for hosts that do not answer instead of failing
    resumed: bool = False
    #: the experiment's id (services that prepare folders elsewhere name them by it)
    experiment_id: str | None = None
    #: the experiment's ``storeUrl`` when it names a shared database (``None``: the embedded SQLite file);
    #: services whose trials cannot write to the manager's file system may relay metrics through it
    store_url: str | None = None


@dataclass(frozen=True)
class Platform:
    """A training platform: its config section class and how to build its service.

    ``section``: the class, or where to import it from (``"package.module:Class"``), so that a config naming
    one platform imports no other platform's section module. ``section_takes_base``: the section's
    ``from_dict(raw, field, base)`` takes the folder relative paths in it resolve against (the config file's).

    Example:
        >>> PLATFORMS["ray"].section_class().__name__
        'RayConfig'
    """

    name: str
    section: type | str
    build: Callable[[ServiceSpec], TrainingService]
    section_takes_base: bool = False

    def section_class(self) -> type:
        if isinstance(self.section, type):
            return self.section
        module, _, name = self.section.partition(":")
        cls: type = getattr(importlib.import_module(module), name)
        return cls


def _lazy(service: str, extra: str, clients: tuple[str, ...]) -> Callable[[ServiceSpec], TrainingService]:
    """A platform's build function that imports its client libraries (the extra ``extra``) and its service
    (``module:Class``) only when a service is built, so that reading a config needs neither."""

    def build(spec: ServiceSpec) -> TrainingService:
        module, _, name = service.partition(":")
        try:
            for client in clients:
                importlib.import_module(client)
            cls = getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] == "nni_pl":
                raise
            raise MissingDependencyError(e.name or clients[0], extra, f"platform {extra!r}") from e
        return cls.from_spec(spec)

    return build


PLATFORMS: dict[str, Platform] = {
    "local": Platform("local", LocalConfig, LocalTrainingService.from_spec),
    "remote": Platform(
        "remote",
        "nni_pl.training.remote_config:RemoteConfig",
        _lazy("nni_pl.training.remote:RemoteTrainingService", "remote", ("paramiko",)),
        section_takes_base=True,
    ),
    "ray": Platform(
        "ray",
        "nni_pl.training.ray_config:RayConfig",
        _lazy("nni_pl.training.ray_service:RayTrainingService", "ray", ("ray",)),
    ),
    "kubeflow": Platform(
        "kubeflow",
        "nni_pl.training.kubeflow_config:KubeflowConfig",
        _lazy("nni_pl.training.kubeflow:KubeflowTrainingService", "kubeflow", ("kubernetes",)),
        section_takes_base=True,
    ),
    "aml": Platform(
        "aml",
        "nni_pl.training.aml_config:AmlConfig",
        _lazy("nni_pl.training.aml:AmlTrainingService", "aml", ("azure.ai.ml", "azure.identity")),
    ),
}
# NNI 2.5's other platforms: named, so that a config using one gets "not available" rather than "unknown"
UNAVAILABLE_PLATFORMS = (
    "openpai", "pai", "frameworkcontroller", "dlc", "adl", "dlts",
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


@dataclass
class HybridConfig:
    """``trainingService: [{platform: ...}, {platform: ...}]``: trials run on several platforms at once.

    :meth:`to_dict` gives the list back (NNI's form). It reads like NNI's list of sections:
    ``config.training_service[0].machine_list``.

    Example:
        >>> hybrid = parse_section([{"platform": "local"}, {"className": "a.b:C"}], "trainingService")
        >>> len(hybrid), hybrid[0].platform, hybrid.to_dict()[1]
        (2, 'local', {'className': 'a.b:C', 'classArgs': {}})
    """

    services: list[Any] = field(default_factory=list)
    platform: str = "hybrid"

    config_field = "trainingService"  # where the list is in the config (set when read; not a field)

    @classmethod
    def from_list(cls, raw: list[Any], field: str, base: Path | None = None) -> HybridConfig:
        services = []
        seen: dict[str, int] = {}
        for i, item in enumerate(raw):
            where = f"{field}[{i}]"
            if isinstance(item, list):
                raise ConfigError(
                    where, f"got a list {item!r} inside the list; each entry is one {{platform: ...}}"
                )
            section = parse_section(item, where, base)
            name = getattr(section, "platform", None)
            if name in seen and name != "custom":
                hint = "put all hosts in one machineList" if name == "remote" else "keep one"
                raise ConfigError(
                    where, f"platform {name!r} is listed twice, as {field}[{seen[name]}] and {where}; {hint}"
                )
            seen[str(name)] = i
            services.append(section)
        hybrid = cls(services=services)
        hybrid.config_field = field
        return hybrid

    @property
    def platforms(self) -> list[str]:
        return [str(getattr(s, "platform", "?")) for s in self.services]

    def __len__(self) -> int:
        return len(self.services)

    def __getitem__(self, index: int) -> Any:
        return self.services[index]

    def __iter__(self) -> Any:
        return iter(self.services)

    def to_dict(self, *, secrets: bool = False) -> list[Any]:
        """The list of the sections' dicts (secrets masked unless ``secrets``, as each section does)."""
        self._number()
        return [_section_dict(s, secrets=secrets) for s in self.services]

    def secret_environment(self) -> dict[str, str]:
        """The sections' :meth:`~nni_pl.training.remote_config.RemoteConfig.secret_environment`, merged."""
        self._number()
        env: dict[str, str] = {}
        for section in self.services:
            if callable(getattr(section, "secret_environment", None)):
                env.update(section.secret_environment())
        return env

    def preflight(self) -> None:
        """Each section's ``preflight()``."""
        self._number()
        for section in self.services:
            if callable(getattr(section, "preflight", None)):
                section.preflight()

    def _number(self) -> None:
        for i, section in enumerate(self.services):
            if hasattr(section, "config_field"):
                section.config_field = f"{self.config_field}[{i}]"


def _section_dict(section: Any, *, secrets: bool) -> Any:
    if not hasattr(section, "to_dict"):
        return section
    return (
        section.to_dict(secrets=True)
        if secrets and hasattr(section, "secret_environment")
        else section.to_dict()
    )


def _platform(name: Any, field: str) -> Platform:
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
    return platform


def parse_section(raw: Any, field: str, base: Path | None = None) -> Any:
    """The ``trainingService`` section of a config: a platform's section object (``None`` means local), or a
    :class:`HybridConfig` for a list of more than one."""
    if raw is None:
        return LocalConfig()
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(
                field, "got an empty list; write {platform: local}, or list the platforms to use"
            )
        if len(raw) > 1:
            return HybridConfig.from_list(raw, field, base)
        if isinstance(raw[0], list):
            raise ConfigError(
                f"{field}[0]", f"got a list {raw[0]!r} inside the list; write {{platform: ...}}"
            )
        raw = raw[0]  # a "hybrid" of one platform is that platform
    if isinstance(raw, Mapping) and "className" in raw and "platform" not in raw:
        return CustomServiceConfig.from_dict(raw, field, base)
    if not isinstance(raw, Mapping) or "platform" not in raw:
        raise ConfigError(field, f"got {raw!r}; write {{platform: local}}")
    platform = _platform(raw["platform"], field)
    if platform.section_takes_base:
        return platform.section_class().from_dict(raw, field, base)  # type: ignore[attr-defined]
    return platform.section_class().from_dict(raw, field)  # type: ignore[attr-defined]


def blank_section(platform: str | list[str] | tuple[str, ...], field: str = "trainingService") -> Any:
    """The section of ``ExperimentConfig('remote')`` (or of a list of platforms): the platform's defaults, to be
    filled in Python and checked with the rest of the config (a remote ``machine_list`` starts empty).

    Example:
        >>> blank_section("remote").machine_list
        []
        >>> blank_section(["remote", "local"]).platforms
        ['remote', 'local']
    """
    if isinstance(platform, (list, tuple)):
        if len(platform) == 1:
            return blank_section(platform[0], field)
        if not platform:
            raise ConfigError(
                field, "got an empty list; name the training platform, e.g. ExperimentConfig('local')"
            )
        hybrid = HybridConfig(services=[blank_section(p, f"{field}[{i}]") for i, p in enumerate(platform)])
        if len(set(hybrid.platforms)) < len(hybrid.platforms):
            raise ConfigError(field, f"got {list(platform)!r}; name each platform once")
        return hybrid
    if not isinstance(platform, str):
        raise ConfigError(
            field, f"got {platform!r}; name the training platform, e.g. ExperimentConfig('local')"
        )
    return _platform(platform, field).section_class()()


def create_service(spec: ServiceSpec) -> TrainingService:
    """Build the training service of ``spec.section`` (the experiment's ``trainingService``)."""
    section = spec.section
    if isinstance(section, CustomServiceConfig):
        return section.build(spec)
    if isinstance(section, HybridConfig):
        from nni_pl.training.hybrid import HybridTrainingService

        return HybridTrainingService.from_spec(spec)
    platform = PLATFORMS.get(getattr(section, "platform", "local"))
    if platform is None:
        raise ConfigError("trainingService.platform", f"no training platform {section!r}")
    return platform.build(spec)
