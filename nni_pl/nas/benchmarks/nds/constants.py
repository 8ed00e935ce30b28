"""NDS's op names (the values of a ``nas_cell`` config's ``<cell>_<i>_op_<x|y>`` keys) and its config values."""

from __future__ import annotations

NONE = "none"
SKIP_CONNECT = "skip_connect"
AVG_POOL_3X3 = "avg_pool_3x3"
MAX_POOL_3X3 = "max_pool_3x3"
MAX_POOL_5X5 = "max_pool_5x5"
MAX_POOL_7X7 = "max_pool_7x7"
CONV_1X1 = "conv_1x1"
CONV_3X3 = "conv_3x3"
CONV_3X1_1X3 = "conv_3x1_1x3"
CONV_7X1_1X7 = "conv_7x1_1x7"
DIL_CONV_3X3 = "dil_conv_3x3"
DIL_CONV_5X5 = "dil_conv_5x5"
SEP_CONV_3X3 = "sep_conv_3x3"
SEP_CONV_5X5 = "sep_conv_5x5"
SEP_CONV_7X7 = "sep_conv_7x7"
DIL_SEP_CONV_3X3 = "dil_sep_conv_3x3"

MODEL_FAMILIES = ("nas_cell", "residual_bottleneck", "residual_basic", "vanilla")
PROPOSERS = (
    "nasnet",
    "darts",
    "enas",
    "pnas",
    "amoeba",
    "vanilla",
    "resnext-a",
    "resnext-b",
    "resnet",
    "resnet-b",
)
GENERATORS = ("random", "fix_w_d", "tune_lr_wd")
DATASETS = ("cifar10", "imagenet")
