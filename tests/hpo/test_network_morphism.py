"""NetworkMorphism: graphs in NNI's JSON, morphisms that keep networks valid, Bayesian choice, resume, config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nni_pl.errors import ConfigError
from nni_pl.hpo import HistoryEntry, create_algorithm
from nni_pl.hpo.tuners._nm_layers import GraphError, StubLayer
from nni_pl.hpo.tuners._nm_transform import cnn_graph, mlp_graph, transform
from nni_pl.hpo.tuners.network_morphism import (
    GRAPH_JSON_KEYS,
    NetworkMorphismTuner,
    build_graph_from_json,
    json_to_graph,
)
from nni_pl.testing import TunerTestCase
from nni_pl.testing.tuners import DEFAULT_EXTRA_KEYS

SMALL = {"input_width": 8, "input_channel": 1, "default_model_width": 8, "t_min": 0.2}
NO_SPACE = "NetworkMorphism ignores the search space (as NNI's does): its suggestions are network graphs"


class TestNetworkMorphismConformance(TunerTestCase):
    """The suite on the empty space an experiment without ``searchSpace`` has; the graph's JSON keys are the
    suggestion's extra keys."""

    tuner_class = NetworkMorphismTuner
    tuner_kwargs = {**SMALL, "default_model_len": 2}
    space_override = {}
    extra_keys = DEFAULT_EXTRA_KEYS | GRAPH_JSON_KEYS
    finite_space_exemption = "its graphs are an unbounded space of their own; the search space is ignored"
    n_suggestions = 6

    def test_randint_values(self) -> None:
        pytest.skip(NO_SPACE)

    def test_quantized_values(self) -> None:
        pytest.skip(NO_SPACE)

    def test_choice_values_are_exact(self) -> None:
        pytest.skip(NO_SPACE)

    def test_unsupported_spaces_are_rejected(self) -> None:
        pytest.skip(NO_SPACE + ": no space is rejected")

    def test_exhausts_finite_spaces(self) -> None:
        pytest.skip(
            NO_SPACE + ", so no finite space runs out (an architecture is still never suggested twice)"
        )

    def test_resume_continues_a_finite_space(self) -> None:
        pytest.skip(NO_SPACE + "; test_resume_* below cover resuming")

    def test_imported_and_customised_points_are_not_suggested(self) -> None:
        pytest.skip(NO_SPACE + "; test_imported_graphs_* below cover imported graphs")


def drive(tuner: NetworkMorphismTuner, n: int, metric: Any, start: int = 0) -> list[dict[str, Any]]:
    """Suggest ``n`` graphs one at a time, reporting ``metric(graph)`` for each; returns the suggestions."""
    out = []
    for pid in range(start, start + n):
        params = tuner.generate_parameters(pid)
        out.append(params)
        tuner.receive_trial_result(pid, json.loads(json.dumps(params)), metric(json_to_graph(params)))
    return out


def depth(graph: Any) -> float:
    return float(sum(layer.family == "Conv" for layer in graph.layer_list))


# --- NNI's JSON --------------------------------------------------------------------------------------------------
def _nni_doc_example() -> dict[str, Any]:
    """The IR example of NNI 2.5's docs (Network Morphism, section 4): a chain of 17 layers."""
    layers = [
        ["StubReLU", 0, 1],
        ["StubConv2d", 1, 2, 3, 64, 3],
        ["StubBatchNormalization2d", 2, 3, 64],
        ["StubPooling2d", 3, 4, 2, 2, 0],
        ["StubReLU", 4, 5],
        ["StubConv2d", 5, 6, 64, 64, 3],
        ["StubBatchNormalization2d", 6, 7, 64],
        ["StubPooling2d", 7, 8, 2, 2, 0],
        ["StubReLU", 8, 9],
        ["StubConv2d", 9, 10, 64, 64, 3],
        ["StubBatchNormalization2d", 10, 11, 64],
        ["StubPooling2d", 11, 12, 2, 2, 0],
        ["StubGlobalPooling2d", 12, 13],
        ["StubDropout2d", 13, 14, 0.25],
        ["StubDense", 14, 15, 64, 64],
        ["StubReLU", 15, 16],
        ["StubDense", 16, 17, 64, 10],
    ]
    shapes = [[32, 32, 3]] * 2 + [[32, 32, 64]] * 2 + [[16, 16, 64]] * 4 + [[8, 8, 64]] * 4 + [[4, 4, 64]]
    shapes += [[64]] * 4 + [[10]]
    return {
        "input_shape": [32, 32, 3],
        "weighted": False,
        "operation_history": [],
        "layer_id_to_input_node_ids": {str(i): [i] for i in range(17)},
        "layer_id_to_output_node_ids": {str(i): [i + 1] for i in range(17)},
        "adj_list": {str(i): [[i + 1, i]] if i < 17 else [] for i in range(18)},
        "reverse_adj_list": {str(i): [[i - 1, i - 1]] if i else [] for i in range(18)},
        "node_list": [[i, s] for i, s in enumerate(shapes)],
        "layer_list": [[i, layer] for i, layer in enumerate(layers)],
    }


