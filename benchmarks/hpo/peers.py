"""Ask/tell runners for the peers of the HPO benchmark: Optuna, hyperopt and NNI 3.0.

Every runner takes an NNI search space and offers the same three calls as the nni-pl runner in
``run.py``: ``ask(parameter_id) -> params`` (may raise :class:`Wait` or :class:`Exhausted`),
``tell(parameter_id, params, loss)`` and ``close()``. Several asks may be outstanding (concurrency).

* Optuna (``TPE``, ``GP``, ``CMA-ES``): ``study.ask()`` / ``study.tell()``; parameters are suggested
  define-by-run, so nested ``_name`` choices become conditional parameters. Choice options that Optuna
  cannot store (lists) are suggested by index. With concurrency, Optuna's TPE runs with
  ``constant_liar=True`` (its documented setting for parallel optimisation).
* hyperopt (``TPE``): ``tpe.suggest`` on a ``Trials`` object; asked-but-unfinished trials stay in the
  ``Trials`` as new documents (hyperopt's TPE, like ``fmin`` with parallel workers, models only finished
  ones).
* NNI 3.0: its tuner classes in their own interpreter, through ``nni_worker.py``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from nni_pl.space import Branch, Choice, SearchSpace

NNI_PYTHON = Path(__file__).resolve().parents[1] / ".venv-nni" / "bin" / "python"
NNI_WORKER = Path(__file__).resolve().parent / "nni_worker.py"


class Wait(Exception):
    """Nothing to suggest until an outstanding trial reports."""


class Exhausted(Exception):
    """The tuner has no more parameter sets (a finite space is used up)."""


def _scalar(x: Any) -> bool:
    return x is None or isinstance(x, (bool, numbers.Real, str))


# --- Optuna ---------------------------------------------------------------------------------------------
def optuna_suggest(trial: Any, space: SearchSpace | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Ask an Optuna trial for a parameter set of an NNI space (nested branches as conditional params)."""
    space = SearchSpace.parse(space) if not isinstance(space, SearchSpace) else space
    out: dict[str, Any] = {}
    for name, p in space.items():
        key = prefix + name
        if isinstance(p, Choice):
            if p.is_nested:
                names = [o.name if isinstance(o, Branch) else json.dumps(o) for o in p.options]
                i = names.index(trial.suggest_categorical(key, names))
                opt = p.options[i]
                if isinstance(opt, Branch):
                    value = {"_name": opt.name}
                    value.update(
                        optuna_suggest(trial, SearchSpace(dict(opt.searched())), f"{key}/{opt.name}/")
                    )
                    value.update(
                        {k: v for k, v in opt.params.items() if k not in value and not hasattr(v, "TYPE")}
                    )
                    out[name] = value
                else:
                    out[name] = p.value_at(i)
            elif all(_scalar(o) for o in p.options):
                out[name] = trial.suggest_categorical(key, list(p.options))
            else:
                out[name] = p.value_at(trial.suggest_categorical(key, list(range(len(p.options)))))
        elif p.TYPE == "randint":
            out[name] = trial.suggest_int(key, int(p.low), int(p.high) - 1)
        elif p.TYPE == "uniform":
            out[name] = trial.suggest_float(key, p.low, p.high)
        elif p.TYPE == "loguniform":
            out[name] = trial.suggest_float(key, p.low, p.high, log=True)
        elif p.TYPE == "quniform":
            out[name] = p.quantize(trial.suggest_float(key, p.low, p.high, step=p.q))
        else:
            raise ValueError(f"the benchmark has no Optuna mapping for _type {p.TYPE!r} ({key})")
    return out


