"""Mutators (NNI's Mutator API): the graph IR, dry runs, the search space they make, trials that replay them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from nni_pl.errors import ConfigError
from nni_pl.experiment import store as st
from nni_pl.nas import LayerChoice, ModelSpace, MutationError, Mutator, Placeholder, Sampler, mutate_model
from nni_pl.nas._trial import run_trial
from nni_pl.nas.evaluator import Classification, FunctionalEvaluator
from nni_pl.nas.experiment import NasExperiment
from nni_pl.nas.mutator import MutatorSpace, trace
from nni_pl.nas.strategy import (
    DARTS,
    TPE,
    GridSearch,
    PolicyBasedRL,
    Random,
    RegularizedEvolution,
    StrategyTuner,
    simulate,
)
from tests.nas.mutator_space import (
    ACTIVATIONS,
    MIXERS,
    BlockMutator,
    BrokenWidthMutator,
    DigitsBase,
    DigitsBaseSpace,
    Op,
    WidthMutator,
    seed_mutators,
)

TINY_DIGITS = {
    "factory": "nni_pl.nas.evaluator.data:digits_loaders",
    "kwargs": {"limit": 300, "batch_size": 50},
}
X = torch.randn(4, 64)


def n_params(model: nn.Module) -> float:
    return float(sum(p.numel() for p in model.parameters()))


class Pick(Sampler):
    """Picks the candidate at ``position`` (or the last one)."""

    def __init__(self, position: int = -1) -> None:
        self.position = position

    def choice(self, candidates: list[Any], mutator: Any, model: Any, index: int) -> Any:
        return candidates[self.position]


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        h = h + self.conv(x)  # the conv module is called twice: two nodes, one module
        return self.head(h.flatten(1))


# --- the graph IR --------------------------------------------------------------------------------------------
def test_trace_nodes_labels_types_parameters_and_edges() -> None:
    model = trace(Residual())
    names = [n.name for n in model.get_nodes()]
    assert names[0] == "x" and names[-1] == "output" and names.count("conv") == 1
    conv = model.get_node_by_name("conv")
    assert conv.label == "conv" and conv.operation.type == "torch.nn.modules.conv.Conv2d"
    assert conv.operation.parameters["out_channels"] == 4 and conv.operation.parameters["padding"] == (1, 1)
    assert conv.operation.parameters["bias"] is True
    # by import path, class name, the class itself, NNI's __torch__ spelling
    for spelling in (
        "torch.nn.modules.conv.Conv2d",
        "Conv2d",
        nn.Conv2d,
        "__torch__.torch.nn.modules.conv.Conv2d",
    ):
        assert len(model.get_nodes_by_type(spelling)) == 2  # two calls of the shared conv
    assert model.get_nodes_by_label("bn")[0].successors[0].name == "relu"
    assert [p.name for p in model.get_node_by_name("bn").predecessors] == ["conv"]
    add = model.get_node_by_name("add")
    assert [(e.head.name, e.tail_slot) for e in add.incoming_edges] == [("relu", 0), ("conv_1", 1)]
    assert {e.tail.name for e in model.get_node_by_name("x").outgoing_edges} == {"conv", "conv_1"}
    assert model.root_graph.input_names == ["x"] and model.root_graph.output_names == ["head"]
    assert model.get_node_by_name("nope") is None and model.get_nodes_by_label("nope") == []
    # the unchanged model is the same function, with the base model's weights
    base = Residual()
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(trace(base).to_module()(x), base(x))


def test_update_operation_rebuilds_only_changed_nodes_and_keeps_other_weights() -> None:
    base = Residual().eval()
    model = trace(base)
    model.get_node_by_name("bn").update_operation("torch.nn.Identity", {})
    gm = model.to_module()
    assert isinstance(gm.bn, nn.Identity)
    assert torch.equal(gm.conv.weight, base.conv.weight) and gm.conv.weight is not base.conv.weight
    x = torch.randn(2, 1, 8, 8)
    h = torch.relu(base.conv(x)) + base.conv(x)
    assert torch.allclose(gm(x), base.head(h.flatten(1)), atol=1e-6)
    # a parameter edited in place rebuilds that node; a shared module changed at one call site gets a new name
    fresh = trace(base)
    fresh.get_node_by_name("head").operation.parameters["out_features"] = 5
    fresh.get_node_by_name("conv_1").update_operation(
        nn.Conv2d, {"in_channels": 1, "out_channels": 4, "kernel_size": 1}
    )
    gm = fresh.to_module()
    assert gm(x).shape == (2, 5) and gm.conv.kernel_size == (3, 3)
    assert [m.kernel_size for m in gm.modules() if isinstance(m, nn.Conv2d)] == [(3, 3), (1, 1)]
    assert trace(base).get_node_by_name("head").operation.parameters["out_features"] == 3  # base untouched


def test_placeholder_with_tensor_info_stays_and_an_edited_one_is_rebuilt() -> None:
    from nni_pl.nas._graph_fx import _unchanged

    base = nn.Sequential(Placeholder(label="p", table=torch.ones(3)), Placeholder(label="q", k=1))
    model = trace(base)
    p, q = model.get_nodes_by_label("p")[0], model.get_nodes_by_label("q")[0]
    q.operation.parameters["k"] = 2  # edited in place: rebuilt (as a Placeholder with its label)
    assert _unchanged(p) and not _unchanged(q)  # a tensor among the parameters compares by content
    gm = model.to_module()
    assert torch.equal(gm.get_submodule("0").related_info["table"], torch.ones(3))
    assert gm.get_submodule("1").related_info == {"k": 2} and gm.get_submodule("1").label == "q"


def test_graph_edits_insert_remove_add_and_edges() -> None:
    model = trace(Residual())
    graph = model.root_graph
    relu_in = model.get_node_by_name("relu").incoming_edges[0]
    new = graph.insert_node_on_edge(relu_in, "extra", "torch.nn.Dropout", {"p": 0.0})
    assert [p.name for p in model.get_node_by_name("relu").predecessors] == ["extra"]
    assert new.predecessors[0].name == "bn" and new.label == "extra"
    model.get_node_by_name("bn").remove()  # one input: bypassed
    assert [p.name for p in new.predecessors] == ["conv"]
    # a new node fed by the input and added into the sum
    scale = graph.add_node(
        "scale", "torch.nn.Conv2d", {"in_channels": 1, "out_channels": 4, "kernel_size": 1}
    )
    graph.add_edge(graph.input_node, scale)
    add = model.get_node_by_name("add")
    add.incoming_edges[1].remove()
    graph.add_edge(scale, (add, 1))
    assert [p.name for p in add.predecessors] == ["relu", "scale"]
    model.get_node_by_name("conv_1").remove()  # nothing reads it any more
    gm = model.to_module()
    x = torch.randn(2, 1, 8, 8)
    assert gm(x).shape == (2, 3)
    assert isinstance(gm.extra, nn.Dropout) and isinstance(gm.scale, nn.Conv2d) and not hasattr(gm, "bn")
    with pytest.raises(MutationError, match="already has a node named 'scale'"):
        graph.add_node("scale", "torch.nn.ReLU")
    with pytest.raises(MutationError, match=r"node 'add' has 2 inputs"):
        add.remove()
    with pytest.raises(MutationError, match=r"cannot import the operation type 'torch.nn.Nope'"):
        model.get_node_by_name("head").update_operation("torch.nn.Nope", {})
    with pytest.raises(
        MutationError, match=r"node 'head': Linear does not take the parameters \{'width': 3\}"
    ):
        model.get_node_by_name("head").update_operation("Linear", {"width": 3})


def test_function_nodes_parameters_are_their_keyword_arguments() -> None:
    class Net(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.leaky_relu(x.flatten(start_dim=1), negative_slope=0.5)

    model = trace(Net())
    act = model.get_nodes_by_type("leaky_relu")[0]
    assert act.operation.parameters == {"negative_slope": 0.5, "inplace": False}
    assert model.get_node_by_name("flatten").operation.parameters == {"start_dim": 1}
    act.operation.parameters["negative_slope"] = 0.0
    x = -torch.ones(2, 2, 2)
    assert torch.equal(model.to_module()(x), torch.zeros(2, 4))
    act.update_operation("torch.sigmoid", {})
    assert torch.allclose(model.to_module()(x), torch.sigmoid(-torch.ones(2, 4)))
    with pytest.raises(MutationError, match="node 'flatten' is a call_method node; give a module class"):
        model.get_node_by_name("flatten").update_operation("torch.flatten", {})


def test_mnasnet_style_mutator_inserts_layers_and_fixes_the_successor() -> None:
    from tests.nas.mutator_space import ConvBase, StackMutator

    mutators = [StackMutator(label="mutable_0")]
    space = MutatorSpace(ConvBase(), mutators)
    assert space.search_space() == {
        "mutable_0/0": {"_type": "choice", "_value": [1, 3]},
        "mutable_0/1": {"_type": "choice", "_value": [1, 2]},
        "mutable_0/2": {"_type": "choice", "_value": [4, 16]},
    }
    x = torch.randn(2, 1, 8, 8)
    seen = set()

    def evaluate(params: dict[str, Any]) -> float:
        k, layers, width = params["mutable_0/0"], params["mutable_0/1"], params["mutable_0/2"]
        model = mutate_model(ConvBase(), mutators, {"mutable_0": [k, layers, width]})
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == 2 + layers and all(c.kernel_size == (k, k) for c in convs[1:-1])
        assert model.head.in_channels == width and model(x).shape == (2, 10)
        seen.add((k, layers, width))
        return n_params(model)

    runs = simulate(GridSearch(seed=0), space.search_space(), evaluate, budget=8)
    assert len(runs) == 8 and len(seen) == 8


def test_a_labelled_module_is_one_node_even_when_untraceable() -> None:
    class Gate(nn.Module):
        label = "gate"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x  # data-dependent: fx could not trace into it

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate = Gate()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.gate(x))

    model = trace(Net())
    (gate,) = model.get_nodes_by_label("gate")
    assert gate.name == "gate" and gate.operation.type.endswith("Gate")
    gate.update_operation("torch.nn.Tanh")
    assert isinstance(model.to_module().gate, nn.Tanh)


def test_trace_refuses_untraceable_forward_with_advice() -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(MutationError, match=r"torch.fx cannot trace Branchy.forward.*label"):
        trace(Branchy())


# --- Mutator -----------------------------------------------------------------------------------------------------
def test_seed_block_mutator_dry_run_apply_and_history() -> None:
    mutator = BlockMutator("mutable_0", ACTIVATIONS)
    model = trace(DigitsBase())
    candidates, dry = mutator.dry_run(model)
    assert candidates == [ACTIVATIONS]
    assert dry.get_nodes_by_label("mutable_0")[0].operation.type == "torch.nn.ReLU"
    assert model.get_nodes_by_label("mutable_0")[0].operation.type.endswith("Placeholder")  # left as it was
    mutated = mutator.bind_sampler(Pick(1)).apply(model)
    node = mutated.get_nodes_by_label("mutable_0")[0]
    assert node.name == "block0" and node.operation.type == "torch.nn.Tanh"
    assert mutated.history[-1].samples == [ACTIVATIONS[1]] and mutated.history[-1].changed == ["block0"]
    assert isinstance(mutated.to_module().block0, nn.Tanh)
    placeholder = trace(DigitsBase()).get_nodes_by_label("mutable_1")[0]
    assert placeholder.operation.parameters == {}
    with_info = trace(nn.Sequential(Placeholder(label="p", kernel_size_options=[1, 3])))
    assert with_info.get_nodes_by_label("p")[0].operation.parameters == {"kernel_size_options": [1, 3]}


def test_mutator_errors_name_the_mutator_and_node() -> None:
    class Empty(Mutator):
        def mutate(self, model: Any) -> None:
            model.get_nodes_by_label("mutable_0")
            self.choice([])

    with pytest.raises(
        MutationError, match=r"mutator 'e': choice #0 \(at node 'block0'\): got an empty candidate"
    ):
        Empty(label="e").dry_run(trace(DigitsBase()))
    with pytest.raises(MutationError, match="no sampler"):
        BlockMutator("mutable_0", ACTIVATIONS).apply(trace(DigitsBase()))
    with pytest.raises(MutationError, match=r"choice\(\) was called outside mutate\(\)"):
        BlockMutator("mutable_0", ACTIVATIONS).choice([1, 2])
    with pytest.raises(ConfigError, match=r"Mutator.label"):
        Mutator(label="")

    class Buggy(Mutator):
        def mutate(self, model: Any) -> None:
            model.get_node_by_name("fc1").operation.parameters["missing"]

    with pytest.raises(
        MutationError, match=r"mutator 'Buggy': mutate\(\) failed \(at node 'fc1'\): KeyError"
    ):
        Buggy().dry_run(trace(DigitsBase()))


def test_mutator_space_labels_encoding_and_errors() -> None:
    space = MutatorSpace(DigitsBase(), [*seed_mutators(), WidthMutator(label="w")])
    assert space.search_space() == {
        "BlockMutator_0": {"_type": "choice", "_value": [0, 1, 2]},  # objects: by position
        "BlockMutator_1": {"_type": "choice", "_value": [0, 1]},
        "w/0": {"_type": "choice", "_value": [16, 32, 48]},  # distinct scalars: the values
        "w/1": {"_type": "choice", "_value": [True, False]},
    }
    assert space.entries[0]["export"][1] == ["torch.nn.Tanh", {}]
    with pytest.raises(
        MutationError, match=r"mutator 'BlockMutator_0': changed nothing.*'mutable_9'.*'mutable_0'"
    ):
        MutatorSpace(DigitsBase(), [BlockMutator("mutable_9", ACTIVATIONS)])
    with pytest.raises(ConfigError, match="two mutators are named 'x'"):
        MutatorSpace(DigitsBase(), [WidthMutator(label="x"), WidthMutator(label="x")])
    with pytest.raises(ConfigError, match="item 0 is 'm', not a Mutator"):
        MutatorSpace(DigitsBase(), ["m"])


def test_mutate_model_rebuilds_an_exported_architecture() -> None:
    arch = {"BlockMutator_0": ["torch.nn.Tanh", {}], "BlockMutator_1": ["torch.nn.Dropout", {"p": 0.1}]}
    model = mutate_model(DigitsBase(), seed_mutators(), arch)
    assert isinstance(model.block0, nn.Tanh) and isinstance(model.block1, nn.Dropout)
    assert model(X).shape == (4, 10)
    wide = mutate_model(DigitsBase(), [WidthMutator(label="w")], {"w": [48, False]})
    assert wide.fc1.out_features == 48 and wide.fc1.bias is None and wide.fc2.in_features == 48
    assert wide(X).shape == (4, 10)
    with pytest.raises(MutationError, match=r"'w/0': 7 is not one of its candidates \[16, 32, 48\]"):
        mutate_model(DigitsBase(), [WidthMutator(label="w")], {"w": [7, True]})
    with pytest.raises(MutationError, match="names 'v', no mutator"):
        mutate_model(DigitsBase(), [WidthMutator(label="w")], {"v": 1})


def forward_once(model: nn.Module) -> float:
    return float(model(X).sum())


def test_shape_error_names_the_failing_node_and_the_mutator(trial_dir: Path) -> None:
    model = mutate_model(DigitsBase(), [BrokenWidthMutator(label="narrow")], {"narrow": 16})
    with pytest.raises(MutationError, match=r"mutator 'narrow'.*fails at node 'fc2'.*'fc1' by 'narrow'"):
        model(X)
    with pytest.raises(
        RuntimeError, match="shapes cannot be multiplied"
    ) as info:  # unmutated: torch's own error
        trace(DigitsBase()).to_module()(torch.zeros(2, 7))
    assert not isinstance(info.value, MutationError)
    # in a trial, the error that fails it says the same
    exp = NasExperiment(
        DigitsBase(),
        FunctionalEvaluator(forward_once),
        Random(),
        applied_mutators=[BrokenWidthMutator(label="narrow")],
    )
    with pytest.raises(MutationError, match=r"mutator 'narrow'.*fails at node 'fc2'"):
        run_trial(json.loads(json.dumps(exp.spec)), {"narrow": 16})


@pytest.mark.parametrize(
    "strategy",
    [
        Random(seed=0),
        GridSearch(seed=0),
        RegularizedEvolution(population_size=3, sample_size=2, seed=0),
        TPE(seed=0),
        PolicyBasedRL(max_collect=2, trial_per_collect=3, seed=0),
    ],
    ids=lambda s: type(s).__name__,
)
def test_every_strategy_explores_the_mutator_space(strategy: Any) -> None:
    mutators = [BlockMutator("mutable_0", ACTIVATIONS), WidthMutator(label="w")]  # 3 x 3 x 2 models
    space = MutatorSpace(DigitsBase(), mutators)
    built = []

    def evaluate(params: dict[str, Any]) -> float:
        from nni_pl.nas.mutator import export_choices

        model = mutate_model(DigitsBase(), mutators, export_choices(space.entries, params))
        assert model(X).shape == (4, 10)
        built.append(params)
        return -n_params(model)

    runs = simulate(strategy, space.search_space(), evaluate, budget=6, seed=0)
    assert len(runs) == 6 and len(built) == 6
    assert len({json.dumps(a, sort_keys=True) for a, _ in runs}) >= 3  # it explores


# --- NasExperiment ---------------------------------------------------------------------------------------------------
def test_experiment_config_and_trial_replay(tmp_path: Path, trial_dir: Path) -> None:
    exp = NasExperiment(
        DigitsBaseSpace(hidden=32),
        FunctionalEvaluator(n_params),
        TPE(seed=0),
        applied_mutators=seed_mutators(),
        experiment_working_directory=tmp_path,
    )
    assert exp.config.search_space.to_json() == {
        "BlockMutator_0": {"_type": "choice", "_value": [0, 1, 2]},
        "BlockMutator_1": {"_type": "choice", "_value": [0, 1]},
    }
    assert exp.spec["model_labels"] == ["BlockMutator_0", "BlockMutator_1"]
    assert exp.spec["model_space"]["import_path"].endswith("mutator_space:DigitsBaseSpace")
    assert "base_model" not in exp.spec["mutators"]
    spec = json.loads(json.dumps(exp.spec))  # what the trial reads
    # the manager's tuner proposes from the plain search space; the trial replays the choices
    tuner = StrategyTuner(**exp.config.tuner.class_args)
    tuner.update_search_space(exp.config.search_space)
    params = tuner.generate_parameters(0)
    value = run_trial(spec, params)
    linear = 32 * 32 + 32 if params["BlockMutator_1"] == 0 else 0
    assert value == n_params(DigitsBaseSpace()) + linear
    # NNI's positional order, a plain nn.Module base (pickled into the spec)
    plain = NasExperiment(DigitsBase(), FunctionalEvaluator(n_params), seed_mutators(), Random(seed=0))
    assert isinstance(plain.strategy, Random) and "base_model" in plain.spec["mutators"]
    assert run_trial(
        json.loads(json.dumps(plain.spec)), {"BlockMutator_0": 2, "BlockMutator_1": 1}
    ) == n_params(DigitsBase())


def test_experiment_refuses_mixing_oneshot_and_bad_mutators() -> None:
    class Inline(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.act = LayerChoice([nn.ReLU(), nn.Tanh()], label="act")
            self.block = Placeholder(label="mutable_0")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.block(self.act(x))

    ev = FunctionalEvaluator(n_params)
    with pytest.raises(
        ConfigError, match=r"'applied_mutators': the base model has inline choices too \(\['act'\]\)"
    ):
        NasExperiment(Inline(), ev, Random(), applied_mutators=[BlockMutator("mutable_0", ACTIVATIONS)])
    with pytest.raises(ConfigError, match=r"applied_mutators.*DARTS.*multi-trial"):
        NasExperiment(DigitsBase(), ev, DARTS(), applied_mutators=seed_mutators())
    with pytest.raises(ConfigError, match="execution"):
        NasExperiment(DigitsBase(), ev, Random(), applied_mutators=seed_mutators(), execution="cgo")
    with pytest.raises(MutationError, match="'BlockMutator_0': changed nothing"):
        NasExperiment(DigitsBase(), ev, Random(), applied_mutators=[BlockMutator("nowhere", ACTIVATIONS)])

    class LocalMutator(Mutator):  # defined where trials cannot import it
        def mutate(self, model: Any) -> None:
            self.choice([1, 2])

    with pytest.raises(ConfigError, match="'applied_mutators': cannot be pickled"):
        NasExperiment(DigitsBase(), ev, Random(), applied_mutators=[LocalMutator()])
    with pytest.raises(ConfigError, match="'model_space': uses MainBase, defined in the script being run"):
        main_cls = type("MainBase", (DigitsBase,), {"__module__": "__main__"})
        import __main__

        __main__.MainBase = main_cls  # type: ignore[attr-defined]
        try:
            NasExperiment(main_cls(), ev, Random(), applied_mutators=seed_mutators())
        finally:
            del __main__.MainBase  # type: ignore[attr-defined]


@pytest.mark.slow
def test_experiment_runs_seed_block_mutators_and_exports_the_choices(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    exp = NasExperiment(
        DigitsBase(),
        Classification(train_dataloaders=TINY_DIGITS, learning_rate=0.05, max_epochs=1),
        seed_mutators(),
        GridSearch(seed=0),
        execution="function",
        max_trial_number=3,
        trial_concurrency=1,
        experiment_working_directory=tmp_path,
        trial_code_directory=repo,
        seed=0,
    )
    exp.run(display=False)
    trials = exp.trials()
    assert [t.status for t in trials] == [st.SUCCEEDED] * 3, [t.error for t in trials]
    assert len({json.dumps(t.parameters, sort_keys=True) for t in trials}) == 3
    top = exp.export_top_models(top_k=3)
    assert len(top) == 3 and all(set(a) == {"BlockMutator_0", "BlockMutator_1"} for a in top)
    assert all(a["BlockMutator_0"] in json.loads(json.dumps(ACTIVATIONS)) for a in top)
    best = max(trials, key=lambda t: t.final_default)
    assert top[0] == {
        "BlockMutator_0": list(json.loads(json.dumps(ACTIVATIONS[best.parameters["BlockMutator_0"]]))),
        "BlockMutator_1": list(json.loads(json.dumps(MIXERS[best.parameters["BlockMutator_1"]]))),
    }
    assert mutate_model(DigitsBase(), seed_mutators(), top[0])(X).shape == (4, 10)
    exp.close()


def test_op_candidates_can_name_classes_too() -> None:
    mutator = BlockMutator("mutable_0", [Op(nn.ReLU, {}), Op(nn.GELU, {"approximate": "tanh"})])
    space = MutatorSpace(DigitsBase(), [mutator])
    assert space.entries[0]["export"] == [0, 1]  # classes are not JSON: positions
    model = mutate_model(DigitsBase(), [mutator], {"BlockMutator_0": 1})
    assert isinstance(model.block0, nn.GELU) and model.block0.approximate == "tanh"


def test_fixed_mutator_counts_in_export_and_module_input_is_traced() -> None:
    from nni_pl.nas.mutator import export_choices
    from tests.nas.mutator_space import FixedMutator

    mutators = [FixedMutator(label="fixed"), BlockMutator("mutable_0", ACTIVATIONS)]
    space = MutatorSpace(
        DigitsBase(), mutators
    )  # a mutator without choices is fine when it changes the graph
    assert list(space.search_space()) == ["BlockMutator_1"]
    assert export_choices(space.entries, {"BlockMutator_1": 0}, space.names) == {
        "fixed": [],
        "BlockMutator_1": ["torch.nn.ReLU", {}],
    }
    model = mutate_model(DigitsBase(), mutators, {"fixed": [], "BlockMutator_1": ["torch.nn.ReLU", {}]})
    assert isinstance(model.block1, nn.Identity) and isinstance(model.block0, nn.ReLU)
    applied = FixedMutator().bind_sampler(Pick()).apply(DigitsBase())  # an nn.Module is traced first
    assert applied.get_node_by_name("block1").operation.type == "torch.nn.Identity"


def test_mutate_failure_lists_labels_that_matched_nothing() -> None:
    class First(Mutator):
        def mutate(self, model: Any) -> None:
            model.get_nodes_by_label("mutable_7")[0].update_operation("torch.nn.ReLU")

    with pytest.raises(
        MutationError, match=r"IndexError.*no node for \['mutable_7'\] \(labels: .*'mutable_0'"
    ):
        First(label="f").dry_run(DigitsBase())


def test_mutator_module_imports_without_torch() -> None:
    import subprocess
    import sys

    code = "import sys, nni_pl.nas.mutator, nni_pl.nas.strategy; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_mutated_model_exports_to_onnx(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ort = pytest.importorskip("onnxruntime")
    from nni_pl.compression.export import export_onnx, missing_onnx_packages

    if missing_onnx_packages():
        pytest.skip(f"needs {missing_onnx_packages()}")
    model = mutate_model(DigitsBase(), [WidthMutator(label="w")], {"w": [48, False]}).eval()
    export_onnx(model, X[:1], tmp_path / "m.onnx")
    assert "torch.export failed" not in caplog.text  # it reads the generated forward's signature
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    (out,) = session.run(None, {session.get_inputs()[0].name: X[:2].numpy()})
    assert torch.allclose(torch.from_numpy(out), model(X[:2]).detach(), atol=1e-5)
