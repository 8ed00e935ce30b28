"""The experiment config: NNI v2 keys (docs L15879-16134), v1 keys mapped (L16614-17352), round trips."""

from __future__ import annotations

import logging
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nni_pl.errors import ConfigError
from nni_pl.experiment.config import (
    AlgorithmConfig,
    ExperimentConfig,
    LocalConfig,
    format_duration,
    is_v1,
    parse_duration,
    v1_to_v2,
)
from nni_pl.space import Choice, LogUniform, SearchSpace

LOGGER = "nni_pl.experiment.config"
BASE: dict[str, Any] = {"trialCommand": "python3 mnist.py", "trialConcurrency": 2}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _cfg(tmp_path: Path, **raw: Any) -> ExperimentConfig:
    return ExperimentConfig.from_dict({**BASE, **raw}, base_dir=tmp_path)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


# --- NNI v2 examples from the docs ------------------------------------------------------------------------------


def test_config_v2_minimal_quickstart_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # NNI docs L625-635, verbatim (comments included)
    path = _write(
        tmp_path,
        "config.yml",
        """
        experimentName: MNIST               # An optional name to distinguish the experiments
        trialCommand: python3 mnist.py      # NOTE: change "python3" to "python" if you are using Windows
        trialConcurrency: 2                 # Run 2 trials concurrently
        maxTrialNumber: 10                  # Generate at most 10 trials
        maxExperimentDuration: 1h           # Stop generating trials after 1 hour
        tuner:                              # Configure the tuning algorithm
           name: TPE
           classArgs:                       # Algorithm specific arguments
              optimize_mode: maximize
        trainingService:                    # Configure the training platform
           platform: local
        """,
    )
    with caplog.at_level(logging.INFO, logger=LOGGER):
        cfg = ExperimentConfig.load(path)
    assert cfg.experiment_name == "MNIST"
    assert cfg.trial_command == "python3 mnist.py"
    assert cfg.trial_concurrency == 2
    assert cfg.max_trial_number == 10
    assert cfg.max_experiment_duration == 3600.0
    assert cfg.tuner == AlgorithmConfig(name="TPE", class_args={"optimize_mode": "maximize"})
    assert cfg.assessor is None and cfg.advisor is None
    assert cfg.training_service == LocalConfig()
    assert cfg.trial_code_directory == tmp_path.resolve()  # default "." = the config's folder
    assert cfg.config_file == path.resolve()
    assert cfg.search_space == SearchSpace({})
    assert cfg.optimize_mode == "maximize"
    assert _warnings(caplog) == []  # a v2 config is not a v1 config


def test_config_v2_reference_local_example(tmp_path: Path) -> None:
    # NNI docs L15897-15914 ("Local Mode")
    _write(tmp_path, "search_space.json", '{"lr": {"_type": "loguniform", "_value": [1e-5, 1e-1]}}')
    path = _write(
        tmp_path,
        "config.yml",
        """
        experimentName: MNIST
        searchSpaceFile: search_space.json
        trialCommand: python mnist.py
        trialCodeDirectory: .
        trialGpuNumber: 1
        trialConcurrency: 2
        maxExperimentDuration: 24h
        maxTrialNumber: 100
        tuner:
          name: TPE
          classArgs:
            optimize_mode: maximize
        trainingService:
          platform: local
          useActiveGpu: True
        """,
    )
    cfg = ExperimentConfig.load(path)
    assert cfg.search_space_file == (tmp_path / "search_space.json").resolve()
    assert cfg.search_space["lr"] == LogUniform(1e-5, 0.1)
    assert cfg.trial_gpu_number == 1
    assert cfg.max_experiment_duration == 24 * 3600
    assert cfg.training_service == LocalConfig(use_active_gpu=True)


def test_config_v2_inline_search_space_example(tmp_path: Path) -> None:
    # NNI docs L15916-15933 ("Local Mode (Inline Search Space)"), with 1e-5 written the YAML-1.1-hostile way
    path = _write(
        tmp_path,
        "config.yaml",
        """
        searchSpace:
          batch_size:
            _type: choice
            _value: [16, 32, 64]
          learning_rate:
            _type: loguniform
            _value: [1e-5, 0.1]
        trialCommand: python mnist.py
        trialGpuNumber: 1
        trialConcurrency: 2
        tuner:
          name: TPE
          classArgs:
            optimize_mode: maximize
        trainingService:
          platform: local
          useActiveGpu: True
        """,
    )
    cfg = ExperimentConfig.load(path)
    assert cfg.search_space["batch_size"] == Choice((16, 32, 64))
    assert cfg.search_space["learning_rate"] == LogUniform(1e-5, 0.1)
    assert cfg.search_space_file is None


