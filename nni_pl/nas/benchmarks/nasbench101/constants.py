"""NAS-Bench-101's op names (the labels of a cell's vertices)."""

from __future__ import annotations

INPUT = "input"
OUTPUT = "output"
CONV3X3_BN_RELU = "conv3x3-bn-relu"
CONV1X1_BN_RELU = "conv1x1-bn-relu"
MAXPOOL3X3 = "maxpool3x3"

#: the ops of the inner vertices.
OPS = (CONV3X3_BN_RELU, CONV1X1_BN_RELU, MAXPOOL3X3)
#: the integer label of each op in the graph hash (NAS-Bench-101's: input -1, output -2).
LABEL2ID = {INPUT: -1, OUTPUT: -2, CONV3X3_BN_RELU: 0, CONV1X1_BN_RELU: 1, MAXPOOL3X3: 2}
#: the epoch budgets NAS-Bench-101 trained for.
NUM_EPOCHS = (4, 12, 36, 108)
MAX_VERTICES = 7
MAX_EDGES = 9
