from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nni_pl
from nni_pl.trial import _context
from nni_pl.trial._context import TrialContext, activate, normalize_metric


@pytest.fixture
def trial_dir(tmp_path: Path):
    d = tmp_path / "trial"
    d.mkdir()
    (d / "parameter.json").write_text(
        json.dumps(
            {"parameter_id": 7, "parameter_source": "algorithm", "parameters": {"lr": 0.1, "layers": 2}}
        )
    )
    ctx = TrialContext(experiment_id="exp12345", trial_id="Ab3xY", sequence_id=4, trial_dir=d)
    activate(ctx)
    yield d
    activate(None)


def _records(trial_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines()]


def test_sdk_identity_and_parameters_inside_a_trial(trial_dir):
    assert nni_pl.get_experiment_id() == "exp12345"
    assert nni_pl.get_trial_id() == "Ab3xY"
    assert nni_pl.get_sequence_id() == 4
    assert nni_pl.get_next_parameter() == {"lr": 0.1, "layers": 2}
    # unlike NNI, a second call returns the parameters again (a model and a datamodule may both ask)
    assert nni_pl.get_next_parameter() == {"lr": 0.1, "layers": 2}
    assert nni_pl.get_current_parameter("lr") == 0.1
    assert nni_pl.get_current_parameter("missing") is None
    assert nni_pl.get_trial_budget() is None


def test_sdk_reports_are_on_disk_when_the_call_returns(trial_dir):
    nni_pl.report_intermediate_result(0.5)
    assert _records(trial_dir)[0]["value"] == 0.5  # no buffering: a crash right now loses nothing
    nni_pl.report_intermediate_result(np.float32(0.75))
    nni_pl.report_final_result({"default": np.float64(0.9), "loss": 0.1})
    recs = _records(trial_dir)
    assert [r["type"] for r in recs] == ["PERIODICAL", "PERIODICAL", "FINAL"]
    assert [r["seq"] for r in recs] == [0, 1, 2]
    assert recs[1]["value"] == 0.75 and isinstance(recs[1]["value"], float)
    assert recs[2]["value"] == {"default": 0.9, "loss": 0.1}


@pytest.mark.parametrize("runner_syncs", [False, True])
def test_final_report_is_fsynced_by_the_trial_unless_its_runner_does_it_at_exit(
    tmp_path, monkeypatch, runner_syncs
):
    (tmp_path / "parameter.json").write_text(json.dumps({"parameters": {}}))
    env = {"NNI_TRIAL_JOB_ID": "t1", "NNI_SYS_DIR": str(tmp_path)}
    if runner_syncs:
        env["NNI_PL_SYNC_AT_EXIT"] = "1"
    synced: list[int] = []
    monkeypatch.setattr(_context.os, "fsync", synced.append)
    ctx = TrialContext.from_env(env)
    ctx.report("PERIODICAL", 0.5)
    assert synced == []  # intermediate results are written, never fsynced by the trial
    ctx.report("FINAL", 0.9)
    ctx.close()
    assert len(synced) == (0 if runner_syncs else 1)
    assert [r["type"] for r in _records(tmp_path)] == ["PERIODICAL", "FINAL"]  # written either way


def test_sdk_second_final_result_is_ignored_with_a_warning(trial_dir, caplog):
    nni_pl.report_final_result(1.0)
    with caplog.at_level("WARNING", logger="nni_pl.trial"):
        nni_pl.report_final_result(2.0)
    assert [r["value"] for r in _records(trial_dir)] == [1.0]
    assert "only the first final result counts" in caplog.text


def test_sdk_sequence_continues_in_an_existing_metrics_file(trial_dir):
    (trial_dir / "metrics.jsonl").write_text('{"seq":0,"type":"PERIODICAL","value":1,"time":0}\n')
    nni_pl.report_intermediate_result(2)
    assert [r["seq"] for r in _records(trial_dir)] == [0, 1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        (0.5, 0.5),
        (np.int64(4), 4),
        (np.float16(0.5), 0.5),
        (np.array(0.25), 0.25),
        (np.array([0.125]), 0.125),
        ({"default": 1, "acc": np.float32(0.5)}, {"default": 1, "acc": 0.5}),
    ],
)
def test_normalize_metric_accepts_numbers_and_default_dicts(value, expected):
    assert normalize_metric(value) == expected


def test_sdk_converts_numpy_arrays_and_scalars_in_dict_metrics_as_nni_does(trial_dir):
    metric = {
        "default": np.float32(0.5),
        "per_class": np.array([0.25, 0.75], dtype=np.float32),
        "confusion": np.array([[3, 1], [0, 4]], dtype=np.int64),
        "nested": {"epoch": np.int32(2), "losses": [np.float64(0.1), np.float16(0.5)]},
        "best": np.bool_(True),
    }
    nni_pl.report_final_result(metric)
    value = _records(trial_dir)[0]["value"]
    assert value == {
        "default": 0.5,
        "per_class": [0.25, 0.75],
        "confusion": [[3, 1], [0, 4]],
        "nested": {"epoch": 2, "losses": [0.1, 0.5]},
        "best": True,
    }
    assert type(value["nested"]["epoch"]) is int and type(value["default"]) is float


