"""Mutators: a model space written as a base model plus the code that mutates its graph (NNI's ``Mutator``).

A mutator's :meth:`Mutator.mutate` receives the base model as a graph (:func:`~nni_pl.nas._graph_ir.trace`, a
``torch.fx`` trace: nodes found by label, name or type, operations with a ``type`` and ``parameters``, edges)
and edits it in place; every :meth:`Mutator.choice` it makes is one decision of the search space. Give the
mutators to :class:`~nni_pl.nas.NasExperiment` as ``applied_mutators=[...]`` with a base model that has no
inline choices: a dry run records the candidate lists of every ``choice`` call (NNI's ``dry_run``), each becomes
one ``choice`` label of an ordinary search space that every multi-trial strategy explores, and each trial
replays its choices on a fresh trace and trains the resulting ``torch.fx.GraphModule``.

Labels: a mutator's decisions are named by its ``label`` (``BlockMutator_0`` for the first applied mutator when
it has none): ``label`` when it makes one choice, ``label/0``, ``label/1``, ... when it makes several. A label's
values are the candidates themselves when they are distinct JSON scalars (numbers, strings), else their
positions in the candidate list. :meth:`NasExperiment.export_top_models` gives NNI's mutation dict: mutator label
-> the chosen candidate (a list of them for several choices; a candidate that is not JSON, e.g. an object,
as its position), which :func:`mutate_model` turns back into the model.

Importing this module does not import torch (the graph IR does, when a mutator is applied).

Example:
    >>> import torch
    >>> from nni_pl.nas import Mutator, Placeholder
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.block = Placeholder(label="mutable_0", in_features=4)
    ...     def forward(self, x):
    ...         return self.block(x)
    >>> class WidthMutator(Mutator):
    ...     def mutate(self, model):
    ...         for node in model.get_nodes_by_label(self.label):
    ...             width = self.choice([2, 8])
    ...             node.update_operation("torch.nn.Linear", {"in_features": 4, "out_features": width})
    >>> mutators = [WidthMutator(label="mutable_0")]
    >>> candidates, _ = mutators[0].dry_run(trace(Net()))
    >>> candidates
    [[2, 8]]
    >>> model = mutate_model(Net(), mutators, {"mutable_0": 8})
    >>> model(torch.zeros(1, 4)).shape
    torch.Size([1, 8])
"""

from __future__ import annotations

import base64
import inspect
import io
import json
import math
import pickle
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nni_pl.errors import ConfigError, NniPlError

if TYPE_CHECKING:
    from torch import fx, nn

    from nni_pl.nas._graph_ir import Model

__all__ = [
    "Mutation",
    "MutationError",
    "Mutator",
    "Sampler",
    "mutate_model",
    "trace",
]


class MutationError(NniPlError, ValueError):
    """A mutator, its graph edit or the model it produced is wrong; the message names the mutator and the node.

    Args:
        mutator: the label of the mutator concerned ("" when none is).
        message: what is wrong, echoing the value, and how to fix it.

    Example:
        >>> print(MutationError("mutable_0", "node 'block': choice() got an empty list"))
        mutator 'mutable_0': node 'block': choice() got an empty list
    """

    def __init__(self, mutator: str | None, message: str) -> None:
        self.mutator = mutator or ""
        super().__init__(f"mutator {mutator!r}: {message}" if mutator else message)


def trace(module: nn.Module) -> Model:
    """The graph IR of ``module`` that mutators edit (see :mod:`nni_pl.nas._graph_ir`).

    Example:
        >>> import torch
        >>> [n.name for n in trace(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())).get_nodes()]
        ['input_1', '0', '1', 'output']
    """
    from nni_pl.nas._graph_fx import trace as _trace

    return _trace(module)


