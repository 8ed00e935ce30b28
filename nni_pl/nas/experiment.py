"""``NasExperiment``: multi-trial NAS on the experiment engine (store, CLI, dashboard, resume).

Each architecture the strategy proposes runs as a trial (a process: ``python -m nni_pl.nas._trial``) whose
parameters are the architecture (plus the values of the evaluator's choices), so ``nni-pl list/show/export``
and the dashboard show it like any trial. The model space and the evaluator reach the trial by import path
and arguments, written once to ``nas.json`` in the experiment folder; the strategy runs in the manager as a
tuner (:class:`~nni_pl.nas.strategy.StrategyTuner`) built from the stored config, so ``nni-pl resume ID``
works as for HPO.

Example:
    ``MySpace`` is your model space and ``mydata:loaders`` your data factory; each of the 30 trials is a process
    that trains for 2 epochs, so this is not run as a test (``tests/nas/test_experiment.py`` runs small ones):

    >>> from nni_pl.nas.experiment import NasExperiment
    >>> from nni_pl.nas.evaluator import Classification
    >>> from nni_pl.nas.strategy import RegularizedEvolution
    >>> exp = NasExperiment(MySpace(), Classification(train_dataloaders="mydata:loaders", max_epochs=2),
    ...                     RegularizedEvolution(population_size=10, sample_size=3),
    ...                     max_trial_number=30, trial_concurrency=2)                 # doctest: +SKIP
    >>> exp.run()                                                                      # doctest: +SKIP
    >>> best = exp.export_top_models(top_k=1)[0]                                       # doctest: +SKIP
    >>> model = MySpace().freeze(best)                                                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nni_pl.errors import ConfigError, NniPlError
from nni_pl.experiment import store as st
from nni_pl.experiment.experiment import Experiment
from nni_pl.nas._trial import SPEC_FILE

__all__ = ["NasExperiment"]

log = logging.getLogger(__name__)

_PLACEHOLDER = "python -m nni_pl.nas._trial"
FUNCTION_TRIAL = "nni_pl.nas._trial:function_trial"  # by path: `nni-pl resume` imports it again
_PREPARE_KEYS = ("port", "host", "token", "detach", "debug")  # the arguments of Experiment.prepare in run's


def _cgo_service(settings: Mapping[str, Any], section: Any) -> dict[str, Any]:
    """The ``trainingService`` of a CGO experiment: the merged-process service, named by class, with the GPU
    settings of a local section the caller gave."""
    args: dict[str, Any] = {"max_models": settings["max_models"], "batch_wait_s": settings["batch_wait_s"]}
    if section is not None:
        from nni_pl.training.local import LocalConfig

        if not isinstance(section, LocalConfig):
            raise ConfigError(
                "training_service",
                f"execution='cgo' runs trials on this machine; got {section!r}, give a local one",
            )
        args.update(
            gpu_indices=section.gpu_indices,
            max_trial_number_per_gpu=section.max_trial_number_per_gpu,
            use_active_gpu=section.use_active_gpu,
        )
    return {"className": "nni_pl.nas.cgo_service:CgoTrainingService", "classArgs": args}


def _trial_command(spec_path: Path) -> str:
    return f"{shlex.quote(sys.executable)} -m nni_pl.nas._trial {shlex.quote(str(spec_path))}"


class NasExperiment:
    """Search ``model_space`` with ``strategy``, scoring each architecture with ``evaluator`` in its own trial.

    Args:
        model_space: a :class:`~nni_pl.nas.ModelSpace` instance (or an ``@model_wrapper`` class's) whose class
            is importable by the trials (not defined in ``__main__``) and whose constructor arguments are JSON.
        evaluator: an :class:`~nni_pl.nas.evaluator.Evaluator`; choices among its arguments are searched too.
        strategy: a :class:`~nni_pl.nas.strategy.Strategy`; its ``optimize_mode`` is the experiment's.
        applied_mutators: :class:`~nni_pl.nas.Mutator` s that express the space (NNI's ``applied_mutators``); the
            base model ``model_space`` then has no inline choices and may be a plain ``nn.Module`` (it travels to
            the trials pickled; a ``ModelSpace`` is rebuilt there). A dry run makes the search space: one label
            per ``choice`` call (see :mod:`nni_pl.nas.mutator`). NNI's positional order
            ``(base_model, evaluator, applied_mutators, strategy)`` is accepted too.
        seed: when given, every trial seeds torch/numpy/random with it before building the model.
        execution: ``"process"`` (default): each trial is a process (``python -m nni_pl.nas._trial``);
            ``"function"``: trials run in ``trial_concurrency`` pre-warmed worker processes that import torch
            and Lightning once (much faster for small models); ``"cgo"`` (cross-graph optimisation): trials
            whose evaluator is the same ``Classification``/``Regression`` are trained together, up to
            ``cgo["max_models"]`` in one process that loads each batch once for all of them
            (:class:`~nni_pl.training.cgo.CgoTrainingService`); each is still its own trial (status, metrics,
            architecture) and a model that fails is retried alone; ``trial_concurrency`` then counts merged
            processes. All three resume with ``nni-pl resume ID`` or :meth:`resume`.
        cgo: with ``execution="cgo"``: ``{"max_models": 4, "batch_wait_s": 2.0}`` (the most trials per merged
            process, and how long a queued trial waits for group-mates before a smaller group starts).
        **fields: experiment settings as for :class:`~nni_pl.experiment.Experiment`: ``max_trial_number``,
            ``trial_concurrency``, ``max_experiment_duration``, ``max_trial_duration``, ``experiment_name``,
            ``experiment_working_directory``, ``trial_code_directory`` (where trials start; default: the working
            directory, which must let them import the space), ``trial_gpu_number``, ``store_url``, ``assessor``,
            ``id``, ``log_level``.
    """

    def __init__(
        self,
        model_space: Any,
        evaluator: Any,
        strategy: Any = None,
        applied_mutators: Any = None,
        *,
        seed: int | None = None,
        execution: str = "process",
        cgo: Mapping[str, Any] | None = None,
        id: str | None = None,
        **fields: Any,
    ) -> None:
        from nni_pl.nas.evaluator import Evaluator
        from nni_pl.nas.strategy import Strategy, StrategyTuner

        if isinstance(strategy, (list, tuple)) and not isinstance(applied_mutators, (list, tuple)):
            # NNI's positional order: RetiariiExperiment(base_model, evaluator, applied_mutators, strategy)
            strategy, applied_mutators = applied_mutators, strategy
        if execution not in ("process", "function", "cgo"):
            raise ConfigError("execution", f"must be 'process', 'function' or 'cgo', got {execution!r}")
        if cgo is not None and execution != "cgo":
            raise ConfigError(
                "cgo", f"is for execution='cgo' (got execution={execution!r}); add execution='cgo'"
            )
        if not isinstance(evaluator, Evaluator):
            raise ConfigError(
                "evaluator", f"must be an nni_pl.nas.evaluator.Evaluator, got {type(evaluator).__name__}"
            )
        if not isinstance(strategy, Strategy):
            raise ConfigError(
                "strategy", f"must be an nni_pl.nas.strategy.Strategy, got {type(strategy).__name__}"
            )
        from nni_pl.nas.strategy import OneShotStrategy
        from nni_pl.nas.strategy.oneshot import ONESHOT_LABEL

        eval_ss = evaluator.search_space()
        oneshot = isinstance(strategy, OneShotStrategy)
        mutators_spec: dict[str, Any] | None = None
        if applied_mutators:
            space_spec, model_ss, mutators_spec = _mutator_space(
                model_space, applied_mutators, strategy, execution
            )
        else:
            space_spec = _space_spec(model_space)
            model_ss = model_space.search_space()
        if oneshot:
            _check_oneshot(model_space, evaluator, strategy, execution, eval_ss, fields)
            fields["max_trial_number"] = 1
        shared = sorted(set(model_ss) & set(eval_ss))
        if shared:
            raise ConfigError(
                "evaluator",
                f"label {shared[0]!r} is both a decision of the model space and an evaluator argument choice; "
                "rename one",
            )
        mode = getattr(evaluator, "metric_mode", None)
        if mode is not None and mode != strategy.optimize_mode:
            raise ConfigError(
                "strategy.optimize_mode",
                f"{type(evaluator).__name__} reports a metric to {mode} but the strategy has "
                f"optimize_mode={strategy.optimize_mode!r}; build the strategy with optimize_mode={mode!r}",
            )
        self.model_space = model_space
        self.evaluator = evaluator
        self.strategy = strategy
        self.spec: dict[str, Any] = {
            "model_space": space_spec,
            "model_labels": list(model_ss),
            "evaluator": evaluator.to_config(),
            "strategy": strategy.to_config(),
            "seed": seed,
        }
        if oneshot:
            self.spec["oneshot"] = True
        if mutators_spec is not None:
            self.spec["mutators"] = mutators_spec
        if execution == "cgo":
            from nni_pl.nas.cgo_service import cgo_settings

            self.spec["cgo"] = cgo_settings(dict(cgo) if cgo is not None else None)
        tuner_args: dict[str, Any] = {
            "strategy": self.spec["strategy"],
            "optimize_mode": strategy.optimize_mode,
        }
        if mutators_spec is None and _has_constraints(model_space) and not oneshot:
            tuner_args["model_space"] = space_spec
        config = {
            "trialCommand": _PLACEHOLDER,
            "trialConcurrency": 1,
            # a one-shot search is one trial: its parameter names the strategy, the search runs inside it
            "searchSpace": {ONESHOT_LABEL: {"_type": "choice", "_value": [strategy.name]}}
            if oneshot
            else {**model_ss, **eval_ss},
            "tuner": {
                "className": "nni_pl.nas.strategy.StrategyTuner",
                "classArgs": tuner_args,
            },
            "lightningCli": False,  # labels such as "trainer_kwargs.max_epochs" are no LightningCLI paths
        }
        if execution == "cgo":
            config["trainingService"] = _cgo_service(self.spec["cgo"], fields.pop("training_service", None))
        # the strategy object runs now; resume rebuilds it from the configured tuner section
        tuner = StrategyTuner(
            strategy=strategy, optimize_mode=strategy.optimize_mode, model_space=tuner_args.get("model_space")
        )
        if execution == "function":
            del config["trialCommand"]
            engine = Experiment(
                config,
                trial=FUNCTION_TRIAL,
                preload=("torch", "lightning.pytorch"),
                id=id,
                tuner=tuner,
                **fields,
            )
        else:
            engine = Experiment(config, id=id, tuner=tuner, **fields)
            engine.config.trial_command = _trial_command(
                engine.config.experiment_working_directory / engine.id / SPEC_FILE
            )
        self.spec["code_directory"] = str(engine.config.trial_code_directory)
        assert engine.config.tuner is not None
        # the manager imports the space (for its constraints) from where the trials do, also on `nni-pl resume`
        engine.config.tuner.code_directory = engine.config.trial_code_directory
        self.experiment: Experiment = engine

    # --- running ------------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.experiment.id

    @property
    def directory(self) -> Path:
        return self.experiment.directory

    @property
    def config(self) -> Any:
        return self.experiment.config

    def run(self, **kwargs: Any) -> NasExperiment:
        """Run until the limits are reached or the strategy is done (Ctrl-C stops; :meth:`resume` continues).

        Keywords are those of :meth:`Experiment.run` (``display``, ``detach``, ``port``, ...).
        """
        if self.spec is not None and not self.experiment.created:
            # create the experiment first (everything is checked, nothing is left behind on failure), then put
            # the spec the trials read into its folder, then run
            self.experiment.prepare(**{k: kwargs[k] for k in _PREPARE_KEYS if k in kwargs})
            path = self.experiment.directory / SPEC_FILE
            path.write_text(json.dumps(self.spec, indent=2), encoding="utf-8")
        self.experiment.run(**kwargs)
        return self

    def stop(self) -> None:
        self.experiment.stop()

    def close(self) -> None:
        self.experiment.close()

    @classmethod
    def resume(
        cls,
        experiment_id: str,
        *,
        working_directory: str | Path | None = None,
        store_url: str | None = None,
    ) -> NasExperiment:
        """Load a stopped NAS experiment; :meth:`run` continues it (the strategy relearns the stored results)."""
        from nni_pl.experiment import locate

        located = locate.find(experiment_id, working_directory=working_directory, store_url=store_url)
        function = FUNCTION_TRIAL if located.experiment.config.get("trialFunction") else None
        return cls._wrap(Experiment._from_located(located, trial=function))

    @classmethod
    def view(
        cls, experiment_id: str, *, working_directory: str | Path | None = None, store_url: str | None = None
    ) -> NasExperiment:
        """Open a NAS experiment read-only, for its results."""
        return cls._wrap(
            Experiment.view(experiment_id, working_directory=working_directory, store_url=store_url)
        )

    @classmethod
    def _wrap(cls, exp: Experiment) -> NasExperiment:
        path = exp.directory / SPEC_FILE
        if not path.exists():
            raise NniPlError(
                f"experiment {exp.id} is not a NAS experiment (no {SPEC_FILE} in {exp.directory})"
            )
        self = cls.__new__(cls)
        self.spec = json.loads(path.read_text(encoding="utf-8"))
        self.model_space = self.evaluator = self.strategy = None
        self.experiment = exp
        return self

    # --- results ---------------------------------------------------------------------------------------------
    def trials(self, statuses: list[str] | None = None) -> list[st.TrialRow]:
        return self.experiment.trials(statuses)

    def export_top_models(
        self,
        top_k: int = 1,
        *,
        optimize_mode: str | None = None,
        formatter: str = "dict",
        include_evaluator: bool = False,
    ) -> list[dict[str, Any]]:
        """The architectures of the ``top_k`` best trials, best first, ready for ``space.freeze(arch)``.

        Args:
            top_k: how many.
            optimize_mode: ``"maximize"``/``"minimize"``; default: the experiment's (its strategy's).
            formatter: ``"dict"`` (NNI's default; NNI's ``"code"`` has no equivalent here).
            include_evaluator: keep the values of the evaluator's choices too.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        if formatter != "dict":
            raise ValueError(f"formatter must be 'dict' (architectures as label -> value), got {formatter!r}")
        mode = optimize_mode or self.experiment.config.optimize_mode
        if mode not in ("maximize", "minimize"):
            raise ValueError(f"optimize_mode must be 'maximize' or 'minimize', got {optimize_mode!r}")
        if self.spec.get("oneshot"):
            return self._oneshot_top_models(top_k, mode)
        best = self.experiment.store.best_trials(self.id, optimize_mode=mode, limit=top_k)
        labels = set(self.spec["model_labels"])
        if self.spec.get("mutators"):
            from nni_pl.nas.mutator import export_choices

            # NNI's mutation dict: mutator label -> the chosen candidate (a list for several choices)
            entries, names = self.spec["mutators"]["entries"], self.spec["mutators"]["names"]
            return [
                {
                    **export_choices(entries, t.parameters, names),
                    **(
                        {k: v for k, v in t.parameters.items() if k not in labels}
                        if include_evaluator
                        else {}
                    ),
                }
                for t in best
            ]
        return [
            dict(t.parameters)
            if include_evaluator
            else {k: v for k, v in t.parameters.items() if k in labels}
            for t in best
        ]

    def _oneshot_top_models(self, top_k: int, mode: str) -> list[dict[str, Any]]:
        from nni_pl.nas._trial import TOP_MODELS_FILE

        for trial in self.experiment.store.best_trials(self.id, optimize_mode=mode, limit=None):
            path = Path(trial.trial_dir) / TOP_MODELS_FILE
            if path.exists():
                return [dict(a) for a in json.loads(path.read_text(encoding="utf-8"))["top_models"][:top_k]]
        return []

    def export_data(self) -> list[dict[str, Any]]:
        return self.experiment.export_data()


def _space_spec(model_space: Any) -> dict[str, Any]:
    path = getattr(model_space, "import_path", None)
    kwargs = getattr(model_space, "init_kwargs", None)
    if not isinstance(path, str) or not hasattr(model_space, "search_space"):
        raise ConfigError(
            "model_space",
            f"got {type(model_space).__name__}; give an instance of an nni_pl.nas.ModelSpace subclass "
            "(or of a class decorated with @nni_pl.nas.model_wrapper)",
        )
    if path.startswith("__main__:"):
        raise ConfigError(
            "model_space",
            f"{path.split(':', 1)[1]} is defined in the script being run (__main__), which trial processes cannot "
            "import; move the class to a module next to the script and import it from there",
        )
    try:
        json.dumps(kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            "model_space",
            f"the constructor arguments of {path} are not JSON ({e}); trials rebuild the space from them, "
            "so pass numbers, strings, lists or dicts",
        ) from e
    if isinstance(kwargs, Mapping):
        kwargs = dict(kwargs)
    return {"import_path": path, "init_kwargs": kwargs or {}}


def _mutator_space(
    model_space: Any, applied_mutators: Any, strategy: Any, execution: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The base model's spec, the search space of ``applied_mutators`` (a dry run) and what trials replay it
    from; refuses what NNI refuses (inline choices with mutators) and what needs inline choices."""
    from torch import nn

    from nni_pl.nas.mutator import experiment_spec
    from nni_pl.nas.space import search_space_of
    from nni_pl.nas.strategy import OneShotStrategy

    if isinstance(strategy, OneShotStrategy):
        raise ConfigError(
            "applied_mutators",
            f"{strategy.name} builds a supernet from inline choices (LayerChoice, ValueChoice, ...); search "
            "mutators with a multi-trial strategy (Random, GridSearch, RegularizedEvolution, TPE, PolicyBasedRL)",
        )
    if execution == "cgo":
        raise ConfigError(
            "execution", "'cgo' merges models of an inline-choice space; use 'process' or 'function'"
        )
    if not isinstance(model_space, nn.Module):
        raise ConfigError(
            "model_space",
            f"the base model of mutators must be an nn.Module, got {type(model_space).__name__}",
        )
    inline = search_space_of(model_space)
    if inline:
        raise ConfigError(
            "applied_mutators",
            f"the base model has inline choices too ({sorted(inline)}); as in NNI, mutators and inline choices "
            "cannot be used together: express those choices in a mutator, or drop applied_mutators",
        )
    if isinstance(getattr(model_space, "import_path", None), str):
        space_spec = _space_spec(model_space)  # rebuilt in each trial (fresh weights, seeded)
        pickle_base = False
    else:
        space_spec = {"import_path": None, "init_kwargs": {}}  # a plain module travels pickled
        pickle_base = True
    search_space, spec = experiment_spec(model_space, list(applied_mutators), pickle_base=pickle_base)
    return space_spec, search_space, spec


def _check_oneshot(
    model_space: Any,
    evaluator: Any,
    strategy: Any,
    execution: str,
    eval_ss: Mapping[str, Any],
    fields: Mapping[str, Any],
) -> None:
    """Refuse what a one-shot search cannot do before anything is created (the space is checked by building its
    supernet once, so a primitive the strategy cannot search is named now, not in the trial)."""
    from nni_pl.nas.oneshot.supernet import build_supernet

    name = strategy.name
    if execution == "cgo":
        raise ConfigError(
            "execution", f"{name} trains one supernet in one trial; use 'process' or 'function'"
        )
    if eval_ss:
        label = next(iter(eval_ss))
        raise ConfigError(
            f"evaluator.{label}",
            f"is a choice, but {name} searches the model space only (one supernet trained once); fix its value, "
            "or search it with a multi-trial strategy",
        )
    if not hasattr(evaluator, "build_module") or not hasattr(evaluator, "dataloaders"):
        raise ConfigError(
            "evaluator",
            f"{name} wraps a Lightning evaluator's module (Classification, Regression, Lightning); got "
            f"{type(evaluator).__name__}",
        )
    for key in ("max_trial_number", "trial_concurrency"):
        if fields.get(key, 1) != 1:
            raise ConfigError(
                key, f"a one-shot search ({name}) is one trial; leave {key} out (got {fields[key]!r})"
            )
    build_supernet(model_space, name)


def _has_constraints(model_space: Any) -> bool:
    """Whether some choices of the space constrain each other (then not every combination is an architecture)."""
    from nni_pl.nas.space import _constraint_holders

    return bool(_constraint_holders(model_space))
