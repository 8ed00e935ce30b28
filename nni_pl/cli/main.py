"""The ``nni-pl`` command: launch, watch, stop, resume and export experiments.

Every command reads the store; none keeps state of its own. Experiments are found by id (or a unique
prefix) in ``$NNI_PL_HOME`` (default ``~/nni-pl-experiments``), in ``--workdir``, or in ``--store URL``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nni_pl import __version__
from nni_pl.cli import export_model, logs, nnictl, results, steer
from nni_pl.cli._common import console as _console
from nni_pl.cli._common import find as _find
from nni_pl.cli._common import fmt as _fmt
from nni_pl.errors import ExperimentNotFoundError, NniPlError

__all__ = ["main"]


# --- launch / resume / view / stop ---------------------------------------------------------------------------------


def _finish_run(exp: Any, out: Any) -> int:
    from nni_pl.experiment import store as st

    status = exp.get_status()
    best = exp.best_trial()
    out.print(f"experiment [bold]{exp.id}[/] {status}: {exp.store.get_experiment(exp.id).message or ''}")
    if best is not None:
        out.print(f"best trial {best.trial_id}: {_fmt(best.final)}  parameters {json.dumps(best.parameters)}")
    if status in (st.EXP_STOPPED, "INTERRUPTED"):
        out.print(f"resume with: nni-pl resume {exp.id}")
    out.print(f"results: nni-pl show {exp.id}   |   folder: {exp.directory}")
    return 0 if status in (st.EXP_DONE, st.EXP_STOPPED) else 1


def _webui_options(args: argparse.Namespace) -> dict[str, Any]:
    """The dashboard settings of launch/resume: ``port=None`` when it is turned off."""
    if args.no_webui:
        return {"port": None}
    return {"port": args.port, "host": args.host, "token": args.token}


def _print_webui(exp: Any, out: Any) -> None:
    """The dashboard's addresses (every one a remote browser can open, with the token) on the user's terminal."""
    from nni_pl.cli._common import escape

    urls = exp.webui_urls or ([exp.webui_url] if exp.webui_url else [])
    if urls:
        out.print(f"dashboard: {escape(' '.join(urls))}")
    elif exp.webui_error:
        out.print(f"no web dashboard: {escape(exp.webui_error)}")


def cmd_launch(args: argparse.Namespace) -> int:
    from nni_pl.experiment import Experiment, ExperimentConfig

    out = _console()
    cfg = ExperimentConfig.load(args.config)
    if args.workdir:
        cfg.experiment_working_directory = Path(args.workdir).expanduser().resolve()
    if args.store:
        cfg.store_url = args.store
    exp = Experiment(cfg, id=args.id)
    webui = _webui_options(args)
    if args.detach:
        # checks everything, creates the experiment, returns once its manager is up (or raises with its reason)
        exp.run(detach=True, **webui)
        status = exp.get_status()
        if status != "RUNNING":  # a stop came first, or it was done at once
            return _finish_run(exp, out)
        out.print(f"experiment [bold]{exp.id}[/] started in the background (folder {exp.directory})")
        _print_webui(exp, out)
        out.print(
            f"watch: nni-pl view {exp.id}   stop: nni-pl stop {exp.id}   log: {exp.directory / 'log' / 'manager.log'}"
        )
        return 0
    # check everything, then create it: the id announced next exists, and `nni-pl stop ID` works from now on
    exp.prepare(**webui)
    out.print(f"experiment [bold]{exp.id}[/] starting (folder {exp.directory}); Ctrl-C stops it, resumable")
    exp.run(display=not args.no_display and sys.stdout.isatty(), **webui)
    return _finish_run(exp, out)


def cmd_resume(args: argparse.Namespace) -> int:
    from nni_pl.experiment import Experiment

    out = _console()
    exp = Experiment.resume(args.id, working_directory=args.workdir, store_url=args.store)
    webui = _webui_options(args)
    if args.detach:
        exp.run(detach=True, **webui)  # returns once its manager is up (or raises with its reason)
        if exp.get_status() != "RUNNING":
            return _finish_run(exp, out)
        out.print(f"experiment [bold]{exp.id}[/] resumed in the background")
        _print_webui(exp, out)
        return 0
    exp.prepare(**webui)  # checks everything (the port too) before anything changes
    out.print(f"experiment [bold]{exp.id}[/] resuming ({len(exp.trials())} stored trials)")
    exp.run(display=not args.no_display and sys.stdout.isatty(), **webui)
    return _finish_run(exp, out)


def cmd_view(args: argparse.Namespace) -> int:
    """Read-only: the dashboard of a stopped experiment until Ctrl-C (``--text``: the terminal overview)."""
    from nni_pl import webui
    from nni_pl.experiment import locate
    from nni_pl.webui import server as webui_server

    out = _console()
    located = _find(args)
    if args.text:
        return results.view_text(located, out)
    exp = located.experiment
    if locate.shown_status(exp) == "RUNNING":
        info = webui_server.read_url_file(located.directory)
        if info is not None and info.get("url"):
            out.print(f"experiment {exp.id} is running; its dashboard: {info['url']}")
            return 0
    if not webui.available():
        out.print(
            f"[yellow]note:[/] the web dashboard needs FastAPI and uvicorn ({webui.INSTALL_HINT}); the overview:"
        )
        return results.view_text(located, out)
    server = webui_server.serve(
        located.store.url,
        host=args.host,
        port=args.port,
        token=args.token,
        read_only=True,
        experiment_id=exp.id,
    )
    if args.port and server.port != args.port:
        out.print(f"port {args.port} is taken; using {server.port}")
    out.print(f"experiment [bold]{exp.id}[/] ({locate.shown_status(exp)}), read-only dashboard: {server.url}")
    out.print("Ctrl-C stops serving")
    try:
        with _sigterm_interrupts():
            server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM ends a serving command the way Ctrl-C does (what it started is stopped too)."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# --- trials ----------------------------------------------------------------------------------------------------------


def cmd_trial_add(args: argparse.Namespace) -> int:
    from nni_pl.experiment import control, locate

    out = _console()
    loc = _find(args)
    exp = loc.experiment
    t = control.add_trial(loc.store, exp.id, args.params)
    if locate.manager_alive(exp):
        out.print(f"customised trial {t.trial_id} added to experiment {exp.id}; it runs next")
    else:
        out.print(
            f"customised trial {t.trial_id} added to experiment {exp.id}; it runs when the experiment resumes "
            f"(nni-pl resume {exp.id})"
        )
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    """TensorBoard over the trials' Lightning logs until Ctrl-C."""
    import subprocess

    from nni_pl.experiment import tensorboard
    from nni_pl.webui.server import free_port, is_loopback

    out = _console()
    if args.id in ("start", "stop"):  # NNI's `tensorboard start ID` (AdaptDL docs)
        if args.id == "stop":
            raise NniPlError("`nni-pl tensorboard` serves until Ctrl-C: stop it in its terminal")
        if not args.trials:
            raise NniPlError(
                "give the experiment: `nni-pl tensorboard start ID` (or `nni-pl tensorboard ID`)"
            )
        args.id, args.trials = args.trials[0], args.trials[1:]
    loc = _find(args)
    port = free_port(args.host, args.port)
    command = tensorboard.tensorboard_command(loc, args.trials, host=args.host, port=port)
    runs = command[command.index("--logdir_spec") + 1].count(",") + 1
    if port != args.port:
        out.print(f"port {args.port} is taken; using {port}")
    if not is_loopback(args.host):
        out.print(
            "[yellow]note:[/] TensorBoard has no access control; anyone who reaches this address sees it"
        )
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    out.print(
        f"TensorBoard over {runs} trial{'s' if runs != 1 else ''} of experiment {loc.experiment.id}: "
        f"http://{shown}:{port}/ (pid {proc.pid}); Ctrl-C stops it"
    )
    try:
        with _sigterm_interrupts():
            return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- algorithms ------------------------------------------------------------------------------------------------------