class OptunaRunner:
    """Optuna's ``TPE`` (TPESampler), ``GP`` (GPSampler) or ``CMA-ES`` (CmaEsSampler) by ask/tell."""

    def __init__(self, sampler: str, space: dict[str, Any], seed: int, concurrency: int = 1) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", module="optuna")
        if sampler == "TPE":
            s = optuna.samplers.TPESampler(seed=seed, constant_liar=concurrency > 1)
        elif sampler == "GP":
            s = optuna.samplers.GPSampler(seed=seed)
        elif sampler == "CMA-ES":
            s = optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        else:
            raise ValueError(f"unknown Optuna sampler {sampler!r}")
        self.study = optuna.create_study(sampler=s, direction="minimize")
        self.space = SearchSpace.parse(space)
        self._trials: dict[int, Any] = {}

    def ask(self, parameter_id: int) -> dict[str, Any]:
        trial = self.study.ask()
        self._trials[parameter_id] = trial
        return optuna_suggest(trial, self.space)

    def tell(self, parameter_id: int, params: dict[str, Any], loss: float) -> None:
        self.study.tell(self._trials.pop(parameter_id), loss if math.isfinite(loss) else None)

    def close(self) -> None:
        pass


# --- hyperopt -------------------------------------------------------------------------------------------
def hyperopt_space(space: SearchSpace | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """An NNI space as a hyperopt space (the mapping NNI's old HyperoptTuner used)."""
    from hyperopt import hp

    space = SearchSpace.parse(space) if not isinstance(space, SearchSpace) else space
    out: dict[str, Any] = {}
    for name, p in space.items():
        key = prefix + name
        if isinstance(p, Choice):
            options = []
            for o in p.options:
                if isinstance(o, Branch):
                    sub = hyperopt_space(SearchSpace(dict(o.searched())), f"{key}/{o.name}/")
                    consts = {k: v for k, v in o.params.items() if not hasattr(v, "TYPE")}
                    options.append({"_name": o.name, **consts, **sub})
                else:
                    options.append(o)
            out[name] = hp.choice(key, options)
        elif p.TYPE == "randint":
            out[name] = hp.randint(key, int(p.low), int(p.high))
        elif p.TYPE == "uniform":
            out[name] = hp.uniform(key, p.low, p.high)
        elif p.TYPE == "loguniform":
            out[name] = hp.loguniform(key, math.log(p.low), math.log(p.high))
        elif p.TYPE == "quniform":
            out[name] = hp.quniform(key, p.low, p.high, p.q)  # clipped to [low, high] in _finish
        else:
            raise ValueError(f"the benchmark has no hyperopt mapping for _type {p.TYPE!r} ({key})")
    return out


def _finish(space: SearchSpace, params: dict[str, Any]) -> dict[str, Any]:
    """hyperopt's values as NNI's: ints for randint, quniform clipped, tuples as lists."""
    out: dict[str, Any] = {}
    for name, v in params.items():
        p = space[name] if name in space else None
        if isinstance(p, Choice) and isinstance(v, dict) and "_name" in v:
            i = p.index_of(v)
            branch = p.options[i]
            sub = SearchSpace(dict(branch.searched()))
            out[name] = {"_name": v["_name"], **_finish(sub, {k: x for k, x in v.items() if k != "_name"})}
        elif p is not None and not isinstance(p, Choice):
            out[name] = p.quantize(float(v))
        elif isinstance(v, tuple):
            out[name] = list(v)
        else:
            out[name] = v.item() if isinstance(v, np.generic) else v
    return out


class HyperoptRunner:
    """hyperopt's TPE (``tpe.suggest``) on a ``Trials`` object, driven by ask/tell."""

    def __init__(self, space: dict[str, Any], seed: int, concurrency: int = 1) -> None:
        import logging

        from hyperopt import Domain, Trials

        logging.getLogger("hyperopt").setLevel(logging.ERROR)
        self.space = SearchSpace.parse(space)
        self.hp_space = hyperopt_space(self.space)
        self.domain = Domain(lambda p: 0.0, self.hp_space)
        self.trials = Trials()
        self.rng = np.random.default_rng(seed)
        self._docs: dict[int, dict[str, Any]] = {}

    def ask(self, parameter_id: int) -> dict[str, Any]:
        from hyperopt import space_eval, tpe

        ids = self.trials.new_trial_ids(1)
        self.trials.refresh()
        docs = tpe.suggest(ids, self.domain, self.trials, int(self.rng.integers(2**31 - 1)))
        self.trials.insert_trial_docs(docs)
        self.trials.refresh()
        doc = self.trials._dynamic_trials[-1]
        self._docs[parameter_id] = doc
        vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if len(v)}
        return _finish(self.space, space_eval(self.hp_space, vals))

    def tell(self, parameter_id: int, params: dict[str, Any], loss: float) -> None:
        from hyperopt import JOB_STATE_DONE, STATUS_FAIL, STATUS_OK

        doc = self._docs.pop(parameter_id)
        doc["state"] = JOB_STATE_DONE
        if math.isfinite(loss):
            doc["result"] = {"loss": float(loss), "status": STATUS_OK}
        else:
            doc["result"] = {"status": STATUS_FAIL}
        self.trials.refresh()

    def close(self) -> None:
        pass


