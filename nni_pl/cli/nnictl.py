"""NNI's ``nnictl`` spellings that have no nni-pl command of the same shape: ``create``, ``top``, ``experiment``,
``algo show``, and a one-line answer for the nnictl commands nni-pl does not have.

``nni-pl create --config F`` starts the experiment in the background and returns, as ``nnictl create``
does (``--foreground`` keeps it in the terminal with the live view, like ``nni-pl launch``).
"""

from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path
from typing import Any

from nni_pl._ids import random_id
from nni_pl.cli._common import console, elapsed, find, fmt, optimize_mode, running_experiments
from nni_pl.errors import NniPlError

__all__ = [
    "UNSUPPORTED",
    "add_parsers",
    "cmd_algo_show",
    "cmd_create",
    "cmd_platform_clean",
    "cmd_top",
    "unsupported",
]


# nnictl commands nni-pl has no counterpart for, with why and what to use instead
UNSUPPORTED: dict[str, str] = {
    "config": "nni-pl has no current-experiment context: every command takes the experiment id "
    "(or, where NNI allows none, uses the one running experiment); `nni-pl list` shows them",
    "ss_gen": "it generates search spaces from NNI's legacy NAS annotations, which nni-pl does not read; "
    "a model space gives its own: `ModelSpace.search_space()` (nni_pl.nas)",
    "package": "NNI 2.x replaced it with `nnictl algo`: use `nni-pl algo list|register|unregister|show`",
}


# --- create ---------------------------------------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    """``nnictl create``: ``nni-pl launch`` in the background (``--foreground``: in the terminal)."""
    from nni_pl.cli.main import build_parser

    out = console()
    experiment_id = random_id(8)
    argv = ["launch", args.config, "--id", experiment_id]
    if not args.foreground:
        argv.append("--detach")
    if args.port is not None:
        argv += ["--port", str(args.port)]
    for flag in ("workdir", "store"):
        if getattr(args, flag, None):
            argv += [f"--{flag}", getattr(args, flag)]
    if args.debug:
        out.print(
            "note: --debug changes nothing: NNI's debug mode turns off a trial version check nni-pl does not have; "
            "set `logLevel: debug` in the config for a detailed manager log"
        )
    launch_args = build_parser().parse_args(argv)
    for attr in ("workdir", "store"):
        if not hasattr(launch_args, attr):
            setattr(launch_args, attr, None)
    code = int(launch_args.func(launch_args) or 0)
    if code == 0 and not args.foreground:
        out.print(
            f"follow it with: nni-pl trial ls {experiment_id} | nni-pl top {experiment_id} | "
            f"nni-pl log stdout {experiment_id} | nni-pl webui url {experiment_id} | nni-pl stop {experiment_id}"
        )
    return code


# --- top --------------------------------------------------------------------------------------------------------------


def _table(args: argparse.Namespace) -> Any:
    from rich.table import Table

    from nni_pl.cli.results import trial_counts
    from nni_pl.experiment.display import format_seconds
    from nni_pl.webui import server as webui_server

    table = Table(title=f"running experiments ({time.strftime('%H:%M:%S')})", header_style="bold")
    for col in ("id", "name", "trials", "running", "succeeded", "failed", "best", "elapsed", "dashboard"):
        table.add_column(col)
    for loc in running_experiments(args):
        exp = loc.experiment
        counts = trial_counts(loc)
        best = loc.store.best_trials(exp.id, optimize_mode=optimize_mode(exp), limit=1)
        info = webui_server.read_url_file(loc.directory) or {}
        c = counts.by_status
        table.add_row(
            exp.id,
            exp.name or "-",
            f"{counts.counted}/{exp.config.get('maxTrialNumber') or '∞'}",
            str(c.get("RUNNING", 0)),
            str(c.get("SUCCEEDED", 0)),
            str(c.get("FAILED", 0) + c.get("TIMEOUT", 0)),
            fmt(best[0].final, limit=40) if best else "-",
            format_seconds(elapsed(exp)),
            info.get("url") or "-",
        )
        if loc.store.is_sqlite:
            loc.store.close()  # top runs for hours: one connection per refresh must not pile up
    if not table.row_count:
        return "no experiment is running (`nni-pl list` shows every experiment)"
    return table


def _view(args: argparse.Namespace) -> Any:
    if args.id is None:
        return _table(args)
    from nni_pl.cli.results import snapshot
    from nni_pl.experiment.display import render_snapshot

    loc = find(args)
    try:
        return render_snapshot(snapshot(loc))
    finally:
        if loc.store.is_sqlite:
            loc.store.close()


