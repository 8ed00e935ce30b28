"""``AutoCompressionExperiment``: an HPO experiment whose trials compress the user's model (NNI's class).

It is an :class:`nni_pl.experiment.Experiment` whose trial is a Python function (run in pre-warmed workers): no
``trial_command`` is needed; each trial calls
:meth:`~nni_pl.compression.auto.engine.AutoCompressEngine.trial_execute_compress` with the user's
:class:`~nni_pl.compression.auto.AbstractAutoCompressionModule` and the tuner's parameters, and its final result is
``{"default": evaluator score, "sparsity": ...}``. The search space comes from
:class:`~nni_pl.compression.auto.AutoCompressionSearchSpaceGenerator`.

Example:
    >>> from nni_pl.compression.auto import AutoCompressionExperiment, AutoCompressionSearchSpaceGenerator
    >>> from nni_pl.compression.auto.interface import AbstractAutoCompressionModule
    >>> class Module(AbstractAutoCompressionModule):   # your model and evaluator
    ...     pass
    >>> experiment = AutoCompressionExperiment(Module, "local")
    >>> experiment.config.tuner.name = "TPE"
    >>> experiment.run(8088)   # doctest: +SKIP
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Mapping
from typing import Any

from nni_pl.compression.auto.engine import run_trial
from nni_pl.compression.auto.interface import AbstractAutoCompressionModule
from nni_pl.errors import ConfigError
from nni_pl.experiment import Experiment, ExperimentConfig

__all__ = ["AutoCompressionExperiment"]


class AutoCompressionExperiment(Experiment):
    """Search compression algorithms and their settings with nni-pl's HPO engine.

    Args:
        auto_compress_module: your subclass of :class:`~nni_pl.compression.auto.AbstractAutoCompressionModule`
            (the class itself). Its module must be importable where trials run (spawned workers import it; a class
            of the running script travels by value).
        config_or_platform: a training platform (``"local"``) for a blank config filled in as in NNI, an
            :class:`~nni_pl.experiment.ExperimentConfig`, a config file or dict.
        **fields: config fields in snake_case, as :class:`~nni_pl.experiment.Experiment` takes them
            (``search_space``, ``tuner``, ``max_trial_number``, ...).

    Raises:
        ConfigError: ``auto_compress_module`` is not an ``AbstractAutoCompressionModule`` subclass.
    """

    def __init__(
        self,
        auto_compress_module: type[AbstractAutoCompressionModule],
        config_or_platform: ExperimentConfig
        | str
        | os.PathLike[str]
        | Mapping[str, Any]
        | list[str]
        | None = "local",
        **fields: Any,
    ) -> None:
        if not (
            inspect.isclass(auto_compress_module)
            and issubclass(auto_compress_module, AbstractAutoCompressionModule)
        ):
            raise ConfigError(
                "auto_compress_module",
                f"got {auto_compress_module!r}; pass your subclass of AbstractAutoCompressionModule (the class)",
            )
        self.auto_compress_module = auto_compress_module
        self.module_name = auto_compress_module.__name__
        super().__init__(
            config_or_platform, trial=functools.partial(run_trial, auto_compress_module), **fields
        )