def test_config_json_file_loads(tmp_path: Path) -> None:
    path = _write(tmp_path, "config.json", '{"trialCommand": "python t.py",\t"trialConcurrency": 3}')
    assert ExperimentConfig.load(path).trial_concurrency == 3


# --- every v2 key, with its type checked ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "attr", "expected"),
    [
        ("experimentName", "mnist", "experiment_name", "mnist"),
        ("trialCommand", "python3 t.py --x 1", "trial_command", "python3 t.py --x 1"),
        ("trialConcurrency", 5, "trial_concurrency", 5),
        ("trialGpuNumber", 0, "trial_gpu_number", 0),
        ("trialGpuNumber", 2, "trial_gpu_number", 2),
        ("trialGpuNumber", None, "trial_gpu_number", None),
        ("maxExperimentDuration", "10m", "max_experiment_duration", 600.0),
        ("maxTrialNumber", 100, "max_trial_number", 100),
        ("maxTrialDuration", "0.5h", "max_trial_duration", 1800.0),
        ("nniManagerIp", "10.0.0.1", "nni_manager_ip", "10.0.0.1"),
        ("useAnnotation", False, "trial_command", "python3 mnist.py"),
        ("debug", True, "debug", True),
        ("debug", True, "log_level", "debug"),  # logLevel defaults to debug in debug mode
        ("logLevel", "trace", "log_level", "trace"),
        ("logLevel", "fatal", "log_level", "fatal"),
        ("tunerGpuIndices", [0, 1], "tuner_gpu_indices", [0, 1]),
        ("tunerGpuIndices", "0,2", "tuner_gpu_indices", [0, 2]),
        ("tunerGpuIndices", 1, "tuner_gpu_indices", [1]),
        ("tuner", {"name": "Random", "classArgs": {"seed": 1}}, "tuner", AlgorithmConfig("Random", class_args={"seed": 1})),
        ("tuner", "Anneal", "tuner", AlgorithmConfig(name="Anneal")),
        ("assessor", {"name": "Medianstop", "classArgs": {"start_step": 5}}, "assessor",
         AlgorithmConfig("Medianstop", class_args={"start_step": 5})),
        ("trainingService", {"platform": "local", "gpuIndices": [1, 3], "maxTrialNumberPerGpu": 2}, "training_service",
         LocalConfig(gpu_indices=[1, 3], max_trial_number_per_gpu=2)),
        ("searchSpace", {"x": {"_type": "choice", "_value": [1]}}, "search_space",
         SearchSpace.parse({"x": {"_type": "choice", "_value": [1]}})),
        ("searchSpace", {}, "search_space", SearchSpace({})),
        ("experimentName", None, "experiment_name", None),  # null == unset
    ],
)  # fmt: skip
def test_config_v2_key_accepted(tmp_path: Path, key: str, value: Any, attr: str, expected: Any) -> None:
    assert getattr(_cfg(tmp_path, **{key: value}), attr) == expected


