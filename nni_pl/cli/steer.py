"""``nni-pl stop``, ``update``, ``webui`` and ``trial kill``, in nni-pl's spelling and in NNI's.

* ``stop [ID | ID* | --port P | --all]``: NNI's rules: no id stops the one running experiment; ``abc*`` stops
  every experiment whose id starts with ``abc``; ``--port`` finds the experiment serving that dashboard port.
* ``update ID --concurrency N ...`` or NNI's ``update trialnum|concurrency|duration [ID] --value V`` and
  ``update searchspace [ID] --filename F``.
* ``webui ID`` or NNI's ``webui url [ID]``; ``trial kill ID TRIAL`` or ``trial kill [ID] --trial_id T``.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from typing import Any

from nni_pl.cli._common import console, default_id, find, running_experiments
from nni_pl.errors import NniPlError

__all__ = ["cmd_stop", "cmd_trial_kill", "cmd_update", "cmd_webui"]

UPDATE_KINDS = {"trialnum": "max_trials", "concurrency": "concurrency", "duration": "duration"}


def _targets(args: argparse.Namespace) -> list[Any]:
    from nni_pl.experiment import locate
    from nni_pl.experiment import store as st

    if args.all:
        return [
            loc
            for loc in locate.iter_experiments(working_directory=args.workdir, store_url=args.store)
            if loc.experiment.status == st.EXP_RUNNING
        ]
    if args.port is not None:
        serving = [loc for loc in running_experiments(args) if _serves_port(loc, args.port)]
        if not serving:
            raise NniPlError(
                f"no running experiment serves a dashboard on port {args.port}; `nni-pl top --once` lists them"
            )
        return serving
    if args.id and args.id.endswith("*"):
        pattern = args.id
        matched = [
            loc
            for loc in locate.iter_experiments(working_directory=args.workdir, store_url=args.store)
            if fnmatch.fnmatchcase(loc.experiment.id, pattern) and loc.experiment.status == st.EXP_RUNNING
        ]
        if not matched:
            raise NniPlError(f"no running experiment matches {pattern!r}; `nni-pl list` shows them all")
        return matched
    return [find(args, default_id(args, args.id, "stop"))]


def _serves_port(loc: Any, port: int) -> bool:
    from nni_pl.webui import server as webui_server

    if loc.experiment.port == port:
        return True
    info = webui_server.read_url_file(loc.directory)
    return bool(info and info.get("port") == port)


def cmd_stop(args: argparse.Namespace) -> int:
    from nni_pl.experiment.control import stop_experiment

    out = console()
    targets = _targets(args)
    if args.all and not targets:
        out.print("no running experiment")
        return 0
    for loc in targets:
        was_running = stop_experiment(loc.store, loc.experiment.id)
        out.print(
            f"experiment {loc.experiment.id} {'stopped' if was_running else 'marked stopped (no manager was running)'}"
        )
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    """``update ID --concurrency N --max-trials N --duration D`` or NNI's ``update KIND [ID] --value V``."""
    from nni_pl.experiment import control

    out = console()
    if args.id in UPDATE_KINDS or args.id == "searchspace":
        kind = args.id
        loc = find(args, default_id(args, args.target, f"update {kind}"))
        exp_id = loc.experiment.id
        if kind == "searchspace":
            return _update_search_space(args, loc, out)
        if args.value is None:
            raise NniPlError(f"give the new value: `nni-pl update {kind} {exp_id} --value V`")
        changes = control.update_limits(
            loc.store, exp_id, **{UPDATE_KINDS[kind]: args.value}, names=("--value", "--value", "--value")
        )
    else:
        if args.target is not None or args.value is not None or args.filename is not None:
            raise NniPlError(
                "`nni-pl update ID` takes --concurrency, --max-trials, --duration; NNI's form is "
                "`nni-pl update trialnum|concurrency|duration ID --value V` or `update searchspace ID --filename F`"
            )
        if args.id is None:
            raise NniPlError("give the experiment id: `nni-pl update ID --max-trials N`")
        loc = find(args)
        exp_id = loc.experiment.id
        changes = control.update_limits(
            loc.store,
            exp_id,
            concurrency=args.concurrency,
            max_trials=args.max_trials,
            duration=args.duration,
            names=("--concurrency", "--max-trials", "--duration"),
        )
    out.print(f"experiment {exp_id}: {', '.join(changes)}")
    return 0


def _update_search_space(args: argparse.Namespace, loc: Any, out: Any) -> int:
    from nni_pl._files import YamlSyntaxError, load_structured_file
    from nni_pl.experiment import control

    exp_id = loc.experiment.id
    if not args.filename:
        raise NniPlError(f"give the new search space file: `nni-pl update searchspace {exp_id} --filename F`")
    try:
        space = load_structured_file(args.filename)
    except FileNotFoundError:
        raise NniPlError(f"--filename {args.filename!r}: no such file") from None
    except IsADirectoryError:
        raise NniPlError(f"--filename {args.filename!r} is a folder; give the search space file") from None
    except (OSError, ValueError, YamlSyntaxError) as e:
        raise NniPlError(f"--filename {args.filename!r} is not a JSON or YAML search space: {e}") from None
    control.update_search_space(loc.store, exp_id, space)
    out.print(f"experiment {exp_id}: search space updated from {args.filename}")
    return 0


def cmd_webui(args: argparse.Namespace) -> int:
    """The URL of a running experiment's dashboard (``webui ID`` or NNI's ``webui url [ID]``)."""
    from nni_pl.experiment import locate
    from nni_pl.webui import server as webui_server

    if args.id == "url":
        loc = find(args, default_id(args, args.target, "webui url"))
    elif args.target is not None:
        raise NniPlError(f"unknown webui action {args.id!r}: use `nni-pl webui ID` or `nni-pl webui url ID`")
    else:
        loc = find(args, default_id(args, args.id, "webui"))
    exp = loc.experiment
    status = locate.shown_status(exp)
    info = webui_server.read_url_file(loc.directory)
    if status != "RUNNING" or not locate.manager_alive(exp):
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


def cmd_trial_kill(args: argparse.Namespace) -> int:
    """``trial kill ID TRIAL`` or NNI's ``trial kill [ID] --trial_id T``."""
    from nni_pl.experiment import control, locate

    out = console()
    if args.trial and args.trial_id and args.trial != args.trial_id:
        raise NniPlError(f"two trials given ({args.trial!r} and --trial_id {args.trial_id!r}); give one")
    trial_id = args.trial or args.trial_id
    if not trial_id:
        raise NniPlError("give the trial to kill: `nni-pl trial kill ID TRIAL` or `--trial_id TRIAL`")
    loc = find(args, default_id(args, args.id, "trial kill"))
    exp = loc.experiment
    t = loc.store.get_trial(exp.id, trial_id)
    if t.finished:
        out.print(f"trial {t.trial_id} already ended ({t.status})")
        return 0
    alive = locate.manager_alive(exp)
    status = control.kill_trial(loc.store, exp.id, t.trial_id, manager_alive=alive)
    out.print(f"trial {t.trial_id}: {status}" + ("" if alive else " (no manager was running)"))
    return 0
