"""NAS-Bench-101's cells as NNI architecture dicts, and their graph-invariant hash (pure Python, no numpy).

An architecture has ``op1`` .. ``op{n-2}`` (the inner vertices' ops) and ``input1`` .. ``input{n-1}`` (the
earlier vertices each vertex reads; vertex 0 is the input, vertex ``n-1`` the output).

Example:
    >>> arch = {"op1": "conv3x3-bn-relu", "input1": [0], "input2": [1]}
    >>> infer_num_vertices(arch)
    3
    >>> hash_module(arch, 3) == hash_module({"op1": "conv3x3-bn-relu", "input1": [0], "input2": [1]}, 3)
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from nni_pl._checks import fail
from nni_pl.nas.benchmarks.nasbench101.constants import INPUT, LABEL2ID, OPS, OUTPUT

__all__ = ["hash_module", "infer_num_vertices", "nasbench_format_to_architecture_repr"]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def nasbench_format_to_architecture_repr(
    adjacency_matrix: Sequence[Sequence[int]], labeling: Sequence[str]
) -> tuple[int, dict[str, Any]]:
    """``(num_vertices, architecture)`` from NAS-Bench-101's adjacency matrix (``m[u][v]`` = 1 for an edge u -> v)
    and its list of vertex labels (``input``, ops..., ``output``).

    Example:
        >>> nasbench_format_to_architecture_repr([[0, 1, 1], [0, 0, 1], [0, 0, 0]],
        ...                                      ["input", "maxpool3x3", "output"])
        (3, {'op1': 'maxpool3x3', 'input1': [0], 'input2': [0, 1]})
    """
    n = len(adjacency_matrix)
    if len(labeling) != n or labeling[0] != INPUT or labeling[-1] != OUTPUT:
        raise ValueError(f"labels {list(labeling)} do not fit a {n}x{n} matrix from 'input' to 'output'")
    arch: dict[str, Any] = {f"op{i}": labeling[i] for i in range(1, n - 1)}
    for i in range(1, n):
        arch[f"input{i}"] = [k for k in range(i) if adjacency_matrix[k][i]]
    return n, arch


def infer_num_vertices(architecture: Mapping[str, Any]) -> int:
    """The number of vertices of ``architecture``: its ``op`` keys plus input and output.

    Raises:
        ArgumentError: the ``op`` keys are not ``op1`` .. ``opK``.
    """
    ops = {k for k in architecture if k.startswith("op")}
    if ops != {f"op{i}" for i in range(1, len(ops) + 1)}:
        fail("query_nb101_trial_stats", "arch", f"the op keys must be op1..opK, got {sorted(ops)}")
    return len(ops) + 2


def _matrix(architecture: Mapping[str, Any], n: int) -> list[list[int]]:
    m = [[0] * n for _ in range(n)]
    for i in range(1, n):
        for k in architecture[f"input{i}"]:
            m[k][i] = 1
    return m


def hash_module(architecture: Mapping[str, Any], vertices: int) -> str:
    """The graph-invariant MD5 of a cell, NAS-Bench-101's ``module_hash``: isomorphic cells hash alike.

    Each vertex starts from the hash of (out-degree, in-degree, label); then, ``vertices`` times, its hash is
    replaced by that of its in-neighbours' sorted hashes, its out-neighbours' and its own; the result is the hash
    of the sorted vertex hashes.
    """
    labels = [LABEL2ID[INPUT]] + [LABEL2ID[architecture[f"op{i}"]] for i in range(1, vertices - 1)]
    labels.append(LABEL2ID[OUTPUT])
    m = _matrix(architecture, vertices)
    in_deg = [sum(m[u][v] for u in range(vertices)) for v in range(vertices)]
    out_deg = [sum(m[v]) for v in range(vertices)]
    hashes = [_md5(str((out_deg[v], in_deg[v], labels[v]))) for v in range(vertices)]
    for _ in range(vertices):
        hashes = [
            _md5(
                "".join(sorted(hashes[w] for w in range(vertices) if m[w][v]))
                + "|"
                + "".join(sorted(hashes[w] for w in range(vertices) if m[v][w]))
                + "|"
                + hashes[v]
            )
            for v in range(vertices)
        ]
    return _md5(str(sorted(hashes)))


def check_arch(arch: Any, owner: str = "query_nb101_trial_stats") -> dict[str, Any]:
    """``arch`` normalised (input lists sorted) if it is a well-formed NAS-Bench-101 architecture."""
    if not isinstance(arch, Mapping):
        fail(owner, "arch", f"must be a dict with op1.. and input1.. keys, got {arch!r}")
    n = infer_num_vertices(arch)
    expected = {f"op{i}" for i in range(1, n - 1)} | {f"input{i}" for i in range(1, n)}
    if set(arch) != expected:
        fail(owner, "arch", f"with {n} vertices the keys must be {sorted(expected)}, got {sorted(arch)}")
    out: dict[str, Any] = {}
    for i in range(1, n - 1):
        if arch[f"op{i}"] not in OPS:
            fail(owner, "arch", f"op{i} must be one of {list(OPS)}, got {arch[f'op{i}']!r}")
        out[f"op{i}"] = arch[f"op{i}"]
    for i in range(1, n):
        inputs = arch[f"input{i}"]
        if not isinstance(inputs, (list, tuple)) or any(
            not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < i for k in inputs
        ):
            fail(owner, "arch", f"input{i} must be a list of earlier vertices (0..{i - 1}), got {inputs!r}")
        out[f"input{i}"] = sorted(set(inputs))
    return out