def test_config_advisor_key_accepted(tmp_path: Path) -> None:
    raw = {**BASE, "advisor": {"name": "BOHB", "classArgs": {"optimize_mode": "minimize"}}}
    cfg = ExperimentConfig.from_dict(raw, base_dir=tmp_path)
    assert cfg.advisor == AlgorithmConfig("BOHB", class_args={"optimize_mode": "minimize"})
    assert cfg.tuner is None  # no default TPE next to an advisor
    assert cfg.optimize_mode == "minimize"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("experimentName", 5, r"'experimentName': got 5 \(int\); give a string"),
        ("trialCommand", ["python", "t.py"], r"'trialCommand': got \['python', 't.py'\] \(list\); give a string"),
        ("trialConcurrency", "2", r"'trialConcurrency': got '2' \(str\); give a whole number"),
        ("trialConcurrency", 1.5, r"'trialConcurrency': got 1.5 \(float\); give a whole number"),
        ("trialConcurrency", True, r"'trialConcurrency': got True \(bool\); give a whole number"),
        ("trialConcurrency", 0, r"'trialConcurrency': got 0; it must be at least 1"),
        ("trialConcurrency", None, r"'trialConcurrency': is required; give a whole number"),
        ("trialGpuNumber", -1, r"'trialGpuNumber': got -1; it must be at least 0"),
        ("trialGpuNumber", "1", r"'trialGpuNumber': got '1' \(str\); give a whole number"),
        ("maxTrialNumber", 0, r"'maxTrialNumber': got 0; it must be at least 1"),
        ("maxTrialNumber", "10", r"'maxTrialNumber': got '10' \(str\); give a whole number"),
        ("maxExperimentDuration", "1 hour", r"'maxExperimentDuration': got '1 hour'; write a number followed by s, m, h or d"),
        ("maxTrialDuration", "fast", r"'maxTrialDuration': got 'fast'; write a number followed by s, m, h or d"),
        ("nniManagerIp", 127, r"'nniManagerIp': got 127 \(int\); give a string"),
        ("useAnnotation", "no", r"'useAnnotation': got 'no'; write true or false"),
        ("debug", "yes", r"'debug': got 'yes'; write true or false"),
        ("logLevel", "warn", r"'logLevel': got 'warn' \(did you mean 'warning'\?\); use one of trace, debug, info, warning, error, fatal"),
        ("logLevel", 10, r"'logLevel': got 10 \(int\); give a string"),
        ("experimentWorkingDirectory", 3, r"'experimentWorkingDirectory': got 3 \(int\); give a string"),
        ("trialCodeDirectory", ["."], r"'trialCodeDirectory': got \['.'\] \(list\); give a string"),
        ("searchSpaceFile", 1, r"'searchSpaceFile': got 1 \(int\); give a string"),
        ("tunerGpuIndices", [0, "a"], r"'tunerGpuIndices': got \[0, 'a'\]; 'a' is not a GPU index"),
        ("tunerGpuIndices", [-1], r"'tunerGpuIndices': got \[-1\]; GPU indices are >= 0"),
        ("tunerGpuIndices", {"gpu": 0}, r"'tunerGpuIndices': got \{'gpu': 0\}; give a list of GPU indices"),
        ("tuner", 3, r"'tuner': got 3; write \{name: TPE, classArgs: \{...\}\}"),
        ("tuner", {"name": "TPE", "classArgs": [1]}, r"'tuner.classArgs': got \[1\]; write a mapping"),
        ("tuner", {"name": 5}, r"'tuner.name': got 5 \(int\); give a string"),
        ("tuner", {"name": "TPE", "includeIntermediateResults": 1}, r"'tuner.includeIntermediateResults': got 1; write true or false"),
        ("assessor", [], r"'assessor': got \[\]; write \{name: TPE"),
        ("trainingService", "local", r"'trainingService': got 'local'; write \{platform: local\}"),
        ("trainingService", {"useActiveGpu": True}, r"'trainingService': got .*; write \{platform: local\}"),
        ("trainingService", {"platform": "local", "useActiveGpu": "yes"}, r"'trainingService.useActiveGpu': got 'yes'; write true or false"),
        ("trainingService", {"platform": "local", "maxTrialNumberPerGpu": 0}, r"'trainingService.maxTrialNumberPerGpu': got 0; it must be at least 1"),
        ("trainingService", {"platform": "local", "gpuIndices": "0,x"}, r"'trainingService.gpuIndices': got '0,x'; 'x' is not a GPU index"),
        ("sharedStorage", {"storageType": "NFS"}, r"'sharedStorage': shared storage \(NNI's NFS/Azure Blob mount for remote platforms\) is not supported"),
    ],
)  # fmt: skip
def test_config_v2_key_type_checked(tmp_path: Path, key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^config field {message}") as info:
        _cfg(tmp_path, **{key: value})
    assert info.value.field == message.split("'")[1]


def test_config_missing_trial_command(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'trialCommand': is required \(the command that runs one trial"):
        ExperimentConfig.from_dict({"trialConcurrency": 1}, base_dir=tmp_path)


def test_config_default_tuner_is_auto(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        cfg = _cfg(tmp_path)
    assert cfg.tuner == AlgorithmConfig(name="Auto", class_args={"optimize_mode": "maximize"})
    assert any("no tuner configured: using Auto" in r.getMessage() for r in caplog.records)


def test_config_use_annotation_generates_the_space_from_the_trial_code(tmp_path: Path) -> None:
    # the feature is tested in tests/annotation; here: the config reads the annotations, refuses a space beside them
    (tmp_path / "mnist.py").write_text('"""@nni.variable(nni.choice(1, 2), name=k)"""\nk = 1\n')
    cfg = _cfg(tmp_path, useAnnotation=True)
    assert cfg.search_space.to_json() == {"mnist/k/choice": {"_type": "choice", "_value": [1, 2]}}
    with pytest.raises(ConfigError, match=r"'useAnnotation': .*searchSpace must not be given with it"):
        _cfg(tmp_path, useAnnotation=True, searchSpace={"k": {"_type": "choice", "_value": [1]}})


def test_config_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"an experiment config must be a mapping of keys, got list"):
        ExperimentConfig.from_dict([1, 2])


def test_config_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file '.*nope.yml' does not exist"):
        ExperimentConfig.load(tmp_path / "nope.yml")


def test_config_load_invalid_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "config.yml", "trialCommand: [python\n")
    with pytest.raises(ConfigError, match=r"config file '.*config.yml' is not valid YAML/JSON"):
        ExperimentConfig.load(path)


def test_config_own_keys_store_url_and_lightning_cli(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, storeUrl="sqlite:///x.sqlite", lightningCli=True)
    assert cfg.store_url == "sqlite:///x.sqlite" and cfg.lightning_cli is True
    with pytest.raises(ConfigError, match=r"'storeUrl': got 'x.sqlite'; write a database URL"):
        _cfg(tmp_path, storeUrl="x.sqlite")
    with pytest.raises(ConfigError, match=r"'lightningCli': got 'sometimes'; use auto, true or false"):
        _cfg(tmp_path, lightningCli="sometimes")


# --- durations -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("10m", 600), ("0.5h", 1800), ("1.5h", 5400), ("2d", 172800), ("30s", 30), ("1h", 3600), ("24h", 86400),
     (".5h", 1800), (" 5m ", 300), (90, 90), (2.5, 2.5), (None, None)],
)  # fmt: skip
def test_parse_duration_forms(value: Any, seconds: float | None) -> None:
    assert parse_duration(value, "maxExperimentDuration") == seconds