def test_nni_documented_json_builds_a_torch_model():
    import torch

    doc = _nni_doc_example()
    graph = json_to_graph(json.dumps(doc))  # NNI's trials pass the JSON string
    assert graph.n_layers == 17 and graph.node_list[12] == (4, 4, 64)
    model = build_graph_from_json(doc)
    assert tuple(model(torch.zeros(2, 3, 32, 32)).shape) == (2, 10)
    assert isinstance(model.get_submodule("1"), torch.nn.Conv2d)  # layers registered by id, as NNI's


def test_first_suggestion_is_nnis_starting_cnn_in_nnis_format():
    tuner = NetworkMorphismTuner()  # NNI's defaults: 32x32x3, 10 classes, 3 blocks of 64 filters
    tuner.update_search_space({})
    params = tuner.generate_parameters(0)
    assert set(params) == GRAPH_JSON_KEYS
    json.dumps(params, allow_nan=False)
    types = [desc[0] for _, desc in params["layer_list"]]
    assert types[:4] == ["StubReLU", "StubBatchNormalization2d", "StubConv2d", "StubPooling2d"]
    assert types[-5:] == ["StubGlobalPooling2d", "StubDropout2d", "StubDense", "StubReLU", "StubDense"]
    assert params["layer_list"][2] == [
        2,
        ["StubConv2d", 2, 3, 3, 64, 3, 1, 1],
    ]  # in, out, channels, filters, k, stride, padding
    assert params["node_list"][-1] == [len(params["node_list"]) - 1, [10]]
    assert params["adj_list"]["0"] == [[1, 0]] and params["reverse_adj_list"]["1"] == [[0, 0]]


@pytest.mark.parametrize(
    "broken, match",
    [
        ({"node_list": []}, "node_list"),
        ({"layer_list": [[0, ["StubLSTM", 0, 1]]]}, "unknown layer type 'StubLSTM'"),
        ("no-adj", "missing adj_list"),
    ],
)
def test_json_that_is_not_a_graph_is_refused(broken: Any, match: str):
    doc = _nni_doc_example()
    if broken == "no-adj":
        del doc["adj_list"]
    else:
        doc.update(broken)
    with pytest.raises(GraphError, match=match):
        json_to_graph(doc)


def test_json_with_shapes_that_do_not_fit_is_refused():
    doc = _nni_doc_example()
    doc["layer_list"][5] = [5, ["StubConv2d", 5, 6, 32, 64, 3]]  # reads 64 channels, says 32
    with pytest.raises(GraphError, match="do not match"):
        json_to_graph(doc)


# --- the morphisms ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["cv", "common"])
def test_chains_of_random_morphs_stay_valid_networks(task: str):
    import torch

    make = cnn_graph if task == "cv" else mlp_graph
    shape = (8, 8, 1) if task == "cv" else (64,)
    rng = np.random.default_rng(3)
    graph, ops = make(10, shape, 2, 4), set()
    for _ in range(12):
        kids = transform(graph, rng)
        assert kids
        for kid in kids:
            kid.check()  # shapes and layer sizes agree
            assert kid.key() != graph.key()
            ops.add(kid.operation_history[-1][0])
            again = json_to_graph(json.loads(json.dumps(kid.produce_json_model())))
            assert again.key() == kid.key() and again.node_list == kid.node_list
        graph = kids[int(rng.integers(len(kids)))]
        graph.operation_history = []
    assert ops == {"to_deeper_model", "to_wider_model", "to_add_skip_model", "to_concat_skip_model"}
    model = graph.produce_torch_model().eval()
    assert tuple(model(torch.randn(3, 1, 8, 8)).shape) == (3, 10)


