"""``nni-pl list``, ``show``, ``export``, ``trial ls`` and ``view --text``: what the store says, as tables.

``trial ls`` has a ``platform`` column for an experiment whose trials run on several training platforms (a
``trainingService`` list, NNI's hybrid mode); ``export`` always gives each trial's ``platform``.

Tables stay readable whatever the trials reported: a metric or parameter value longer than
:data:`~nni_pl.cli._common.CELL_LIMIT` characters is cut with a marker, and a line under the table says that
``export`` has it in full. Trials of an experiment whose manager is gone are not shown as running: they are
``INTERRUPTED`` unless their process still runs (``resume`` re-attaches to those).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nni_pl.cli._common import console, elapsed, find, fmt, optimize_mode, print_clip_hint, when
from nni_pl.errors import NniPlError

__all__ = [
    "TrialCounts",
    "cmd_export",
    "cmd_list",
    "cmd_show",
    "cmd_trial_ls",
    "shows_platform",
    "trial_counts",
    "view_text",
]

MAX_PARAMETER_COLUMNS = 12  # `show` gives each parameter a column; more than this go into one "more" column


@dataclass(kw_only=True)
class TrialCounts:
    """An experiment's trials by shown status, and how many count towards ``maxTrialNumber``.

    Example:
        >>> TrialCounts(by_status={"SUCCEEDED": 3, "INTERRUPTED": 2}, counted=5, manager_running=False).describe()
        'interrupted 2, failed 0'
    """

    by_status: dict[str, int]
    counted: int
    manager_running: bool

    def describe(self) -> str:
        """``running 2, failed 1`` (``interrupted 3`` for trials whose manager and process are gone)."""
        from nni_pl.experiment import locate
        from nni_pl.experiment import store as st

        parts = []
        if self.manager_running or self.by_status.get(st.RUNNING):
            parts.append(f"running {self.by_status.get(st.RUNNING, 0)}")
        if self.by_status.get(locate.INTERRUPTED):
            parts.append(f"interrupted {self.by_status[locate.INTERRUPTED]}")
        parts.append(f"failed {self.by_status.get(st.FAILED, 0)}")
        return ", ".join(parts)


def trial_counts(loc: Any) -> TrialCounts:
    """Count like the manager does: a trial re-queued after a stop does not count (its re-run does)."""
    from nni_pl.experiment import locate
    from nni_pl.experiment import store as st

    exp, store = loc.experiment, loc.store
    counts = store.count_trials(exp.id)
    counted = sum(counts.values()) - store.count_requeued(exp.id)
    manager_running = exp.status == st.EXP_RUNNING and locate.manager_alive(exp)
    if counts.get(st.RUNNING) and not manager_running:
        for t in store.list_trials(exp.id, statuses=[st.RUNNING]):
            shown = locate.shown_trial_status(t, manager_running=False)
            if shown != st.RUNNING:
                counts[st.RUNNING] -= 1
                counts[shown] = counts.get(shown, 0) + 1
        if not counts[st.RUNNING]:
            del counts[st.RUNNING]
    return TrialCounts(by_status=counts, counted=counted, manager_running=manager_running)


# --- list / show ------------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from nni_pl.experiment import locate
    from nni_pl.experiment.display import format_seconds

    out = console()
    table = Table(header_style="bold")
    for col in ("id", "name", "status", "best", "trials", "started", "duration"):
        table.add_column(col)
    n = 0
    running_only = getattr(args, "running_only", False)
    for loc in locate.iter_experiments(working_directory=args.workdir, store_url=args.store):
        exp = loc.experiment
        status = locate.shown_status(exp)
        if (args.status and status != args.status) or (running_only and status != "RUNNING"):
            continue
        counts = trial_counts(loc)
        best = loc.store.best_trials(exp.id, optimize_mode=optimize_mode(exp), limit=1)
        limit = exp.config.get("maxTrialNumber")
        table.add_row(
            exp.id,
            exp.name or "-",
            status,
            fmt(best[0].final, limit=40) if best else "-",
            f"{counts.counted}/{limit or '∞'} ({counts.describe()})",
            when(exp.created_at),
            format_seconds(elapsed(exp)),
        )
        n += 1
    if n:
        out.print(table)
    elif running_only:
        out.print("no experiment is running; `nni-pl experiment list --all` lists every experiment")
    else:
        out.print("no experiments yet: nni-pl launch config.yml")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from rich.table import Table

    from nni_pl.experiment import locate
    from nni_pl.experiment.display import clip, format_seconds

    out = console()
    loc = find(args)
    exp = loc.experiment
    mode = optimize_mode(exp)
    best = loc.store.best_trials(exp.id, optimize_mode=mode, limit=args.top)
    counts = trial_counts(loc)
    summary = ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.by_status.items())) or "no trials"
    out.print(
        f"experiment [bold]{exp.id}[/] {exp.name or ''}  status {locate.shown_status(exp)}  "
        f"({summary})  elapsed {format_seconds(elapsed(exp))}"
    )
    if exp.message:
        out.print(f"note: {clip(exp.message, 400)}")
    if not best:
        out.print("no trial has reported a final result yet")
        return 0
    keys: list[str] = []
    for t in best:
        keys += [k for k in t.parameters if k not in keys]
    shown_keys, more = keys[:MAX_PARAMETER_COLUMNS], keys[MAX_PARAMETER_COLUMNS:]
    table = Table(title=f"best trials ({mode})", header_style="bold")
    for col in ("rank", "trial", "#", "result", *shown_keys):
        table.add_column(col, overflow="fold")
    if more:
        table.add_column(f"{len(more)} more parameters", overflow="fold")
    table.add_column("duration")
    table.add_column("status")
    cells: list[str] = []
    for i, t in enumerate(best, 1):
        row = [fmt(t.final), *[fmt(t.parameters.get(k)) for k in shown_keys]]
        if more:
            row.append(clip(json.dumps({k: t.parameters[k] for k in more if k in t.parameters}), 100))
        cells += row
        table.add_row(str(i), t.trial_id, str(t.sequence_id), *row, format_seconds(t.duration), t.status)
    out.print(table)
    print_clip_hint(out, cells, exp.id)
    return 0


# --- export ---------------------------------------------------------------------------------------------------------


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}/{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value if not isinstance(value, list) else json.dumps(value)


def export_text(loc: Any, *, kind: str, intermediate: bool) -> tuple[str, int]:
    """Every trial, in full (nothing is cut), as NNI's ``csv`` or ``json``; returns the text and the count."""
    exp, store = loc.experiment, loc.store
    trials = store.list_trials(exp.id)
    metrics: dict[str, list[Any]] = {}
    if intermediate:
        for m in store.list_metrics(exp.id, type="PERIODICAL"):
            metrics.setdefault(m.trial_id, []).append(m.value)
    if kind == "json":
        data = []
        for t in trials:
            item: dict[str, Any] = {
                "trialJobId": t.trial_id,
                "sequenceId": t.sequence_id,
                "status": t.status,
                "platform": t.platform,
                "parameter": t.parameters,
                "value": t.final,
                "startTime": t.started_at,
                "endTime": t.ended_at,
            }
            if intermediate:
                item["intermediate"] = metrics.get(t.trial_id, [])
            data.append(item)
        return json.dumps(data, indent=2), len(trials)
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
        row["platform"] = t.platform
        if intermediate:
            row["intermediate"] = json.dumps(metrics.get(t.trial_id, []))
        rows.append(row)
    columns: dict[str, None] = {}
    for r in rows:
        columns.update(dict.fromkeys(r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue(), len(trials)


def cmd_export(args: argparse.Namespace) -> int:
    loc = find(args)
    text, n = export_text(loc, kind=args.format, intermediate=args.intermediate)
    if args.output:
        path = Path(args.output).expanduser()
        if path.is_dir():
            raise NniPlError(
                f"--output {args.output!r} is a folder; give a file name, e.g. {path / 'trials.csv'}"
            )
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as e:
            raise NniPlError(f"cannot write {args.output!r}: {e.strerror or e}") from None
        console(stderr=True).print(f"wrote {n} trials to {args.output}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


# --- trials ----------------------------------------------------------------------------------------------------------


def shows_platform(config: dict[str, Any], trials: list[Any]) -> bool:
    """Whether a trial table needs a platform column: the experiment's ``trainingService`` lists several platforms
    (hybrid), or its trials ran on more than one.

    Example:
        >>> shows_platform({"trainingService": [{"platform": "local"}, {"platform": "remote"}]}, [])
        True
        >>> shows_platform({"trainingService": {"platform": "local"}}, [])
        False
    """
    section = config.get("trainingService")
    if isinstance(section, list) and len(section) > 1:
        return True
    return len({t.platform for t in trials if t.platform}) > 1


def cmd_trial_ls(args: argparse.Namespace) -> int:
    """An experiment's trials; ``--head N``/``--tail N``: the N complete trials with the highest/lowest
    default metric (NNI's ``nnictl trial ls``)."""
    from rich.table import Table

    from nni_pl.cli._common import default_id
    from nni_pl.experiment import locate
    from nni_pl.experiment import store as st
    from nni_pl.experiment.display import clip, format_seconds

    out = console()
    if args.head is not None and args.tail is not None:
        raise NniPlError("give --head N or --tail N, not both")
    for name in ("head", "tail"):
        n = getattr(args, name)
        if n is not None and n < 1:
            raise NniPlError(f"--{name} must be at least 1, got {n}")
    loc = find(args, default_id(args, args.id, "trial ls"))
    exp = loc.experiment
    if args.head is not None or args.tail is not None:
        # NNI: "only complete trials are listed", by their default metric
        order = "maximize" if args.head is not None else "minimize"
        trials = [t for t in loc.store.best_trials(exp.id, optimize_mode=order) if t.status == st.SUCCEEDED][
            : args.head or args.tail
        ]
    else:
        trials = loc.store.list_trials(exp.id, statuses=[args.status] if args.status else None)
    manager_running = exp.status == st.EXP_RUNNING and locate.manager_alive(exp)
    platform = shows_platform(exp.config, trials)
    table = Table(header_style="bold")
    columns = ["trial", "#", "status", *(["platform"] if platform else []), "result", "intermediate"]
    for col in (*columns, "duration", "parameters"):
        table.add_column(col, overflow="fold")
    cells: list[str] = []
    for t in trials:
        result, params = fmt(t.final), clip(json.dumps(t.parameters), 200)
        cells += [result, params]
        table.add_row(
            t.trial_id,
            str(t.sequence_id),
            locate.shown_trial_status(t, manager_running=manager_running),
            *((t.platform or "-",) if platform else ()),
            result,
            str(t.intermediate_count),
            format_seconds(t.duration),
            params,
        )
    out.print(table if trials else "no complete trials" if args.head or args.tail else "no trials")
    print_clip_hint(out, cells, exp.id)
    return 0


# --- the terminal overview ---------------------------------------------------------------------------------------------


def snapshot(loc: Any, *, recent: int = 15) -> Any:
    """What the live view shows, rebuilt from the store (``view --text``, ``top ID``)."""
    from nni_pl.experiment import locate
    from nni_pl.experiment.config import parse_duration
    from nni_pl.experiment.manager import Snapshot

    exp, store = loc.experiment, loc.store
    counts = trial_counts(loc)
    cfg = exp.config
    mode = optimize_mode(exp)
    best = store.best_trials(exp.id, optimize_mode=mode, limit=1)
    trials = store.list_trials(exp.id)[-recent:]
    for t in trials:
        t.status = locate.shown_trial_status(t, manager_running=counts.manager_running)
    try:
        max_duration = parse_duration(cfg.get("maxExperimentDuration"), "maxExperimentDuration")
    except NniPlError:
        max_duration = None
    from nni_pl.experiment import store as st

    return Snapshot(
        experiment_id=exp.id,
        status=locate.shown_status(exp),
        counts=counts.by_status,
        counted=counts.counted,
        running=counts.by_status.get(st.RUNNING, 0),
        max_trial_number=cfg.get("maxTrialNumber"),
        elapsed=elapsed(exp),
        max_duration=max_duration,
        best_value=best[0].final if best else None,
        best_params=best[0].parameters if best else None,
        best_trial=best[0].trial_id if best else None,
        message=exp.message,
        optimize_mode=mode,
        recent=trials,
    )


def view_text(loc: Any, out: Any) -> int:
    from nni_pl.experiment.display import render_snapshot

    out.print(render_snapshot(snapshot(loc)))
    return 0
