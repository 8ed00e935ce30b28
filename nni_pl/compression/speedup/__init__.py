"""Speed-up: turn a model with structured (channel) masks into a physically smaller one.

``channel_groups(model, dummy_input)`` lists the layers whose channels are coupled;
``ModelSpeedup(model, dummy_input, masks).speedup_model()`` rebuilds the layers with fewer channels.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ModelSpeedup", "SpeedupError", "SpeedupReport", "channel_groups"]


def __getattr__(name: str) -> Any:
    if name == "channel_groups":
        from nni_pl.compression.speedup.dependency import channel_groups

        return channel_groups
    if name == "SpeedupError":
        from nni_pl.compression.speedup._graph import SpeedupError

        return SpeedupError
    if name in ("ModelSpeedup", "SpeedupReport"):
        from nni_pl.compression.speedup import model_speedup

        return getattr(model_speedup, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