@pytest.mark.parametrize("value", ["10", "10min", "h", "1h30m", "-1h", "1e3s", "ten m", True, [1], {"h": 1}])
def test_parse_duration_bad_forms(value: Any) -> None:
    with pytest.raises(
        ConfigError,
        match=r"^config field 'maxExperimentDuration': got .*; write a number followed by s, m, h or d, e.g. '30m' or '1.5h'",
    ):
        parse_duration(value, "maxExperimentDuration")


@pytest.mark.parametrize("value", [0, "0s", "0h", -5])
def test_parse_duration_must_be_positive(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"a duration must be positive \(leave it out for no limit\)"):
        parse_duration(value, "maxTrialDuration")


@pytest.mark.parametrize(
    "seconds", [30, 600, 1800, 5400, 86400, 172800, 0.25, 4444.4412, 1234567, 1e16, 1e-7]
)
def test_format_duration_round_trips(seconds: float) -> None:
    text = format_duration(seconds)
    assert parse_duration(text, "maxExperimentDuration") == seconds


def test_format_duration_prefers_large_units() -> None:
    assert [format_duration(s) for s in (172800, 3600, 5400, 30)] == ["2d", "1h", "90m", "30s"]
    assert format_duration(None) is None


# --- paths ---------------------------------------------------------------------------------------------------------


def test_config_relative_paths_resolve_against_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project"
    (folder / "src").mkdir(parents=True)
    (folder / "algo").mkdir()
    _write(folder, "spaces/ss.json", '{"x": {"_type": "randint", "_value": [0, 4]}}')
    path = _write(
        folder,
        "config.yml",
        """
        searchSpaceFile: spaces/ss.json
        trialCommand: python t.py
        trialCodeDirectory: src
        trialConcurrency: 1
        experimentWorkingDirectory: ../runs
        tuner: {className: my_tuner.MyTuner, codeDirectory: algo}
        assessor: {className: my_assessor.MyAssessor, codeDirectory: ./algo/}
        """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = ExperimentConfig.load(os.path.relpath(path, elsewhere))
    root = folder.resolve()
    assert cfg.search_space_file == root / "spaces" / "ss.json"
    assert cfg.search_space.size == 4
    assert cfg.trial_code_directory == root / "src"
    assert cfg.experiment_working_directory == tmp_path.resolve() / "runs"
    assert cfg.tuner is not None and cfg.tuner.code_directory == root / "algo"
    assert cfg.assessor is not None and cfg.assessor.code_directory == root / "algo"


def test_config_from_dict_relative_paths_resolve_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = ExperimentConfig.from_dict({**BASE, "trialCodeDirectory": "src"})
    assert cfg.trial_code_directory == tmp_path.resolve() / "src"


def test_config_absolute_paths_kept(tmp_path: Path) -> None:
    code = tmp_path / "abs_code"
    code.mkdir()
    cfg = ExperimentConfig.from_dict({**BASE, "trialCodeDirectory": str(code)}, base_dir=tmp_path / "other")
    assert cfg.trial_code_directory == code.resolve()


def test_config_tilde_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / "code").mkdir(parents=True)
    (home / "ss.yml").write_text("x: {_type: uniform, _value: [0, 1e-3]}\n")
    monkeypatch.setenv("HOME", str(home))
    cfg = _cfg(
        tmp_path,
        searchSpaceFile="~/ss.yml",
        trialCodeDirectory="~/code",
        experimentWorkingDirectory="~/nni-experiments",
        tuner={"className": "t.T", "codeDirectory": "~/code"},
    )
    assert cfg.search_space_file == home.resolve() / "ss.yml"
    assert cfg.trial_code_directory == home.resolve() / "code"
    assert cfg.experiment_working_directory == home.resolve() / "nni-experiments"
    assert cfg.tuner is not None and cfg.tuner.code_directory == home.resolve() / "code"


def test_config_trial_code_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'trialCodeDirectory': '.*missing' is not a folder"):
        _cfg(tmp_path, trialCodeDirectory="missing")


