"""The ``nni-pl`` command: launch, watch, stop, resume and export experiments.

Every command reads the store; none keeps state of its own. Experiments are found by id (or a unique
prefix) in ``$NNI_PL_HOME`` (default ``~/nni-pl-experiments``), in ``--workdir``, or in ``--store URL``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nni_pl import __version__
from nni_pl.errors import ExperimentNotFoundError, NniPlError

__all__ = ["main"]


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # a pipe or a file gets wide tables rather than rich's 80-column default
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def _find(args: argparse.Namespace) -> Any:
    from nni_pl.experiment import _locate

    return _locate.find(args.id, working_directory=args.workdir, store_url=args.store)


def _fmt(value: Any) -> str:
    from nni_pl.experiment._display import format_value

    return format_value(value)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


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
    if exp.webui_url:
        out.print(f"dashboard: {exp.webui_url}")
    elif exp.webui_error:
        out.print(f"no web dashboard: {exp.webui_error}")


def cmd_launch(args: argparse.Namespace) -> int:
    from nni_pl.experiment import Experiment, ExperimentConfig

    out = _console()
    cfg = ExperimentConfig.load(args.config)
    if args.workdir:
        cfg.experiment_working_directory = Path(args.workdir).expanduser().resolve()
    if args.store:
        cfg.store_url = args.store
    exp = Experiment(cfg, id=args.id)
    if args.detach:
        exp.run(detach=True, **_webui_options(args))
        out.print(f"experiment [bold]{exp.id}[/] started in the background (folder {exp.directory})")
        _print_webui(exp, out)
        out.print(
            f"watch: nni-pl view {exp.id}   stop: nni-pl stop {exp.id}   log: {exp.directory / 'log' / 'manager.log'}"
        )
        return 0
    out.print(
        f"experiment [bold]{exp.id}[/] starting (folder {cfg.experiment_working_directory / exp.id}); Ctrl-C stops it, resumable"
    )
    exp.run(display=not args.no_display and sys.stdout.isatty(), **_webui_options(args))
    return _finish_run(exp, out)


def cmd_resume(args: argparse.Namespace) -> int:
    from nni_pl.experiment import Experiment

    out = _console()
    exp = Experiment.resume(args.id, working_directory=args.workdir, store_url=args.store)
    if args.detach:
        exp.run(detach=True, **_webui_options(args))
        out.print(f"experiment [bold]{exp.id}[/] resumed in the background")
        _print_webui(exp, out)
        return 0
    out.print(f"experiment [bold]{exp.id}[/] resuming ({len(exp.trials())} stored trials)")
    exp.run(display=not args.no_display and sys.stdout.isatty(), **_webui_options(args))
    return _finish_run(exp, out)


def cmd_view(args: argparse.Namespace) -> int:
    """Read-only: the dashboard of a stopped experiment until Ctrl-C (``--text``: the terminal overview)."""
    from nni_pl import webui
    from nni_pl.experiment import _locate
    from nni_pl.webui import server as webui_server

    out = _console()
    located = _find(args)
    if args.text:
        return _view_text(located, out)
    exp = located.experiment
    if _locate.shown_status(exp) == "RUNNING":
        info = webui_server.read_url_file(located.directory)
        if info is not None and info.get("url"):
            out.print(f"experiment {exp.id} is running; its dashboard: {info['url']}")
            return 0
    if not webui.available():
        out.print(
            f"[yellow]note:[/] the web dashboard needs FastAPI and uvicorn ({webui.INSTALL_HINT}); the overview:"
        )
        return _view_text(located, out)
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
    out.print(
        f"experiment [bold]{exp.id}[/] ({_locate.shown_status(exp)}), read-only dashboard: {server.url}"
    )
    out.print("Ctrl-C stops serving")
    try:
        with _sigterm_interrupts():
            server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def cmd_webui(args: argparse.Namespace) -> int:
    """The URL of a running experiment's dashboard."""
    from nni_pl.experiment import _locate
    from nni_pl.webui import server as webui_server

    located = _find(args)
    exp = located.experiment
    status = _locate.shown_status(exp)
    info = webui_server.read_url_file(located.directory)
    if status != "RUNNING" or not _locate.manager_alive(exp):
        raise NniPlError(
            f"experiment {exp.id} is not running ({status}); `nni-pl view {exp.id}` serves its dashboard read-only"
        )
    if info is None or not info.get("url"):
        why = f" ({info['error']})" if info and info.get("error") else ""
        raise NniPlError(
            f"experiment {exp.id} runs without a dashboard{why}; `nni-pl view {exp.id}` serves one read-only"
        )
    sys.stdout.write(info["url"] + "\n")
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


