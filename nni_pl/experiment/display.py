"""The live terminal view of a running experiment (rich, imported when a view is drawn) and value formatting."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from nni_pl.experiment import store as st
from nni_pl.experiment.manager import Snapshot

if TYPE_CHECKING:
    from rich.panel import Panel

__all__ = ["CLIP_MARK", "clip", "format_seconds", "format_value", "render_snapshot"]

CLIP_MARK = "…(+"  # what marks a value cut for the terminal: "abc…(+5 chars)"

_STATUS_STYLE = {
    st.SUCCEEDED: "green",
    st.FAILED: "red",
    st.EARLY_STOPPED: "yellow",
    st.USER_CANCELED: "magenta",
    st.TIMEOUT: "red",
    st.RUNNING: "cyan",
    st.WAITING: "dim",
    "INTERRUPTED": "red",  # a RUNNING trial whose manager and process are gone (the CLI shows it so)
}


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{max(0.0, seconds):.1f}s"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def clip(text: str, limit: int | None) -> str:
    """``text`` cut after ``limit`` characters, marked with how much was left out (``None``: never cut).

    Example:
        >>> clip("abcdefgh", 3)
        'abc…(+5 chars)'
    """
    if limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}{CLIP_MARK}{len(text) - limit} chars)"


def format_value(value: Any, *, limit: int | None = 100) -> str:
    """A metric value as the terminal shows it: a number, or ``default`` and the other keys of a dict.

    A huge value (a wide dict, a long string) is cut after ``limit`` characters (see :func:`clip`).
    """
    if value is None:
        return "-"
    if isinstance(value, dict):
        default = value.get("default")
        extra = {k: v for k, v in value.items() if k != "default"}
        return clip(format_value(default, limit=None) + (f" {json.dumps(extra)}" if extra else ""), limit)
    if isinstance(value, float):
        return f"{value:.6g}"
    return clip(str(value), limit)


def render_snapshot(s: Snapshot) -> Panel:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    c = s.counts
    done = c.get(st.SUCCEEDED, 0)
    failed = c.get(st.FAILED, 0) + c.get(st.TIMEOUT, 0)
    stopped = c.get(st.EARLY_STOPPED, 0)
    canceled = c.get(st.USER_CANCELED, 0)
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("experiment", f"{s.experiment_id}  [{s.status}]")
    trials = f"{s.counted}" + (f"/{s.max_trial_number}" if s.max_trial_number else "")
    head.add_row(
        "trials",
        f"{trials}  done [green]{done}[/]  running [cyan]{s.running}[/]  failed [red]{failed}[/]  "
        f"early-stopped [yellow]{stopped}[/]  canceled [magenta]{canceled}[/]"
        + (f"  interrupted [red]{c['INTERRUPTED']}[/]" if c.get("INTERRUPTED") else ""),
    )
    left = []
    if s.max_trial_number:
        left.append(f"{max(0, s.max_trial_number - s.counted)} trials")
    if s.max_duration:
        left.append(format_seconds(s.max_duration - s.elapsed))
    head.add_row("elapsed", format_seconds(s.elapsed) + (f"  (left: {', '.join(left)})" if left else ""))
    if s.best_trial:
        head.add_row(f"best ({s.optimize_mode})", f"{format_value(s.best_value)}  trial {s.best_trial}")
        head.add_row("best parameters", Text(clip(json.dumps(s.best_params), 400)))
    if s.message:
        head.add_row("note", s.message)
    table = Table(box=None, padding=(0, 1), header_style="bold dim")
    for col in ("trial", "#", "status", "result", "parameters"):
        table.add_column(col, no_wrap=col != "parameters", overflow="ellipsis")
    for t in s.recent:
        table.add_row(
            t.trial_id,
            str(t.sequence_id),
            Text(t.status, style=_STATUS_STYLE.get(t.status, "")),
            format_value(t.final),
            Text(clip(json.dumps(t.parameters), 120)),
        )
    return Panel(Group(head, table), title="nni-pl", border_style="blue")