def test_config_default_working_directory_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNI_PL_HOME", str(tmp_path / "exps"))
    assert _cfg(tmp_path).experiment_working_directory == tmp_path / "exps"


# --- search space ------------------------------------------------------------------------------------------------


def test_config_search_space_and_file_are_exclusive(tmp_path: Path) -> None:
    _write(tmp_path, "ss.json", "{}")
    with pytest.raises(
        ConfigError, match=r"'searchSpace': give either searchSpace \(inline\) or searchSpaceFile, not both"
    ):
        _cfg(tmp_path, searchSpace={}, searchSpaceFile="ss.json")


def test_config_null_search_space_next_to_file_is_unset(tmp_path: Path) -> None:
    _write(tmp_path, "ss.json", '{"a": {"_type": "choice", "_value": [1, 2]}}')
    cfg = _cfg(tmp_path, searchSpace=None, searchSpaceFile="ss.json")
    assert cfg.search_space.size == 2


def test_config_bad_inline_search_space_names_search_space(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"^config field 'searchSpace': search space parameter 'lr': unknown _type 'loguniorm' "
        r"\(did you mean 'loguniform'\?\)",
    ) as info:
        _cfg(tmp_path, searchSpace={"lr": {"_type": "loguniorm", "_value": [1e-4, 0.1]}})
    assert info.value.field == "searchSpace"


def test_config_bad_search_space_file_names_search_space_file(tmp_path: Path) -> None:
    _write(tmp_path, "ss.json", '{"batch": {"_type": "randint", "_value": [64]}}')
    with pytest.raises(
        ConfigError,
        match=r"^config field 'searchSpaceFile': search space parameter 'batch': randint takes 2 values",
    ):
        _cfg(tmp_path, searchSpaceFile="ss.json")


def test_config_missing_search_space_file(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"'searchSpaceFile': search space: file not found, got '.*nope.json'"
    ):
        _cfg(tmp_path, searchSpaceFile="nope.json")


# --- unknown keys ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"trialConcurency": 2}, r"'trialConcurency': unknown key \(did you mean 'trialConcurrency'\?\); valid keys here: experimentName, "),
        ({"maxTrialNum": 5, "maxExperimentDuraton": "1h"}, r"'maxExperimentDuraton': unknown key \(did you mean 'maxExperimentDuration'\?\)"),
        ({"searchspace": {}}, r"'searchspace': unknown key \(did you mean 'searchSpace'\?\)"),
        ({"tuner": {"name": "TPE", "clasArgs": {}}}, r"'tuner.clasArgs': unknown key \(did you mean 'classArgs'\?\); valid keys here: name, className, codeDirectory, classArgs"),
        ({"trainingService": {"platform": "local", "useActiveGPU": True}}, r"'trainingService.useActiveGPU': unknown key \(did you mean 'useActiveGpu'\?\)"),
        ({"bananas": 1}, r"'bananas': unknown key; valid keys here: "),
    ],
)  # fmt: skip
def test_config_unknown_key_did_you_mean(tmp_path: Path, raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^config field {message}"):
        _cfg(tmp_path, **raw)


# --- algorithms ------------------------------------------------------------------------------------------------------


def test_config_advisor_excludes_tuner_and_assessor(tmp_path: Path) -> None:
    message = (
        r"'advisor': an advisor replaces the tuner and the assessor; remove tuner/assessor or the advisor"
    )
    with pytest.raises(ConfigError, match=message):
        _cfg(tmp_path, tuner={"name": "TPE"}, advisor={"name": "BOHB"})
    with pytest.raises(ConfigError, match=message):
        _cfg(tmp_path, assessor={"name": "Medianstop"}, advisor={"name": "Hyperband"})


def test_config_algorithm_name_or_class_name(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"'tuner': give either 'name' \('TPE'\) or 'className' \('a.B'\), not both"
    ):
        _cfg(tmp_path, tuner={"name": "TPE", "className": "a.B"})
    with pytest.raises(
        ConfigError, match=r"'assessor': give a built-in 'name' \(e.g. TPE\) or a custom 'className'"
    ):
        _cfg(tmp_path, assessor={"classArgs": {"x": 1}})


def test_config_custom_algorithm(tmp_path: Path) -> None:
    # NNI docs L4314-4322: className + codeDirectory + classArgs
    (tmp_path / "tuners").mkdir()
    cfg = _cfg(
        tmp_path,
        tuner={"className": "my_tuner.MyTuner", "codeDirectory": "tuners", "classArgs": {"arg1": "value1"}},
    )
    assert cfg.tuner == AlgorithmConfig(
        class_name="my_tuner.MyTuner",
        code_directory=tmp_path.resolve() / "tuners",
        class_args={"arg1": "value1"},
    )
    # without codeDirectory the config's folder is used
    cfg = _cfg(tmp_path, tuner={"className": "my_tuner.MyTuner"})
    assert cfg.tuner is not None and cfg.tuner.code_directory == tmp_path.resolve()


# --- GPUs and platforms ------------------------------------------------------------------------------------------------


def test_config_trial_gpu_number_needs_enough_gpu_indices(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"'trialGpuNumber': each trial needs 2 GPUs but gpuIndices lists only \[0\]"
    ):
        _cfg(tmp_path, trialGpuNumber=2, trainingService={"platform": "local", "gpuIndices": [0]})
    cfg = _cfg(tmp_path, trialGpuNumber=2, trainingService={"platform": "local", "gpuIndices": "0, 1"})
    assert cfg.training_service.gpu_indices == [0, 1]
    cfg = _cfg(tmp_path, trialGpuNumber=0, trainingService={"platform": "local", "gpuIndices": []})
    assert cfg.trial_gpu_number == 0


@pytest.mark.parametrize("platform", ["openpai", "frameworkcontroller", "dlc", "adl"])
def test_config_unsupported_platform(tmp_path: Path, platform: str) -> None:
    with pytest.raises(
        ConfigError,
        match=rf"^config field 'trainingService.platform': platform '{platform}' is not available in this version; supported: local, remote, ray, kubeflow, aml,",
    ):
        _cfg(tmp_path, trainingService={"platform": platform})


def test_config_unknown_platform_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"'trainingService.platform': unknown platform 'locl' \(did you mean 'local'\?\)"
    ):
        _cfg(tmp_path, trainingService={"platform": "locl"})