class Sampler:
    """Decides the :meth:`Mutator.choice` calls of a mutator (NNI's ``Sampler``): override :meth:`choice`.

    Example:
        >>> class Last(Sampler):
        ...     def choice(self, candidates, mutator, model, index):
        ...         return candidates[-1]
        >>> Last().choice([1, 2, 3], None, None, 0)
        3
    """

    def choice(self, candidates: list[Any], mutator: Mutator, model: Model, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement choice()")

    def mutation_start(self, mutator: Mutator, model: Model) -> None:
        """Called before ``mutator`` mutates ``model``."""

    def mutation_end(self, mutator: Mutator, model: Model) -> None:
        """Called after ``mutator`` mutated ``model``."""


class Mutation:
    """One mutator applied to a model (an entry of ``Model.history``).

    Attributes:
        mutator: the mutator.
        label: its label (or the name it was given in the experiment).
        samples: the values its ``choice`` calls returned, in order.
        changed: the names of the nodes it changed, added or removed.

    Example:
        >>> Mutation(None, "m", [3], ["conv"]).samples
        [3]
    """

    def __init__(self, mutator: Mutator | None, label: str, samples: list[Any], changed: list[str]) -> None:
        self.mutator = mutator
        self.label = label
        self.samples = samples
        self.changed = changed

    def __deepcopy__(self, memo: dict[int, Any]) -> Mutation:
        return self  # a record: forks of a model share their history's entries

    def __repr__(self) -> str:
        return f"Mutation(label={self.label!r}, samples={self.samples!r}, changed={self.changed!r})"


class Mutator:
    """Mutates the graph of a model (NNI's ``nni.retiarii.Mutator``): override :meth:`mutate`.

    In :meth:`mutate`, find nodes (``model.get_nodes_by_label``, ``get_nodes_by_type``, ``get_node_by_name``),
    change them (``node.update_operation(type, parameters)``, ``graph.add_node``/``insert_node_on_edge``,
    ``node.remove()``, ``edge.remove()``) and make each decision with :meth:`choice`; a strategy decides what
    ``choice`` returns. The number of ``choice`` calls (and their candidate lists) must not depend on what
    earlier calls returned: the search space is the dry run's.

    Args:
        sampler: what decides :meth:`choice` (strategies bind one; see :meth:`bind_sampler`).
        label: the label of the nodes it mutates (by convention) and the name of its decisions; mutators given
            to one experiment need different labels (None: ``ClassName_<position>``).

    Example:
        >>> class Double(Mutator):
        ...     def mutate(self, model):
        ...         self.choice(["a", "b"])
        >>> class First(Sampler):
        ...     def choice(self, candidates, mutator, model, index):
        ...         return candidates[0]
        >>> import torch
        >>> model = Double(label="d").bind_sampler(First()).apply(trace(torch.nn.ReLU()))
        >>> model.history
        [Mutation(label='d', samples=['a'], changed=[])]
    """

    def __init__(self, sampler: Sampler | None = None, label: str | None = None) -> None:
        if label is not None and (not isinstance(label, str) or not label):
            raise ConfigError("Mutator.label", f"must be a non-empty string or None, got {label!r}")
        self.sampler = sampler
        self.label = label
        self._cur_model: Model | None = None
        self._cur_choice_idx: int | None = None
        self._cur_samples: list[Any] = []
        self._cur_name: str | None = None

    def bind_sampler(self, sampler: Sampler) -> Mutator:
        """Set the sampler that decides :meth:`choice`; returns the mutator."""
        self.sampler = sampler
        return self

    def mutate(self, model: Model) -> None:
        """Mutate ``model`` in place (override this)."""
        raise NotImplementedError(f"{type(self).__name__} must implement mutate(model)")

    def choice(self, candidates: Iterable[Any]) -> Any:
        """One decision: the sampler picks one of ``candidates`` (call it inside :meth:`mutate`)."""
        model = self.__dict__.get("_cur_model")
        name = self._name()
        if model is None:
            raise MutationError(
                name,
                "choice() was called outside mutate(); call it from mutate(), which apply()/dry_run() run",
            )
        index = self._cur_choice_idx or 0
        try:
            options = list(candidates)
        except TypeError as e:
            raise MutationError(
                name, f"choice #{index}{_where(model)}: candidates must be a list, got {candidates!r}"
            ) from e
        if not options:
            raise MutationError(
                name,
                f"choice #{index}{_where(model)}: got an empty candidate list; give at least one candidate",
            )
        value = self.sampler.choice(options, self, model, index)  # type: ignore[union-attr]
        self._cur_choice_idx = index + 1
        self._cur_samples.append(value)
        return value

    def apply(self, model: Model | nn.Module) -> Model:
        """A mutated copy of ``model`` (``model`` is left as it is); the choices go to the bound sampler.

        ``model`` is a traced :class:`~nni_pl.nas._graph_ir.Model`, or an ``nn.Module`` to trace first.
        """
        return self._apply(_as_model(model), self._name())

    def dry_run(self, model: Model | nn.Module) -> tuple[list[list[Any]], Model]:
        """Apply with the first candidate of every choice; returns the candidate lists and the mutated copy.

        Example:
            >>> import torch
            >>> class Two(Mutator):
            ...     def mutate(self, model):
            ...         self.choice([1, 2])
            ...         self.choice("xy")
            >>> Two().dry_run(trace(torch.nn.ReLU()))[0]
            [[1, 2], ['x', 'y']]
        """
        return self._dry_run(_as_model(model), self._name())

    # --- internals ---
    def _name(self) -> str:
        return self.__dict__.get("_cur_name") or self.__dict__.get("label") or type(self).__name__

    def _dry_run(self, model: Model, name: str) -> tuple[list[list[Any]], Model]:
        recorder = _Recorder()
        old = self.__dict__.get("sampler")
        self.sampler = recorder
        try:
            mutated = self._apply(model, name)
        finally:
            self.sampler = old
        return recorder.recorded, mutated

    def _apply(self, model: Model, name: str) -> Model:
        from nni_pl.nas._graph_ir import ModelStatus

        sampler = self.__dict__.get("sampler")
        if sampler is None:
            raise MutationError(name, "no sampler to decide its choices; bind_sampler(...) before apply()")
        copy = model.fork()
        copy.status = ModelStatus.Mutating
        copy._mutator, copy._missed, copy._touched, copy._changed = name, [], [], []
        self._cur_model, self._cur_choice_idx, self._cur_samples, self._cur_name = copy, 0, [], name
        try:
            sampler.mutation_start(self, copy)
            self.mutate(copy)
            sampler.mutation_end(self, copy)
        except NniPlError:
            raise
        except Exception as e:
            missed = sorted(set(copy._missed))
            hint = (
                f"; get_nodes_by_label found no node for {missed} (labels: {copy.labels()})" if missed else ""
            )
            raise MutationError(name, f"mutate() failed{_where(copy)}: {type(e).__name__}: {e}{hint}") from e
        finally:
            samples = self._cur_samples
            self._cur_model, self._cur_choice_idx, self._cur_samples, self._cur_name = None, None, [], None
        copy.history.append(Mutation(self, name, samples, list(dict.fromkeys(copy._changed))))
        copy._mutator = None
        copy.status = ModelStatus.Frozen
        return copy

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_cur_model", None)  # never pickle a half-mutated graph
        return state


def _as_model(model: Any) -> Model:
    from torch import nn

    from nni_pl.nas._graph_ir import Model

    if isinstance(model, Model):
        return model
    if isinstance(model, nn.Module):
        return trace(model)
    raise MutationError(None, f"a mutator mutates a traced Model or an nn.Module, got {type(model).__name__}")


def _where(model: Model) -> str:
    touched = getattr(model, "_touched", None)
    return f" (at node {touched[-1]!r})" if touched else ""


class _Recorder(Sampler):
    """The dry run's sampler: records every candidate list and picks the first candidate."""

    def __init__(self) -> None:
        self.recorded: list[list[Any]] = []

    def choice(self, candidates: list[Any], mutator: Mutator, model: Model, index: int) -> Any:
        self.recorded.append(list(candidates))
        return candidates[0]


class _Replay(Sampler):
    """Replays one mutator's decisions: each entry's parameter value (a candidate or its position)."""

    def __init__(self, name: str, entries: list[Mapping[str, Any]], values: list[Any]) -> None:
        self.name, self.entries, self.values = name, entries, values

    def choice(self, candidates: list[Any], mutator: Mutator, model: Model, index: int) -> Any:
        if index >= len(self.entries):
            raise MutationError(
                self.name,
                f"choice #{index}{_where(model)} was not made in the dry run, which made {len(self.entries)}; a "
                "mutator must make the same choices whatever the earlier ones returned",
            )
        entry, value = self.entries[index], self.values[index]
        if entry["coded"] == "value":
            for c in candidates:
                if _json_key(c) == _json_key(value):
                    return c
            raise MutationError(
                self.name,
                f"choice #{index}{_where(model)}: {value!r} is not among the candidates {candidates!r}",
            )
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < len(candidates):
            raise MutationError(
                self.name,
                f"choice #{index}{_where(model)}: position {value!r} is outside its {len(candidates)} candidates",
            )
        return candidates[value]


# ------------------------------------------------------------------------------------------------ the space


def _json_key(value: Any) -> str | None:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None


def _scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (str, int, bool))


