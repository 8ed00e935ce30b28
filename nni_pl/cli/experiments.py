"""NNI's ``nnictl experiment ...`` commands: list, show, status, export, delete, save, load (and import).

``delete`` removes an experiment for good: its store rows, its folder and its index entry; it refuses an
experiment whose manager (or an orphaned trial) still runs. ``save``/``load`` move an experiment between
machines or homes as one archive (see :mod:`nni_pl.cli._archive`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nni_pl.cli._common import console, default_id, elapsed, find, optimize_mode
from nni_pl.errors import NniPlError

__all__ = ["add_parser", "delete_experiment"]


# --- show / status / export -------------------------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace) -> int:
    """The experiment's profile as JSON (NNI's ``experiment show``), its secrets masked."""
    from nni_pl.cli.results import trial_counts
    from nni_pl.experiment import control, locate

    loc = find(args, default_id(args, args.id, "experiment show"))
    exp = loc.experiment
    best = loc.store.best_trials(exp.id, optimize_mode=optimize_mode(exp), limit=1)
    counts = trial_counts(loc)
    profile = {
        "id": exp.id,
        "name": exp.name,
        "status": locate.shown_status(exp),
        "message": exp.message,
        "logDir": exp.directory,
        "startTime": exp.created_at,
        "endTime": exp.ended_at,
        "execDuration": round(elapsed(exp), 3),
        "revision": exp.revision,
        "trialCounts": counts.by_status,
        "countedTrials": counts.counted,
        "bestTrial": (
            {"trialJobId": best[0].trial_id, "value": best[0].final, "parameter": best[0].parameters}
            if best
            else None
        ),
        "params": control.redact(exp.config),
    }
    sys.stdout.write(json.dumps(profile, indent=2) + "\n")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """NNI's ``experiment status``: ``{"status": ..., "errors": [...]}``."""
    from nni_pl.experiment import locate
    from nni_pl.experiment import store as st

    loc = find(args, default_id(args, args.id, "experiment status"))
    exp = loc.experiment
    status = locate.shown_status(exp)
    errors = [exp.message] if status == st.EXP_ERROR and exp.message else []
    sys.stdout.write(json.dumps({"status": status, "errors": errors, "message": exp.message}) + "\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from nni_pl.cli.results import export_text

    loc = find(args, default_id(args, args.id, "experiment export"))
    text, n = export_text(loc, kind=args.type, intermediate=args.intermediate)
    path = Path(args.filename).expanduser()
    if path.is_dir():
        raise NniPlError(
            f"--filename {args.filename!r} is a folder; give a file name, e.g. {path / 'trials.csv'}"
        )
    try:
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as e:
        raise NniPlError(f"cannot write {args.filename!r}: {e.strerror or e}") from None
    console().print(f"wrote {n} trials of experiment {loc.experiment.id} to {path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    raise NniPlError(
        "`experiment import` is not supported yet: nni-pl keeps results only as trials of an experiment, and "
        "imported records would count towards maxTrialNumber; to run a known configuration use "
        "`nni-pl trial add ID --params '{...}'`"
    )


# --- delete -----------------------------------------------------------------------------------------------------------


def _busy(loc: Any) -> str | None:
    """Why an experiment cannot be deleted now (something of it runs), or ``None``."""
    from nni_pl.experiment import locate
    from nni_pl.experiment import store as st

    exp = loc.experiment
    if exp.status == st.EXP_RUNNING and locate.manager_alive(exp):
        return f"its manager runs (pid {exp.manager_pid}); stop it first: `nni-pl stop {exp.id}`"
    alive = [
        t.trial_id
        for t in loc.store.list_trials(exp.id, statuses=[st.RUNNING])
        if locate.shown_trial_status(t, manager_running=False) == st.RUNNING
    ]
    if alive:
        return (
            f"trials {', '.join(alive)} still run without a manager; end them first: `nni-pl stop {exp.id}`"
        )
    return None


def delete_experiment(loc: Any) -> str:
    """Remove an experiment's store rows, folder and index entry; returns what was done, for the user.

    The folder is removed only when it is the experiment's own (named after its id), so a corrupted row
    can never point the removal elsewhere.
    """
    from nni_pl.experiment import locate

    exp = loc.experiment
    why = _busy(loc)
    if why:
        raise NniPlError(f"experiment {exp.id} cannot be deleted: {why}")
    n_trials = sum(loc.store.count_trials(exp.id).values())
    loc.store.delete_experiment(exp.id)
    if loc.store.is_sqlite:
        loc.store.close()  # its file may be in the folder removed next
    directory = Path(exp.directory) if exp.directory else None
    where = "no folder"
    if directory is not None and directory.name == exp.id and directory.is_dir():
        import shutil  # here: `nni-pl launch` builds this module's parsers and does without it

        shutil.rmtree(directory)
        where = f"folder {directory}"
    elif directory is not None and directory.exists():
        where = f"folder {directory} kept: it is not named after the experiment"
    elif directory is not None:
        where = f"its folder {directory} is not on this machine"
    locate.unregister(exp.id)
    return f"deleted experiment {exp.id} ({n_trials} trials; {where})"


def _confirm(args: argparse.Namespace, ids: list[str]) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise NniPlError(
            f"`experiment delete` removes {', '.join(ids)} for good; add --yes to confirm (no terminal to ask on)"
        )
    answer = input(f"delete experiment(s) {', '.join(ids)} with their folders and results for good? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cmd_delete(args: argparse.Namespace) -> int:
    from nni_pl.experiment import locate

    out = console()
    if args.all == bool(args.id):
        raise NniPlError("give the experiment to delete, or --all: `nni-pl experiment delete ID`")
    if args.id:
        targets = [find(args)]
        why = _busy(targets[0])
        if why:
            raise NniPlError(f"experiment {targets[0].experiment.id} cannot be deleted: {why}")
        kept: list[tuple[str, str]] = []
    else:
        targets, kept = [], []
        for loc in locate.iter_experiments(working_directory=args.workdir, store_url=args.store):
            why = _busy(loc)
            if why:
                kept.append((loc.experiment.id, why))
            else:
                targets.append(loc)
    for exp_id, why in kept:
        out.print(f"kept experiment {exp_id}: {why}")
    if not targets:
        out.print("nothing to delete")
        return 0
    if not _confirm(args, [loc.experiment.id for loc in targets]):
        out.print("nothing deleted")
        return 0
    for loc in targets:
        out.print(delete_experiment(loc))
    return 0


# --- save / load ------------------------------------------------------------------------------------------------------


def cmd_save(args: argparse.Namespace) -> int:
    from nni_pl.cli import _archive

    loc = find(args)
    path = _archive.save(loc, Path(args.path or Path.cwd()), save_code=args.saveCodeDir)
    console().print(
        f"saved experiment {loc.experiment.id} to {path}; on the other machine: "
        f"`nni-pl experiment load --path {path.name}`"
    )
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from nni_pl.cli import _archive
    from nni_pl.experiment.config import default_working_directory

    out = console()
    folder = Path(args.logDir or args.workdir or default_working_directory()).expanduser()
    if not args.logDir and not args.workdir:
        folder.mkdir(parents=True, exist_ok=True)  # the default home is ours to create
    loc, notes = _archive.load(
        Path(args.path),
        experiments_folder=folder,
        code_dir=Path(args.codeDir).expanduser() if args.codeDir else None,
        search_space_path=Path(args.searchSpacePath).expanduser() if args.searchSpacePath else None,
        store_url=args.store,
    )
    exp = loc.experiment
    n = sum(loc.store.count_trials(exp.id).values())
    out.print(f"loaded experiment {exp.id} ({n} trials) into {exp.directory}")
    for note in notes:
        out.print(f"note: {note}")
    out.print(f"see it: nni-pl show {exp.id}   continue it: nni-pl resume {exp.id}")
    return 0


# --- parser -----------------------------------------------------------------------------------------------------------


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``nni-pl experiment ACTION``: NNI's experiment commands."""
    from nni_pl.cli.results import cmd_list

    group = sub.add_parser(
        "experiment", help="NNI's experiment commands: list, show, status, export, delete, save, load"
    )
    esub = group.add_subparsers(dest="experiment_command", required=True, metavar="ACTION")

    s = esub.add_parser("list", parents=[common], help="running experiments (--all: every one)")
    s.add_argument("--all", action="store_true", help="every experiment, not only running ones")
    s.set_defaults(func=lambda a: cmd_list(_with(a, running_only=not a.all, status=None)))

    s = esub.add_parser("show", parents=[common], help="an experiment's profile as JSON")
    s.add_argument("id", nargs="?")
    s.set_defaults(func=cmd_show)

    s = esub.add_parser("status", parents=[common], help="an experiment's status as JSON")
    s.add_argument("id", nargs="?")
    s.set_defaults(func=cmd_status)

    s = esub.add_parser("export", parents=[common], help="trials and results to a CSV or JSON file")
    s.add_argument("id", nargs="?")
    s.add_argument("--filename", "-f", required=True, help="the file to write")
    s.add_argument("--type", required=True, choices=("csv", "json"))
    s.add_argument("--intermediate", "-i", action="store_true", help="include intermediate results")
    s.set_defaults(func=cmd_export)

    s = esub.add_parser("import", parents=[common], help="not supported yet (see its message)")
    s.add_argument("id", nargs="?")
    s.add_argument("--filename", "-f")
    s.set_defaults(func=cmd_import)

    s = esub.add_parser(
        "delete", parents=[common], help="remove an experiment for good: its results, folder and index entry"
    )
    s.add_argument("id", nargs="?")
    s.add_argument("--all", action="store_true", help="every experiment that does not run")
    s.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    s.set_defaults(func=cmd_delete)

    s = esub.add_parser("save", parents=[common], help="pack an experiment into one archive file")
    s.add_argument("id")
    s.add_argument("--path", "-p", help="folder for nni_experiment_ID.tar.gz (default: the current folder)")
    s.add_argument("--saveCodeDir", "-s", action="store_true", help="include the trial code folder")
    s.set_defaults(func=cmd_save)

    s = esub.add_parser("load", parents=[common], help="unpack an archive made by `experiment save`")
    s.add_argument("--path", "-p", required=True, help="the archive file")
    s.add_argument(
        "--codeDir", "-c", help="trial code folder on this machine (the saved code is unpacked there)"
    )
    s.add_argument("--logDir", "-l", help="experiments folder to load into (default: $NNI_PL_HOME)")
    s.add_argument("--searchSpacePath", "-s", help="also write the search space to this new file")
    s.set_defaults(func=cmd_load)


def _with(args: argparse.Namespace, **values: Any) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), **values})
