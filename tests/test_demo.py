"""`make demo` runs examples/hpo_digits/demo.py: its imports must resolve (a renamed module once broke it silently,
since `make test` never ran the demo). The run itself is the demo; here it is imported as a module only."""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "examples" / "hpo_digits" / "demo.py"


def test_make_demo_script_imports_and_its_config_loads() -> None:
    spec = importlib.util.spec_from_file_location("hpo_digits_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # runs the imports, not the __main__ block
    assert callable(module.main) and callable(module.locate.iter_experiments)

    from nni_pl.experiment.config import ExperimentConfig

    config = ExperimentConfig.load(DEMO.with_name("config.yml"))
    assert config.max_trial_number == 10 and config.trial_command
