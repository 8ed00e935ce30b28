"""Experiments written straight into a store (no manager, no trial process): fast fixtures for CLI output tests."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from nni_pl.experiment import locate
from nni_pl.experiment import store as st
from nni_pl.experiment.config import default_working_directory
from nni_pl.training.process import process_start_time


def make_experiment(
    exp_id: str,
    trials: list[dict[str, Any]] = (),  # type: ignore[assignment]
    *,
    status: str = st.EXP_DONE,
    manager_alive: bool = False,
    home: Path | None = None,
    store_url: str | None = None,
    **config: Any,
) -> st.Store:
    """An experiment folder under ``home`` (default ``$NNI_PL_HOME``) with its rows and index entry.

    ``trials``: dicts of :class:`~nni_pl.experiment.store.TrialRow` fields (``status``, ``final``, ...);
    ``manager_alive``: record this test process as its manager, so it counts as running.
    """
    directory = (home or default_working_directory()) / exp_id
    (directory / "trials").mkdir(parents=True)
    (directory / "log").mkdir()
    url = store_url or st.sqlite_url(directory / "store.sqlite")
    store = st.Store(url)
    cfg = {
        "searchSpace": {"x": {"_type": "uniform", "_value": [0, 1]}},
        "trialCommand": "python trial.py",
        "trialCodeDirectory": str(directory),
        "maxTrialNumber": 10,
        "trialConcurrency": 2,
        "tuner": {"name": "Random", "classArgs": {"optimize_mode": "maximize"}},
        "experimentWorkingDirectory": str(directory.parent),
        **config,
    }
    store.create_experiment(id=exp_id, name="rows", config=cfg, directory=str(directory), status=status)
    if manager_alive:
        store.update_experiment(
            exp_id, manager_pid=os.getpid(), manager_started_at=process_start_time(os.getpid())
        )
    now = time.time()
    for i, values in enumerate(trials):
        values = dict(values)
        tid = values.pop("trial_id", f"t{i:04d}")
        final = values.pop("final", None)
        trial_dir = directory / "trials" / tid
        trial_dir.mkdir()
        row = st.TrialRow(
            experiment_id=exp_id,
            trial_id=tid,
            sequence_id=i,
            parameter_id=i,
            parameters=values.pop("parameters", {"x": i / 100}),
            trial_dir=str(trial_dir),
            status=values.pop("status", st.SUCCEEDED),
            started_at=now - 10,
            ended_at=now - 5,
            **values,
        )
        store.add_trial(row)
        if final is not None:
            store.add_metrics(exp_id, tid, [{"seq": 0, "type": "FINAL", "value": final, "time": now}])
    locate.register(exp_id, directory, url)
    return store
