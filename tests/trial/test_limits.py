"""The trial SDK on bad input: oversized metrics, garbled NNI_PL_PARAMETERS / parameter.json / ids, each one line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nni_pl
from nni_pl.errors import NniPlError
from nni_pl.trial import (
    DEFAULT_MAX_METRIC_BYTES,
    MetricTooLargeError,
    TrialContext,
    TrialSetupError,
    activate,
    max_metric_bytes,
)
from nni_pl.trial.protocol import MetricsReader


@pytest.fixture
def trial_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("NNI_PL_MAX_METRIC_BYTES", raising=False)
    d = tmp_path / "trial"
    d.mkdir()
    (d / "parameter.json").write_text(json.dumps({"parameter_id": 1, "parameters": {"lr": 0.1}}))
    activate(TrialContext(experiment_id="exp12345", trial_id="Ab3xY", sequence_id=0, trial_dir=d))
    yield d
    activate(None)


def _lines(trial_dir: Path) -> list[dict]:
    path = trial_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- metric size --------------------------------------------------------------------------------------------------


def test_oversized_reports_are_refused_naming_the_limit_and_how_to_raise_it(trial_dir):
    assert max_metric_bytes() == DEFAULT_MAX_METRIC_BYTES == 65536
    wide = {"default": 0.5, **{f"k{i}": i for i in range(100_000)}}
    with pytest.raises(MetricTooLargeError) as info:
        nni_pl.report_intermediate_result(wide)
    msg = str(info.value)
    assert "\n" not in msg and isinstance(info.value, NniPlError)
    assert msg.startswith("report_intermediate_result() got a metric of ")
    assert "(100001 keys), over the limit of 64 KiB (65536 bytes) per report" in msg
    assert "NNI_PL_MAX_METRIC_BYTES" in msg
    with pytest.raises(MetricTooLargeError, match=r"report_final_result\(\) got a metric of 2000\d\d bytes"):
        nni_pl.report_final_result({"default": 1.0, "blob": "x" * 200_000})
    assert _lines(trial_dir) == []  # nothing written
    # a refused final result does not use up the trial's one final result
    nni_pl.report_final_result({"default": 1.0, "blob": "x" * 100})
    assert [r["value"]["default"] for r in _lines(trial_dir)] == [1.0]


def test_the_limit_comes_from_the_environment(trial_dir, monkeypatch):
    monkeypatch.setenv("NNI_PL_MAX_METRIC_BYTES", "200")
    nni_pl.report_intermediate_result({"default": 1, "s": "y" * 150})  # 172 bytes of JSON
    with pytest.raises(MetricTooLargeError, match=r"over the limit of 200 bytes per report"):
        nni_pl.report_intermediate_result({"default": 1, "s": "y" * 200})
    monkeypatch.setenv("NNI_PL_MAX_METRIC_BYTES", "1000000")
    nni_pl.report_intermediate_result({"default": 2, "s": "y" * 100_000})
    assert [r["value"]["default"] for r in _lines(trial_dir)] == [1, 2]
    for bad in ("lots", "0", "-5", "1e6"):
        monkeypatch.setenv("NNI_PL_MAX_METRIC_BYTES", bad)
        with pytest.raises(
            TrialSetupError, match=rf"NNI_PL_MAX_METRIC_BYTES must be a whole number .*'{bad}'"
        ):
            nni_pl.report_intermediate_result(0.5)


def test_standalone_runs_refuse_oversized_reports_too(monkeypatch):
    monkeypatch.delenv("NNI_PL_MAX_METRIC_BYTES", raising=False)
    activate(TrialContext())
    try:
        with pytest.raises(MetricTooLargeError, match="over the limit of 64 KiB"):
            nni_pl.report_final_result({"default": 0.1, "s": "z" * 70_000})
    finally:
        activate(None)


def wide_objective(params: dict) -> dict:
    return {"default": params["x"], **{f"layer{i}": float(i) for i in range(20_000)}}


def test_a_trial_returning_an_oversized_metric_fails_with_the_reason(tmp_path, monkeypatch):
    from nni_pl.training.functions import FunctionTrainingService
    from nni_pl.training.service import TrialJob

    monkeypatch.delenv("NNI_PL_MAX_METRIC_BYTES", raising=False)
    job = TrialJob("exp", "wide", 0, 0, "algorithm", {"x": 0.5}, tmp_path / "wide")
    svc = FunctionTrainingService(wide_objective, concurrency=1, start_method="fork")
    svc.start()
    try:
        svc.submit(job)
        ends = []
        for _ in range(300):
            ends += svc.poll(0.1)
            if ends:
                break
    finally:
        svc.shutdown()
    assert ends and ends[0].exit_code == 1
    assert "MetricTooLargeError: report_final_result() got a metric of" in ends[0].error
    assert "over the limit of 64 KiB" in ends[0].error
    assert MetricsReader(job.trial_dir).read() == []


def test_the_manager_skips_a_hand_written_oversized_line_and_reads_on(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NNI_PL_MAX_METRIC_BYTES", "1000")
    path = tmp_path / "metrics.jsonl"

    def rec(seq: int, value: object) -> bytes:
        return json.dumps({"seq": seq, "type": "PERIODICAL", "value": value, "time": 1.0}).encode() + b"\n"

    reader = MetricsReader(tmp_path)
    path.write_bytes(rec(0, 0.5) + rec(1, {"default": 1, "s": "x" * 50_000}) + rec(2, 0.7))
    with caplog.at_level(logging.WARNING, logger="nni_pl.trial.protocol"):
        assert [r["seq"] for r in reader.read()] == [0, 2]
    assert "skipping a line of 500" in caplog.text and "at most 1000 bytes" in caplog.text
    assert "NNI_PL_MAX_METRIC_BYTES" in caplog.text
    # a long line still being written: dropped as it streams past, never held whole
    monkeypatch.setattr(MetricsReader, "_CHUNK", 4096)  # many chunks per long line
    with open(path, "ab") as f:
        f.write(b'{"seq": 3, "type": "PERIODICAL", "value": {"default": 1, "s": "' + b"w" * 30_000)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nni_pl.trial.protocol"):
        assert reader.read() == []
    assert reader.offset == path.stat().st_size and "over 2024 bytes" in caplog.text
    with open(path, "ab") as f:
        f.write(b"w" * 30_000 + b'"}, "time": 1.0}\n' + rec(4, 0.9) + b'{"seq": 5, "ty')
    assert [r["seq"] for r in reader.read()] == [4]  # the half-written record 5 waits
    with open(path, "ab") as f:
        f.write(b'pe": "FINAL", "value": 1.0, "time": 1.0}\n')
    assert [r["seq"] for r in reader.read()] == [5]


def test_the_manager_keeps_the_default_when_its_limit_variable_is_garbled(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NNI_PL_MAX_METRIC_BYTES", "big")
    with caplog.at_level(logging.WARNING, logger="nni_pl.trial.protocol"):
        reader = MetricsReader(tmp_path)
    assert reader.max_line == DEFAULT_MAX_METRIC_BYTES + MetricsReader._RECORD_OVERHEAD
    assert "NNI_PL_MAX_METRIC_BYTES must be a whole number" in caplog.text


# --- parameters and ids -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("{bad", r"NNI_PL_PARAMETERS='\{bad' is not valid JSON \(Expecting property name .* at column 2\)"),
        ("params.json", r"NNI_PL_PARAMETERS='params.json' is neither JSON nor an existing file"),
        ("[1, 2]", r"NNI_PL_PARAMETERS: '\[1, 2\]' holds a list, not an object of parameters"),
        ("{" + "x" * 500, r"NNI_PL_PARAMETERS='\{x{79}'\.\.\. is not valid JSON"),
    ],
)
def test_bad_nni_pl_parameters_is_one_line_naming_the_variable_and_what_is_accepted(
    monkeypatch, value, match
):
    monkeypatch.setenv("NNI_PL_PARAMETERS", value)
    activate(TrialContext())
    try:
        with pytest.raises(TrialSetupError, match=match) as info:
            nni_pl.get_next_parameter()
    finally:
        activate(None)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400
    assert "a JSON object such as '{\"lr\": 0.01}' or to the path of a JSON/YAML file" in msg
    # no chained JSONDecodeError traceback under it
    assert info.value.__cause__ is None and (
        info.value.__context__ is None or info.value.__suppress_context__
    )


def test_a_garbled_parameters_file_is_named(monkeypatch, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("lr: [1, 2\n")
    monkeypatch.setenv("NNI_PL_PARAMETERS", str(f))
    activate(TrialContext())
    try:
        with pytest.raises(
            TrialSetupError, match=rf"names the file '{f}', which cannot be read as JSON or YAML"
        ):
            nni_pl.get_next_parameter()
        f.write_text("- 1\n- 2\n")
        activate(TrialContext())
        with pytest.raises(TrialSetupError, match=rf"the file '{f}' holds a list"):
            nni_pl.get_next_parameter()
    finally:
        activate(None)


def test_the_trial_process_shows_one_line_and_no_json_internals(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNI_")}
    env["NNI_PL_PARAMETERS"] = "{bad"
    run = subprocess.run(
        [sys.executable, "-c", "import nni_pl as nni; nni.get_next_parameter()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "nni_pl.trial.protocol.TrialSetupError: NNI_PL_PARAMETERS='{bad' is not valid JSON"
    )
    assert "JSONDecodeError" not in run.stderr and "During handling" not in run.stderr


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, r"parameter file '.*parameter.json' does not exist; the manager writes it"),
        (
            '{"parameters": {"lr": 0.1',
            r"parameter file '.*parameter.json' cannot be read as JSON \(Expecting",
        ),
        ('["lr"]', r'must hold an object with a "parameters" object, got list'),
        ('{"params": {}}', r"must hold an object with a \"parameters\" object, got keys \['params'\]"),
    ],
)
def test_a_missing_or_garbled_parameter_file_is_one_line(tmp_path, content, match):
    if content is not None:
        (tmp_path / "parameter.json").write_text(content)
    activate(TrialContext(trial_id="t1", trial_dir=tmp_path))
    try:
        with pytest.raises(TrialSetupError, match=match) as info:
            nni_pl.get_next_parameter()
    finally:
        activate(None)
    assert "\n" not in str(info.value) and "unset NNI_SYS_DIR and NNI_TRIAL_JOB_ID" in str(info.value)


def test_a_garbled_sequence_id_is_one_line(tmp_path):
    env = {"NNI_SYS_DIR": str(tmp_path), "NNI_TRIAL_JOB_ID": "t1", "NNI_TRIAL_SEQ_ID": "three"}
    with pytest.raises(TrialSetupError, match=r"NNI_TRIAL_SEQ_ID must be a whole number .*got 'three'"):
        TrialContext.from_env(env)
    assert TrialContext.from_env({**env, "NNI_TRIAL_SEQ_ID": ""}).sequence_id == 0