def _encode(candidates: list[Any]) -> tuple[str, list[Any], list[Any]]:
    """How one choice enters the search space: ``(coded, options, export)``."""
    keys = [_json_key(c) for c in candidates]
    if all(_scalar(c) for c in candidates) and len(set(keys)) == len(keys):
        return "value", list(candidates), list(candidates)
    positions = list(range(len(candidates)))
    if all(k is not None for k in keys) and len(set(keys)) == len(keys):
        return "index", positions, [json.loads(k) for k in keys if k is not None]
    return "index", positions, positions


def mutator_names(mutators: Sequence[Mutator]) -> list[str]:
    """The name of each mutator's decisions: its label, or ``ClassName_<position>``; refuses duplicates."""
    if isinstance(mutators, (str, bytes)) or not isinstance(mutators, Sequence):
        raise ConfigError("applied_mutators", f"must be a list of Mutator instances, got {mutators!r}")
    names: list[str] = []
    for k, m in enumerate(mutators):
        if not isinstance(m, Mutator):
            raise ConfigError(
                "applied_mutators",
                f"item {k} is {m!r}, not a Mutator; subclass nni_pl.nas.Mutator and pass an instance",
            )
        label = m.__dict__.get("label")
        name = label if isinstance(label, str) and label else f"{type(m).__name__}_{k}"
        if name in names:
            raise ConfigError(
                "applied_mutators", f"two mutators are named {name!r}; give each its own label=..."
            )
        names.append(name)
    return names


