"""Drive one NNI 3.0 tuner through a JSON-lines ask/tell protocol on stdin/stdout (no nnictl).

Runs inside NNI's own interpreter (``benchmarks/.venv-nni/bin/python``); ``benchmarks/hpo/peers.py``
starts it. One request per line, one reply per line:

* ``{"op": "init", "tuner": "TPE", "space": {...}, "seed": 0, "class_args": {}}`` -> ``{"ok": true}``
  (a fresh tuner; one worker serves many runs, since importing NNI takes seconds)
* ``{"op": "ask", "id": 3}`` -> ``{"ok": true, "params": {...}, "seconds": 0.002}`` or ``{"ok": true,
  "wait": true}`` when the tuner has nothing to give until a result comes back (NNI's "credit")
* ``{"op": "tell", "id": 3, "params": {...}, "value": 0.5}`` -> ``{"ok": true, "ready": [[id, params],
  ...], "seconds": ...}``: the result, then NNI's trial-end; ``ready`` holds parameter sets the tuner
  pushed for earlier asks that had to wait (as NNI's dispatcher sends them)
* ``{"op": "import", "records": [{"parameter": {...}, "value": 0.5}, ...]}`` -> ``{"ok": true}``
* ``{"op": "close"}``

Errors come back as ``{"ok": false, "error": "..."}``. Values are losses (the tuner minimises).

The worker seeds the tuners' random states (NNI 3.0 leaves some of them unseeded) and patches two
incompatibilities of NNI 3.0's GP and SMAC code with today's numpy/scipy (removed ``np.float`` aliases,
``scipy.optimize.minimize`` refusing a 2-D ``x0``); the algorithms are unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import tempfile
import time
import traceback
import warnings
from typing import Any

import numpy as np

for _alias, _builtin in {
    "float": float,
    "int": int,
    "object": object,
    "str": str,
    "complex": complex,
}.items():
    if _alias not in np.__dict__:  # SMAC 0.8 / ConfigSpaceNNI still use the aliases numpy removed
        setattr(np, _alias, _builtin)

warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


def _patch_gp_minimize() -> None:
    import scipy.optimize
    from nni.algorithms.hpo.gp_tuner import util

    def minimize(fun: Any, x0: Any, **kwargs: Any) -> Any:
        res = scipy.optimize.minimize(
            lambda x: float(np.ravel(fun(np.asarray(x)))[0]), np.ravel(x0), **kwargs
        )
        res.fun = np.atleast_1d(res.fun)
        return res

    util.minimize = minimize


def make_tuner(name: str, seed: int, class_args: dict[str, Any]) -> Any:
    random.seed(seed)
    np.random.seed(seed)
    args = {"optimize_mode": "minimize", **class_args}
    if name == "TPE":
        from nni.algorithms.hpo.tpe_tuner import TpeTuner

        return TpeTuner(seed=seed, **args)
    if name == "Random":
        from nni.algorithms.hpo.random_tuner import RandomTuner

        return RandomTuner(seed=seed, **args)
    if name == "Anneal":
        from nni.algorithms.hpo.hyperopt_tuner import HyperoptTuner

        return HyperoptTuner("anneal", **args)
    if name == "Evolution":
        from nni.algorithms.hpo.evolution_tuner import EvolutionTuner

        return EvolutionTuner(**args)
    if name == "GPTuner":
        from nni.algorithms.hpo.gp_tuner.gp_tuner import GPTuner

        _patch_gp_minimize()
        tuner = GPTuner(**args)
        tuner._random_state = np.random.RandomState(seed)
        tuner._gp.random_state = tuner._random_state
        return tuner
    if name == "SMAC":
        from nni.algorithms.hpo.smac_tuner.smac_tuner import SMACTuner

        # SMAC reads its seed from the command line and writes its scenario files to the working folder
        os.chdir(tempfile.mkdtemp(prefix="nni-smac-"))
        sys.argv = [sys.argv[0], "--seed", str(seed + 1)]
        return SMACTuner(**args)
    raise ValueError(f"the NNI worker has no tuner {name!r}")


def after_space(name: str, tuner: Any, seed: int) -> None:
    """Seed the random states NNI 3.0 creates unseeded in ``update_search_space``."""
    if name == "Anneal":
        tuner.rval.rstate = np.random.RandomState(seed)
    elif name == "Evolution":
        tuner.random_state = np.random.RandomState(seed)
        tuner.population = []
        for _ in range(tuner.population_size):
            tuner._random_generate_individual()


def main() -> None:
    tuner: Any = None
    name = ""
    ready: list[list[Any]] = []

    def send_trial(parameter_id: int, params: Any) -> None:
        ready.append([parameter_id, _jsonable(params)])

    out = sys.stdout
    sys.stdout = sys.stderr  # stray prints of the tuners must not corrupt the protocol
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        op = req.get("op")
        try:
            if op == "init":
                name, seed = req["tuner"], int(req["seed"])
                ready.clear()
                tuner = None
                tuner = make_tuner(name, seed, req.get("class_args") or {})
                tuner.update_search_space(req["space"])
                after_space(name, tuner, seed)
                reply: dict[str, Any] = {"ok": True}
            elif op == "ask":
                t0 = time.perf_counter()
                got = tuner.generate_multiple_parameters([int(req["id"])], st_callback=send_trial)
                seconds = time.perf_counter() - t0
                if got:
                    reply = {"ok": True, "params": _jsonable(got[0]), "seconds": seconds}
                else:
                    reply = {"ok": True, "wait": True, "seconds": seconds}
            elif op == "tell":
                t0 = time.perf_counter()
                pid = int(req["id"])
                tuner.receive_trial_result(pid, req["params"], float(req["value"]))
                tuner.trial_end(pid, True)
                reply = {"ok": True, "ready": ready[:], "seconds": time.perf_counter() - t0}
                ready.clear()
            elif op == "import":
                tuner.import_data(req["records"])
                reply = {"ok": True}
            elif op == "close":
                out.write(json.dumps({"ok": True}) + "\n")
                out.flush()
                break
            else:
                reply = {"ok": False, "error": f"unknown op {op!r}"}
        except Exception as e:  # report, do not die: the caller decides
            reply = {
                "ok": False,
                "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc()[-2000:],
            }
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
