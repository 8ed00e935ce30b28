"""NNI 3.0 side of the pruning benchmark, run with the NNI 3.0 venv's interpreter by `run.py`.

Reads a JSON list of jobs from the file named on the command line and prints one JSON list of results on the
last stdout line. Each job prunes with NNI 3.0's `L1NormPruner` (Conv2d, `sparse_ratio`) and applies its
`ModelSpeedup`; a crash is recorded as the job's `error` (the exception type and message) and the next job
still runs.

Example:
    benchmarks/.venv-nni/bin/python benchmarks/pruning/nni3_worker.py jobs.json
"""

from __future__ import annotations

import json
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.filterwarnings("ignore")

import common  # noqa: E402
import torch  # noqa: E402


def prune(
    model: torch.nn.Module, sparsity: float, dummy: torch.Tensor
) -> tuple[torch.nn.Module, Any, str | None]:
    """L1NormPruner on every Conv2d, then ModelSpeedup; returns (model, masks, speed-up error or None)."""
    from nni.compression.pruning import L1NormPruner
    from nni.compression.speedup import ModelSpeedup

    pruner = L1NormPruner(model, [{"op_types": ["Conv2d"], "sparse_ratio": sparsity}])
    _, masks = pruner.compress()
    pruner.unwrap_model()
    try:
        model = ModelSpeedup(model, dummy, masks).speedup_model()
    except Exception as exc:
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return (
            model,
            masks,
            f"{type(exc).__name__}: {str(exc)[:300]} (at {Path(last.filename).name}:{last.lineno})",
        )
    return model, masks, None


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One latency or digits job."""
    torch.set_num_threads(job["threads"])
    if job["kind"] == "latency":
        dense = common.build_model(job["model"])
        dummy = torch.randn(1, 3, job["size"], job["size"])
        model, _, error = prune(common.clone(dense), job["sparsity"], dummy)
        if error is not None:
            return {"error": error}
        rows = common.measure_interleaved(
            {"dense": dense, "pruned": model}, job["size"], tuple(job["batches"]), job["repeats"]
        )
        return dict(rows["pruned"], dense=rows["dense"])
    data = torch.load(job["data"])
    model = common.DigitsCNN(job["width"])
    model.load_state_dict(torch.load(job["state"]))
    model.eval()
    model, masks, error = prune(model, job["sparsity"], torch.randn(1, 1, 8, 8))
    hook = None
    if error is not None:
        model.load_state_dict(torch.load(job["state"]))
        hook = common.masked_finetune(model, masks)
        hook()
    acc_pruned = common.accuracy(model, data)
    common.train_epochs(model, data, job["epochs"], lr=job["lr"], after_step=hook)
    result = {"acc_pruned": acc_pruned, "acc_finetuned": common.accuracy(model, data)}
    if error is not None:
        result["error"] = error
    return result


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text())
    results = []
    for job in jobs:
        try:
            results.append(run_job(job))
        except Exception as exc:
            results.append({"error": f"{type(exc).__name__}: {str(exc)[:300]}"})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