def cmd_algo(args: argparse.Namespace) -> int:
    from rich.table import Table

    import nni_pl.hpo as hpo

    out = _console()
    if args.algo_command == "list":
        table = Table(header_style="bold")
        for col in ("name", "type", "source", "class"):
            table.add_column(col)
        for kind, table_of in (
            ("tuner", hpo.BUILTIN_TUNERS),
            ("assessor", hpo.BUILTIN_ASSESSORS),
            ("advisor", hpo.BUILTIN_ADVISORS),
        ):
            for name, target in table_of.items():
                table.add_row(name, kind, "nni-pl", target.replace(":", "."))
        for kind, entries in hpo.registered_algorithms().items():
            for name, target in entries.items():
                table.add_row(name, kind, "user", target)
        out.print(table)
        return 0
    if args.algo_command == "register":
        from nni_pl._files import load_structured_file

        meta = load_structured_file(args.meta)
        for key in ("algoType", "builtinName", "className"):
            if key not in meta:
                raise NniPlError(
                    f"the meta file {args.meta} needs the key {key!r} (algoType, builtinName, className)"
                )
        hpo.resolve_class(meta["algoType"], class_name=meta["className"], field="className")  # it must import
        hpo.register_algorithm(meta["algoType"], meta["builtinName"], meta["className"])
        out.print(f"registered {meta['algoType']} {meta['builtinName']} -> {meta['className']}")
        return 0
    kinds = [k for k, entries in hpo.registered_algorithms().items() if args.name in entries]
    if not kinds:
        raise NniPlError(f"{args.name!r} is not a registered algorithm (built-ins cannot be unregistered)")
    for k in kinds:
        hpo.unregister_algorithm(k, args.name)
    out.print(f"unregistered {args.name}")
    return 0


