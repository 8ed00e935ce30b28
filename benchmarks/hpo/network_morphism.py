"""NetworkMorphism on digits: best validation accuracy vs trial, next to random search over the same budget.

Each trial rebuilds the suggested graph with ``build_graph_from_json``, trains it for ``--epochs`` epochs on
scikit-learn's ``load_digits`` (8x8x1 images, 10 classes; 1,200 training and 597 validation images, one fixed
split) with Adam, and reports the last epoch's validation accuracy. The loop drives the tuners exactly as the
experiment manager does (``generate_parameters`` / ``receive_trial_result``, one trial at a time):

- ``NetworkMorphism``: NNI's classArgs for this data (``task: cv, input_width: 8, input_channel: 1,
  n_output_node: 10``), everything else NNI's defaults (a 3-block CNN of 64 filters to start);
- ``Random``: nni-pl's Random tuner over the starting CNN's own knobs, ``model_len`` in 1..5 and
  ``model_width`` in {16, 32, 64, 128}, built by the same generator;
- ``NetworkMorphism (random morphs)``: the same tuner with the Bayesian choice switched off (a random morph of a
  random graph seen so far), an ablation of the GP and the annealing.

Usage::

    python benchmarks/hpo/network_morphism.py                  # 16 trials x 2 seeds, 4 epochs each (~8 min)
    python benchmarks/hpo/network_morphism.py --trials 12 --seeds 1 --epochs 3
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nni_pl.hpo.tuners import RandomTuner
from nni_pl.hpo.tuners.network_morphism import (
    CnnGenerator,
    NetworkMorphismTuner,
    build_graph_from_json,
    graph_to_json,
    json_to_graph,
)

RANDOM_SPACE = {
    "model_len": {"_type": "randint", "_value": [1, 6]},
    "model_width": {"_type": "choice", "_value": [16, 32, 64, 128]},
}
METHODS = ("NetworkMorphism", "Random", "NetworkMorphism (random morphs)")


def load_data() -> tuple[Any, ...]:
    import torch
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x = torch.tensor(x[order] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y[order])
    return x[:1200], y[:1200], x[1200:], y[1200:]


def train(graph_json: dict[str, Any], data: tuple[Any, ...], epochs: int, seed: int) -> tuple[float, float]:
    """Validation accuracy after ``epochs`` epochs, and the training time in seconds."""
    import torch

    xt, yt, xv, yv = data
    torch.manual_seed(seed)
    net = build_graph_from_json(graph_json)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(xv).argmax(1) == yv).float().mean().item()
    return accuracy, time.perf_counter() - start


def run(method: str, seed: int, trials: int, epochs: int, data: tuple[Any, ...]) -> dict[str, Any]:
    if method == "Random":
        tuner: Any = RandomTuner(seed=seed)
        tuner.update_search_space(RANDOM_SPACE)
    else:
        tuner = NetworkMorphismTuner(task="cv", input_width=8, input_channel=1, n_output_node=10, seed=seed)
        tuner.update_search_space({})
        if method.endswith("(random morphs)"):
            tuner._bayesian = lambda: None  # the fallback only: a random morph of a random known graph
    accs, fit_s, suggest_s, sizes = [], [], [], []
    for pid in range(trials):
        t0 = time.perf_counter()
        params = tuner.generate_parameters(pid)
        suggest_s.append(time.perf_counter() - t0)
        if method == "Random":
            graph_json = graph_to_json(
                CnnGenerator(10, (8, 8, 1)).generate(params["model_len"], params["model_width"])
            )
        else:
            graph_json = params
        acc, secs = train(graph_json, data, epochs, seed=1000 * seed + pid)
        tuner.receive_trial_result(pid, params, acc)
        accs.append(acc)
        fit_s.append(secs)
        sizes.append(json_to_graph(graph_json).size())
        print(
            f"{method:32s} seed {seed} trial {pid:2d}: acc {acc:.4f} ({secs:.1f} s, {sizes[-1]:,} params)",
            flush=True,
        )
    return {"accs": accs, "fit_s": fit_s, "suggest_s": suggest_s, "sizes": sizes}


def noise(data: tuple[Any, ...], epochs: int, repeats: int = 5) -> list[float]:
    """Validation accuracies of the starting network (NNI's defaults) trained with ``repeats`` seeds."""
    start = graph_to_json(CnnGenerator(10, (8, 8, 1)).generate(3, 64))
    return [train(start, data, epochs, seed=10_000 + k)[0] for k in range(repeats)]


def report(
    results: dict[str, list[dict[str, Any]]], noise_accs: list[float], args: argparse.Namespace, wall: float
) -> str:
    lines = [
        "# NetworkMorphism on digits",
        "",
        f"`python benchmarks/hpo/network_morphism.py --trials {args.trials} --seeds {args.seeds} "
        f"--epochs {args.epochs}`: {platform.machine()} CPU, torch on one thread, {wall / 60:.1f} min in all. "
        "The machine (2 cores) was shared with other work while this ran: the times are indicative only.",
        "",
        "Each trial trains the suggested network for "
        f"{args.epochs} epochs (Adam, lr 3e-3, batch 64) on 1,200 digits and reports the accuracy on the other "
        "597. NetworkMorphism runs with NNI's classArgs for this data (`task: cv, input_width: 8, "
        "input_channel: 1, n_output_node: 10`) and NNI's defaults otherwise; Random samples the starting CNN's "
        "own knobs (`model_len` 1..5, `model_width` 16/32/64/128); the third row is NetworkMorphism with the "
        "Bayesian choice switched off (random morphs of random known graphs).",
        "",
        f"Trial noise: the starting network trained {len(noise_accs)} times with different seeds scores "
        f"{np.mean(noise_accs):.4f} +- {np.std(noise_accs, ddof=1):.4f} (mean +- standard deviation; "
        f"{', '.join(f'{a:.4f}' for a in noise_accs)}). Differences between the rows smaller than about twice "
        "that are noise.",
        "",
        f"## Best validation accuracy so far, by trial (mean of {args.seeds} seed(s))",
        "",
    ]
    checkpoints = sorted({1, 2, 4, 8, 12, 16, 20, args.trials} & set(range(1, args.trials + 1)))
    lines.append("| method | " + " | ".join(f"trial {k}" for k in checkpoints) + " |")
    lines.append("|---|" + "---|" * len(checkpoints))
    for method, runs in results.items():
        curves = np.array([np.maximum.accumulate(r["accs"]) for r in runs])
        mean = curves.mean(0)
        lines.append(f"| {method} | " + " | ".join(f"{mean[k - 1]:.4f}" for k in checkpoints) + " |")
    lines += [
        "",
        "## Cost",
        "",
        "| method | mean accuracy of a trial | best (per seed) | mean training s per trial | mean suggestion s | "
        "parameters of the best network |",
        "|---|---|---|---|---|---|",
    ]
    for method, runs in results.items():
        accs = np.concatenate([r["accs"] for r in runs])
        bests = [max(r["accs"]) for r in runs]
        best_sizes = [r["sizes"][int(np.argmax(r["accs"]))] for r in runs]
        lines.append(
            f"| {method} | {accs.mean():.4f} | {', '.join(f'{b:.4f}' for b in bests)} | "
            f"{np.mean([s for r in runs for s in r['fit_s']]):.1f} | "
            f"{np.mean([s for r in runs for s in r['suggest_s']]):.2f} | "
            f"{', '.join(f'{s:,}' for s in best_sizes)} |"
        )
    lines += [
        "",
        "Per trial (accuracy), first seed:",
        "",
    ]
    for method, runs in results.items():
        lines.append(f"- {method}: " + ", ".join(f"{a:.3f}" for a in runs[0]["accs"]))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "results" / "network_morphism.md"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    data = load_data()
    start = time.perf_counter()
    results = {
        m: [run(m, s, args.trials, args.epochs, data) for s in range(args.seeds)] for m in args.methods
    }
    noise_accs = noise(data, args.epochs)
    text = report(results, noise_accs, args, time.perf_counter() - start)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