def cmd_top(args: argparse.Namespace) -> int:
    """Watch running experiments (or one, given its id), refreshed every ``--time`` seconds until Ctrl-C."""
    if args.time <= 0:
        raise NniPlError(f"--time must be a positive number of seconds, got {args.time}")
    out = console()
    if args.once:
        out.print(_view(args))
        return 0
    if not out.is_terminal:
        # a pipe or a file: one view per interval, one after the other
        try:
            while True:
                out.print(_view(args))
                time.sleep(args.time)
        except KeyboardInterrupt:
            return 0
    from rich.live import Live

    try:
        with Live(_view(args), console=out, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(args.time)
                live.update(_view(args), refresh=True)
    except KeyboardInterrupt:
        return 0


# --- algo show ----------------------------------------------------------------------------------------------------------


def cmd_algo_show(args: argparse.Namespace) -> int:
    """``algo show NAME``: where a built-in or registered algorithm lives and its ``classArgs``."""
    import nni_pl.hpo as hpo

    out = console()
    name = hpo.ALIASES.get(args.name, args.name)
    builtin = [
        (kind, table[name].replace(":", "."), "nni-pl")
        for kind, table in (
            ("tuner", hpo.BUILTIN_TUNERS),
            ("assessor", hpo.BUILTIN_ASSESSORS),
            ("advisor", hpo.BUILTIN_ADVISORS),
        )
        if name in table
    ]
    user = [
        (k, v, "user")
        for k, entries in hpo.registered_algorithms().items()
        for n, v in entries.items()
        if n == name
    ]
    if not builtin + user:
        raise NniPlError(f"no algorithm {args.name!r}; `nni-pl algo list` shows them all")
    kind, target, source = (builtin + user)[0]
    cls = hpo.resolve_class(kind, name, field="name")
    out.print(f"name: {name}\ntype: {kind}\nsource: {source}\nclass: {target}")
    doc = (inspect.getdoc(cls) or "").split("\n\n", 1)[0].replace("\n", " ")
    if doc:
        out.print(f"about: {doc}")
    params = [
        p
        for p in inspect.signature(cls).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if params:
        out.print("classArgs:")
        for p in params:
            default = "" if p.default is inspect.Parameter.empty else f" = {p.default!r}"
            out.print(f"  {p.name}{default}")
    return 0


# --- platform clean ----------------------------------------------------------------------------------------------------


def cmd_platform_clean(args: argparse.Namespace) -> int:
    """``nnictl platform clean --config FILE``: delete what experiments left on the config's remote hosts (the
    folders of experiments running now are kept)."""
    from nni_pl.experiment.config import ExperimentConfig

    out = console()
    config = ExperimentConfig.load(Path(args.config))
    section = config.training_service
    sections = list(getattr(section, "services", None) or [section])
    remote = [s for s in sections if getattr(s, "platform", None) == "remote"]
    if not remote:
        out.print(
            f"nothing to clean on platform {getattr(section, 'platform', 'local')!r}: trials write to this machine "
            "only; `nni-pl experiment delete ID` removes an experiment's files"
        )
        return 0
    from nni_pl.training.remote import clean_hosts

    running = {str(loc.experiment.id) for loc in running_experiments(args)}
    for s in remote:
        for line in clean_hosts(s, keep=running):
            out.print(line)
    return 0


# --- unsupported ----------------------------------------------------------------------------------------------------------


def unsupported(args: argparse.Namespace) -> int:
    """The answer to an nnictl command nni-pl has no counterpart for (``main`` routes them here)."""
    spelled = " ".join([args.command, *args.rest[:1]])
    raise NniPlError(f"`nnictl {spelled}` is not supported: {UNSUPPORTED[args.command]}")


# --- parsers ----------------------------------------------------------------------------------------------------------


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``create``, ``top`` and ``experiment`` to the ``nni-pl`` parser."""
    from nni_pl.cli import experiments

    s = sub.add_parser(
        "create",
        parents=[common],
        help="NNI's create: start an experiment in the background (--foreground: like launch)",
    )
    s.add_argument("--config", "-c", required=True, help="the experiment config (NNI v1/v2 YAML)")
    s.add_argument(
        "--port", "-p", type=int, help="dashboard port (default 8080; a free one when it is taken)"
    )
    s.add_argument(
        "--debug", "-d", action="store_true", help="accepted for NNI compatibility (changes nothing)"
    )
    s.add_argument("--foreground", "-f", action="store_true", help="run in this terminal with the live view")
    s.set_defaults(func=cmd_create)

    s = sub.add_parser("top", parents=[common], help="watch running experiments (or one) until Ctrl-C")
    s.add_argument("id", nargs="?", help="watch this experiment's overview instead of the list")
    s.add_argument("--time", "-t", type=float, default=3.0, help="seconds between refreshes (default 3)")
    s.add_argument("--once", action="store_true", help="print the view once and exit")
    s.set_defaults(func=cmd_top)

    s = sub.add_parser(
        "platform", parents=[common], help="NNI's platform clean: tidy the remote hosts of a config"
    )
    psub = s.add_subparsers(dest="platform_command", required=True, metavar="clean")
    c = psub.add_parser(
        "clean", parents=[common], help="delete the experiment folders left on the config's hosts"
    )
    c.add_argument(
        "--config", "-c", required=True, help="the experiment config naming the hosts (NNI v1/v2 YAML)"
    )
    c.set_defaults(func=cmd_platform_clean)

    experiments.add_parser(sub, common)
