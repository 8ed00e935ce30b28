"""Network Morphism tuner (NNI's ``NetworkMorphism``): grows networks from the best ones, Auto-Keras style.

The tuner searches architectures, not hyperparameters: it ignores the search space (as NNI's does) and hands
each trial a network graph in NNI's JSON format as its parameters. The first trial gets the starting network
(NNI's ``CnnGenerator``: ``default_model_len`` blocks of ReLU, batch norm and a 3x3 convolution of
``default_model_width`` filters with max pooling, then global pooling, dropout and two dense layers; with
``task="common"`` a multi-layer perceptron). Each later graph is a morph of a trained one: deeper (a layer
inserted), wider (a convolution or dense layer doubled) or with a skip connection (add or concatenate), chosen
by Bayesian optimisation: a Gaussian process over an edit-distance kernel between graphs predicts the metric,
and simulated annealing over the tree of morphs picks the graph with the best upper confidence bound
``mean + beta * std`` (Jin et al., "Auto-Keras", KDD 2019). An architecture is never suggested twice.

The trial rebuilds its network with :func:`build_graph_from_json` (NNI's recipe:
``json_to_graph(params).produce_torch_model()``) and trains it as it likes; the module takes channels-first
input (``N x input_channel x input_width x input_width``)::

    import nni_pl as nni
    from nni_pl.hpo.tuners.network_morphism import build_graph_from_json

    net = build_graph_from_json(nni.get_next_parameter())   # a torch.nn.Module
    ...                                                     # train it (e.g. in a LightningModule)
    nni.report_final_result(accuracy)

Differences from NNI: graphs are passed as a JSON object (a dict) rather than a JSON string (both are
accepted by :func:`json_to_graph`); ``task="common"`` works (an MLP over the flattened
``input_width x input_width x input_channel`` input; NNI's raised an error) and ``"nlp"``, which NNI accepted
but never implemented, is refused; the kernel compares dense widths too, and its length scale and noise are
fitted by marginal likelihood on standardised metrics (NNI's was fixed and its prediction used a different
kernel from its fit); concurrent suggestions before the first result are random morphs of the known graphs
(NNI's repeated the starting graph); failed trials' graphs are not suggested again; results of imported and
resumed trials rebuild the model (NNI's ``import_data`` did nothing). Graphs go to ``<experiment>/log/<path>/``
(``<model id>.json``, ``best_model.txt``), as NNI documents, when the tuner runs in an experiment.

Example:
    >>> tuner = NetworkMorphismTuner(input_width=8, input_channel=1, default_model_width=8, t_min=0.1, seed=0)
    >>> tuner.update_search_space({})
    >>> graph = tuner.generate_parameters(0)
    >>> sorted(graph)[:3]
    ['adj_list', 'input_shape', 'layer_id_to_input_node_ids']
    >>> tuner.receive_trial_result(0, graph, 0.8)
    >>> child = json_to_graph(tuner.generate_parameters(1))
    >>> child.operation_history[0][0] in ("to_deeper_model", "to_wider_model", "to_add_skip_model", "to_concat_skip_model")
    True
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nni_pl._checks import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_optimize_mode,
    check_seed,
    fail,
)
from nni_pl.errors import NoMoreTrialError
from nni_pl.hpo._base import HistoryEntry, Tuner, extract_scalar
from nni_pl.hpo.tuners._common import make_rng
from nni_pl.hpo.tuners._nm_bayesian import Descriptor, EditDistanceGP, anneal
from nni_pl.hpo.tuners._nm_graph import Graph, graph_to_json, json_to_graph
from nni_pl.hpo.tuners._nm_layers import (
    BETA,
    JSON_KEYS,
    MAX_MODEL_SIZE,
    MODEL_LEN,
    MODEL_WIDTH,
    N_NEIGHBOURS,
    T_MIN,
    GraphError,
)
from nni_pl.hpo.tuners._nm_transform import cnn_graph, mlp_graph, transform
from nni_pl.space import SearchSpace

__all__ = [
    "GRAPH_JSON_KEYS",
    "CnnGenerator",
    "Graph",
    "GraphError",
    "MlpGenerator",
    "NetworkMorphismTuner",
    "build_graph_from_json",
    "graph_to_json",
    "json_to_graph",
]

log = logging.getLogger(__name__)

#: the keys of a graph's JSON object: what a NetworkMorphism trial's parameters hold
GRAPH_JSON_KEYS: frozenset[str] = JSON_KEYS
_RANDOM_TRIES = 50


class CnnGenerator:
    """NNI's generator of the starting CNN: ``CnnGenerator(n_output_node, input_shape).generate(model_len,
    model_width)`` gives ``model_len`` blocks of ReLU, batch norm and a 3x3 convolution of ``model_width``
    filters (max pooling between them), then global average pooling, dropout and two dense layers.

    Example:
        >>> graph = CnnGenerator(10, (8, 8, 1)).generate(model_len=2, model_width=16)
        >>> graph.node_list[-1], graph.size()
        ((10,), 2990)
    """

    def __init__(self, n_output_node: int, input_shape: Sequence[int]) -> None:
        self.n_output_node, self.input_shape = n_output_node, tuple(input_shape)

    def generate(self, model_len: int = MODEL_LEN, model_width: int = MODEL_WIDTH) -> Graph:
        return cnn_graph(self.n_output_node, self.input_shape, model_len, model_width)


class MlpGenerator(CnnGenerator):
    """NNI's generator of the starting multi-layer perceptron (``input_shape`` is ``(features,)``):
    ``model_len`` blocks of a dense layer of ``model_width`` units, dropout and ReLU, then the output layer.

    Example:
        >>> MlpGenerator(3, (4,)).generate(model_len=1, model_width=5).size()
        43
    """

    def generate(self, model_len: int = MODEL_LEN, model_width: int = MODEL_WIDTH) -> Graph:
        return mlp_graph(self.n_output_node, self.input_shape, model_len, model_width)


def build_graph_from_json(ir_model_json: str | Mapping[str, Any]) -> Any:
    """The ``torch.nn.Module`` of a graph in NNI's JSON (a trial's parameters, or the JSON string).

    NNI's trial-side helper of the same name; torch is imported here, not by the tuner.

    Example:
        >>> import torch
        >>> tuner = NetworkMorphismTuner(input_width=8, input_channel=1, default_model_width=8)
        >>> tuner.update_search_space({})
        >>> net = build_graph_from_json(tuner.generate_parameters(0))
        >>> tuple(net(torch.zeros(2, 1, 8, 8)).shape)
        (2, 10)
    """
    return json_to_graph(ir_model_json).produce_torch_model()


class NetworkMorphismTuner(Tuner):
    """Network morphism with Bayesian optimisation over graphs (NNI's ``NetworkMorphismTuner``).

    Args:
        task: ``"cv"`` (a CNN on ``input_width x input_width x input_channel`` images) or ``"common"`` (an MLP
            over that input flattened).
        input_width: image width (and height).
        input_channel: image channels.
        n_output_node: outputs of the network (classes).
        algorithm_name: ``"Bayesian"``, the only algorithm NNI has.
        optimize_mode: ``"maximize"`` (NNI's default) or ``"minimize"`` the reported metric.
        path: folder for the graphs' JSON files and ``best_model.txt``, under the experiment's ``log`` folder
            (an absolute path is used as given); nothing is written outside an experiment.
        verbose: log the search's progress at INFO level (DEBUG otherwise).
        beta: weight of the standard deviation in the acquisition ``mean + beta * std``.
        t_min: the temperature at which simulated annealing stops (it starts at 1 and falls by 0.9 a step).
        max_model_size: morphs with more parameters are not considered.
        default_model_len: blocks (layers) of the starting network.
        default_model_width: filters (units) of the starting network's layers.
        seed: makes the suggestions reproducible for the same sequence of results.

    Attributes (NNI's): ``n_classes``, ``input_shape``, ``history`` (``{"model_id", "metric_value"}`` per
    result), ``training_queue``, ``total_data`` (parameter id -> ``(graph JSON, father id, model id)``).
    """

    def __init__(
        self,
        task: str = "cv",
        input_width: int = 32,
        input_channel: int = 3,
        n_output_node: int = 10,
        algorithm_name: str = "Bayesian",
        optimize_mode: str = "maximize",
        path: str = "model_path",
        verbose: bool = True,
        beta: float = BETA,
        t_min: float = T_MIN,
        max_model_size: int = MAX_MODEL_SIZE,
        default_model_len: int = MODEL_LEN,
        default_model_width: int = MODEL_WIDTH,
        *,
        seed: int | None = None,
    ) -> None:
        hint = "NNI's 'nlp' task was never implemented" if task == "nlp" else ""
        self.task = check_choice(self, "task", task, ("cv", "common"), hint=hint)
        self.input_width = check_int(self, "input_width", input_width, minimum=1, hint="e.g. input_width: 32")
        self.input_channel = check_int(
            self, "input_channel", input_channel, minimum=1, hint="e.g. input_channel: 3"
        )
        self.n_classes = check_int(
            self, "n_output_node", n_output_node, minimum=1, hint="e.g. n_output_node: 10"
        )
        self.algorithm_name = check_choice(self, "algorithm_name", algorithm_name, ("Bayesian",))
        self.optimize_mode = check_optimize_mode(self, optimize_mode)
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            fail(self, "path", f"must be a folder name, got {path!r}; e.g. path: model_path")
        self.path = os.fspath(path)
        self.verbose = check_bool(self, "verbose", verbose)
        self.beta = check_number(self, "beta", beta, low=0, hint="e.g. beta: 2.576")
        self.t_min = check_number(
            self, "t_min", t_min, low=0, high=1, low_open=True, high_open=True, hint="e.g. t_min: 0.0001"
        )
        self.max_model_size = check_int(self, "max_model_size", max_model_size, minimum=1)
        self.default_model_len = check_int(
            self,
            "default_model_len",
            default_model_len,
            minimum=1,
            maximum=100,
            hint="e.g. default_model_len: 3",
        )
        self.default_model_width = check_int(
            self, "default_model_width", default_model_width, minimum=1, hint="e.g. default_model_width: 64"
        )
        self.seed = check_seed(self, seed)
        if self.task == "cv":
            self.input_shape: tuple[int, ...] = (self.input_width, self.input_width, self.input_channel)
        else:
            self.input_shape = (self.input_width * self.input_width * self.input_channel,)
        start_size = self._starting_graph().size()
        if start_size > self.max_model_size:
            fail(
                self,
                "max_model_size",
                f"must be at least the starting network's {start_size} parameters, got {max_model_size}; "
                "raise it or lower default_model_width / default_model_len",
            )
        self._rng = make_rng(self.seed)
        self.search_space: Any = {}
        self.history: list[dict[str, Any]] = []
        self.training_queue: list[tuple[Graph, int, int]] = []
        self.total_data: dict[int, tuple[dict[str, Any], int, int]] = {}
        self.model_count = 0
        self._graphs: dict[int, Graph] = {}  # model id -> graph (its history: the morphs since its father)
        self._keys: dict[str, int] = {}  # architecture -> model id
        self._descriptors: dict[int, Descriptor] = {}
        self._scores: dict[int, float] = {}  # model id -> last result, higher is better (NaN: diverged)
        self._children: dict[int, list[int]] = {}  # NNI's search tree: father -> children
        self._dir: Path | None = None
        self._gp = EditDistanceGP()  # kept: each fit reuses the distances between graphs it has seen

    # --- the experiment's hooks -------------------------------------------------------------------------------
    def attach(self, *, experiment_id: str, directory: Path) -> None:
        path = Path(self.path)
        self._dir = path if path.is_absolute() else Path(directory) / "log" / path

    def update_search_space(self, search_space: SearchSpace | Mapping[str, Any]) -> None:
        """Kept as NNI does, and otherwise ignored: the graphs are this tuner's own space."""
        self.search_space = (
            search_space.to_json() if isinstance(search_space, SearchSpace) else dict(search_space)
        )
        if self.search_space:
            log.info(
                "NetworkMorphism ignores the search space (%s); it searches network graphs",
                ", ".join(self.search_space),
            )

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        """The next graph, as NNI's JSON object (a trial rebuilds it with :func:`build_graph_from_json`)."""
        if not self._graphs:
            self.init_search()
        if self.training_queue:
            graph, father_id, model_id = self.training_queue.pop(0)
        else:
            father_id, graph = self.generate()
            model_id = self._register(graph)
        self._children.setdefault(father_id, []).append(model_id)
        out = graph_to_json(graph)
        self.total_data[parameter_id] = (out, father_id, model_id)
        self._write(f"{model_id}.json", json.dumps(out))
        return json.loads(json.dumps(out))

    def receive_trial_result(
        self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any
    ) -> None:
        """Record the metric of the graph a trial trained (a graph the tuner did not suggest is read from
        ``parameters``; parameters that are not a graph are ignored)."""
        model_id = self._model_of(parameter_id, parameters)
        if model_id is None:
            return
        metric = extract_scalar(value)
        self._scores[model_id] = metric if self.optimize_mode == "maximize" else -metric
        self.add_model(metric, model_id)

    def import_data(self, data: Sequence[Mapping[str, Any]]) -> None:
        """Learn graphs and results of earlier trials (``{"parameter": graph JSON, "value": metric}``); a graph
        without a value is only marked as seen."""
        for record in data:
            self._imported = getattr(self, "_imported", 0) + 1
            params = record.get("parameter")
            if record.get("value") is None:
                self._model_of(-self._imported, params)
            else:
                self.receive_trial_result(-self._imported, dict(params or {}), record["value"], imported=True)

    def resume(self, history: Sequence[HistoryEntry]) -> None:
        """Rebuild from stored trials: every graph is marked seen, finished results refit the model, and
        a running trial's later result is matched by its parameter id."""
        for entry in history:
            pid = entry.parameter_id if entry.parameter_id is not None else -(10**9) - len(self.total_data)
            if entry.value is None:
                self._model_of(pid, entry.parameters)
            else:
                self.receive_trial_result(pid, entry.parameters, entry.value)

    # --- NNI's methods --------------------------------------------------------------------------------------------
    def init_search(self) -> None:
        """Queue the starting network (NNI's ``CnnGenerator`` / ``MlpGenerator``)."""
        graph = self._starting_graph()
        model_id = self._register(graph)
        self.training_queue.append((graph, -1, model_id))
        self._log(
            "NetworkMorphism: starting network %d (%d layers, %d parameters)",
            model_id,
            graph.n_layers,
            graph.size(),
        )

    def generate(self) -> tuple[int, Graph]:
        """``(father model id, new graph)``: Bayesian optimisation once results exist, else a random morph.

        Raises:
            NoMoreTrialError: no new architecture within ``max_model_size`` could be found.
        """
        found = self._bayesian() if self._finite_scores() else None
        if found is None:
            found = self._random_morph()
        if found is None:
            raise NoMoreTrialError(
                f"NetworkMorphism found no new architecture within max_model_size={self.max_model_size}"
            )
        graph, father_id = found
        return father_id, graph

    def update(self, other_info: Any, graph: Graph, metric_value: float, model_id: int) -> None:
        """Record ``model_id``'s result (NNI's signature: ``other_info`` is the father id)."""
        children = self._children.setdefault(int(other_info), [])
        if model_id not in children:
            children.append(model_id)
        self._scores[model_id] = metric_value if self.optimize_mode == "maximize" else -metric_value

    def add_model(self, metric_value: float, model_id: int) -> dict[str, Any]:
        """Append to :attr:`history` and rewrite ``best_model.txt`` when ``model_id`` is the best so far."""
        ret = {"model_id": model_id, "metric_value": metric_value}
        self.history.append(ret)
        if self.get_best_model_id() == model_id:
            self._write("best_model.txt", f"best model: {model_id}")
        self._log("NetworkMorphism: model %d scored %s", model_id, metric_value)
        return ret

    def get_best_model_id(self) -> int | None:
        """The model id with the best finite metric in :attr:`history` (``None`` before any)."""
        finite = [h for h in self.history if math.isfinite(h["metric_value"])]
        if not finite:
            return None
        pick = max if self.optimize_mode == "maximize" else min
        return int(pick(finite, key=lambda h: h["metric_value"])["model_id"])

    def get_metric_value_by_id(self, model_id: int) -> float | None:
        """The last metric recorded for ``model_id``."""
        for h in reversed(self.history):
            if h["model_id"] == model_id:
                return float(h["metric_value"])
        return None

    def load_model_by_id(self, model_id: int) -> Graph:
        """The graph of ``model_id`` (a copy)."""
        return self._graphs[model_id].copy()

    def load_best_model(self) -> Graph:
        """The graph of :meth:`get_best_model_id`."""
        best = self.get_best_model_id()
        if best is None:
            raise ValueError("no model has a finite result yet")
        return self.load_model_by_id(best)

    # --- internals ---------------------------------------------------------------------------------------------
    def _log(self, msg: str, *args: Any) -> None:
        log.log(logging.INFO if self.verbose else logging.DEBUG, msg, *args)

    def _write(self, name: str, text: str) -> None:
        if self._dir is None:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        (self._dir / name).write_text(text, encoding="utf-8")

    def _starting_graph(self) -> Graph:
        make = cnn_graph if self.task == "cv" else mlp_graph
        return make(self.n_classes, self.input_shape, self.default_model_len, self.default_model_width)

    def _register(self, graph: Graph) -> int:
        model_id = self.model_count
        self.model_count += 1
        self._graphs[model_id] = graph
        desc = Descriptor.of(graph)
        self._descriptors[model_id] = desc
        self._keys.setdefault(desc.key, model_id)
        return model_id

    def _model_of(self, parameter_id: int | None, parameters: Any) -> int | None:
        """The model id a result is for: the suggestion's, or the graph in ``parameters`` (registered if new)."""
        if parameter_id is not None and parameter_id in self.total_data:
            return self.total_data[parameter_id][2]
        try:
            graph = json_to_graph(parameters)
        except GraphError as e:
            log.debug("NetworkMorphism: parameters of %s are not a graph (%s); ignored", parameter_id, e)
            return None
        graph.operation_history = []
        key = graph.key()
        model_id = self._keys[key] if key in self._keys else self._register(graph)
        if parameter_id is not None:
            self.total_data[parameter_id] = (graph_to_json(graph), -1, model_id)
            self._write(f"{model_id}.json", json.dumps(self.total_data[parameter_id][0]))
        return model_id

    def _finite_scores(self) -> dict[int, float]:
        scores = {m: s for m, s in self._scores.items() if math.isfinite(s)}
        if scores:  # a diverged trial counts as the worst result
            worst = min(scores.values())
            scores.update({m: worst for m, s in self._scores.items() if not math.isfinite(s)})
        return scores

    def _bayesian(self) -> tuple[Graph, int] | None:
        scores = self._finite_scores()
        ids = sorted(scores)
        gp = self._gp.fit([self._descriptors[m] for m in ids], np.array([scores[m] for m in ids]))

        def acquisition(graphs: list[Graph]) -> np.ndarray:
            mean, std = gp.predict([Descriptor.of(g) for g in graphs])
            return mean + self.beta * std

        start = []
        for m in ids:
            graph = self._graphs[m].copy()
            graph.operation_history = []
            start.append((scores[m], m, graph))
        return anneal(
            start,
            acquisition,
            lambda g: transform(g, self._rng, max_model_size=self.max_model_size, n_neighbours=N_NEIGHBOURS),
            set(self._keys),
            self._rng,
            t_min=self.t_min,
        )

    def _random_morph(self) -> tuple[Graph, int] | None:
        """A new morph of a known graph (before the first result, or when annealing found nothing new)."""
        ids = sorted(self._graphs)
        for _ in range(_RANDOM_TRIES):
            father = ids[int(self._rng.integers(len(ids)))]
            base = self._graphs[father].copy()
            base.operation_history = []
            for child in transform(
                base, self._rng, max_model_size=self.max_model_size, n_neighbours=N_NEIGHBOURS
            ):
                if child.key() not in self._keys:
                    return child, father
        return None
