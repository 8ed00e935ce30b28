"""The docstring examples of ``nni_pl/`` are part of the suite (collected by the repository's ``conftest.py``)."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_pytest(*args: str, block: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``pytest ARGS`` in the repository, in a fresh interpreter where the modules ``block`` cannot be imported."""
    code = (
        "import sys\n"
        f"for name in {list(block)!r}:\n"
        "    sys.modules[name] = None  # import fails with ModuleNotFoundError, as when it is not installed\n"
        "import pytest\n"
        f"sys.exit(pytest.main({['-q', '-ra', '-p', 'no:cacheprovider', *args]!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def test_doctests_collect_from_nni_pl_and_the_default_run_includes_them(pytestconfig: pytest.Config) -> None:
    assert "nni_pl" in pytestconfig.getini("testpaths")  # a plain `pytest` (make test) collects the examples
    proc = run_pytest("--collect-only", "nni_pl/space")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nni_pl/space/_params.py::nni_pl.space._params.Choice" in proc.stdout
    assert "nni_pl/space/__init__.py::nni_pl.space" in proc.stdout


def test_a_single_test_file_collects_no_doctests() -> None:
    proc = run_pytest("--collect-only", "tests/space/test_parse.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert collected and all(line.startswith("tests/space/test_parse.py::") for line in collected)


def test_examples_needing_a_missing_extra_are_skipped_with_its_name() -> None:
    # app.py imports FastAPI at the top (its module is skipped); _limits.py imports it inside its example
    proc = run_pytest("nni_pl/webui/app.py", "nni_pl/webui/_limits.py", block=("fastapi",))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "app.py: needs the optional package 'fastapi', which is not installed" in out
    assert (
        "nni_pl.webui._limits.BodyLimit: needs the optional package 'fastapi', which is not installed" in out
    )
    assert "2 skipped" in out


def test_a_missing_module_of_an_installed_package_still_fails() -> None:
    # fastapi is installed, so a missing fastapi.testclient breaks the example (it is no missing extra); a
    # missing module of nni_pl breaks the collection of every module that imports it
    proc = run_pytest(
        "--continue-on-collection-errors",
        "nni_pl/webui/_limits.py",
        "nni_pl/space/_params.py",
        block=("fastapi.testclient", "nni_pl.space._space"),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 failed" in out and "1 error" in out and "skipped" not in out, out
    assert "FAILED nni_pl/webui/_limits.py::nni_pl.webui._limits.BodyLimit" in out
    assert "ERROR nni_pl/space/_params.py" in out


def test_masks_example_holds_whatever_the_random_weights() -> None:
    torch = pytest.importorskip("torch")
    from nni_pl.compression.pruning import masks

    signs = []
    for seed in range(8):
        torch.manual_seed(seed)
        signs.append(float(torch.nn.Linear(2, 2).weight[0, 1].detach()) < 0)  # the weight the example masks
        torch.manual_seed(seed)
        result = doctest.testmod(masks, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, f"seed {seed}"
    assert any(signs) and not all(signs)  # a masked negative weight is -0.0: the example must not print it
