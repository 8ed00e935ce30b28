"""The trial entry point of a NAS experiment: ``python -m nni_pl.nas._trial SPEC.json``.

The spec (written by :class:`~nni_pl.nas.experiment.NasExperiment` into the experiment folder) names the
model space by import path and arguments and holds the evaluator's config. The trial rebuilds both, freezes
the space to the architecture in its parameters, resolves the evaluator's choices, and evaluates the model
(which reports through the trial SDK).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["function_trial", "main", "run_trial"]

SPEC_FILE = "nas.json"
TOP_MODELS_FILE = "top_models.json"  # a one-shot trial's result: the architectures it found, best first

log = logging.getLogger("nni_pl.nas.trial")


def run_trial(spec: Mapping[str, Any], parameters: Mapping[str, Any]) -> Any:
    """Rebuild the space and evaluator of ``spec``, freeze them to ``parameters`` and evaluate."""
    from nni_pl.nas.evaluator import Evaluator, freeze_config
    from nni_pl.nas.space import load_space

    if spec.get("seed") is not None:
        import lightning.pytorch as pl

        pl.seed_everything(int(spec["seed"]), workers=True, verbose=False)
    if spec.get("mutators"):
        from nni_pl.nas.mutator import model_from_spec

        model = model_from_spec(spec, parameters)
        evaluator = Evaluator.from_config(freeze_config(spec["evaluator"], parameters))
        log.info("evaluating %s with %s", dict(parameters), type(evaluator).__name__)
        return evaluator.evaluate(model)
    space_spec = spec["model_space"]
    space = load_space(space_spec["import_path"], space_spec.get("init_kwargs") or {})
    if spec.get("oneshot"):
        return run_oneshot(spec, space)
    labels = set(space.search_space())
    model = space.freeze({k: v for k, v in parameters.items() if k in labels})
    evaluator = Evaluator.from_config(freeze_config(spec["evaluator"], parameters))
    log.info("evaluating %s with %s", dict(parameters), type(evaluator).__name__)
    return evaluator.evaluate(model)


def run_oneshot(spec: Mapping[str, Any], space: Any) -> Any:
    """Run the one-shot search of ``spec`` (one trial); the architectures found go to ``top_models.json``."""
    import nni_pl
    from nni_pl.nas.evaluator import Evaluator
    from nni_pl.nas.oneshot.runner import search, write_top_models
    from nni_pl.nas.strategy import Strategy

    strategy = Strategy.from_config(spec["strategy"])
    evaluator = Evaluator.from_config(spec["evaluator"])
    log.info("one-shot search with %s", type(strategy).__name__)
    result = search(space, evaluator, strategy, top_k=int(spec.get("top_k", 5)))
    out = nni_pl.get_output_dir()
    write_top_models(out if out is not None else Path.cwd(), result)
    log.info("architecture found: %s", result.arch)
    if result.score is None:
        raise RuntimeError("the search ended without a validation metric to report (no validation data?)")
    nni_pl.report_final_result(result.score)
    return result.score


def function_trial(parameters: Mapping[str, Any]) -> Any:
    """The trial function of a NAS experiment run with ``execution="function"`` (pre-warmed workers).

    The spec is the experiment's ``nas.json``, two folders above the trial directory.
    """
    import nni_pl

    trial_dir = nni_pl.get_output_dir()
    if trial_dir is None:
        raise RuntimeError("function_trial runs inside a NAS experiment's trial (no trial directory here)")
    spec = json.loads((Path(trial_dir).parent.parent / SPEC_FILE).read_text(encoding="utf-8"))
    code_dir = spec.get("code_directory")
    if code_dir and code_dir not in sys.path:
        sys.path.insert(0, code_dir)  # where the space's module is, as for a command trial started there
    return run_trial(spec, parameters)


def main(argv: list[str] | None = None) -> int:
    import nni_pl

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m nni_pl.nas._trial SPEC.json\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    run_trial(spec, nni_pl.get_next_parameter())
    return 0


if __name__ == "__main__":
    sys.exit(main())
