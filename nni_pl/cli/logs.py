"""``nni-pl log``: a trial's output or the manager's log, read in bounded memory.

``--tail N`` reads the file backwards from its end in blocks and ``--head N`` reads from the start line by
line, so the last two lines of a 50 MB output cost a few blocks, not the file. Without either, the file is
copied to stdout in blocks. NNI's spellings work too: ``log stdout|stderr [ID]`` (the experiment's manager
output) and ``log trial [ID] --trial_id T`` (where a trial's output is).
"""

from __future__ import annotations

import argparse
import codecs
import os
import sys
from pathlib import Path
from typing import BinaryIO

from nni_pl.cli._common import console, default_id, find
from nni_pl.errors import NniPlError

__all__ = ["cmd_log", "head_lines", "tail_lines"]

BLOCK = 64 * 1024
MAX_LINE = 1024 * 1024  # a longer line is cut here: nothing reads more than this for one line
NNI_FORMS = ("stdout", "stderr", "trial")


def tail_lines(f: BinaryIO, n: int, *, block: int = BLOCK, max_line: int = MAX_LINE) -> list[bytes]:
    """The last ``n`` lines of a binary file (without their line ends), read backwards from its end.

    At most about ``n * max_line + block`` bytes are read, however large the file is.

    Example:
        >>> import io
        >>> tail_lines(io.BytesIO(b"a\\nb\\nc\\n"), 2)
        [b'b', b'c']
    """
    if n <= 0:
        return []
    f.seek(0, os.SEEK_END)
    pos = f.tell()
    if pos == 0:
        return []
    f.seek(pos - 1)
    if f.read(1) == b"\n":
        pos -= 1  # one trailing newline ends the last line; it does not start an empty one
    chunks: list[bytes] = []
    newlines = size = 0
    budget = n * max_line + block
    while pos > 0 and newlines < n and size < budget:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        chunk = f.read(step)
        chunks.append(chunk)
        newlines += chunk.count(b"\n")
        size += len(chunk)
    data = b"".join(reversed(chunks))
    return [line[-max_line:] for line in data.split(b"\n")[-n:]]


def head_lines(f: BinaryIO, n: int, *, max_line: int = MAX_LINE) -> list[bytes]:
    """The first ``n`` lines of a binary file (without their line ends); a line longer than ``max_line`` is cut.

    Example:
        >>> import io
        >>> head_lines(io.BytesIO(b"a\\nb\\nc\\n"), 2)
        [b'a', b'b']
    """
    lines = []
    while len(lines) < n:
        line = f.readline(max_line)
        if not line:
            break
        if not line.endswith(b"\n"):
            # cut: skip the rest of this line without keeping it
            while True:
                rest = f.readline(BLOCK)
                if not rest or rest.endswith(b"\n"):
                    break
        lines.append(line.rstrip(b"\n"))
    return lines


def _write(lines: list[bytes]) -> None:
    sys.stdout.write("".join(line.decode("utf-8", errors="replace") + "\n" for line in lines))


def show_file(path: Path, *, head: int | None = None, tail: int | None = None) -> None:
    """Print a text file (or its first/last lines) without reading more of it than needed."""
    for name, n in (("--head", head), ("--tail", tail)):
        if n is not None and n < 0:
            raise NniPlError(f"{name} must be a number of lines (0 or more), got {n}")
    if head is not None and tail is not None:
        raise NniPlError("give --head N or --tail N, not both")
    with open(path, "rb") as f:
        if tail is not None:
            _write(tail_lines(f, tail))
        elif head is not None:
            _write(head_lines(f, head))
        else:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            while chunk := f.read(BLOCK):
                sys.stdout.write(decoder.decode(chunk))
            sys.stdout.write(decoder.decode(b"", final=True))
    sys.stdout.flush()


def cmd_log(args: argparse.Namespace) -> int:
    """``log ID TRIAL [--stderr]``, ``log stdout|stderr [ID]`` or ``log trial [ID] [--trial_id T]``."""
    if args.id in NNI_FORMS:
        return _nni_form(args)
    if args.id is None:
        raise NniPlError(
            "give an experiment and a trial: `nni-pl log ID TRIAL` (`nni-pl trial ls ID` lists them)"
        )
    trial_id = args.trial or args.trial_id
    if not trial_id:
        raise NniPlError(
            f"give the trial too: `nni-pl log {args.id} TRIAL` (`nni-pl trial ls {args.id}` lists them)"
        )
    loc = find(args)
    t = loc.store.get_trial(loc.experiment.id, trial_id)
    name = "stderr" if args.stderr else "stdout"
    path = Path(t.trial_dir) / name
    if args.path:
        sys.stdout.write(f"{path}\n")
        return 0
    if not path.exists():
        console(stderr=True).print(f"no {name} yet for trial {t.trial_id} ({path})")
        return 0
    show_file(path, head=args.head, tail=args.tail)
    return 0


def _nni_form(args: argparse.Namespace) -> int:
    form = args.id
    loc = find(args, default_id(args, args.trial, f"log {form}"))
    exp = loc.experiment
    if form == "trial":
        trials = loc.store.list_trials(exp.id)
        if args.trial_id:
            trials = [loc.store.get_trial(exp.id, args.trial_id)]
        for t in trials:
            sys.stdout.write(f"{t.trial_id}: {t.trial_dir}\n")
        return 0
    # the manager's log is NNI's stdout log; what a detached manager printed (errors, tracebacks) its stderr
    path = loc.directory / "log" / ("manager.log" if form == "stdout" else "manager.out")
    if args.path:
        sys.stdout.write(f"{path}\n")
        return 0
    if not path.exists():
        what = "log" if form == "stdout" else "output of a detached manager"
        console(stderr=True).print(f"experiment {exp.id} has no {what} ({path})")
        return 0
    show_file(path, head=args.head, tail=args.tail)
    return 0


def add_arguments(s: argparse.ArgumentParser) -> None:
    """The ``log`` command's arguments (its parser is made with ``add_help=False``: ``-h`` is NNI's --head)."""
    s.add_argument("--help", action="help", help="show this help message and exit")
    s.add_argument("id", nargs="?", metavar="ID", help="experiment id (or NNI's stdout, stderr, trial)")
    s.add_argument(
        "trial", nargs="?", metavar="TRIAL", help="trial id (with stdout/stderr/trial: the experiment id)"
    )
    s.add_argument("--stderr", action="store_true", help="the trial's stderr instead of its stdout")
    s.add_argument("--head", "-h", type=int, metavar="N", help="only the first N lines")
    s.add_argument("--tail", "-t", type=int, metavar="N", help="only the last N lines")
    s.add_argument("--path", "-p", action="store_true", help="print the file's path instead")
    s.add_argument("--trial_id", "-T", help="NNI's spelling of the trial (log trial ID --trial_id T)")
