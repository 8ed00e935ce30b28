"""nni_pl.trace / dump / load: objects rebuilt from their recorded constructor arguments (NNI's nni.trace)."""

from __future__ import annotations

import fractions
import json
import pickle

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import nni_pl
from nni_pl.serialization import SerializationError, is_traced, trace_copy, trace_info


@nni_pl.trace
class Scaled:
    def __init__(self, base: object, *, factor: float = 1.0, shape: tuple[int, int] = (1, 1)) -> None:
        self.base, self.factor, self.shape = base, factor, shape


def make_pair(a: int, b: int) -> Scaled:
    return Scaled(a, factor=b)


def test_trace_records_arguments_and_dump_load_round_trip_nested_objects() -> None:
    inner = Scaled(fractions.Fraction(1, 3), factor=2.0)
    outer = Scaled([inner, {"k": (1, 2)}], factor=0.5, shape=(3, 4))
    assert is_traced(outer) and trace_info(outer)[2] == {"factor": 0.5, "shape": (3, 4)}
    text = nni_pl.dump(outer)
    data = json.loads(text)
    assert data["__trace__"] == f"{__name__}:Scaled" and data["kwargs"]["shape"] == {"__tuple__": [3, 4]}
    back = nni_pl.load(text)
    assert type(back) is Scaled and is_traced(back)
    assert back.shape == (3, 4) and back.base[1] == {"k": (1, 2)}
    assert type(back.base[0]) is Scaled and back.base[0].base == fractions.Fraction(1, 3)
    assert trace_copy(inner) is not inner and trace_copy(inner).factor == 2.0


def test_trace_of_a_library_class_leaves_it_untouched_and_pickles() -> None:
    Loader = nni_pl.trace(DataLoader)
    assert nni_pl.trace(DataLoader) is Loader and nni_pl.trace(Loader) is Loader
    data = nni_pl.trace(TensorDataset)(torch.arange(6.0).reshape(3, 2), torch.zeros(3))
    loader = Loader(data, batch_size=2)
    assert isinstance(loader, DataLoader) and not is_traced(DataLoader(data))
    back = nni_pl.load(nni_pl.dump(loader))
    assert (
        isinstance(back, DataLoader)
        and back.batch_size == 2
        and torch.equal(back.dataset.tensors[0], data.tensors[0])
    )
    again = pickle.loads(pickle.dumps(data))
    assert type(again) is type(data) and is_traced(again)


def test_traced_function_marks_its_result() -> None:
    pair = nni_pl.trace(make_pair)(3, 4)
    assert trace_info(pair)[0] is make_pair
    back = nni_pl.load(nni_pl.dump(pair))
    assert (back.base, back.factor) == (3, 4)


def test_what_cannot_be_serialised_is_named_in_one_line() -> None:
    loader = nni_pl.trace(DataLoader)([1, 2, 3], collate_fn=lambda b: b)
    with pytest.raises(SerializationError, match=r"^DataLoader\.collate_fn: .*lambda.*module level") as info:
        nni_pl.dump(loader)
    assert "\n" not in str(info.value)

    class Local:
        pass

    with pytest.raises(SerializationError, match=r"Scaled\.factor: .*local function/class"):
        nni_pl.dump(Scaled(1, factor=Local))
    with pytest.raises(SerializationError, match=r"Scaled\.base: a generator cannot be serialised"):
        nni_pl.dump(Scaled(x for x in range(3)))
    with pytest.raises(SerializationError, match=r"pickle_size_limit=10"):
        nni_pl.dump(Scaled(torch.zeros(100)), pickle_size_limit=10)
