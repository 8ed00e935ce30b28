"""The digits benchmark's space: a NAS-Bench-201 cell (4 nodes, 6 edges) of three ops over a 16-wide MLP."""

from __future__ import annotations

NONE = "none"
SKIP_CONNECT = "skip_connect"
LINEAR = "linear"

#: the ops an edge can take: zeros, identity, or ReLU followed by a 16x16 linear layer.
OPS = (NONE, SKIP_CONNECT, LINEAR)
#: the edges of the cell (``j_t``: from node ``j`` to node ``t``), NAS-Bench-201's keys.
EDGES = ("0_1", "0_2", "0_3", "1_2", "1_3", "2_3")
NUM_EPOCHS = 12
NUM_CHANNELS = 16
SEEDS = (0, 1, 2)
DATASET = "digits"