def test_wider_conv_widens_the_other_branch_of_an_add():
    import torch

    g = cnn_graph(10, (8, 8, 1), 3, 4)
    convs = [i for i, layer in enumerate(g.layer_list) if layer.family == "Conv"]
    g.to_add_skip_model(convs[0], convs[1])
    g.to_wider_model(convs[1], 4)  # its output is added to the skip branch's 1x1 convolution
    skip_conv = next(i for i, layer in enumerate(g.layer_list) if layer.family == "Conv" and i not in convs)
    assert g.layer_list[convs[1]].params["filters"] == 8
    assert g.layer_list[skip_conv].params["filters"] == 8
    assert g.layer_list[convs[2]].params["input_channel"] == 8
    g.check()
    assert tuple(g.produce_torch_model()(torch.zeros(2, 1, 8, 8)).shape) == (2, 10)


def test_deeper_inserts_one_shape_keeping_layer_after_the_target():
    g = cnn_graph(10, (8, 8, 1), 2, 4)
    before, mid = g.n_layers, g.n_nodes
    g.to_deeper_model(2, StubLayer.conv(2, 4, 4, 5))
    assert g.n_layers == before + 1
    main = g.get_main_chain_layers()
    assert main[main.index(2) + 1] == before  # the new layer follows layer 2 on the main chain
    assert g.operation_history == [["to_deeper_model", 2, ["StubConv2d", mid, 3, 4, 4, 5, 1, 2]]]


# --- the tuner ---------------------------------------------------------------------------------------------------
def test_never_suggests_an_architecture_twice_even_with_trials_running():
    tuner = NetworkMorphismTuner(**SMALL, seed=0)
    tuner.update_search_space({})
    running = [tuner.generate_parameters(i) for i in range(6)]  # no result yet: random morphs
    done = drive(tuner, 6, depth, start=6)
    keys = [json_to_graph(p).key() for p in running + done]
    assert len(set(keys)) == 12


def test_suggestions_grow_from_the_best_trained_graph():
    tuner = NetworkMorphismTuner(**SMALL, seed=1)
    tuner.update_search_space({})
    first = [tuner.generate_parameters(i) for i in range(3)]
    for pid, value in zip(range(3), (0.1, 0.95, 0.2)):
        tuner.receive_trial_result(pid, first[pid], value)
    assert tuner.get_best_model_id() == tuner.total_data[1][2]
    for pid in range(3, 6):
        tuner.generate_parameters(pid)
        assert tuner.total_data[pid][1] == tuner.total_data[1][2]  # its father is the best model


def test_bayesian_search_beats_its_own_random_morphs_on_a_depth_objective():
    """Metric = number of convolutions (more is better): the GP learns it and the search deepens faster than
    morphing a random known graph (same seeds, same budget)."""
    finals = {"bayesian": [], "random": []}
    for seed in range(2):
        for mode in finals:
            tuner = NetworkMorphismTuner(**SMALL, default_model_len=1, seed=seed)
            tuner.update_search_space({})
            if mode == "random":
                tuner._bayesian = lambda: None  # only the fallback: a random morph of a random known graph
            results = [depth(json_to_graph(p)) for p in drive(tuner, 8, depth)]
            finals[mode].append(max(results))
    assert min(finals["bayesian"]) > max(finals["random"]), finals


def test_minimize_picks_the_lowest_metric():
    tuner = NetworkMorphismTuner(**SMALL, optimize_mode="minimize", seed=0)
    tuner.update_search_space({})
    drive(tuner, 3, lambda g: float(g.n_layers))
    best = tuner.get_best_model_id()
    assert tuner.get_metric_value_by_id(best) == min(h["metric_value"] for h in tuner.history)
    assert tuner.load_best_model().key() == tuner.load_model_by_id(best).key()


def test_nan_results_count_as_the_worst_and_do_not_break_the_model():
    tuner = NetworkMorphismTuner(**SMALL, seed=0)
    tuner.update_search_space({})
    values = iter([float("nan"), 0.5, float("inf"), {"default": 0.7}, 0.6])
    drive(tuner, 5, lambda g: next(values))
    assert tuner.get_metric_value_by_id(tuner.get_best_model_id()) == 0.7
    tuner.generate_parameters(5)


