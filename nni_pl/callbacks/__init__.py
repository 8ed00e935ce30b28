"""Lightning callbacks: thin adapters from Trainer hooks to the nni-pl functional API.

Example:
    >>> from nni_pl.callbacks import NNICallback
    >>> NNICallback(monitor="val_acc", mode="max")
    NNICallback(monitor='val_acc', mode='max', final='best', report_intermediate=True, stop_on_request=True, budget_to_epochs=True)
"""

from nni_pl.callbacks.nni_callback import NNICallback
from nni_pl.callbacks.pbt import PBTCheckpoint

__all__ = ["NNICallback", "PBTCheckpoint"]
