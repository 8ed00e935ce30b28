"""Packing the trial code directory for upload: .nniignore (gitignore syntax), NNI's limits (docs L641, L2130),
links, and the same bytes for the same tree."""

from __future__ import annotations

import os
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from nni_pl.errors import ConfigError
from nni_pl.training.code_archive import (
    ENV_MAX_CODE_BYTES,
    ENV_MAX_CODE_FILES,
    MAX_CODE_BYTES,
    MAX_CODE_FILES,
    IgnoreRules,
    pack_code_directory,
)


@pytest.fixture(autouse=True)
def _temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Archives written without a destination go to the temporary folder: this test's."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def _names(archive_path: Path) -> list[str]:
    with tarfile.open(archive_path) as tar:
        return sorted(m.name for m in tar.getmembers())


def _packed(tmp_path: Path, files: dict[str, str | bytes], ignore: str | None = None) -> list[str]:
    code = _tree(tmp_path / "code", files)
    if ignore is not None:
        (code / ".nniignore").write_text(ignore)
    archive = pack_code_directory(code, tmp_path / "out" / "code.tar.gz")
    return [n for n in _names(archive.path) if n != ".nniignore"]


# --- .nniignore -----------------------------------------------------------------------------------------------------------


def test_nniignore_comments_blank_lines_and_globs(tmp_path):
    files = {
        "train.py": "",
        "a.log": "",
        "sub/b.log": "",
        "notes.txt": "",
        "x1.py": "",
        "x22.py": "",
        "#hash": "",
    }
    ignore = "# logs\n\n*.log\nx?.py\n\\#hash\n"
    assert _packed(tmp_path, files, ignore) == ["notes.txt", "train.py", "x22.py"]


def test_nniignore_negation_re_includes_unless_the_folder_is_excluded(tmp_path):
    files = {
        "a.log": "",
        "keep.log": "",
        "data/x.bin": "",
        "data/keep.txt": "",
        "out/y": "",
        "out/keep.txt": "",
    }
    ignore = "*.log\n!keep.log\ndata/\n!data/keep.txt\nout/*\n!out/keep.txt\n"
    # as in git: a file in an excluded folder cannot be re-included; `out/*` excludes the files, not the folder
    assert _packed(tmp_path, files, ignore) == ["keep.log", "out/keep.txt"]


def test_nniignore_anchoring_and_folder_only_patterns(tmp_path):
    files = {
        "build/a.o": "",
        "src/build/b.o": "",
        "cache": "a file named like a folder pattern",
        "src/cache/c": "",
        "docs/img.png": "",
        "docs/deep/er/img.png": "",
        "other/img.png": "",
        "logs/2024/run/x.txt": "",
    }
    ignore = "/build\ncache/\ndocs/**/*.png\nlogs/**\n"
    assert _packed(tmp_path, files, ignore) == ["cache", "other/img.png", "src/build/b.o"]


def test_ignore_rules_match_like_gitignore():
    rules = IgnoreRules(["**/tmp", "a/**/b", "lib/*.so", "[Tt]est?.py", "name\\ ", "!important.so"])
    cases = {
        ("tmp", True): True,
        ("x/y/tmp", False): True,
        ("a/b", False): True,
        ("a/x/y/b", False): True,
        ("xa/b", False): False,
        ("lib/m.so", False): True,
        ("lib/sub/m.so", False): False,  # * does not cross a /
        ("Test1.py", False): True,
        ("test12.py", False): False,
        ("name ", False): True,
        ("name", False): False,
    }
    assert {case: rules.ignored(*case) for case in cases} == cases
    assert not IgnoreRules(["lib/*.so", "!lib/important.so"]).ignored("lib/important.so")


def test_git_is_left_out_unless_re_included(tmp_path):
    files = {".git/HEAD": "ref", ".git/objects/ab/cd": "x", "train.py": ""}
    assert _packed(tmp_path / "a", files) == ["train.py"]
    assert _packed(tmp_path / "b", files, "!.git\n") == [".git/HEAD", ".git/objects/ab/cd", "train.py"]


def test_empty_folders_are_kept_and_the_archive_itself_is_not_packed(tmp_path):
    code = _tree(tmp_path / "code", {"train.py": ""})
    (code / "outputs").mkdir()
    first = pack_code_directory(code, code / "code.tar.gz")
    second = pack_code_directory(code, code / "code.tar.gz")  # the first archive is inside: still left out
    assert _names(second.path) == ["outputs", "train.py"]
    assert first.sha256 == second.sha256 and second.files == 1


# --- limits ---------------------------------------------------------------------------------------------------------------


def test_nni_s_limits_are_the_defaults():
    assert (MAX_CODE_FILES, MAX_CODE_BYTES) == (2000, 300 * 1024 * 1024)