def test_config_hybrid_training_service_is_a_list_of_sections(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, trainingService=[{"platform": "local"}, {"className": "pkg.mod:Service"}])
    assert cfg.training_service.platforms == ["local", "custom"]
    assert cfg.to_dict()["trainingService"] == [
        LocalConfig().to_dict(),
        {"className": "pkg.mod:Service", "classArgs": {}},
    ]
    with pytest.raises(
        ConfigError, match=r"^config field 'trainingService\[1\]': platform 'local' is listed twice"
    ):
        _cfg(tmp_path, trainingService=[{"platform": "local"}, {"platform": "local"}])


def test_config_training_service_defaults_to_local(tmp_path: Path) -> None:
    assert _cfg(tmp_path, trainingService=None).training_service == LocalConfig()


# --- NNI v1 -------------------------------------------------------------------------------------------------------

V1_ASSESSOR = """
authorName: test
experimentName: test_experiment
trialConcurrency: 3
maxExecDuration: 1h
maxTrialNum: 10
#choice: local, remote, pai, kubeflow
trainingServicePlatform: local
searchSpacePath: /nni/search_space.json
#choice: true, false
useAnnotation: false
tuner:
  #choice: TPE, Random, Anneal, Evolution
  builtinTunerName: TPE
  classArgs:
    #choice: maximize, minimize
    optimize_mode: maximize
assessor:
  #choice: Medianstop
  builtinAssessorName: Medianstop
  classArgs:
    #choice: maximize, minimize
    optimize_mode: maximize
trial:
  command: python3 mnist.py
  codeDir: /nni/mnist
  gpuNum: 0
"""


def _v1_project(tmp_path: Path, template: str) -> Path:
    (tmp_path / "nni" / "mnist").mkdir(parents=True)
    _write(tmp_path, "nni/search_space.json", '{"lr": {"_type": "choice", "_value": [0.1, 0.01]}}')
    return _write(tmp_path, "config_v1.yml", template.replace("/nni/", f"{tmp_path}/nni/"))