def test_resume_rebuilds_graphs_from_stored_parameters():
    before = NetworkMorphismTuner(**SMALL, seed=0)
    before.update_search_space({})
    done = drive(before, 4, depth)
    running = before.generate_parameters(4)
    history = [
        HistoryEntry(i, json.loads(json.dumps(p)), depth(json_to_graph(p))) for i, p in enumerate(done)
    ]
    history.append(HistoryEntry(4, json.loads(json.dumps(running)), None, finished=False))
    after = NetworkMorphismTuner(**SMALL, seed=0)
    after.update_search_space({})
    after.resume(history)
    assert len(after.history) == 4 and after.model_count == 5
    best = max(range(4), key=lambda i: history[i].value)
    assert after.load_best_model().key() == json_to_graph(done[best]).key()
    known = {json_to_graph(p).key() for p in [*done, running]}
    new = [after.generate_parameters(pid) for pid in range(5, 8)]
    assert not known & {json_to_graph(p).key() for p in new}  # the stored graphs are not suggested again
    after.receive_trial_result(4, running, 9.0)  # the running trial ends after the resume
    assert after.load_best_model().key() == json_to_graph(running).key()


def test_imported_graphs_are_learnt_and_not_suggested_again():
    source = NetworkMorphismTuner(**SMALL, seed=5)
    source.update_search_space({})
    graphs = drive(source, 4, depth)
    tuner = NetworkMorphismTuner(**SMALL, seed=6)
    tuner.update_search_space({})
    tuner.import_data(
        [
            {"parameter": graphs[0], "value": 0.3},
            {"parameter": graphs[1], "value": None},
            {"parameter": {"lr": 0.1}, "value": 0.9},  # not a graph: ignored
        ]
    )
    assert [h["metric_value"] for h in tuner.history] == [0.3]
    new = [json_to_graph(tuner.generate_parameters(i)).key() for i in range(4)]
    assert not {json_to_graph(g).key() for g in graphs[:2]} & set(new)


def test_graph_files_and_best_model_go_to_the_experiment_log_folder(tmp_path: Path):
    tuner = NetworkMorphismTuner(**SMALL, seed=0)
    tuner.attach(experiment_id="e", directory=tmp_path)
    tuner.update_search_space({})
    drive(tuner, 3, lambda g: -float(g.n_layers))
    folder = tmp_path / "log" / "model_path"
    assert sorted(p.name for p in folder.iterdir()) == ["0.json", "1.json", "2.json", "best_model.txt"]
    assert (folder / "best_model.txt").read_text() == f"best model: {tuner.get_best_model_id()}"
    assert json_to_graph((folder / "0.json").read_text()).key() == tuner.load_model_by_id(0).key()


# --- configuration ---------------------------------------------------------------------------------------------
def test_built_from_a_config_by_its_nni_names():
    args = {
        "optimize_mode": "maximize",
        "task": "cv",
        "input_width": 8,
        "input_channel": 1,
        "n_output_node": 10,
    }
    tuner = create_algorithm("tuner", "NetworkMorphism", class_args=args)
    assert isinstance(tuner, NetworkMorphismTuner) and tuner.input_shape == (8, 8, 1)
    assert isinstance(create_algorithm("tuner", "NetworkMorphismTuner"), NetworkMorphismTuner)
    mlp = create_algorithm(
        "tuner", "NetworkMorphism", class_args={"task": "common", "input_width": 8, "input_channel": 1}
    )
    assert mlp.input_shape == (64,)


def test_an_experiment_config_without_a_search_space_takes_it():
    from nni_pl.experiment.config import ExperimentConfig

    config = ExperimentConfig.from_dict(
        {
            "trialCommand": "python trial.py",
            "trialConcurrency": 1,
            "tuner": {
                "name": "NetworkMorphism",
                "classArgs": {
                    "optimize_mode": "maximize",
                    "task": "cv",
                    "input_width": 8,
                    "input_channel": 1,
                },
            },
            "trainingService": {"platform": "local"},
        }
    )
    assert config.search_space.to_json() == {}
    with pytest.raises(ConfigError, match=r"tuner\.classArgs\.input_channel.*got 0"):
        create_algorithm(
            "tuner", config.tuner.name, class_args={**config.tuner.class_args, "input_channel": 0}
        )


