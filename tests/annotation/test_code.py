"""A code directory: the generated space (module keys), the rewritten copy, and the experiment config."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from nni_pl.annotation import (
    MARKER,
    AnnotationError,
    expand_annotations,
    generate_search_space,
    prepare_trial_code,
)
from nni_pl.errors import ConfigError
from nni_pl.experiment import Experiment, ExperimentConfig

MAIN = "'''@nni.variable(nni.choice(0.1, 0.01), name=lr)'''\nlr = 0.1\n'''@nni.report_final_result(lr)'''\n"
LAYER = "def f():\n    '''@nni.variable(nni.randint(1, 4), name=depth)'''\n    depth = 2\n    return depth\n"


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def code(tmp_path: Path) -> Path:
    root = tmp_path / "code"
    (root / "models" / "blocks").mkdir(parents=True)
    (root / "main.py").write_text(MAIN)
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "blocks" / "layer.py").write_text(LAYER)
    (root / "data.csv").write_text("a,b\n1,2\n")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "broken.py").write_text("def (:\n")  # hidden folders are not read
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    return root


def test_space_keys_follow_nni_module_paths(code: Path) -> None:
    assert generate_search_space(code).to_json() == {
        "main/lr/choice": {"_type": "choice", "_value": [0.1, 0.01]},
        "models.blocks.layer/depth/randint": {"_type": "randint", "_value": [1, 4]},
    }


def test_errors_name_the_file_and_line(code: Path) -> None:
    (code / "models" / "bad.py").write_text("x = 1\n'''@nni.variable(nni.choice(1), name=y)'''\nz = 2\n")
    with pytest.raises(AnnotationError, match=rf"^{code / 'models' / 'bad.py'}:3: .*assignment to y"):
        generate_search_space(code)


def test_no_annotation_at_all_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    with pytest.raises(
        ConfigError, match=r"'useAnnotation': no @nni.variable or @nni.function_choice annotation"
    ):
        generate_search_space(tmp_path)


def test_copy_is_rewritten_and_the_user_folder_untouched(code: Path, tmp_path: Path) -> None:
    before = _tree(code)
    space = expand_annotations(code, tmp_path / "copy")
    assert _tree(code) == before
    copy = tmp_path / "copy"
    assert (copy / "data.csv").read_text() == "a,b\n1,2\n"
    assert (copy / "models" / "__init__.py").exists() and not (copy / "__pycache__").exists()
    main = (copy / "main.py").read_text()
    assert (
        main.startswith("import nni_pl\nimport nni_pl.annotation\n")
        and "nni_pl.report_final_result(lr)" in main
    )
    assert (
        "nni_pl.annotation.value('models.blocks.layer/depth/randint'"
        in (copy / "models" / "blocks" / "layer.py").read_text()
    )
    assert json.loads((copy / MARKER).read_text()) == space.to_json()


def test_an_experiment_folder_inside_the_code_is_not_copied(code: Path) -> None:
    expand_annotations(code, code / "experiments" / "abc" / "annotated_code")
    assert not (code / "experiments" / "abc" / "annotated_code" / "experiments").exists()


def test_a_failed_rewrite_leaves_nothing(code: Path, tmp_path: Path) -> None:
    (code / "bad.py").write_text("'''@nni.nope()'''\n")
    with pytest.raises(AnnotationError):
        expand_annotations(code, tmp_path / "copy")
    assert not (tmp_path / "copy").exists() and list(tmp_path.iterdir()) == [code]


def test_prepare_keeps_a_copy_made_for_the_space_and_refuses_changed_code(code: Path, tmp_path: Path) -> None:
    space = generate_search_space(code)
    copy = prepare_trial_code(code, tmp_path / "copy", space)
    (copy / "kept.txt").write_text("still here")
    (code / "main.py").write_text(MAIN.replace("0.01", "0.5"))
    assert prepare_trial_code(code, tmp_path / "copy", space) == copy  # kept: not made again
    assert (copy / "kept.txt").exists()
    with pytest.raises(ConfigError, match=r"now give the search space .*0\.5.*, not the experiment's"):
        prepare_trial_code(code, tmp_path / "other", space)


# --- the experiment config -------------------------------------------------------------------------------------


def _config(folder: Path, **raw: object) -> Path:
    data = {
        "trialCommand": "python main.py",
        "trialCodeDirectory": ".",
        "trialConcurrency": 1,
        "useAnnotation": True,
        **raw,
    }
    path = folder / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_config_file_generates_the_space(code: Path) -> None:
    cfg = ExperimentConfig.load(_config(code))
    assert cfg.use_annotation and sorted(cfg.search_space) == [
        "main/lr/choice",
        "models.blocks.layer/depth/randint",
    ]
    assert cfg.to_dict()["useAnnotation"] is True
    again = ExperimentConfig.load(_config(code)).validate()  # validating again generates it again
    assert again.search_space == cfg.search_space


@pytest.mark.parametrize("keys", [("searchSpace",), ("searchSpaceFile",), ("searchSpace", "searchSpaceFile")])
def test_config_refuses_a_search_space_beside_annotations(code: Path, keys: tuple[str, ...]) -> None:
    (code / "space.json").write_text("{}")
    values = {"searchSpace": {"x": {"_type": "choice", "_value": [1]}}, "searchSpaceFile": "space.json"}
    raw = {k: values[k] for k in keys}
    if len(keys) == 2:  # both at once is refused for annotations first
        pattern = r"'useAnnotation': .*so searchSpace and searchSpaceFile must not be given with it"
    else:
        pattern = rf"'useAnnotation': .*so {keys[0]} must not be given with it; remove {keys[0]}"
    with pytest.raises(ConfigError, match=pattern):
        ExperimentConfig.load(_config(code, **raw))


def test_config_v1_keys(code: Path) -> None:
    v1 = {
        "authorName": "me",
        "trialConcurrency": 1,
        "trainingServicePlatform": "local",
        "useAnnotation": True,
        "trial": {"command": "python main.py", "codeDir": "."},
    }
    (code / "v1.yml").write_text(yaml.safe_dump(v1))
    assert "main/lr/choice" in ExperimentConfig.load(code / "v1.yml").search_space
    (code / "space.json").write_text("{}")
    (code / "v1.yml").write_text(yaml.safe_dump({**v1, "searchSpacePath": "space.json"}))
    with pytest.raises(ConfigError, match=r"searchSpaceFile must not be given"):
        ExperimentConfig.load(code / "v1.yml")


def test_config_error_names_the_file_and_line(code: Path) -> None:
    (code / "main.py").write_text("'''@nni.variable(nni.chioce(1, 2), name=k)'''\nk = 1\n")
    with pytest.raises(
        ConfigError, match=rf"'useAnnotation': {code / 'main.py'}:1: unknown sampling function"
    ):
        ExperimentConfig.load(_config(code))


def test_python_api(code: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(code)
    exp = Experiment("local")
    exp.config.trial_command = "python main.py"
    exp.config.use_annotation = True
    exp.config.validate()
    assert "main/lr/choice" in exp.config.search_space
    keyword = Experiment(trial_command="python main.py", trial_code_directory=code, use_annotation=True)
    assert keyword.config.search_space == exp.config.search_space
    with pytest.raises(ConfigError, match=r"'useAnnotation': .*searchSpace must not be given"):
        Experiment(
            trial_command="python main.py",
            use_annotation=True,
            search_space={"x": {"_type": "choice", "_value": [1]}},
        )
    with pytest.raises(ConfigError, match=r"'useAnnotation': .*a Python function trial"):
        Experiment(trial=lambda p: 0, use_annotation=True)


def test_where_trials_start(code: Path, tmp_path: Path) -> None:
    from nni_pl.experiment._setup import trial_code_directory

    cfg = ExperimentConfig.load(_config(code))
    in_experiment = trial_code_directory(cfg, tmp_path / "exp", "abc")
    assert in_experiment == tmp_path / "exp" / "annotated_code" and (in_experiment / MARKER).exists()
    # before the experiment folder exists (a remote platform's hosts get the code then): a temporary copy
    early = trial_code_directory(cfg, None, "abc")
    assert early.name == "annotated_code" and early.parent.name.startswith("nni-pl-abc-")
    assert "nni_pl.annotation.index('main/lr/choice'" in (early / "main.py").read_text()
    plain = ExperimentConfig.from_dict(
        {"trialCommand": "python main.py", "trialConcurrency": 1}, base_dir=code
    )
    assert trial_code_directory(plain, tmp_path / "exp", "abc") == code
