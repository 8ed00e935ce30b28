"""Where nni-pl keeps things on this machine unless told otherwise."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_working_directory"]


def default_working_directory() -> Path:
    """Where experiments live unless the config says otherwise: ``$NNI_PL_HOME`` or ``~/nni-pl-experiments``.

    Example:
        >>> import os
        >>> os.environ["NNI_PL_HOME"] = "/tmp/somewhere"
        >>> str(default_working_directory())
        '/tmp/somewhere'
        >>> del os.environ["NNI_PL_HOME"]
    """
    return Path(os.environ.get("NNI_PL_HOME") or Path.home() / "nni-pl-experiments").expanduser()
