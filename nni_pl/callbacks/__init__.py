"""Lightning callbacks: thin adapters from Trainer hooks to the nni-pl functional API.

Example:
    >>> from nni_pl.callbacks import NNICallback
    >>> NNICallback(monitor="val_acc", mode="max")
    NNICallback(monitor='val_acc', mode='max', final='best', report_intermediate=True, stop_on_request=True, budget_to_epochs=True)
"""

from typing import Any

from nni_pl.callbacks.nni_callback import NNICallback
from nni_pl.callbacks.pbt import PBTCheckpoint

__all__ = ["NNICallback", "PBTCheckpoint", "PruningCallback", "QuantizationCallback"]


def __getattr__(name: str) -> Any:
    if name == "PruningCallback":  # lazy: pulls in torch and nni_pl.compression
        from nni_pl.callbacks.pruning import PruningCallback

        return PruningCallback
    if name == "QuantizationCallback":  # lazy: pulls in torch and nni_pl.compression
        from nni_pl.callbacks.quantization import QuantizationCallback

        return QuantizationCallback
    raise AttributeError(f"module 'nni_pl.callbacks' has no attribute {name!r}")