def test_config_v1_local_assessor_template(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # NNI docs L17296-17321, paths moved under tmp_path
    path = _v1_project(tmp_path, V1_ASSESSOR)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        cfg = ExperimentConfig.load(path)
    assert cfg.experiment_name == "test_experiment"
    assert cfg.trial_concurrency == 3
    assert cfg.max_experiment_duration == 3600.0
    assert cfg.max_trial_number == 10
    assert cfg.training_service == LocalConfig()
    assert cfg.search_space_file == (tmp_path / "nni" / "search_space.json").resolve()
    assert cfg.search_space["lr"] == Choice((0.1, 0.01))
    assert cfg.tuner == AlgorithmConfig(name="TPE", class_args={"optimize_mode": "maximize"})
    assert cfg.assessor == AlgorithmConfig(name="Medianstop", class_args={"optimize_mode": "maximize"})
    assert cfg.trial_command == "python3 mnist.py"
    assert cfg.trial_code_directory == (tmp_path / "nni" / "mnist").resolve()
    assert cfg.trial_gpu_number == 0
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    line = warnings[0].getMessage()
    assert "\n" not in line
    assert line.startswith("NNI v1 config keys mapped to v2: ")
    for note in (
        "authorName dropped",
        "maxExecDuration -> maxExperimentDuration",
        "maxTrialNum -> maxTrialNumber",
        "trainingServicePlatform -> trainingService.platform",
        "searchSpacePath -> searchSpaceFile",
        "tuner.builtinTunerName -> tuner.name",
        "assessor.builtinAssessorName -> assessor.name",
        "trial.command -> trialCommand",
        "trial.codeDir -> trialCodeDirectory",
        "trial.gpuNum -> trialGpuNumber",
    ):
        assert note in line


def test_config_v1_custom_tuner_and_assessor_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # NNI docs L17325-17352: codeDir + classFileName + className
    template = V1_ASSESSOR.split("tuner:")[0] + textwrap.dedent(
        """
        tuner:
          codeDir: /nni/tuner
          classFileName: mytuner.py
          className: MyTuner
          classArgs:
            optimize_mode: maximize
        assessor:
          codeDir: /nni/assessor
          classFileName: myassessor.py
          className: MyAssessor
          classArgs:
            optimize_mode: maximize
        trial:
          command: python3 mnist.py
          codeDir: /nni/mnist
          gpuNum: 0
        """
    )
    path = _v1_project(tmp_path, template)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        cfg = ExperimentConfig.load(path)
    assert cfg.tuner == AlgorithmConfig(
        class_name="mytuner.MyTuner",
        code_directory=(tmp_path / "nni" / "tuner").resolve(),
        class_args={"optimize_mode": "maximize"},
    )
    assert cfg.assessor is not None
    assert cfg.assessor.class_name == "myassessor.MyAssessor"
    assert cfg.assessor.code_directory == (tmp_path / "nni" / "assessor").resolve()
    (warning,) = _warnings(caplog)
    assert "tuner.classFileName+className -> tuner.className" in warning.getMessage()
    assert "tuner.codeDir -> tuner.codeDirectory" in warning.getMessage()


def test_config_v1_local_config_and_gpus(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    raw = {
        "authorName": "me",
        "trialConcurrency": 2,
        "trainingServicePlatform": "local",
        "trial": {"command": "python t.py", "codeDir": ".", "gpuNum": 2},
        "localConfig": {"gpuIndices": "0,1,2", "maxTrialNumPerGpu": 2, "useActiveGpu": True},
        "tuner": {"builtinTunerName": "Random", "gpuIndices": "3"},
        "logDir": "logs",
    }
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        cfg = ExperimentConfig.from_dict(raw, base_dir=tmp_path)
    assert cfg.trial_gpu_number == 2
    assert cfg.training_service == LocalConfig(
        use_active_gpu=True, max_trial_number_per_gpu=2, gpu_indices=[0, 1, 2]
    )
    assert cfg.tuner == AlgorithmConfig(name="Random")
    assert cfg.tuner_gpu_indices == [3]
    assert cfg.experiment_working_directory == tmp_path.resolve() / "logs"
    assert cfg.trial_code_directory == tmp_path.resolve()
    (warning,) = _warnings(caplog)
    for note in (
        "localConfig -> trainingService",
        "tuner.gpuIndices -> tunerGpuIndices",
        "logDir -> experimentWorkingDirectory",
    ):
        assert note in warning.getMessage()


def test_config_v1_unknown_local_config_key(tmp_path: Path) -> None:
    raw = {**BASE, "trainingServicePlatform": "local", "localConfig": {"gpuIndex": "0"}}
    with pytest.raises(
        ConfigError, match=r"'localConfig.gpuIndex': unknown key \(did you mean 'gpuIndices'\?\)"
    ):
        ExperimentConfig.from_dict(raw, base_dir=tmp_path)


def test_config_v1_unsupported_platform(tmp_path: Path) -> None:
    raw = {
        "authorName": "a",
        "trialConcurrency": 1,
        "trainingServicePlatform": "pai",
        "trial": {"command": "x"},
    }
    with pytest.raises(
        ConfigError, match=r"'trainingService.platform': platform 'pai' is not available in this version"
    ):
        ExperimentConfig.from_dict(raw, base_dir=tmp_path)


def test_config_v1_platform_trial_keys_rejected(tmp_path: Path) -> None:
    raw = {"trialConcurrency": 1, "trial": {"command": "x", "cpuNum": 1, "memoryMB": 8192}}
    with pytest.raises(
        ConfigError, match=r"'trial.cpuNum': is a v1 key of a platform this version does not support"
    ):
        ExperimentConfig.from_dict(raw, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"'trial': got 'python t.py'; v1 'trial' is a mapping"):
        ExperimentConfig.from_dict({"trialConcurrency": 1, "trial": "python t.py"}, base_dir=tmp_path)


def test_config_v1_advisor_excludes_tuner(tmp_path: Path) -> None:
    raw = {
        **BASE,
        "authorName": "a",
        "advisor": {"builtinAdvisorName": "BOHB", "classArgs": {"optimize_mode": "maximize"}},
        "tuner": {"builtinTunerName": "TPE"},
    }
    with pytest.raises(ConfigError, match=r"'advisor': an advisor replaces the tuner"):
        ExperimentConfig.from_dict(raw, base_dir=tmp_path)
    del raw["tuner"]
    assert ExperimentConfig.from_dict(raw, base_dir=tmp_path).advisor == AlgorithmConfig(
        name="BOHB", class_args={"optimize_mode": "maximize"}
    )


def test_is_v1_detection() -> None:
    assert is_v1({"authorName": "x"})
    assert is_v1({"trial": {"command": "x"}})
    assert is_v1({"tuner": {"builtinTunerName": "TPE"}})
    assert is_v1({"assessor": {"builtinAssessorName": "Medianstop"}})
    assert not is_v1({"trialCommand": "x", "tuner": {"name": "TPE"}})


def test_v1_to_v2_mapping() -> None:
    out, notes = v1_to_v2(
        {
            "authorName": "a",
            "versionCheck": False,
            "maxExecDuration": "2h",
            "maxTrialNum": 3,
            "searchSpacePath": "ss.json",
            "trainingServicePlatform": "local",
            "trial": {"command": "python t.py", "codeDir": "src", "gpuNum": 1},
            "tuner": {"builtinTunerName": "TPE", "classArgs": {"optimize_mode": "minimize"}},
            "trialConcurrency": 4,
        }
    )
    assert out == {
        "maxExperimentDuration": "2h",
        "maxTrialNumber": 3,
        "searchSpaceFile": "ss.json",
        "trainingService": {"platform": "local"},
        "trialCommand": "python t.py",
        "trialCodeDirectory": "src",
        "trialGpuNumber": 1,
        "tuner": {"classArgs": {"optimize_mode": "minimize"}, "name": "TPE"},
        "trialConcurrency": 4,
    }
    assert "versionCheck dropped" in notes and "authorName dropped" in notes


# --- round trip through the store form ------------------------------------------------------------------------------


def test_config_to_dict_from_stored_round_trip(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "algo").mkdir()
    _write(
        tmp_path,
        "ss.json",
        '{"lr": {"_type": "loguniform", "_value": [1e-5, 0.1]}, "bs": {"_type": "choice", "_value": [16, 32]}}',
    )
    path = _write(
        tmp_path,
        "config.yml",
        """
        experimentName: rt
        searchSpaceFile: ss.json
        trialCommand: python t.py
        trialCodeDirectory: src
        trialConcurrency: 3
        trialGpuNumber: 1
        maxExperimentDuration: 1.5h
        maxTrialNumber: 20
        maxTrialDuration: 1234567
        nniManagerIp: 10.0.0.2
        debug: true
        logLevel: warning
        experimentWorkingDirectory: runs
        tunerGpuIndices: 0
        tuner: {className: my.Tuner, codeDirectory: algo, classArgs: {optimize_mode: minimize}}
        assessor: {name: Curvefitting, classArgs: {epoch_num: 20}}
        trainingService: {platform: local, useActiveGpu: true, maxTrialNumberPerGpu: 2, gpuIndices: [0, 1]}
        storeUrl: sqlite:///tmp/store.sqlite
        lightningCli: false
        """,
    )
    cfg = ExperimentConfig.load(path)
    stored = cfg.to_dict()
    assert all(isinstance(k, str) and "_" not in k for k in stored)  # camelCase
    assert stored["maxExperimentDuration"] == "90m"
    assert stored["trialCodeDirectory"] == str((tmp_path / "src").resolve())
    again = ExperimentConfig.from_stored(stored)
    assert again.to_dict() == stored
    for name in ("search_space", "search_space_file", "trial_code_directory", "experiment_working_directory",
                 "tuner", "assessor", "training_service", "max_trial_duration", "max_experiment_duration",
                 "log_level", "debug", "tuner_gpu_indices", "store_url", "lightning_cli"):  # fmt: skip
        assert getattr(again, name) == getattr(cfg, name), name


def test_config_round_trip_of_v1_config_is_v2(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = ExperimentConfig.load(_v1_project(tmp_path, V1_ASSESSOR))
    stored = cfg.to_dict()
    assert not is_v1(stored)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        again = ExperimentConfig.from_stored(stored)
    assert _warnings(caplog) == []
    assert again.to_dict() == stored


def test_config_from_stored_without_trial_command_is_a_function_trial() -> None:
    again = ExperimentConfig.from_stored(
        {"trialConcurrency": 2, "trialCodeDirectory": "/definitely/not/here"}
    )
    assert again.trial_command is None and again.trial_concurrency == 2