# --- NNI 3.0 --------------------------------------------------------------------------------------------
class NniWorker:
    """A running ``nni_worker.py`` process; reused across runs (importing NNI takes seconds)."""

    def __init__(self) -> None:
        if not NNI_PYTHON.exists():
            raise FileNotFoundError(
                f"{NNI_PYTHON} is missing: python3 -m venv benchmarks/.venv-nni && "
                "benchmarks/.venv-nni/bin/pip install nni==3.0 hyperopt"
            )
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(
            [str(NNI_PYTHON), str(NNI_WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def call(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the NNI worker exited (code {self.proc.poll()})")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"NNI worker: {reply.get('error')}")
        return reply

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            try:
                self.call({"op": "close"})
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()


_WORKER: NniWorker | None = None


def _shared_worker() -> NniWorker:
    global _WORKER
    if _WORKER is None or not _WORKER.alive():
        _WORKER = NniWorker()
    return _WORKER


class NniRunner:
    """One NNI 3.0 tuner in its own interpreter (``benchmarks/.venv-nni``), over ``nni_worker.py``.

    The worker process is shared by the runs of one benchmark process (each ``init`` makes a fresh
    tuner); a run that fails or times out gets the worker replaced. NNI's dispatcher may answer a
    request later (the Evolution tuner's "credit"): such an ask raises :class:`Wait`, and the parameter
    set arrives with a later ``tell`` in :attr:`ready`.
    """

    def __init__(
        self, tuner: str, space: dict[str, Any], seed: int, class_args: dict[str, Any] | None = None
    ) -> None:
        self.worker = _shared_worker()
        self.ready: dict[int, dict[str, Any]] = {}
        self.tuner_seconds = 0.0
        self._call(
            {"op": "init", "tuner": tuner, "space": space, "seed": seed, "class_args": class_args or {}}
        )

    def _call(self, req: dict[str, Any]) -> dict[str, Any]:
        reply = self.worker.call(req)
        self.tuner_seconds += reply.get("seconds", 0.0)
        return reply

    def ask(self, parameter_id: int) -> dict[str, Any]:
        reply = self._call({"op": "ask", "id": parameter_id})
        if reply.get("wait"):
            raise Wait()
        return reply["params"]

    def tell(self, parameter_id: int, params: dict[str, Any], loss: float) -> None:
        value = loss if math.isfinite(loss) else 1e300
        reply = self._call({"op": "tell", "id": parameter_id, "params": params, "value": value})
        for pid, p in reply.get("ready", []):
            self.ready[int(pid)] = p

    def import_data(self, records: list[dict[str, Any]]) -> None:
        self._call({"op": "import", "records": records})

    def close(self, failed: bool = False) -> None:
        if failed:  # a tuner that raised or ran out of time may have left the process in a bad state
            self.worker.stop()


def peer_runner(
    name: str, space: dict[str, Any], seed: int, concurrency: int, class_args: dict[str, Any] | None = None
) -> Any:
    """A runner for a peer tuner name of the benchmark (``optuna TPE``, ``hyperopt TPE``, ``NNI GPTuner``...)."""
    family, _, algo = name.partition(" ")
    if family == "optuna":
        return OptunaRunner(algo, space, seed, concurrency)
    if family == "hyperopt" and algo == "TPE":
        return HyperoptRunner(space, seed, concurrency)
    if family == "NNI":
        return NniRunner(algo, space, seed, class_args)
    raise ValueError(f"unknown peer tuner {name!r}")