def _view_text(located: Any, out: Any) -> int:
    from nni_pl.experiment import _locate
    from nni_pl.experiment._display import render_snapshot
    from nni_pl.experiment.manager import Snapshot

    exp, store = located.experiment, located.store
    trials = store.list_trials(exp.id)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    cfg = exp.config
    mode = ((cfg.get("tuner") or cfg.get("advisor") or {}).get("classArgs") or {}).get(
        "optimize_mode", "maximize"
    )
    best = store.best_trials(exp.id, optimize_mode=mode, limit=1)
    from nni_pl.experiment.config import parse_duration

    snap = Snapshot(
        experiment_id=exp.id,
        status=_locate.shown_status(exp),
        counts=counts,
        counted=sum(1 for t in trials if not t.requeue),
        running=counts.get("RUNNING", 0),
        max_trial_number=cfg.get("maxTrialNumber"),
        elapsed=exp.elapsed,
        max_duration=parse_duration(cfg.get("maxExperimentDuration"), "maxExperimentDuration"),
        best_value=best[0].final if best else None,
        best_params=best[0].parameters if best else None,
        best_trial=best[0].trial_id if best else None,
        message=exp.message,
        optimize_mode=mode,
        recent=trials[-15:],
    )
    out.print(render_snapshot(snap))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from nni_pl.experiment import _locate
    from nni_pl.experiment import store as st
    from nni_pl.experiment.experiment import stop_experiment

    out = _console()
    if args.all:
        targets = [
            loc
            for loc in _locate.iter_experiments(working_directory=args.workdir, store_url=args.store)
            if loc.experiment.status == st.EXP_RUNNING
        ]
        if not targets:
            out.print("no running experiment")
            return 0
    elif args.id:
        targets = [_find(args)]
    else:
        running = [
            loc
            for loc in _locate.iter_experiments(working_directory=args.workdir, store_url=args.store)
            if _locate.shown_status(loc.experiment) == st.EXP_RUNNING
        ]
        if len(running) != 1:
            ids = ", ".join(loc.experiment.id for loc in running) or "none"
            raise NniPlError(f"give the id of the experiment to stop (running: {ids}), or --all")
        targets = running
    for loc in targets:
        was_running = stop_experiment(loc.store, loc.experiment.id)
        out.print(
            f"experiment {loc.experiment.id} {'stopped' if was_running else 'marked stopped (no manager was running)'}"
        )
    return 0


# --- listing and results --------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from nni_pl.experiment import _locate
    from nni_pl.experiment._display import format_seconds

    out = _console()
    table = Table(header_style="bold")
    for col in ("id", "name", "status", "best", "trials", "started", "duration"):
        table.add_column(col)
    n = 0
    for loc in _locate.iter_experiments(working_directory=args.workdir, store_url=args.store):
        exp = loc.experiment
        status = _locate.shown_status(exp)
        if args.status and status != args.status:
            continue
        counts = loc.store.count_trials(exp.id)
        cfg = exp.config
        mode = ((cfg.get("tuner") or cfg.get("advisor") or {}).get("classArgs") or {}).get(
            "optimize_mode", "maximize"
        )
        best = loc.store.best_trials(exp.id, optimize_mode=mode, limit=1)
        done = sum(v for k, v in counts.items() if k not in ("RUNNING", "WAITING"))
        trials = f"{done}/{cfg.get('maxTrialNumber') or '∞'} (running {counts.get('RUNNING', 0)}, failed {counts.get('FAILED', 0)})"
        table.add_row(
            exp.id,
            exp.name or "-",
            status,
            _fmt(best[0].final) if best else "-",
            trials,
            _when(exp.created_at),
            format_seconds(exp.elapsed),
        )
        n += 1
    if n == 0:
        out.print("no experiments yet: nni-pl launch config.yml")
    else:
        out.print(table)
    return 0


def _mode(exp: Any) -> str:
    cfg = exp.config
    return ((cfg.get("tuner") or cfg.get("advisor") or {}).get("classArgs") or {}).get(
        "optimize_mode", "maximize"
    )


