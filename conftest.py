"""Docstring examples are tests: pytest collects the doctests of every module under ``nni_pl/``.

``testpaths`` names ``nni_pl`` beside ``tests``, so a plain ``pytest`` (``make test``) runs them; a run of
single test files (``pytest tests/hpo/test_tpe.py``) does not, and ``pytest nni_pl/space`` runs only the
examples there. Only ``nni_pl/`` is collected this way (``--doctest-modules`` would also import every helper
script under ``tests/``). A module that cannot be imported because an optional back end is not installed
(fastapi, tianshou, onnx, ...) is skipped with the missing package as the reason, and so is an example that
stops at such an import or at a :class:`~nni_pl.errors.MissingDependencyError`; any other import error
fails. Each example runs in a fresh temporary working directory with its own ``NNI_PL_HOME``, so nothing
lands in the checkout or in ``~``.
"""

from __future__ import annotations

import doctest
import importlib.util
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from _pytest.doctest import DoctestItem, DoctestModule, MultipleDoctestFailures

_PACKAGE = Path(__file__).resolve().parent / "nni_pl"


def _missing_module(error: BaseException | None) -> str | None:
    """The package an import failed on, when that package is not installed at all (an optional extra).

    A missing submodule of an installed package (``nni_pl.typo``, ``fastapi.typo``) is a bug, not a missing extra.
    """
    if isinstance(error, ModuleNotFoundError) and error.name:
        top = error.name.partition(".")[0]
        return top if importlib.util.find_spec(top) is None else None
    return None


def _missing_extra(error: BaseException) -> str | None:
    """Why an example that raised ``error`` cannot run here, when the cause is an optional package."""
    from nni_pl.errors import MissingDependencyError

    if isinstance(error, MissingDependencyError):
        return str(error)
    missing = _missing_module(error)
    return None if missing is None else f"needs the optional package {missing!r}, which is not installed"


class NniPlDoctestItem(DoctestItem):
    """One docstring's examples; skipped when they stop because an optional package is not installed."""

    def runtest(self) -> None:
        try:
            super().runtest()
        except (doctest.UnexpectedException, MultipleDoctestFailures) as e:
            first = e.failures[0] if isinstance(e, MultipleDoctestFailures) else e
            reason = (
                _missing_extra(first.exc_info[1]) if isinstance(first, doctest.UnexpectedException) else None
            )
            if reason is None:
                raise
            pytest.skip(f"{self.name}: {reason}")


class NniPlDoctests(DoctestModule):
    """The doctests of one ``nni_pl`` module; skipped when the module needs an optional package not installed."""

    def _getobj(self) -> object:
        try:
            return super()._getobj()
        except pytest.Collector.CollectError as e:
            missing = _missing_module(e.__cause__)
            if missing is None:
                raise
            pytest.skip(f"{self.path.name}: needs the optional package {missing!r}, which is not installed")

    def collect(self) -> Iterable[DoctestItem]:
        for item in super().collect():
            yield NniPlDoctestItem.from_parent(self, name=item.name, runner=item.runner, dtest=item.dtest)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".py" or file_path.name == "__main__.py" or _PACKAGE not in file_path.parents:
        return None
    if parent.config.option.doctestmodules:
        return None  # pytest's own doctest collector already takes every module
    return NniPlDoctests.from_parent(parent, path=file_path)


@pytest.fixture(autouse=True)
def _doctest_sandbox(request: pytest.FixtureRequest) -> Iterator[None]:
    """For a docstring example: a temporary working directory, ``NNI_PL_HOME`` and ``NNI_PL_CONFIG_DIR``."""
    if isinstance(request.node, DoctestItem):
        home: Path = request.getfixturevalue("tmp_path")
        monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        monkeypatch.chdir(home)
        monkeypatch.setenv("NNI_PL_HOME", str(home / "experiments"))
        monkeypatch.setenv("NNI_PL_CONFIG_DIR", str(home / "config"))
    yield
