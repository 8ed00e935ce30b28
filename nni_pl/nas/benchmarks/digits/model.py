"""The record format of the digits benchmark: NAS-Bench-201's, for a small cell over an MLP on scikit-learn's digits."""

from __future__ import annotations

from nni_pl._peewee import pw
from nni_pl.nas.benchmarks._db import JSONField

__all__ = ["DigitsIntermediateStats", "DigitsTrialConfig", "DigitsTrialStats"]


class DigitsTrialConfig(pw.Model):
    """Trial config of the digits benchmark.

    Attributes:
        arch: a dict with keys ``0_1``, ``0_2``, ``0_3``, ``1_2``, ``1_3``, ``2_3`` (the cell's edges, as in
            NAS-Bench-201), each one of :data:`~nni_pl.nas.benchmarks.digits.OPS`.
        num_epochs: epochs of training (12).
        num_channels: width of the cell's nodes (32).
        dataset: ``"digits"`` (scikit-learn's ``load_digits``: 1078 training, 359 validation, 360 test images).
    """

    arch = JSONField(index=True)
    num_epochs = pw.IntegerField(index=True)
    num_channels = pw.IntegerField()
    dataset = pw.CharField(max_length=20, index=True)


class DigitsTrialStats(pw.Model):
    """One training run (one seed) of a :class:`DigitsTrialConfig`.

    Attributes:
        config: the trial's config.
        seed: the random seed (weights' initialisation and the order of the mini-batches).
        train_acc, valid_acc, test_acc: final accuracy in percent (0-100).
        train_loss, valid_loss, test_loss: final cross-entropy loss.
        parameters: trainable parameters, in million.
        flops: multiply-adds of one forward pass of one image, in million.
        training_time: seconds to train this model alone on one CPU thread (measured per number of
            ``linear`` edges; the generator trains all architectures at once).
    """

    config = pw.ForeignKeyField(DigitsTrialConfig, backref="trial_stats", index=True)
    seed = pw.IntegerField()
    train_acc = pw.FloatField()
    valid_acc = pw.FloatField()
    test_acc = pw.FloatField()
    train_loss = pw.FloatField(null=True)
    valid_loss = pw.FloatField(null=True)
    test_loss = pw.FloatField(null=True)
    parameters = pw.FloatField()
    flops = pw.FloatField()
    training_time = pw.FloatField()


class DigitsIntermediateStats(pw.Model):
    """The metrics of a :class:`DigitsTrialStats` after each epoch (``current_epoch`` 1..num_epochs)."""

    trial = pw.ForeignKeyField(DigitsTrialStats, backref="intermediates", index=True)
    current_epoch = pw.IntegerField(index=True)
    train_acc = pw.FloatField(null=True)
    valid_acc = pw.FloatField(null=True)
    test_acc = pw.FloatField(null=True)
    train_loss = pw.FloatField(null=True)
    valid_loss = pw.FloatField(null=True)
    test_loss = pw.FloatField(null=True)


MODELS = [DigitsTrialConfig, DigitsTrialStats, DigitsIntermediateStats]
