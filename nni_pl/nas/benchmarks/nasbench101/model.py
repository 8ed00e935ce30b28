"""NAS-Bench-101's record format: peewee models of the ``nasbench101.db`` tables (NNI 2.5's, column for column)."""

from __future__ import annotations

from nni_pl._peewee import pw
from nni_pl.nas.benchmarks._db import JSONField

__all__ = ["Nb101IntermediateStats", "Nb101TrialConfig", "Nb101TrialStats"]


class Nb101TrialConfig(pw.Model):
    """Trial config of NAS-Bench-101.

    Attributes:
        arch: ``op1``, ``op2``, ... (the inner vertices' ops: ``conv3x3-bn-relu``, ``conv1x1-bn-relu``,
            ``maxpool3x3``) and ``input1``, ``input2``, ... (the earlier vertices each vertex reads, e.g.
            ``input5: [0, 1, 3]``); vertex 0 is the input.
        num_vertices: vertices of the cell (at most 7).
        hash: the graph-invariant MD5 of the cell (:func:`~nni_pl.nas.benchmarks.nasbench101.hash_module`).
        num_epochs: epochs of training: 4, 12, 36 or 108.
    """

    arch = JSONField(index=True)
    num_vertices = pw.IntegerField(index=True)
    hash = pw.CharField(max_length=64, index=True)
    num_epochs = pw.IntegerField(index=True)


class Nb101TrialStats(pw.Model):
    """The outcome of one training run of a :class:`Nb101TrialConfig` (three per config; seeds unknown).

    CIFAR-10: 40k training, 10k validation images; the original test set is the test set.

    Attributes:
        config: the trial's config.
        train_acc, valid_acc, test_acc: final accuracy, 0-100.
        parameters: trainable parameters, in million.
        training_time: seconds of training.
    """

    config = pw.ForeignKeyField(Nb101TrialConfig, backref="trial_stats", index=True)
    train_acc = pw.FloatField()
    valid_acc = pw.FloatField()
    test_acc = pw.FloatField()
    parameters = pw.FloatField()
    training_time = pw.FloatField()


class Nb101IntermediateStats(pw.Model):
    """The metrics of a :class:`Nb101TrialStats` at ``current_epoch`` (half-way and at the end)."""

    trial = pw.ForeignKeyField(Nb101TrialStats, backref="intermediates", index=True)
    current_epoch = pw.IntegerField(index=True)
    train_acc = pw.FloatField()
    valid_acc = pw.FloatField()
    test_acc = pw.FloatField()
    training_time = pw.FloatField()


MODELS = [Nb101TrialConfig, Nb101TrialStats, Nb101IntermediateStats]