class MutatorSpace:
    """The search space of a base model and its mutators, found by dry-running them one after another.

    Attributes:
        names: the name of each mutator's decisions.
        entries: one per ``choice`` call: ``{"mutator", "key", "coded", "options", "export"}``.
        model: the dry run's mutated graph (every choice at its first candidate).

    Example:
        >>> import torch
        >>> class Act(Mutator):
        ...     def mutate(self, model):
        ...         self.choice(["relu", "tanh"])
        >>> MutatorSpace(torch.nn.ReLU(), [Act(label="act")]).search_space()
        {'act': {'_type': 'choice', '_value': ['relu', 'tanh']}}
    """

    def __init__(self, base_model: nn.Module, mutators: Sequence[Mutator]) -> None:
        self.names = mutator_names(mutators)
        model = trace(base_model)
        self.entries: list[dict[str, Any]] = []
        for name, mutator in zip(self.names, mutators, strict=True):
            recorded, model = mutator._dry_run(model, name)
            last = model.history[-1]
            if not recorded and not last.changed:
                missed = (
                    f"; get_nodes_by_label found no node for {sorted(set(model._missed))}"
                    if model._missed
                    else ""
                )
                raise MutationError(
                    name,
                    f"changed nothing and made no choice{missed}; the graph's labels are {model.labels()} "
                    "(check the label the mutator looks for)",
                )
            for i, candidates in enumerate(recorded):
                coded, options, export = _encode(candidates)
                key = name if len(recorded) == 1 else f"{name}/{i}"
                self.entries.append(
                    {"mutator": name, "key": key, "coded": coded, "options": options, "export": export}
                )
        self.model = model

    def search_space(self) -> dict[str, dict[str, Any]]:
        """The decisions in NNI search-space JSON (one ``choice`` per ``choice`` call)."""
        return {e["key"]: {"_type": "choice", "_value": list(e["options"])} for e in self.entries}

    def to_parameters(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """The search-space values of an exported architecture (mutator name -> candidate or list of them)."""
        unknown = [k for k in arch if k not in self.names]
        if unknown:
            raise MutationError(
                None, f"the architecture names {unknown[0]!r}, no mutator; they are {self.names}"
            )
        out: dict[str, Any] = {}
        for name in self.names:
            entries = [e for e in self.entries if e["mutator"] == name]
            if not entries:
                continue
            if name not in arch:
                raise MutationError(name, f"the architecture {dict(arch)!r} has no value for this mutator")
            values = [arch[name]] if len(entries) == 1 else arch[name]
            if not isinstance(values, (list, tuple)) or len(values) != len(entries):
                raise MutationError(name, f"expected a list of {len(entries)} values, got {arch[name]!r}")
            for entry, value in zip(entries, values, strict=True):
                keys = [_json_key(x) for x in entry["export"]]
                if _json_key(value) not in keys:
                    raise MutationError(
                        name, f"{entry['key']!r}: {value!r} is not one of its candidates {entry['export']!r}"
                    )
                out[entry["key"]] = entry["options"][keys.index(_json_key(value))]
        return out


def export_choices(
    entries: Sequence[Mapping[str, Any]], parameters: Mapping[str, Any], names: Sequence[str] = ()
) -> dict[str, Any]:
    """NNI's mutation dict of a trial's parameters: mutator name -> chosen candidate (a list for several; ``[]``
    for a mutator of ``names`` that makes no choice).

    Example:
        >>> e = [{"mutator": "m", "key": "m", "coded": "index", "options": [0, 1], "export": [[1, 2], [3]]}]
        >>> export_choices(e, {"m": 1}, names=["m", "fixed"])
        {'m': [3], 'fixed': []}
    """
    out: dict[str, list[Any]] = {name: [] for name in names}
    for entry in entries:
        value = parameters.get(entry["key"])
        options = list(entry["options"])
        chosen = entry["export"][options.index(value)] if value in options else value
        out.setdefault(entry["mutator"], []).append(chosen)
    return {name: values[0] if len(values) == 1 else values for name, values in out.items()}


def _replay(
    base_model: nn.Module,
    mutators: Sequence[Mutator],
    names: list[str],
    entries: list[Any],
    parameters: Mapping[str, Any],
) -> Model:
    model = trace(base_model)
    for name, mutator in zip(names, mutators, strict=True):
        mine = [e for e in entries if e["mutator"] == name]
        missing = [e["key"] for e in mine if e["key"] not in parameters]
        if missing:
            raise MutationError(name, f"no value for {missing[0]!r} in {dict(parameters)!r}")
        sampler = _Replay(name, mine, [parameters[e["key"]] for e in mine])
        old = mutator.__dict__.get("sampler")
        mutator.sampler = sampler
        try:
            model = mutator._apply(model, name)
        finally:
            mutator.sampler = old
        made = len(model.history[-1].samples)
        if made != len(mine):
            raise MutationError(
                name,
                f"made {made} choices, the dry run {len(mine)}; a mutator must make the same choices every time",
            )
    return model


def mutate_model(
    base_model: nn.Module, applied_mutators: Sequence[Mutator], arch: Mapping[str, Any]
) -> fx.GraphModule:
    """The model that ``applied_mutators`` make of ``base_model`` with the decisions of ``arch``.

    Args:
        base_model: the module the mutators were applied to.
        applied_mutators: the mutators, in the experiment's order.
        arch: what :meth:`NasExperiment.export_top_models` returns: mutator name -> the chosen candidate (a list
            for a mutator that makes several choices).

    Returns:
        a ``torch.fx.GraphModule``: unchanged layers are copies of ``base_model``'s, changed ones new.
    """
    space = MutatorSpace(base_model, applied_mutators)
    parameters = space.to_parameters(arch)
    return _replay(base_model, applied_mutators, space.names, space.entries, parameters).to_module()


# ------------------------------------------------------------------------------------------------ experiment glue


class _Pickler(pickle.Pickler):
    """Pickles like ``pickle.dumps`` and notes the classes and functions defined in ``__main__``."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.from_main: list[str] = []

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) or inspect.isfunction(obj):
            if getattr(obj, "__module__", None) == "__main__":
                self.from_main.append(getattr(obj, "__qualname__", repr(obj)))
        return NotImplemented


def _dumps(obj: Any, what: str) -> str:
    buffer = io.BytesIO()
    pickler = _Pickler(buffer)
    try:
        pickler.dump(obj)
    except Exception as e:
        raise ConfigError(
            what,
            f"cannot be pickled for the trials ({type(e).__name__}: {e}); define the classes at module level",
        ) from e
    if pickler.from_main:
        raise ConfigError(
            what,
            f"uses {pickler.from_main[0]}, defined in the script being run (__main__), which trial processes cannot "
            "import; move it to a module next to the script and import it from there",
        )
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _loads(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))


def experiment_spec(
    base_model: nn.Module, mutators: Sequence[Mutator], *, pickle_base: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The search space of ``mutators`` over ``base_model`` and what the trials need to replay it (JSON)."""
    space = MutatorSpace(base_model, mutators)
    spec: dict[str, Any] = {
        "names": space.names,
        "entries": space.entries,
        "mutators": _dumps(list(mutators), "applied_mutators"),
    }
    if pickle_base:
        spec["base_model"] = _dumps(base_model, "model_space")
    return space.search_space(), spec


def model_from_spec(spec: Mapping[str, Any], parameters: Mapping[str, Any]) -> fx.GraphModule:
    """The trial's model: the base model (rebuilt or unpickled) mutated with ``parameters``' decisions."""
    part = spec["mutators"]
    if "base_model" in part:
        base = _loads(part["base_model"])
    else:
        from nni_pl.nas.space import load_space

        space_spec = spec["model_space"]
        base = load_space(space_spec["import_path"], space_spec.get("init_kwargs") or {})
    mutators = _loads(part["mutators"])
    return _replay(base, mutators, list(part["names"]), list(part["entries"]), parameters).to_module()
