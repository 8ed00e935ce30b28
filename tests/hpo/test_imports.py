"""The one import-by-path helper (nni_pl/_imports.py): spellings, code directory, and three kinds of failure."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from nni_pl._imports import import_object
from nni_pl.errors import ConfigError
from nni_pl.space import SearchSpace


@pytest.fixture
def code_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder with a package ``imp_pkg`` (a module ``mod`` with a nested class, one that fails to import)."""
    pkg = tmp_path / "imp_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(
        textwrap.dedent(
            """
            class Outer:
                class Inner:
                    value = 3
            def factory():
                return 5
            """
        )
    )
    (pkg / "needs_missing.py").write_text("import imp_pkg_not_installed_xyz\n")
    (pkg / "raises.py").write_text("raise RuntimeError('boom at import')\n")
    yield tmp_path
    for name in [m for m in sys.modules if m == "imp_pkg" or m.startswith("imp_pkg.")]:
        del sys.modules[name]
    while str(tmp_path.resolve()) in sys.path:
        sys.path.remove(str(tmp_path.resolve()))


def test_both_spellings_and_nested_attributes(code_dir: Path) -> None:
    assert import_object("nni_pl.space:SearchSpace") is SearchSpace
    assert import_object("nni_pl.space.SearchSpace") is SearchSpace
    assert import_object("nni_pl.space:SearchSpace.parse") == SearchSpace.parse
    assert (
        import_object("nni_pl.space._space.SearchSpace.parse") == SearchSpace.parse
    )  # module found left to right
    assert import_object("imp_pkg.mod:Outer.Inner", code_directory=code_dir).value == 3
    assert import_object("imp_pkg.mod.Outer.Inner.value") == 3  # the code directory stays on sys.path
    assert import_object("imp_pkg.mod.factory")() == 5


def test_code_directory_is_searched_first_and_named_when_nothing_is_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such module \(searched codeDirectory") as info:
        import_object("imp_pkg_absent.mod:X", "tuner.className", code_directory=tmp_path)
    assert info.value.field == "tuner.className"
    assert sys.path[0] == str(tmp_path.resolve())
    sys.path.remove(str(tmp_path.resolve()))


@pytest.mark.parametrize(
    ("path", "message", "cause"),
    [
        (
            "imp_pkg.nope:X",
            r"cannot import module 'imp_pkg\.nope' of 'imp_pkg\.nope:X': no such module",
            None,
        ),
        ("no_such_top_xyz.mod.X", r"cannot import module 'no_such_top_xyz' .*: no such module", None),
        (
            "imp_pkg.needs_missing:X",
            r"importing it failed with ModuleNotFoundError: .*imp_pkg_not_installed_xyz.*install "
            r"'imp_pkg_not_installed_xyz'",
            ModuleNotFoundError,
        ),
        (
            "imp_pkg.raises.X",
            r"cannot import module 'imp_pkg\.raises' .*RuntimeError: boom at import; fix the module",
            RuntimeError,
        ),
        ("imp_pkg.mod:Outr", r"module 'imp_pkg\.mod' has no class 'Outr' .*\(did you mean 'Outer'\?\)", None),
        ("imp_pkg.mod:Outer.Innr", r"imp_pkg\.mod:Outer has no class 'Innr'", None),
        ("imp_pkg.mod.Outr", r"module 'imp_pkg\.mod' has no class 'Outr'", None),
        ("Outer", r"must read 'package\.module:Name' or 'package\.module\.Name', got 'Outer'", None),
        ("imp_pkg.mod:", r"must read 'package\.module:Name', got 'imp_pkg\.mod:'", None),
        ("a..b", r"must read .*got 'a\.\.b'", None),
    ],
)
def test_errors_tell_apart_missing_module_broken_module_and_missing_attribute(
    code_dir: Path, path: str, message: str, cause: type[BaseException] | None
) -> None:
    with pytest.raises(ConfigError, match=rf"^config field 'strategy\.class': .*{message}") as info:
        import_object(path, "strategy.class", code_directory=code_dir, what="class")
    if cause is None:
        assert info.value.__cause__ is None
    else:
        assert isinstance(info.value.__cause__, cause)  # the module's own error, chained


def test_a_non_string_path_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"'evaluator\.class'.*got 3"):
        import_object(3, "evaluator.class")  # type: ignore[arg-type]