@pytest.mark.parametrize(
    "arg, value, match",
    [
        ("task", "nlp", r"must be 'cv' or 'common', got 'nlp'; NNI's 'nlp' task was never implemented"),
        ("input_width", 0, r"must be an integer >= 1, got 0"),
        ("n_output_node", 2.5, r"got 2.5"),
        ("optimize_mode", "max", r"got 'max'"),
        ("algorithm_name", "Random", r"must be 'Bayesian', got 'Random'"),
        ("t_min", 1.5, r"got 1.5"),
        ("beta", -1, r"got -1"),
        ("default_model_len", 0, r"got 0"),
        ("verbose", "yes", r"got 'yes'"),
        ("path", "", r"must be a folder name"),
        ("max_model_size", 1000, r"must be at least the starting network's \d+ parameters, got 1000"),
    ],
)
def test_bad_class_args_are_one_line_errors_naming_the_field(arg: str, value: Any, match: str):
    with pytest.raises(ConfigError, match=rf"tuner\.classArgs\.{arg}.*{match}") as info:
        create_algorithm("tuner", "NetworkMorphism", class_args={arg: value}, field="tuner")
    assert "\n" not in str(info.value)


def test_the_manager_does_not_import_torch_for_this_tuner():
    code = (
        "import sys, json\n"
        "from nni_pl.hpo import create_algorithm\n"
        "t = create_algorithm('tuner', 'NetworkMorphism', class_args={'input_width': 8, 'input_channel': 1})\n"
        "t.update_search_space({})\n"
        "p = t.generate_parameters(0); t.receive_trial_result(0, p, 0.5); t.generate_parameters(1)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- trials ------------------------------------------------------------------------------------------------------
def test_a_suggested_network_trains_in_lightning_on_digits():
    import lightning as L
    import torch
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y)
    tuner = NetworkMorphismTuner(input_width=8, input_channel=1, default_model_width=16, seed=0)
    tuner.update_search_space({})
    net = build_graph_from_json(tuner.generate_parameters(0))

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def training_step(self, batch: Any, _: int) -> Any:
            xb, yb = batch
            return torch.nn.functional.cross_entropy(self.net(xb), yb)

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    torch.manual_seed(0)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x[:1200], y[:1200]), batch_size=64, shuffle=True
    )
    trainer = L.Trainer(
        max_epochs=4,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Module(), data)
    net.eval()
    with torch.no_grad():
        accuracy = (net(x[1200:]).argmax(1) == y[1200:]).float().mean().item()
    assert accuracy > 0.6


def _graph_trial(params: dict[str, Any]) -> float:
    """A function trial: rebuilds the network (torch in the trial only) and scores it by its depth."""
    import torch

    net = build_graph_from_json(params)
    assert tuple(net(torch.zeros(1, 1, 8, 8)).shape) == (1, 10)
    return depth(json_to_graph(params))


def test_runs_in_a_real_experiment_and_resumes(tmp_path: Path):
    from nni_pl.experiment import Experiment
    from nni_pl.experiment import store as st

    exp = Experiment(
        trial=_graph_trial,
        search_space={},
        tuner={"name": "NetworkMorphism", "classArgs": SMALL},
        max_trial_number=4,
        trial_concurrency=2,
        experiment_working_directory=tmp_path,
        start_method="fork",
    )
    exp.run(display=False)
    trials = exp.trials()
    assert exp.get_status() == st.EXP_DONE and all(t.status == st.SUCCEEDED for t in trials)
    keys = {json_to_graph(t.parameters).key() for t in trials}
    assert len(keys) == 4
    assert (exp.directory / "log" / "model_path" / "best_model.txt").exists()

    again = Experiment.resume(exp.id, trial=_graph_trial, working_directory=tmp_path, start_method="fork")
    again.config.max_trial_number = 6
    again.run(display=False)
    later = [t for t in again.trials() if json_to_graph(t.parameters).key() not in keys]
    assert len(again.trials()) == 6 and len(later) == 2  # new graphs only, after the stored ones