def test_too_many_files_names_the_count_the_limit_the_biggest_folders_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_MAX_CODE_FILES, "5")
    code = _tree(
        tmp_path / "code",
        {"train.py": "", **{f"data/{i}.csv": "1" for i in range(4)}, **{f"ckpt/{i}": "" for i in range(2)}},
    )
    with pytest.raises(ConfigError) as info:
        pack_code_directory(code)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        f"config field 'trialCodeDirectory': '{code}' holds 7 files (after .nniignore), more than the 5 files a "
        "remote training service uploads; the largest folders: data/ (4 files, 4 bytes), ckpt/ (2 files, 0 bytes); "
        f"add them to '{code}/.nniignore' (gitignore syntax, e.g. a line `data/`)"
    )
    assert message.endswith(f"or raise {ENV_MAX_CODE_FILES}")
    (code / ".nniignore").write_text("data/\n")
    assert pack_code_directory(code).files == 4  # train.py, .nniignore, ckpt/0, ckpt/1


def test_too_many_bytes_names_the_size_and_the_largest(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_MAX_CODE_BYTES, "2048")
    code = _tree(tmp_path / "code", {"train.py": "x", "models/big.pt": b"0" * 3000, "small/a": "y"})
    with pytest.raises(ConfigError) as info:
        pack_code_directory(code)
    message = str(info.value)
    assert f"'{code}' holds 2.9 KB (after .nniignore), more than the 2.0 KB in all" in message
    assert "the largest folders: models/ (1 files, 2.9 KB), small/ (1 files, 1 bytes)" in message
    assert message.endswith(f"or raise {ENV_MAX_CODE_BYTES}")
    flat = _tree(tmp_path / "flat", {"weights.bin": b"0" * 3000})
    with pytest.raises(
        ConfigError, match=r"the largest files: weights.bin \(2.9 KB\); .*e.g. a line `weights.bin`"
    ):
        pack_code_directory(flat)


def test_a_bad_limit_variable_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_MAX_CODE_FILES, "lots")
    with pytest.raises(
        ConfigError, match=rf"^environment variable {ENV_MAX_CODE_FILES}: got 'lots'; give a whole number"
    ):
        pack_code_directory(_tree(tmp_path / "code", {"t.py": ""}))


def test_a_missing_directory_is_an_error_naming_it(tmp_path):
    with pytest.raises(
        ConfigError, match=rf"^config field 'trialCodeDirectory': '{tmp_path}/nope' is not a folder"
    ):
        pack_code_directory(tmp_path / "nope")


# --- links and determinism ------------------------------------------------------------------------------------------------


def test_links_are_stored_as_links_not_followed(tmp_path):
    outside = _tree(tmp_path / "outside", {"secret.txt": "not for upload"})
    code = _tree(tmp_path / "code", {"train.py": "", "lib/util.py": ""})
    (code / "util_link.py").symlink_to("lib/util.py")
    (code / "lib_link").symlink_to("lib")
    (code / "away").symlink_to(outside)
    archive = pack_code_directory(code)
    with tarfile.open(archive.path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["util_link.py"].issym() and members["util_link.py"].linkname == "lib/util.py"
        assert members["lib_link"].issym() and members["away"].issym()
        assert "away/secret.txt" not in members and "lib_link/util.py" not in members
        data = b"".join(tar.extractfile(m).read() for m in members.values() if m.isreg())
    assert b"not for upload" not in data
    assert archive.files == 5  # two files, three links


def test_the_same_tree_gives_the_same_archive(tmp_path, monkeypatch):
    files = {"train.py": "print(1)\n", "pkg/__init__.py": "", "pkg/mod.py": "x = 1\n", "data/a.csv": "1,2\n"}
    one = _tree(tmp_path / "one", files)
    two = _tree(tmp_path / "two", dict(reversed(files.items())))  # other creation order, other folder
    for root in (one, two):
        for path in root.rglob("*"):
            os.utime(path, (1_700_000_000, 1_700_000_000))
    a = pack_code_directory(one)
    with monkeypatch.context() as later:  # packed at another time: nothing in the archive says when
        later.setattr(time, "time", lambda: 2_000_000_000.0)
        b = pack_code_directory(two)
    assert (
        a.path.parent == b.path.parent == tmp_path / "tmp" and a.path != b.path
    )  # no destination: a new file
    assert a.sha256 == b.sha256 and a.path.read_bytes() == b.path.read_bytes()
    with tarfile.open(a.path) as tar:  # in sorted order, whatever order the folder lists them in
        assert tar.getnames() == ["data/a.csv", "pkg/__init__.py", "pkg/mod.py", "train.py"]
    with tarfile.open(a.path) as tar:
        assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in tar.getmembers()} == {
            (0, 0, "", "", 1_700_000_000)
        }
    (two / "pkg" / "mod.py").write_text("x = 2\n")
    os.utime(two / "pkg" / "mod.py", (1_700_000_000, 1_700_000_000))
    assert pack_code_directory(two).sha256 != a.sha256  # the content changed
    assert a.files == 4 and a.bytes == sum(len(v) for v in files.values())
