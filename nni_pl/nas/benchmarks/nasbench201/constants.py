"""NAS-Bench-201's ops (the values of an architecture's edges) and datasets."""

from __future__ import annotations

NONE = "none"
SKIP_CONNECT = "skip_connect"
CONV_1X1 = "conv_1x1"
CONV_3X3 = "conv_3x3"
AVG_POOL_3X3 = "avg_pool_3x3"

#: the five ops, in NAS-Bench-201's order.
OPS = (NONE, SKIP_CONNECT, CONV_1X1, CONV_3X3, AVG_POOL_3X3)
#: the cell's edges ``j_t`` (node ``j`` to node ``t``): the keys of an architecture.
EDGES = ("0_1", "0_2", "0_3", "1_2", "1_3", "2_3")
DATASETS = ("cifar10-valid", "cifar10", "cifar100", "imagenet16-120")
#: the epochs NAS-Bench-201 trained for: the ``less`` (12) and ``full`` (200) schedules.
NUM_EPOCHS = (12, 200)
