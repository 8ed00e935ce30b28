"""End to end: the annotated digits example as a real experiment, and resume of an annotated experiment."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nni_pl.annotation import generate_search_space
from nni_pl.cli.main import main
from nni_pl.errors import ConfigError
from nni_pl.experiment import Experiment
from nni_pl.experiment import store as st
from nni_pl.experiment.locate import find
from nni_pl.space import SearchSpace

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "annotation_digits"


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_digits_example_runs_with_the_generated_space(tmp_path: Path) -> None:
    before = _tree(EXAMPLE)
    raw = yaml.safe_load((EXAMPLE / "config.yml").read_text())
    assert raw["useAnnotation"] is True and "searchSpace" not in raw and "searchSpaceFile" not in raw
    raw.pop("assessor")  # every trial must run to its final result here
    raw.update(
        trialCodeDirectory=str(EXAMPLE),
        maxTrialNumber=3,
        tuner={"name": "Random", "classArgs": {"seed": 3}},
        experimentWorkingDirectory=str(tmp_path / "experiments"),
    )
    exp = Experiment(raw)
    space = generate_search_space(EXAMPLE)
    assert exp.config.search_space == space
    assert sorted(space) == [
        "train/activation/choice",
        "train/epochs/quniform",
        "train/hidden_size/choice",
        "train/learning_rate/loguniform",
        "train/scale/function_choice",
    ]
    assert exp.run(display=False) is True
    assert SearchSpace.load(exp.directory / "search_space.json") == space
    trials = exp.trials()
    assert len(trials) == 3
    for t in trials:
        assert t.status == st.SUCCEEDED, t.error
        p = t.parameters
        assert set(p) == set(space)
        assert p["train/hidden_size/choice"] in (16, 32, 64, 128)
        assert p["train/activation/choice"] in ("relu", "tanh")
        assert 1e-4 <= p["train/learning_rate/loguniform"] <= 0.1
        assert p["train/epochs/quniform"] in (4, 8, 12)
        assert p["train/scale/function_choice"] in space["train/scale/function_choice"].to_json()["_value"]
        # the trial code got them: it prints what it trains with
        out = (Path(t.trial_dir) / "stdout").read_text()
        assert (
            f"hidden_size={p['train/hidden_size/choice']} learning_rate={p['train/learning_rate/loguniform']} "
            f"activation={p['train/activation/choice']} epochs={p['train/epochs/quniform']}"
        ) in out
        assert 0 < t.final <= 1
        intermediate = exp.store.list_metrics(exp.id, t.trial_id, type="PERIODICAL")
        assert len(intermediate) == int(p["train/epochs/quniform"])
    copy = exp.directory / "annotated_code"
    assert "@nni" not in (copy / "train.py").read_text()
    assert _tree(EXAMPLE) == before  # the example folder was never written to
    exp.close()


def test_digits_example_runs_as_it_is_without_nni_pl(tmp_path: Path) -> None:
    code = (
        "import runpy, sys\nsys.modules['nni_pl'] = None\nrunpy.run_path(sys.argv[1], run_name='__main__')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(EXAMPLE / "train.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert "hidden_size=32 learning_rate=0.01 activation=relu epochs=8" in out.stdout  # the defaults
    assert "epoch 7: test accuracy" in out.stdout


# in a package named `model`: its keys (model.trial/x/choice) look like LightningCLI paths, yet the trial command
# gets no --model... arguments (lightningCli: auto is off for annotated code, which reads its own values)
TRIAL = '''\
import sys
assert sys.argv[1:] == [], sys.argv
"""@nni.variable(nni.choice(1, 2, 3, 4, 5, 6), name=x)"""
x = 0
"""@nni.report_final_result(x * 10)"""
'''
KEY = "model.trial/x/choice"


def test_resume_keeps_the_stored_space_and_the_copy(tmp_path: Path) -> None:
    code = tmp_path / "code"
    (code / "model").mkdir(parents=True)
    trial = code / "model" / "trial.py"
    trial.write_text(TRIAL)
    config = {
        "trialCommand": f"{sys.executable} model/trial.py",
        "trialCodeDirectory": ".",
        "trialConcurrency": 2,
        "maxTrialNumber": 2,
        "useAnnotation": True,
        "tuner": {"name": "GridSearch"},
        "experimentWorkingDirectory": str(tmp_path / "experiments"),
    }
    (code / "config.yml").write_text(yaml.safe_dump(config))
    assert main(["launch", str(code / "config.yml"), "--id", "annot001", "--no-display"]) == 0
    stored = find("annot001").experiment.config
    assert stored["useAnnotation"] is True
    assert stored["searchSpace"] == {KEY: {"_type": "choice", "_value": [1, 2, 3, 4, 5, 6]}}
    # the code changes after the start: the resumed experiment goes on with what it started with
    trial.write_text(TRIAL.replace("1, 2, 3, 4, 5, 6", "7, 8"))
    assert main(["update", "annot001", "--max-trials", "4"]) == 0
    assert main(["resume", "annot001", "--no-display"]) == 0
    loc = find("annot001")
    trials = loc.store.list_trials("annot001")
    assert loc.store.get_experiment("annot001").status == st.EXP_DONE
    assert all(t.status == st.SUCCEEDED for t in trials), [t.error for t in trials]
    assert sorted(t.parameters[KEY] for t in trials) == [1, 2, 3, 4]  # the grid went on
    assert sorted(t.final for t in trials) == [10, 20, 30, 40]
    # without its copy, a resume makes it again, from code that must still give the stored space
    shutil.rmtree(loc.directory / "annotated_code")
    assert main(["update", "annot001", "--max-trials", "5"]) == 0
    with pytest.raises(ConfigError, match=r"now give the search space .*not the experiment's"):
        Experiment.resume("annot001").run(display=False)
    trial.write_text(TRIAL)
    Experiment.resume("annot001").run(display=False)
    assert sorted(t.final for t in find("annot001").store.list_trials("annot001")) == [10, 20, 30, 40, 50]
