"""Helpers every ``nni-pl`` command shares: the console, finding an experiment, formatting cells."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any

from nni_pl.errors import NniPlError

__all__ = [
    "CLIP_HINT",
    "console",
    "default_id",
    "elapsed",
    "escape",
    "find",
    "fmt",
    "optimize_mode",
    "print_clip_hint",
    "running_experiments",
    "when",
]

CELL_LIMIT = 100  # characters of a metric or parameter value shown in a table cell
CLIP_HINT = (
    "values longer than {limit} characters are cut ('…'); `nni-pl export {id} --format json` has them in full"
)


# rich's console-markup tags: ``[bold]``, ``[/]``, ``[link=...]``; backslashes before one escape it
_MARKUP_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def escape(text: str) -> str:
    r"""``text`` with everything that looks like console markup escaped (what ``rich.markup.escape`` does).

    Example:
        >>> escape("lr [0.1] [bold]x")
        'lr [0.1] \\[bold]x'
    """
    text = _MARKUP_TAG.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", text)
    # a lone trailing backslash would escape a tag that follows the text
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


def plain(markup: str) -> str:
    r"""Console markup as the plain text rich prints to a pipe: tags dropped, escaped ones kept literally.

    Example:
        >>> plain("[bold red]error:[/] " + escape("see [bold] and C:\\x"))
        'error: see [bold] and C:\\x'
    """

    out: list[str] = []
    position = 0
    for m in _MARKUP_TAG.finditer(markup):
        out.append(markup[position : m.start()].replace("\\[", "["))  # "\[" outside a tag is a "["
        backslashes, escaped = divmod(len(m.group(1)), 2)
        out.append("\\" * backslashes + (m.group(2) if escaped else ""))
        position = m.end()
    out.append(markup[position:].replace("\\[", "["))
    return "".join(out)


class _Console:
    """rich's ``Console`` for the CLI, built on first need: a line of text for a pipe or a file needs no rich
    (~25 ms of every command's start), a table or a terminal does."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._rich: Any = None

    @property
    def _stream(self) -> Any:
        return sys.stderr if self._stderr else sys.stdout

    def _console(self) -> Any:
        if self._rich is None:
            from rich.console import Console

            # a pipe or a file gets wide tables rather than rich's 80-column default
            width = None if self._stream.isatty() or os.environ.get("COLUMNS") else 160
            self._rich = Console(stderr=self._stderr, highlight=False, soft_wrap=True, width=width)
        return self._rich

    def print(self, *objects: Any, **kwargs: Any) -> None:
        stream = self._stream
        if (
            kwargs
            or not all(isinstance(o, str) for o in objects)
            or stream.isatty()
            or "FORCE_COLOR" in os.environ
        ):
            self._console().print(*objects, **kwargs)
            return
        stream.write(" ".join(plain(o) for o in objects) + "\n")
        stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._console(), name)


def console(stderr: bool = False) -> Any:
    """The console commands print to: rich markup in strings, rich renderables (tables) as they are."""
    return _Console(stderr)


def find(args: argparse.Namespace, experiment_id: str | None = None) -> Any:
    """The experiment ``args.id`` (or ``experiment_id``) names, in ``--workdir``/``--store`` or the index."""
    from nni_pl.experiment import locate

    return locate.find(
        experiment_id if experiment_id is not None else args.id,
        working_directory=args.workdir,
        store_url=args.store,
    )


def fmt(value: Any, limit: int | None = CELL_LIMIT) -> str:
    """A metric or parameter value for a table cell, cut after ``limit`` characters (``None``: never)."""
    from nni_pl.experiment.display import format_value

    return format_value(value, limit=limit)


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def optimize_mode(exp: Any) -> str:
    from nni_pl.experiment.control import optimize_mode as mode

    return mode(exp.config)


def elapsed(exp: Any) -> float:
    """Seconds an experiment has run: the stored total, plus the current session while a manager runs it."""
    from nni_pl.experiment import locate
    from nni_pl.experiment import store as st

    total = float(exp.elapsed or 0.0)
    if exp.status == st.EXP_RUNNING and exp.started_at and locate.manager_alive(exp):
        total += max(0.0, time.time() - exp.started_at)
    return total


def running_experiments(args: argparse.Namespace) -> list[Any]:
    """Every experiment whose manager runs now (``--workdir``/``--store`` as given)."""
    from nni_pl.experiment import locate
    from nni_pl.experiment import store as st

    return [
        loc
        for loc in locate.iter_experiments(working_directory=args.workdir, store_url=args.store)
        if locate.shown_status(loc.experiment) == st.EXP_RUNNING
    ]


def default_id(args: argparse.Namespace, given: str | None, command: str) -> str:
    """NNI's rule for a command given no id: the one running experiment, or an error naming the choices."""
    if given:
        return given
    running = running_experiments(args)
    if len(running) == 1:
        return str(running[0].experiment.id)
    if not running:
        raise NniPlError(
            f"no experiment is running, so `nni-pl {command}` needs an experiment id; `nni-pl list` shows them"
        )
    ids = ", ".join(loc.experiment.id for loc in running)
    raise NniPlError(f"several experiments are running ({ids}); give the id: `nni-pl {command} ID`")


def print_clip_hint(out: Any, cells: list[str], experiment_id: str, limit: int = CELL_LIMIT) -> None:
    """After a table: say how to see values that were cut, if any was."""
    from nni_pl.experiment.display import CLIP_MARK

    if any(CLIP_MARK in c for c in cells):
        out.print(CLIP_HINT.format(limit=limit, id=experiment_id))
