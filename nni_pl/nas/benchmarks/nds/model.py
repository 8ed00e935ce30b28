"""NDS's record format: peewee models of the ``nds.db`` tables (NNI 2.5's, column for column)."""

from __future__ import annotations

from nni_pl._peewee import pw
from nni_pl.nas.benchmarks._db import JSONField

__all__ = ["NdsIntermediateStats", "NdsTrialConfig", "NdsTrialStats"]


class NdsTrialConfig(pw.Model):
    """Trial config of NDS ("On Network Design Spaces for Visual Recognition").

    Attributes:
        model_family: ``nas_cell``, ``residual_bottleneck``, ``residual_basic`` or ``vanilla``.
        model_spec: for ``nas_cell``: ``num_nodes_normal``, ``num_nodes_reduce``, ``depth``, ``width``, ``aux``,
            ``drop_prob``; for ``residual_bottleneck``: ``bot_muls``, ``ds`` (depths), ``num_gs`` (groups), ``ss``
            (strides), ``ws`` (widths); for ``residual_basic`` and ``vanilla``: ``ds``, ``ss``, ``ws``.
        cell_spec: ``{}`` unless ``nas_cell``: ``<normal|reduce>_<i>_<op|input>_<x|y>`` (an op name, or the input
            node, 0..i+1: nodes 0 and 1 are the two previous cells' outputs), and ``normal_concat`` /
            ``reduce_concat`` (the nodes concatenated into the output).
        dataset: ``cifar10`` or ``imagenet``.
        generator: ``random`` (learning rate and weight decay fixed), ``fix_w_d`` (width and depth fixed too, for
            ``nas_cell``) or ``tune_lr_wd`` (learning rate and weight decay sampled too).
        proposer: the paper whose distribution was sampled: ``nasnet``, ``darts``, ``enas``, ``pnas``, ``amoeba``,
            ``vanilla``, ``resnext-a``, ``resnext-b``, ``resnet``, ``resnet-b``.
        base_lr: initial learning rate.
        weight_decay: L2 weight decay.
        num_epochs: epochs (the learning rate decays to 0 on a cosine schedule).
    """

    model_family = pw.CharField(max_length=20, index=True)
    model_spec = JSONField(index=True)
    cell_spec = JSONField(index=True, null=True)
    dataset = pw.CharField(max_length=15, index=True)
    generator = pw.CharField(max_length=15, index=True)
    proposer = pw.CharField(max_length=15, index=True)
    base_lr = pw.FloatField()
    weight_decay = pw.FloatField()
    num_epochs = pw.IntegerField()


class NdsTrialStats(pw.Model):
    """The outcome of one training run of an :class:`NdsTrialConfig`.

    Attributes:
        config: the trial's config.
        seed: the random seed.
        final_train_acc, final_test_acc: accuracy at the end, 0-100.
        final_train_loss: cross-entropy at the end (``None`` where NaN).
        best_train_acc, best_test_acc: best accuracy over the epochs, 0-100.
        best_train_loss: lowest training loss (``None`` where NaN).
        parameters: in million.
        flops: in million.
        iter_time: seconds per iteration.
    """

    config = pw.ForeignKeyField(NdsTrialConfig, backref="trial_stats", index=True)
    seed = pw.IntegerField()
    final_train_acc = pw.FloatField()
    final_train_loss = pw.FloatField(null=True)
    final_test_acc = pw.FloatField()
    best_train_acc = pw.FloatField()
    best_train_loss = pw.FloatField(null=True)
    best_test_acc = pw.FloatField()
    parameters = pw.FloatField()
    flops = pw.FloatField()
    iter_time = pw.FloatField()


class NdsIntermediateStats(pw.Model):
    """The metrics of an :class:`NdsTrialStats` after epoch ``current_epoch``."""

    trial = pw.ForeignKeyField(NdsTrialStats, backref="intermediates", index=True)
    current_epoch = pw.IntegerField(index=True)
    train_loss = pw.FloatField(null=True)
    train_acc = pw.FloatField()
    test_acc = pw.FloatField()


MODELS = [NdsTrialConfig, NdsTrialStats, NdsIntermediateStats]
