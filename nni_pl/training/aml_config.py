"""``trainingService: {platform: aml, ...}``: the config of trials run as Azure Machine Learning jobs.

This module holds only the config (NNI 2.5's ``AmlConfig``, docs L3259-3356, L16386-16428); the service that
reads it is :mod:`nni_pl.training.aml`. It imports nothing from Azure.

NNI's keys: ``subscriptionId``, ``resourceGroup``, ``workspaceName`` (all three are in the ``config.json`` the
workspace's portal page offers), ``computeTarget`` (the AML compute cluster's name), ``dockerImage``,
``maxTrialNumberPerGpu`` and ``useActiveGpu``. Each trial is one AML command job on ``computeTarget`` and AML
gives it whole nodes, so the last two change nothing; they are accepted so that NNI configs read unchanged.

Where nni-pl differs from NNI:

* ``dockerImage`` has no default: NNI's ``msranni/nni`` does not have nni-pl, and the job runs
  ``python -m nni_pl.training.job_runner`` in the image. Give an image with nni-pl installed, or instead
  ``environment``: a registered AML environment (``name:version`` or ``name@latest``) that has nni-pl.
* ``experimentName`` (nni-pl's key): the AML experiment the jobs are filed under in the studio (default
  ``nni-pl-<experiment id>``).
* ``python`` (nni-pl's key, default ``python``): the Python command in the image.
* ``reuseMode`` (NNI's AML always reused one job for many trials): only ``false`` is supported yet; every trial
  is its own job.
* ``passStorePassword`` (nni-pl's key, default ``false``): trials send their metrics to the experiment's
  ``storeUrl`` database (see :mod:`nni_pl.training.aml`). A job's environment is readable by everyone with
  access to the workspace, so a ``storeUrl`` with a password is refused unless this is ``true``.

Nothing secret is in this section: the service logs in with ``DefaultAzureCredential`` (``az login``, a managed
identity, or the ``AZURE_*`` variables of a service principal), which is never stored.

Example:
    >>> section = AmlConfig.from_dict({
    ...     "platform": "aml", "dockerImage": "myregistry.azurecr.io/nni-pl:1",
    ...     "subscriptionId": "9b1d4a4e-2f3c-4a57-9d2e-1c0f5e8b7a61", "resourceGroup": "ml-rg",
    ...     "workspaceName": "ml-ws", "computeTarget": "gpu-cluster",
    ... }, "trainingService")
    >>> section.compute_target, section.to_dict()["dockerImage"]
    ('gpu-cluster', 'myregistry.azurecr.io/nni-pl:1')
    >>> AmlConfig.from_dict({"platform": "aml", "subscriptionId": "${your subscription ID}"}, "trainingService")
    Traceback (most recent call last):
    ...
    nni_pl.errors.ConfigError: config field 'trainingService.subscriptionId': got '${your subscription ID}', which is not a subscription id; copy "subscription_id" from the workspace's config.json (a GUID such as 9b1d4a4e-2f3c-4a57-9d2e-1c0f5e8b7a61)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from nni_pl._config_readers import check_keys, read_bool, read_int, read_str
from nni_pl.errors import ConfigError

__all__ = ["AmlConfig"]

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# AML's rules: resource group 1-90 of letters, digits, _-.() not ending in '.'; workspace 3-33 of letters, digits,
# _- starting with a letter or digit; compute 2-16 of letters, digits, - starting with a letter; an environment
# or experiment name of letters, digits, _-. (environments may also carry a version)
_RESOURCE_GROUP = re.compile(r"[\w\-.()]{1,89}[\w\-()]")
_WORKSPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{2,32}")
_COMPUTE = re.compile(r"[A-Za-z][A-Za-z0-9\-]{1,15}")
_ENVIRONMENT = re.compile(r"(azureml:)?[A-Za-z0-9_][A-Za-z0-9_\-.]{0,254}([:@][A-Za-z0-9_\-.]+)?")
_EXPERIMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-.]{0,254}")
_IMAGE = re.compile(r"[a-z0-9][^\s]*")


def _named(raw: Mapping[str, Any], key: str, field: str, pattern: re.Pattern[str], hint: str) -> str:
    value = read_str(raw.get(key), f"{field}.{key}", optional=False) or ""
    if not pattern.fullmatch(value):
        raise ConfigError(f"{field}.{key}", f"got {value!r}; {hint}")
    return value


@dataclass(kw_only=True)
class AmlConfig:
    """``trainingService: {platform: aml, ...}``: each trial an Azure ML command job (module docstring).

    ``ExperimentConfig('aml')`` starts blank, to be filled in Python as in NNI
    (``config.training_service.subscription_id = ...``); :meth:`check` (run when the config is) says what is missing.

    Example:
        >>> section = AmlConfig(subscription_id="9b1d4a4e-2f3c-4a57-9d2e-1c0f5e8b7a61", resource_group="rg",
        ...                     workspace_name="ws", compute_target="cpu", environment="nni-pl-env@latest")
        >>> section.check().environment_reference
        'azureml:nni-pl-env@latest'
    """

    platform: str = "aml"
    #: trials run elsewhere: the experiment builds the service (logs in, finds the workspace and compute) first
    reaches_hosts: ClassVar[bool] = True
    subscription_id: str = ""
    resource_group: str = ""
    workspace_name: str = ""
    compute_target: str = ""
    docker_image: str | None = None
    environment: str | None = None
    experiment_name: str | None = None
    python: str = "python"
    max_trial_number_per_gpu: int = 1
    use_active_gpu: bool = False
    reuse_mode: bool = False
    pass_store_password: bool = False

    KEYS = (
        "platform", "subscriptionId", "resourceGroup", "workspaceName", "computeTarget", "dockerImage",
        "environment", "experimentName", "python", "maxTrialNumberPerGpu", "useActiveGpu", "reuseMode",
        "passStorePassword",
    )  # fmt: skip
    config_field = "trainingService"  # where this section is in the config (set when read; not a field)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], field: str) -> AmlConfig:
        """Read the section; every error names its field."""
        check_keys(raw, list(cls.KEYS), field)
        sub = read_str(raw.get("subscriptionId"), f"{field}.subscriptionId", optional=False) or ""
        if not _GUID.fullmatch(sub):
            raise ConfigError(
                f"{field}.subscriptionId",
                f'got {sub!r}, which is not a subscription id; copy "subscription_id" from the workspace\'s '
                "config.json (a GUID such as 9b1d4a4e-2f3c-4a57-9d2e-1c0f5e8b7a61)",
            )
        group = _named(
            raw, "resourceGroup", field, _RESOURCE_GROUP,
            "copy \"resource_group\" from the workspace's config.json (letters, digits, _-.() up to 90)",
        )  # fmt: skip
        workspace = _named(
            raw, "workspaceName", field, _WORKSPACE,
            "copy \"workspace_name\" from the workspace's config.json (3-33 letters, digits, _ and -)",
        )  # fmt: skip
        compute = _named(
            raw, "computeTarget", field, _COMPUTE,
            "give the name of a compute cluster of the workspace (2-16 letters, digits and -, starting with a "
            "letter; `az ml compute list` shows them)",
        )  # fmt: skip
        image = read_str(raw.get("dockerImage"), f"{field}.dockerImage")
        env = read_str(raw.get("environment"), f"{field}.environment")
        name = read_str(raw.get("experimentName"), f"{field}.experimentName")
        python = read_str(raw.get("python"), f"{field}.python")
        section = cls(
            subscription_id=sub,
            resource_group=group,
            workspace_name=workspace,
            compute_target=compute,
            docker_image=image,
            environment=env,
            experiment_name=name,
            python=python if python is not None else "python",
            max_trial_number_per_gpu=read_int(
                raw.get("maxTrialNumberPerGpu", 1), f"{field}.maxTrialNumberPerGpu", minimum=1
            )
            or 1,
            use_active_gpu=read_bool(raw.get("useActiveGpu"), f"{field}.useActiveGpu", False),
            reuse_mode=read_bool(raw.get("reuseMode"), f"{field}.reuseMode", False),
            pass_store_password=read_bool(raw.get("passStorePassword"), f"{field}.passStorePassword", False),
        )
        section.config_field = field
        return section.check()

    def check(self) -> AmlConfig:
        """The checks that need more than one key (also for a section built in Python); returns ``self``.

        Raises:
            ConfigError: naming the field and how to fix it.
        """
        f = self.config_field
        for key, attr in (
            ("subscriptionId", "subscription_id"),
            ("resourceGroup", "resource_group"),
            ("workspaceName", "workspace_name"),
            ("computeTarget", "compute_target"),
        ):
            if not getattr(self, attr):
                raise ConfigError(
                    f"{f}.{key}", "is required; the workspace's config.json in the Azure portal has it"
                    if key != "computeTarget" else "is required; give the name of a compute cluster of the workspace",
                )  # fmt: skip
        if self.reuse_mode:
            raise ConfigError(
                f"{f}.reuseMode",
                "got true, but reuseMode is not supported on aml yet (each trial is its own AML job); "
                "remove it or set reuseMode: false",
            )
        if self.docker_image is not None and self.environment is not None:
            raise ConfigError(
                f"{f}.environment",
                f"given together with dockerImage {self.docker_image!r}; keep one: dockerImage (an image with "
                "nni-pl installed) or environment (a registered AML environment that has nni-pl)",
            )
        if self.docker_image is None and self.environment is None:
            raise ConfigError(
                f"{f}.dockerImage",
                "is required: the job runs `python -m nni_pl.training.job_runner` in it, so give an image with "
                "nni-pl installed (NNI's msranni/nni has none), or environment: <a registered AML environment "
                "name:version or name@latest>",
            )
        if self.docker_image is not None and not _IMAGE.fullmatch(self.docker_image):
            raise ConfigError(
                f"{f}.dockerImage",
                f"got {self.docker_image!r}; give an image reference such as myregistry.azurecr.io/nni-pl:1.0",
            )
        if self.environment is not None and not _ENVIRONMENT.fullmatch(self.environment):
            raise ConfigError(
                f"{f}.environment",
                f"got {self.environment!r}; give a registered AML environment as name:version or name@latest",
            )
        if self.experiment_name is not None and not _EXPERIMENT.fullmatch(self.experiment_name):
            raise ConfigError(
                f"{f}.experimentName",
                f"got {self.experiment_name!r}; an AML experiment name is letters, digits, _, - and . "
                "(up to 255), starting with a letter, digit or _",
            )
        if not self.python.strip() or any(c.isspace() for c in self.python):
            raise ConfigError(
                f"{f}.python", f"got {self.python!r}; give the Python command of the image, e.g. python3"
            )
        return self

    @property
    def environment_reference(self) -> str | None:
        """``environment`` as AML names an asset (``azureml:name:version``); ``None`` with ``dockerImage``."""
        if self.environment is None:
            return None
        return self.environment if self.environment.startswith("azureml:") else f"azureml:{self.environment}"

    def to_dict(self) -> dict[str, Any]:
        """The camelCase form (what the store and the experiment's ``config.yml`` keep; nothing in it is secret)."""
        return {
            "platform": self.platform,
            "subscriptionId": self.subscription_id,
            "resourceGroup": self.resource_group,
            "workspaceName": self.workspace_name,
            "computeTarget": self.compute_target,
            "dockerImage": self.docker_image,
            "environment": self.environment,
            "experimentName": self.experiment_name,
            "python": self.python,
            "maxTrialNumberPerGpu": self.max_trial_number_per_gpu,
            "useActiveGpu": self.use_active_gpu,
            "reuseMode": self.reuse_mode,
            "passStorePassword": self.pass_store_password,
        }

    def preflight(self) -> None:
        """Checked before an experiment starts: the section is complete (one built in Python, too).

        What needs Azure (login, workspace, compute) is checked when the service is built, which the experiment
        does before it creates anything (``reaches_hosts``).
        """
        self.check()