def cmd_show(args: argparse.Namespace) -> int:
    from rich.table import Table

    from nni_pl.experiment import _locate
    from nni_pl.experiment._display import format_seconds

    out = _console()
    loc = _find(args)
    exp = loc.experiment
    mode = _mode(exp)
    best = loc.store.best_trials(exp.id, optimize_mode=mode, limit=args.top)
    counts = loc.store.count_trials(exp.id)
    out.print(
        f"experiment [bold]{exp.id}[/] {exp.name or ''}  status {_locate.shown_status(exp)}  "
        f"({', '.join(f'{k.lower()} {v}' for k, v in sorted(counts.items())) or 'no trials'})  elapsed {format_seconds(exp.elapsed)}"
    )
    if exp.message:
        out.print(f"note: {exp.message}")
    table = Table(title=f"best trials ({mode})", header_style="bold")
    keys: list[str] = []
    for t in best:
        keys += [k for k in t.parameters if k not in keys]
    for col in ("rank", "trial", "#", "result", *keys, "duration", "status"):
        table.add_column(col)
    for i, t in enumerate(best, 1):
        table.add_row(
            str(i),
            t.trial_id,
            str(t.sequence_id),
            _fmt(t.final),
            *[_fmt(t.parameters.get(k)) for k in keys],
            format_seconds(t.duration),
            t.status,
        )
    out.print(table if best else "no trial has reported a final result yet")
    return 0


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}/{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value if not isinstance(value, list) else json.dumps(value)


def cmd_export(args: argparse.Namespace) -> int:
    loc = _find(args)
    exp, store = loc.experiment, loc.store
    trials = store.list_trials(exp.id)
    metrics: dict[str, list[Any]] = {}
    if args.intermediate:
        for m in store.list_metrics(exp.id, type="PERIODICAL"):
            metrics.setdefault(m.trial_id, []).append(m.value)
    if args.format == "json":
        data = []
        for t in trials:
            item: dict[str, Any] = {
                "trialJobId": t.trial_id,
                "sequenceId": t.sequence_id,
                "status": t.status,
                "parameter": t.parameters,
                "value": t.final,
                "startTime": t.started_at,
                "endTime": t.ended_at,
            }
            if args.intermediate:
                item["intermediate"] = metrics.get(t.trial_id, [])
            data.append(item)
        text = json.dumps(data, indent=2)
    else:
        rows = []
        for t in trials:
            row: dict[str, Any] = {"trialJobId": t.trial_id, "sequenceId": t.sequence_id, "status": t.status}
            _flatten("", t.parameters, row)
            value = t.final
            row["value"] = value.get("default") if isinstance(value, dict) else value
            if isinstance(value, dict):
                for k, v in value.items():
                    if k != "default":
                        row[f"value/{k}"] = v
            row["duration"] = round(t.duration, 3) if t.duration is not None else None
            if args.intermediate:
                row["intermediate"] = json.dumps(metrics.get(t.trial_id, []))
            rows.append(row)
        columns: list[str] = []
        for r in rows:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        text = buf.getvalue()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        _console(stderr=True).print(f"wrote {len(trials)} trials to {args.output}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


# --- trials ----------------------------------------------------------------------------------------------------------


def cmd_trial_ls(args: argparse.Namespace) -> int:
    from rich.table import Table

    from nni_pl.experiment._display import format_seconds

    out = _console()
    loc = _find(args)
    trials = loc.store.list_trials(loc.experiment.id, statuses=[args.status] if args.status else None)
    table = Table(header_style="bold")
    for col in ("trial", "#", "status", "result", "intermediate", "duration", "parameters"):
        table.add_column(col, overflow="fold")
    for t in trials:
        table.add_row(
            t.trial_id,
            str(t.sequence_id),
            t.status,
            _fmt(t.final),
            str(t.intermediate_count),
            format_seconds(t.duration),
            json.dumps(t.parameters),
        )
    out.print(table if trials else "no trials")
    return 0


def cmd_trial_kill(args: argparse.Namespace) -> int:
    from nni_pl.experiment import _locate, control

    out = _console()
    loc = _find(args)
    exp = loc.experiment
    t = loc.store.get_trial(exp.id, args.trial)
    if t.finished:
        out.print(f"trial {t.trial_id} already ended ({t.status})")
        return 0
    alive = _locate.manager_alive(exp)
    status = control.kill_trial(loc.store, exp.id, t.trial_id, manager_alive=alive)
    out.print(f"trial {t.trial_id}: {status}" + ("" if alive else " (no manager was running)"))
    return 0


def cmd_trial_add(args: argparse.Namespace) -> int:
    from nni_pl.experiment import _locate, control

    out = _console()
    loc = _find(args)
    exp = loc.experiment
    t = control.add_trial(loc.store, exp.id, args.params)
    if _locate.manager_alive(exp):
        out.print(f"customised trial {t.trial_id} added to experiment {exp.id}; it runs next")
    else:
        out.print(
            f"customised trial {t.trial_id} added to experiment {exp.id}; it runs when the experiment resumes "
            f"(nni-pl resume {exp.id})"
        )
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    loc = _find(args)
    t = loc.store.get_trial(loc.experiment.id, args.trial)
    name = "stderr" if args.stderr else "stdout"
    path = Path(t.trial_dir) / name
    if not path.exists():
        _console(stderr=True).print(f"no {name} yet for trial {t.trial_id} ({path})")
        return 0
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if args.tail:
        lines = lines[-args.tail :]
    sys.stdout.write("\n".join(lines) + ("\n" if lines else ""))
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    from nni_pl.experiment import control

    out = _console()
    loc = _find(args)
    changes = control.update_limits(
        loc.store,
        loc.experiment.id,
        concurrency=args.concurrency,
        max_trials=args.max_trials,
        duration=args.duration,
        names=("--concurrency", "--max-trials", "--duration"),
    )
    out.print(f"experiment {loc.experiment.id}: {', '.join(changes)}")
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    """TensorBoard over the trials' Lightning logs until Ctrl-C."""
    import subprocess

    from nni_pl.experiment import tensorboard
    from nni_pl.webui.server import free_port, is_loopback

    out = _console()
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

    from nni_pl.hpo import _registry, _user_registry

    out = _console()
    if args.algo_command == "list":
        table = Table(header_style="bold")
        for col in ("name", "type", "source", "class"):
            table.add_column(col)
        for kind, table_of in (
            ("tuner", _registry.BUILTIN_TUNERS),
            ("assessor", _registry.BUILTIN_ASSESSORS),
            ("advisor", _registry.BUILTIN_ADVISORS),
        ):
            for name, target in table_of.items():
                table.add_row(name, kind, "nni-pl", target.replace(":", "."))
        for kind, entries in _user_registry.read().items():
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
        _registry.resolve_class(
            meta["algoType"], class_name=meta["className"], field="className"
        )  # it must import
        _user_registry.register(meta["algoType"], meta["builtinName"], meta["className"])
        out.print(f"registered {meta['algoType']} {meta['builtinName']} -> {meta['className']}")
        return 0
    kinds = [k for k, entries in _user_registry.read().items() if args.name in entries]
    if not kinds:
        raise NniPlError(f"{args.name!r} is not a registered algorithm (built-ins cannot be unregistered)")
    for k in kinds:
        _user_registry.unregister(k, args.name)
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


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workdir", help="experiments folder to search (default: $NNI_PL_HOME or ~/nni-pl-experiments)"
    )
    common.add_argument("--store", help="database URL of a shared store (e.g. postgresql://user@host/db)")

    p = argparse.ArgumentParser(
        prog="nni-pl", description="Hyperparameter optimisation for PyTorch Lightning, NNI-compatible."
    )
    p.add_argument("--version", action="version", version=f"nni-pl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    s = sub.add_parser("webui", parents=[common], help="print the dashboard URL of a running experiment")
    s.add_argument("id")
    s.set_defaults(func=cmd_webui)

    s = sub.add_parser("stop", parents=[common], help="stop a running experiment gracefully (resumable)")
    s.add_argument("id", nargs="?")
    s.add_argument("--all", action="store_true")
    s.set_defaults(func=cmd_stop)

    s = sub.add_parser("list", parents=[common], help="list experiments")
    s.add_argument(
        "--all", action="store_true", help="accepted for nnictl compatibility; every experiment is listed"
    )
    s.add_argument("--status", help="only experiments with this status")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("show", parents=[common], help="an experiment's best trials")
    s.add_argument("id")
    s.add_argument("--top", type=int, default=10)
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("export", parents=[common], help="export trials and results as CSV or JSON")
    s.add_argument("id")
    s.add_argument("--format", choices=("csv", "json"), default="csv")
    s.add_argument("--output", "-o", help="file to write (default: stdout)")
    s.add_argument("--intermediate", "-i", action="store_true", help="include intermediate results")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("update", parents=[common], help="change limits of a running experiment")
    s.add_argument("id")
    s.add_argument("--concurrency", type=int)
    s.add_argument("--max-trials", type=int)
    s.add_argument("--duration", help="maxExperimentDuration, e.g. 2h")
    s.set_defaults(func=cmd_update)

    s = sub.add_parser("log", parents=[common], help="a trial's stdout (or --stderr)")
    s.add_argument("id")
    s.add_argument("trial")
    s.add_argument("--stderr", action="store_true")
    s.add_argument("--tail", type=int)
    s.set_defaults(func=cmd_log)

    trial = sub.add_parser("trial", help="list, kill or add trials")
    tsub = trial.add_subparsers(dest="trial_command", required=True, metavar="ACTION")
    s = tsub.add_parser("ls", parents=[common], help="list an experiment's trials")
    s.add_argument("id")
    s.add_argument("--status")
    s.set_defaults(func=cmd_trial_ls)
    s = tsub.add_parser("kill", parents=[common], help="stop a running trial")
    s.add_argument("id")
    s.add_argument("trial")
    s.set_defaults(func=cmd_trial_kill)
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

    algo = sub.add_parser("algo", help="list, register or unregister tuners/assessors")
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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for attr in ("workdir", "store"):
        if not hasattr(args, attr):
            setattr(args, attr, None)
    try:
        return int(args.func(args) or 0)
    except (NniPlError, ExperimentNotFoundError) as e:
        from rich.markup import escape

        _console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
