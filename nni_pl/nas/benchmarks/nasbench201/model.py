"""NAS-Bench-201's record format: peewee models of the ``nasbench201.db`` tables (NNI 2.5's, column for column)."""

from __future__ import annotations

from nni_pl._peewee import pw
from nni_pl.nas.benchmarks._db import JSONField

__all__ = ["Nb201IntermediateStats", "Nb201TrialConfig", "Nb201TrialStats"]


class Nb201TrialConfig(pw.Model):
    """Trial config of NAS-Bench-201.

    Attributes:
        arch: a dict with keys ``0_1``, ``0_2``, ``0_3``, ``1_2``, ``1_3``, ``2_3``, each an op of
            :data:`~nni_pl.nas.benchmarks.nasbench201.OPS` (``none``, ``skip_connect``, ``conv_1x1``, ``conv_3x3``,
            ``avg_pool_3x3``).
        num_epochs: epochs planned for the trial: 12 or 200.
        num_channels: channels of the initial convolution (16).
        num_cells: cells per stage (5).
        dataset: ``cifar10-valid`` (25k training, 25k validation, the original test set as test), ``cifar10``
            (50k training; the test set split 5k/5k into validation and test), ``cifar100`` (as ``cifar10``) or
            ``imagenet16-120`` (120 ImageNet classes at 16x16; 6k/6k of its validation set).
    """

    arch = JSONField(index=True)
    num_epochs = pw.IntegerField(index=True)
    num_channels = pw.IntegerField()
    num_cells = pw.IntegerField()
    dataset = pw.CharField(max_length=20, index=True)


class Nb201TrialStats(pw.Model):
    """The outcome of one training run (one seed) of a :class:`Nb201TrialConfig`.

    Attributes:
        config: the trial's config.
        seed: the random seed.
        train_acc, valid_acc, test_acc: final accuracy on each split, 0-100.
        ori_test_acc: final accuracy on the original test set (10k for CIFAR, 12k for ImageNet16-120), 0-100.
        train_loss, valid_loss, test_loss, ori_test_loss: final cross-entropy loss (``None`` where it was NaN).
        parameters: trainable parameters, in million.
        latency: latency, in seconds.
        flops: FLOPs, in million.
        training_time: seconds of training.
        valid_evaluation_time, test_evaluation_time, ori_test_evaluation_time: seconds to evaluate each split.
    """

    config = pw.ForeignKeyField(Nb201TrialConfig, backref="trial_stats", index=True)
    seed = pw.IntegerField()
    train_acc = pw.FloatField()
    valid_acc = pw.FloatField()
    test_acc = pw.FloatField()
    ori_test_acc = pw.FloatField()
    train_loss = pw.FloatField(null=True)
    valid_loss = pw.FloatField(null=True)
    test_loss = pw.FloatField(null=True)
    ori_test_loss = pw.FloatField(null=True)
    parameters = pw.FloatField()
    latency = pw.FloatField()
    flops = pw.FloatField()
    training_time = pw.FloatField()
    valid_evaluation_time = pw.FloatField()
    test_evaluation_time = pw.FloatField()
    ori_test_evaluation_time = pw.FloatField()


class Nb201IntermediateStats(pw.Model):
    """The metrics of a :class:`Nb201TrialStats` after epoch ``current_epoch`` (any may be ``None``)."""

    trial = pw.ForeignKeyField(Nb201TrialStats, backref="intermediates", index=True)
    current_epoch = pw.IntegerField(index=True)
    train_acc = pw.FloatField(null=True)
    valid_acc = pw.FloatField(null=True)
    test_acc = pw.FloatField(null=True)
    ori_test_acc = pw.FloatField(null=True)
    train_loss = pw.FloatField(null=True)
    valid_loss = pw.FloatField(null=True)
    test_loss = pw.FloatField(null=True)
    ori_test_loss = pw.FloatField(null=True)


MODELS = [Nb201TrialConfig, Nb201TrialStats, Nb201IntermediateStats]