# --- parser -----------------------------------------------------------------------------------------------------------


def _add_webui_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--port",
        type=int,
        default=8080,
        help="dashboard port (default 8080; a free one is used when it is taken)",
    )
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the dashboard binds (default 127.0.0.1); any other needs a token, generated if not given",
    )
    s.add_argument("--token", help="the token every dashboard request must carry (?token=... in the URL)")


class _Unbuilt:
    """Stands in for the parser of a sub-command that is not being run: every call on it does nothing."""

    def __getattr__(self, name: str) -> Any:
        return self._nothing

    def _nothing(self, *args: Any, **kwargs: Any) -> _Unbuilt:
        return self


class _OnlySubcommand:
    """Stands in for ``add_subparsers()``'s action and builds the parser of one sub-command only."""

    def __init__(self, action: Any, name: str) -> None:
        self.action = action
        self.name = name

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if name == self.name or self.name in kwargs.get("aliases", ()):
            return self.action.add_parser(name, **kwargs)
        return _Unbuilt()


# sub-commands whose start-up is in every experiment's turnaround: ``main`` builds only their parser (building
# all ~30 sub-command parsers costs ~10 ms)
_BUILT_ALONE = frozenset({"launch", "resume"})


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``nni-pl`` argument parser; ``only``: build the parser of this sub-command and no other.

    Example:
        >>> build_parser(only="launch").parse_args(["launch", "config.yml", "--no-display"]).no_display
        True
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workdir", help="experiments folder to search (default: $NNI_PL_HOME or ~/nni-pl-experiments)"
    )
    common.add_argument("--store", help="database URL of a shared store (e.g. postgresql://user@host/db)")

    p = argparse.ArgumentParser(
        prog="nni-pl", description="Hyperparameter optimisation for PyTorch Lightning, NNI-compatible."
    )
    p.add_argument("--version", action="version", version=f"nni-pl {__version__}")
    sub: Any = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if only is not None:
        sub = _OnlySubcommand(sub, only)

    s = sub.add_parser(
        "launch", parents=[common], help="create and run an experiment from an NNI v1/v2 config"
    )
    s.add_argument("config")
    s.add_argument("--id", help="experiment id (default: random)")
    s.add_argument("--detach", action="store_true", help="run the manager in the background")
    _add_webui_arguments(s)
    s.add_argument("--no-webui", action="store_true", help="do not serve the web dashboard")
    s.add_argument("--no-display", action="store_true", help="no live view, even in a terminal")
    s.set_defaults(func=cmd_launch)

    s = sub.add_parser(
        "resume", parents=[common], help="continue a stopped or killed experiment to its limits"
    )
    s.add_argument("id")
    s.add_argument("--detach", action="store_true")
    _add_webui_arguments(s)
    s.add_argument("--no-webui", action="store_true", help="do not serve the web dashboard")
    s.add_argument("--no-display", action="store_true")
    s.set_defaults(func=cmd_resume)

    s = sub.add_parser(
        "view",
        parents=[common],
        help="serve a stopped experiment's dashboard read-only (--text: in the terminal)",
    )
    s.add_argument("id")
    _add_webui_arguments(s)
    s.add_argument(
        "--text", action="store_true", help="print the overview in the terminal instead of serving"
    )
    s.set_defaults(func=cmd_view)

    s = sub.add_parser(
        "webui",
        parents=[common],
        help="print the dashboard URL of a running experiment (also `webui url ID`)",
    )
    s.add_argument("id", nargs="?", help="experiment id (or NNI's `url`)")
    s.add_argument("target", nargs="?", help=argparse.SUPPRESS)
    s.set_defaults(func=steer.cmd_webui)

    s = sub.add_parser("stop", parents=[common], help="stop a running experiment gracefully (resumable)")
    s.add_argument("id", nargs="?", help="experiment id, a unique prefix, or `abc*` for every match")
    s.add_argument("--port", "-p", type=int, help="the experiment whose dashboard is on this port")
    s.add_argument("--all", "-a", action="store_true")
    s.set_defaults(func=steer.cmd_stop)

    s = sub.add_parser("list", parents=[common], help="list experiments")
    s.add_argument(
        "--all", action="store_true", help="accepted for nnictl compatibility; every experiment is listed"
    )
    s.add_argument("--status", help="only experiments with this status")
    s.set_defaults(func=results.cmd_list)

    s = sub.add_parser("show", parents=[common], help="an experiment's best trials")
    s.add_argument("id")
    s.add_argument("--top", type=int, default=10)
    s.set_defaults(func=results.cmd_show)

    s = sub.add_parser("export", parents=[common], help="export trials and results as CSV or JSON")
    s.add_argument("id")
    s.add_argument("--format", choices=("csv", "json"), default="csv")
    s.add_argument("--output", "-o", help="file to write (default: stdout)")
    s.add_argument("--intermediate", "-i", action="store_true", help="include intermediate results")
    s.set_defaults(func=results.cmd_export)

    export_model.add_parser(sub)  # a checkpoint's model as ONNX (float or int8) or a TensorRT engine

    s = sub.add_parser(
        "update",
        parents=[common],
        help="change limits of an experiment (also NNI's `update trialnum|concurrency|duration|searchspace ID`)",
    )
    s.add_argument(
        "id", nargs="?", help="experiment id (or NNI's trialnum, concurrency, duration, searchspace)"
    )
    s.add_argument("target", nargs="?", help=argparse.SUPPRESS)
    s.add_argument("--concurrency", type=int)
    s.add_argument("--max-trials", type=int)
    s.add_argument("--duration", help="maxExperimentDuration, e.g. 2h")
    s.add_argument("--value", "-v", help="NNI's form: the new value")
    s.add_argument("--filename", "-f", help="NNI's `update searchspace`: the new search space file")
    s.set_defaults(func=steer.cmd_update)

    s = sub.add_parser(
        "log",
        parents=[common],
        add_help=False,
        help="a trial's stdout (or --stderr); NNI's `log stdout|stderr ID`: the manager's log",
    )
    logs.add_arguments(s)
    s.set_defaults(func=logs.cmd_log)

    trial = sub.add_parser("trial", help="list, kill or add trials")
    tsub = trial.add_subparsers(dest="trial_command", required=True, metavar="ACTION")
    s = tsub.add_parser("ls", parents=[common], help="list an experiment's trials")
    s.add_argument("id", nargs="?")
    s.add_argument("--status")
    s.add_argument(
        "--head", type=int, metavar="N", help="the N complete trials with the highest default metric"
    )
    s.add_argument(
        "--tail", type=int, metavar="N", help="the N complete trials with the lowest default metric"
    )
    s.set_defaults(func=results.cmd_trial_ls)
    s = tsub.add_parser("kill", parents=[common], help="stop a running trial")
    s.add_argument("id", nargs="?")
    s.add_argument("trial", nargs="?")
    s.add_argument("--trial_id", "-T", help="NNI's spelling of the trial to kill")
    s.set_defaults(func=steer.cmd_trial_kill)
    s = tsub.add_parser(
        "add", parents=[common], help="add a customised trial (parameters checked against the search space)"
    )
    s.add_argument("id")
    s.add_argument("--params", required=True, help="the parameters as JSON, e.g. '{\"lr\": 0.01}'")
    s.set_defaults(func=cmd_trial_add)

    s = sub.add_parser(
        "tensorboard",
        parents=[common],
        help="TensorBoard over the trials' Lightning logs (one run per trial)",
    )
    s.add_argument("id")
    s.add_argument("trials", nargs="*", metavar="TRIAL", help="only these trials (default: all with logs)")
    s.add_argument("--port", type=int, default=6006, help="default 6006; a free one is used when it is taken")
    s.add_argument("--host", default="127.0.0.1", help="address TensorBoard binds (default 127.0.0.1)")
    s.set_defaults(func=cmd_tensorboard)

    algo = sub.add_parser("algo", help="list, show, register or unregister tuners/assessors")
    asub = algo.add_subparsers(dest="algo_command", required=True, metavar="ACTION")
    asub.add_parser("list", help="built-in and registered algorithms").set_defaults(func=cmd_algo)
    s = asub.add_parser(
        "register", help="register a custom algorithm from a meta YAML (algoType, builtinName, className)"
    )
    s.add_argument("--meta", required=True)
    s.set_defaults(func=cmd_algo)
    s = asub.add_parser("unregister", help="remove a registered algorithm")
    s.add_argument("name")
    s.set_defaults(func=cmd_algo)
    s = asub.add_parser("show", help="where an algorithm lives and its classArgs")
    s.add_argument("name")
    s.set_defaults(func=nnictl.cmd_algo_show)

    nnictl.add_parsers(sub, common)  # NNI's create, top and experiment commands
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in nnictl.UNSUPPORTED:  # an nnictl command nni-pl lacks: say why, whatever follows
        args = argparse.Namespace(command=argv[0], rest=argv[1:], func=nnictl.unsupported)
    else:
        args = build_parser(only=argv[0] if argv and argv[0] in _BUILT_ALONE else None).parse_args(argv)
    for attr in ("workdir", "store"):
        if not hasattr(args, attr):
            setattr(args, attr, None)
    try:
        return int(args.func(args) or 0)
    except (NniPlError, ExperimentNotFoundError) as e:
        from nni_pl.cli._common import escape

        _console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}")
        return 2
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The ``nni-pl`` command: :func:`main`, then the process ends without tearing its modules down.

    A command has closed its store and files by the time :func:`main` returns; freeing every module's objects
    one by one would add ~20 ms to each command (a tenth of a trivial launch). ``atexit`` handlers still run
    (logging flushes there), and the quick exit is taken only when no non-daemon thread is left to wait for.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the normal exit path reports it
        sys.exit(code)
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":
    run()