def test_normalize_metric_keeps_nan():
    assert math.isnan(normalize_metric(float("nan")))


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("0.9", r"expects a number or a dict with a numeric 'default' key, but got str '0.9'"),
        (True, r"but got bool True"),
        (None, r"but got NoneType None"),
        ([0.1, 0.2], r"but got list"),
        ({"acc": 0.9}, r"without a 'default' key \(keys: \['acc'\]\)"),
        ({"default": "high"}, r"dict\['default'\] to be a number, but got str 'high'"),
        ({"default": 1, "blob": object()}, r"not JSON-serialisable"),
        (np.array([1.0, 2.0]), r"but got ndarray"),
        (complex(1, 2), r"but got complex"),
    ],
)
def test_normalize_metric_rejects_what_tuners_cannot_use(value, match):
    with pytest.raises(TypeError, match=match):
        normalize_metric(value, "report_final_result")


def test_report_rejects_bad_metric_without_writing(trial_dir):
    with pytest.raises(TypeError, match="report_intermediate_result"):
        nni_pl.report_intermediate_result("oops")
    assert not (trial_dir / "metrics.jsonl").exists()


def test_stop_request_and_graceful_declaration(trial_dir):
    assert nni_pl.should_stop() is False
    (trial_dir / ".nni").mkdir(exist_ok=True)
    (trial_dir / ".nni" / "stop").write_text("now")
    assert nni_pl.should_stop() is True
    from nni_pl.trial import enable_graceful_stop

    enable_graceful_stop()
    assert (trial_dir / ".nni" / "graceful").exists()


def test_standalone_mode_returns_empty_parameters_and_logs_reports(monkeypatch, capsys):
    monkeypatch.delenv("NNI_PL_PARAMETERS", raising=False)
    activate(TrialContext())
    try:
        assert nni_pl.get_next_parameter() == {}
        assert nni_pl.get_trial_id() == "STANDALONE"
        assert nni_pl.get_experiment_id() == "STANDALONE"
        assert nni_pl.get_sequence_id() == 0
        nni_pl.report_intermediate_result(0.3)
        nni_pl.report_final_result(0.4)
        assert nni_pl.should_stop() is False
    finally:
        activate(None)
    err = capsys.readouterr().err  # logging is not set up for INFO: the reports go to stderr
    assert "intermediate result: 0.3" in err and "final result: 0.4" in err


def test_standalone_reports_use_logging_when_it_is_configured(caplog):
    activate(TrialContext())
    try:
        with caplog.at_level("INFO", logger="nni_pl.trial"):
            nni_pl.report_final_result(0.7)
    finally:
        activate(None)
    assert "standalone final result: 0.7" in caplog.text


def test_standalone_parameters_from_env_json_or_file(monkeypatch, tmp_path):
    monkeypatch.setenv("NNI_PL_PARAMETERS", '{"lr": 0.01}')
    activate(TrialContext())
    assert nni_pl.get_next_parameter() == {"lr": 0.01}
    f = tmp_path / "p.yml"
    f.write_text("lr: 1e-3\nbatch_size: 32\n")
    monkeypatch.setenv("NNI_PL_PARAMETERS", str(f))
    activate(TrialContext())
    assert nni_pl.get_next_parameter() == {"lr": 0.001, "batch_size": 32}
    activate(None)


def test_context_from_environment(monkeypatch, tmp_path):
    (tmp_path / "parameter.json").write_text(json.dumps({"parameters": {"a": 1}}))
    env = {
        "NNI_EXP_ID": "e1",
        "NNI_TRIAL_JOB_ID": "t1",
        "NNI_TRIAL_SEQ_ID": "3",
        "NNI_SYS_DIR": str(tmp_path),
    }
    ctx = TrialContext.from_env(env)
    assert (ctx.experiment_id, ctx.trial_id, ctx.sequence_id, ctx.standalone) == ("e1", "t1", 3, False)
    assert ctx.parameters == {"a": 1}
    assert TrialContext.from_env({}).standalone


def test_import_is_light_and_fast():
    code = (
        "import sys, time; t = time.perf_counter(); import nni_pl; dt = time.perf_counter() - t; "
        "heavy = [m for m in ('torch', 'lightning', 'numpy', 'pytorch_lightning', 'yaml', 'peewee') if m in sys.modules]; "
        "print(dt, ','.join(heavy))"
    )
    times = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        assert len(out) == 1, f"import nni_pl pulled in heavy modules: {out[1:]}"
        times.append(float(out[0]))
    assert min(times) < 0.150, f"import nni_pl took {min(times) * 1000:.0f} ms"


def test_module_current_is_lazy(monkeypatch):
    monkeypatch.setattr(_context, "_current", None)
    monkeypatch.delenv("NNI_SYS_DIR", raising=False)
    assert _context.current().standalone
