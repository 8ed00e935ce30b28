"""Who a trial is, and the durable channel it reports through.

The manager starts a trial with NNI's environment variables and a trial directory that holds
``parameter.json``. Reports are appended to ``metrics.jsonl`` in that directory before the call returns,
so a report survives a crash or kill of the manager or of the trial right after; the final result is
also fsync'd, so it survives a crash of the machine (by the runner when the trial process ends, where it says
it does: :data:`~nni_pl.trial.protocol.ENV_SYNC_AT_EXIT`).
The manager reads the file; it never parses a trial's stdout.

This module must stay import-light: trial processes import it on every start.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nni_pl.errors import NniPlError
from nni_pl.trial.protocol import (
    ENV_EXPERIMENT_ID,
    ENV_MAX_METRIC_BYTES,
    ENV_PARAMETERS,
    ENV_SEQUENCE_ID,
    ENV_SYNC_AT_EXIT,
    ENV_SYS_DIR,
    ENV_TRIAL_ID,
    FINAL,
    METRICS_FILE,
    PARAMETER_FILE,
    STANDALONE,
    TrialSetupError,
    _size,
    declare_graceful,
    encode_record,
    json_default,
    max_metric_bytes,
    read_parameter_file,
)
from nni_pl.trial.protocol import stop_requested as protocol_stop_requested

__all__ = ["MetricTooLargeError", "TrialContext", "activate", "current", "normalize_metric"]

logger = logging.getLogger("nni_pl.trial")


class MetricTooLargeError(NniPlError, ValueError):
    """A reported metric is larger, as JSON, than ``NNI_PL_MAX_METRIC_BYTES`` allows (64 KiB by default)."""


def _scalar(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)
    size = getattr(value, "size", None)
    numel = getattr(value, "numel", None)
    count = numel() if callable(numel) else size
    if callable(item) and count == 1:  # 0-d / one-element numpy arrays and torch tensors
        try:
            return _scalar(item())
        except (TypeError, ValueError, RuntimeError):
            return None
    return None


def normalize_metric(
    value: Any, api: str = "report_final_result", *, max_bytes: int | None = None
) -> float | int | dict[str, Any]:
    """Validate a reported metric: a number, or a dict with a numeric ``default`` key.

    Numpy scalars and one-element arrays/tensors are accepted and turned into Python numbers.
    NaN and infinities are kept (a diverged run is a result); tuners treat them as the worst value.

    Args:
        value: the metric.
        api: the SDK function named in errors.
        max_bytes: the largest dict metric accepted, in bytes of compact JSON (``None``: no limit).

    Raises:
        TypeError: naming what was received and what is expected.
        MetricTooLargeError: a dict metric is larger than ``max_bytes`` as JSON.
    """
    number = _scalar(value)
    if number is not None:
        return number
    if isinstance(value, Mapping):
        if "default" not in value:
            raise TypeError(
                f"{api}() got a dict without a 'default' key (keys: {sorted(map(str, value))}); "
                "add 'default': <the number tuners optimise>"
            )
        default = _scalar(value["default"])
        if default is None:
            raise TypeError(
                f"{api}() needs dict['default'] to be a number, but got "
                f"{type(value['default']).__name__} {value['default']!r:.80}"
            )
        out = {str(k): v for k, v in value.items()}
        out["default"] = default
        try:
            text = json.dumps(out, default=json_default, separators=(",", ":"))
        except TypeError as e:
            raise TypeError(
                f"{api}() got a dict metric with a value that is not JSON-serialisable: {e}"
            ) from e
        if max_bytes is not None and len(text) > max_bytes:  # ASCII: json.dumps escapes the rest
            raise MetricTooLargeError(
                f"{api}() got a metric of {len(text)} bytes as JSON ({len(out)} keys), over the limit of "
                f"{_size(max_bytes)} per report; report the few numbers the tuner and the dashboard need "
                "(write large data to a file in nni.get_output_dir()), or raise the limit with the environment "
                f"variable {ENV_MAX_METRIC_BYTES} where nni-pl launch runs (trials inherit it)"
            )
        return json.loads(text)
    raise TypeError(
        f"{api}() expects a number or a dict with a numeric 'default' key, but got "
        f"{type(value).__name__} {value!r:.80}"
    )


def _load_override(text: str) -> dict[str, Any]:
    """The parameters that ``NNI_PL_PARAMETERS`` gives a standalone run: JSON text or a JSON/YAML file's path."""
    text = text.strip()
    accepted = (
        "set it to a JSON object such as '{\"lr\": 0.01}' or to the path of a JSON/YAML file holding one"
    )
    shown = repr(text[:80]) + ("..." if len(text) > 80 else "")
    if not text.startswith("{") and Path(text).is_file():
        from nni_pl._files import load_structured_file

        try:
            data = load_structured_file(text)
        except (OSError, ValueError) as e:
            raise TrialSetupError(
                f"{ENV_PARAMETERS} names the file {text!r}, which cannot be read as JSON or YAML "
                f"({' '.join(str(e).split())[:160]}); {accepted}"
            ) from None
        source = f"the file {text!r}"
    else:
        try:
            data = json.loads(text)
        except ValueError as e:
            what = (
                "is not valid JSON" if text.startswith(("{", "[")) else "is neither JSON nor an existing file"
            )
            where = f" ({e.msg} at column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
            raise TrialSetupError(f"{ENV_PARAMETERS}={shown} {what}{where}; {accepted}") from None
        source = shown
    if not isinstance(data, dict):
        raise TrialSetupError(
            f"{ENV_PARAMETERS}: {source} holds a {type(data).__name__}, not an object of parameters; {accepted}"
        )
    return data


class TrialContext:
    """The identity and the report channel of the running trial (or of a standalone run).

    Args:
        experiment_id, trial_id, sequence_id: the trial's ids.
        trial_dir: the trial directory; ``None`` for a standalone run.
        parameters: the parameters, when known up front (function trials); otherwise read from the
            parameter file on first use.
        sync_final: fsync the final report before :meth:`report` returns; ``False`` where the runner fsyncs
            the metrics file once the trial process ends (:data:`~nni_pl.trial.protocol.ENV_SYNC_AT_EXIT`).
    """

    def __init__(
        self,
        *,
        experiment_id: str = STANDALONE,
        trial_id: str = STANDALONE,
        sequence_id: int = 0,
        trial_dir: str | os.PathLike[str] | None = None,
        parameters: dict[str, Any] | None = None,
        sync_final: bool = True,
    ) -> None:
        self.experiment_id = experiment_id
        self.trial_id = trial_id
        self.sequence_id = sequence_id
        self.trial_dir = Path(trial_dir) if trial_dir is not None else None
        self._parameters = parameters
        self._parameter_record: dict[str, Any] | None = None
        self._fd: int | None = None
        self._seq: int | None = None
        self._final_reported = False
        self._sync_final = sync_final
        self._lock = threading.Lock()

    @property
    def final_reported(self) -> bool:
        """Whether this trial has reported its final result (only the first one counts)."""
        return self._final_reported

    @property
    def standalone(self) -> bool:
        return self.trial_dir is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> TrialContext:
        sys_dir = environ.get(ENV_SYS_DIR)
        if not sys_dir or not environ.get(ENV_TRIAL_ID):
            return cls()
        raw_sequence = environ.get(ENV_SEQUENCE_ID, "0").strip() or "0"
        try:
            sequence_id = int(raw_sequence)
        except ValueError:
            raise TrialSetupError(
                f"{ENV_SEQUENCE_ID} must be a whole number (the trial's sequence id), got {raw_sequence[:40]!r}; "
                "the manager sets it: run the script through nni-pl"
            ) from None
        return cls(
            experiment_id=environ.get(ENV_EXPERIMENT_ID, STANDALONE),
            trial_id=environ[ENV_TRIAL_ID],
            sequence_id=sequence_id,
            trial_dir=sys_dir,
            sync_final=environ.get(ENV_SYNC_AT_EXIT) != "1",
        )

    # --- parameters -----------------------------------------------------------------------------------
    @property
    def parameter_record(self) -> dict[str, Any]:
        """The whole parameter file: ``parameter_id``, ``parameter_source``, ``parameters``."""
        if self._parameter_record is None:
            if self.standalone:
                override = os.environ.get(ENV_PARAMETERS)
                params = _load_override(override) if override else (self._parameters or {})
                self._parameter_record = {
                    "parameter_id": None,
                    "parameter_source": "standalone",
                    "parameters": params,
                }
            elif self._parameters is not None:
                self._parameter_record = {"parameters": self._parameters}
            else:
                assert self.trial_dir is not None
                self._parameter_record = read_parameter_file(self.trial_dir / PARAMETER_FILE)
        return self._parameter_record

    @property
    def parameters(self) -> dict[str, Any]:
        return self.parameter_record["parameters"]

    # --- reports --------------------------------------------------------------------------------------
    def _open(self) -> int:
        if self._fd is None:
            assert self.trial_dir is not None
            path = self.trial_dir / METRICS_FILE
            # continue the sequence if the file already has reports (e.g. a re-run in the same directory)
            try:
                with open(path, "rb") as f:
                    self._seq = sum(1 for line in f if line.endswith(b"\n"))
            except FileNotFoundError:
                self._seq = 0
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self._fd

    def report(self, kind: str, value: Any) -> None:
        api = "report_final_result" if kind == FINAL else "report_intermediate_result"
        metric = normalize_metric(value, api, max_bytes=max_metric_bytes())
        with self._lock:
            if kind == FINAL:
                if self._final_reported:
                    logger.warning(
                        "%s() was called again; only the first final result counts (ignored %r)", api, metric
                    )
                    return
                self._final_reported = True
            if self.standalone:
                self._log_standalone(kind, metric)
                return
            fd = self._open()
            assert self._seq is not None
            line = encode_record(self._seq, kind, metric)
            # Once write() returns, the report is in the kernel: a crash or kill of the trial or of the
            # manager cannot lose it. The final result is also fsync'd, so it survives a machine crash (here,
            # or by the runner once this process ends).
            os.write(fd, line)
            if kind == FINAL and self._sync_final:
                os.fsync(fd)
            self._seq += 1

    def _log_standalone(self, kind: str, metric: Any) -> None:
        what = "final result" if kind == FINAL else "intermediate result"
        if logger.hasHandlers() and logger.isEnabledFor(logging.INFO):
            logger.info("standalone %s: %s", what, metric)
        else:  # no logging configured: still show the result rather than losing it
            print(f"[nni-pl standalone] {what}: {metric}", file=sys.stderr, flush=True)

    # --- control from the manager -------------------------------------------------------------------------
    def stop_requested(self) -> bool:
        return self.trial_dir is not None and protocol_stop_requested(self.trial_dir)

    def declare_graceful(self) -> None:
        if self.trial_dir is not None:
            declare_graceful(self.trial_dir)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __repr__(self) -> str:
        return f"TrialContext(experiment_id={self.experiment_id!r}, trial_id={self.trial_id!r}, sequence_id={self.sequence_id})"


_current: TrialContext | None = None


def current() -> TrialContext:
    """The context of this process's trial, built from the environment on first use."""
    global _current
    if _current is None:
        _current = TrialContext.from_env()
    return _current


def activate(ctx: TrialContext | None) -> None:
    """Make ``ctx`` the current trial (function-trial workers do this around each call)."""
    global _current
    if _current is not None and _current is not ctx:
        _current.close()
    _current = ctx
