"""The trial code directory packed for upload: a gzip'd tar that honours ``.nniignore``, within NNI's limits.

Services that run trials elsewhere (SSH hosts, clusters) upload ``trialCodeDirectory`` once per experiment. As
in NNI (docs L641, L2130), what is uploaded is limited to 2000 files and 300 MB (uncompressed), and a
``.nniignore`` file at the top of the directory excludes files with the syntax of ``.gitignore``: blank lines and
``#`` comments are skipped; ``*`` and ``?`` match within one path component, ``[abc]`` one of the characters;
``**/`` matches any number of folders, a trailing ``/**`` everything inside; a trailing ``/`` matches folders
only; a pattern with a ``/`` at its start or in its middle is relative to the code directory, one without matches
at any depth; ``!`` re-includes what an earlier pattern excluded (the last matching pattern decides), except in a
folder that is itself excluded, as in git; ``\\`` escapes a leading ``#`` or ``!`` and trailing spaces. Only the
top-level ``.nniignore`` is read (NNI's rule; nested ones are plain files).

Choices of ours, beyond NNI:

* ``.git`` is left out by default (NNI uploads it): a repository's history is not trial code, it alone often
  passes the 2000-file limit, and ``.git/config`` may hold credentials. A ``!.git`` line in ``.nniignore``
  brings it back.
* Symbolic links are stored as links (their target is not followed, and not uploaded unless it is itself in the
  directory); a link to an absolute path points to that path on the host. Sockets, FIFOs and devices are skipped.
* Folders come with the files in them; an empty folder is kept as such (one that only ``.nniignore`` emptied is
  not).
* The archive is the same bytes for the same tree: entries in sorted order, owner ids and names blanked, file
  modification times kept (whole seconds), no timestamp in the gzip header. Its :attr:`CodeArchive.sha256` lets a
  host that has the code already skip the upload.
* The limits can be changed with the environment variables ``NNI_PL_MAX_CODE_FILES`` and ``NNI_PL_MAX_CODE_BYTES``.

Example:
    >>> import tempfile
    >>> code = Path(tempfile.mkdtemp())
    >>> _ = (code / "train.py").write_text("print('hi')\\n")
    >>> (code / "data").mkdir(); _ = (code / "data" / "big.bin").write_bytes(b"0" * 1000)
    >>> _ = (code / ".nniignore").write_text("# datasets are fetched by the trial\\ndata/\\n")
    >>> archive = pack_code_directory(code)
    >>> archive.files, archive.bytes
    (2, 54)
    >>> sorted(tarfile.open(archive.path).getnames())
    ['.nniignore', 'train.py']
    >>> again = pack_code_directory(code)
    >>> again.sha256 == archive.sha256
    True
    >>> archive.path.unlink(); again.path.unlink()
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nni_pl.errors import ConfigError

__all__ = [
    "ENV_MAX_CODE_BYTES",
    "ENV_MAX_CODE_FILES",
    "IGNORE_FILE",
    "MAX_CODE_BYTES",
    "MAX_CODE_FILES",
    "CodeArchive",
    "IgnoreRules",
    "pack_code_directory",
]

logger = logging.getLogger(__name__)

MAX_CODE_FILES = 2000  # NNI's limits on an uploaded code directory
MAX_CODE_BYTES = 300 * 1024 * 1024
ENV_MAX_CODE_FILES = "NNI_PL_MAX_CODE_FILES"
ENV_MAX_CODE_BYTES = "NNI_PL_MAX_CODE_BYTES"
IGNORE_FILE = ".nniignore"
DEFAULT_IGNORE = (".git",)  # read before .nniignore, which may re-include it with `!.git`
FIELD = "trialCodeDirectory"


@dataclass(frozen=True)
class CodeArchive:
    """A packed code directory.

    Attributes:
        path: the ``.tar.gz`` file.
        sha256: hex digest of that file (the same tree gives the same digest).
        files: how many files (and links) it holds.
        bytes: their total size, uncompressed.
    """

    path: Path
    sha256: str
    files: int
    bytes: int


# --- .nniignore -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    negated: bool
    dir_only: bool
    text: str


class IgnoreRules:
    """gitignore-style patterns (see the module docstring), matched against ``/``-separated relative paths.

    Example:
        >>> rules = IgnoreRules(["*.log", "!keep.log", "/build/", "docs/**/*.png"])
        >>> [rules.ignored(p) for p in ("a.log", "sub/keep.log", "build", "src/build", "docs/x/y/z.png")]
        [True, False, False, False, True]
        >>> rules.ignored("build", is_dir=True), rules.ignored("src/build", is_dir=True)
        (True, False)
    """

    def __init__(self, lines: Iterable[str]) -> None:
        self.patterns = [p for p in (_parse(line) for line in lines) if p is not None]

    @classmethod
    def for_directory(cls, directory: Path) -> IgnoreRules:
        """The default rules (``.git``) followed by ``directory/.nniignore``, if it exists."""
        lines = list(DEFAULT_IGNORE)
        path = directory / IGNORE_FILE
        if path.is_file():
            try:
                lines += path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
            except OSError as e:
                raise ConfigError(FIELD, f"cannot read {str(path)!r}: {e.strerror or e}") from e
        return cls(lines)

    def ignored(self, path: str, is_dir: bool = False) -> bool:
        """Whether ``path`` (relative, ``/``-separated) is excluded: the last pattern that matches it decides."""
        result = False
        for pattern in self.patterns:
            if pattern.dir_only and not is_dir:
                continue
            if pattern.regex.fullmatch(path):
                result = not pattern.negated
        return result


def _parse(line: str) -> _Pattern | None:
    text = line.rstrip("\r\n")
    # trailing spaces are dropped unless escaped with a backslash
    stripped = text.rstrip(" ")
    if stripped.endswith("\\") and len(stripped) < len(text):
        stripped += " "
    text = stripped
    if not text or text.startswith("#"):
        return None
    negated = text.startswith("!")
    if negated:
        text = text[1:]
    elif text.startswith(("\\!", "\\#")):
        text = text[1:]
    dir_only = text.endswith("/")
    body = text.rstrip("/") if dir_only else text
    if not body:
        return None
    anchored = "/" in body
    body = body.lstrip("/")
    if not body:
        return None
    regex = _translate(body)
    if not anchored:
        regex = "(?:.*/)?" + regex
    return _Pattern(re.compile(regex, re.DOTALL), negated, dir_only, line)


def _translate(pattern: str) -> str:
    """A gitignore glob (without its leading ``/``, trailing ``/`` and ``!``) as a regular expression."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            whole = (i == 0 or pattern[i - 1] == "/") and j - i == 2 and (j == n or pattern[j] == "/")
            if whole and j == n:
                out.append(".*")  # trailing /**: everything inside
            elif whole:
                out.append("(?:.*/)?")  # **/: zero or more folders
                j += 1
            else:
                out.append("[^/]*")
            i = j
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal "["
                out.append(re.escape(c))
                i += 1
                continue
            inner = pattern[i + 1 : j]
            if inner[:1] in ("!", "^"):
                inner = "^" + inner[1:]
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = j + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


# --- packing ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    rel: str
    kind: str  # "file", "link" or "dir" (an empty folder)
    size: int


def _limit(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError("", f"environment variable {name}: got {text!r}; give a whole number of at least 1")
    return value


def _scan(root: Path, rules: IgnoreRules, skip: set[str]) -> list[_Entry]:
    """Every file, link and empty folder under ``root`` that the rules keep, sorted by path (a folder that only
    the rules emptied is left out, as git would)."""
    entries: list[_Entry] = []
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        folder = root / rel_dir if rel_dir else root
        try:
            with os.scandir(folder) as it:
                items = list(it)
        except OSError as e:
            raise ConfigError(
                FIELD,
                f"cannot read {str(folder)!r}: {e.strerror or e}; make it readable or add it to {IGNORE_FILE}",
            ) from e
        if not items and rel_dir:
            entries.append(_Entry(rel_dir, "dir", 0))
        for item in items:
            if item.path in skip:
                continue
            rel = f"{rel_dir}/{item.name}" if rel_dir else item.name
            is_dir = item.is_dir(follow_symlinks=False)
            if rules.ignored(rel, is_dir):
                continue
            if is_dir:
                pending.append(rel)
            elif item.is_symlink():
                entries.append(_Entry(rel, "link", 0))
            elif item.is_file(follow_symlinks=False):
                entries.append(_Entry(rel, "file", item.stat(follow_symlinks=False).st_size))
            else:
                logger.debug("not packed (not a file, folder or link): %s", item.path)
    entries.sort(key=lambda e: e.rel)
    return entries


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} bytes"


def _too_big(
    directory: Path, entries: list[_Entry], files: int, total: int, max_files: int, max_bytes: int
) -> str:
    """The message for a directory over the limits, naming what to leave out."""
    by_count = files > max_files
    found = f"{files} files" if by_count else _size(total)
    limit = f"{max_files} files" if by_count else f"{_size(max_bytes)} in all"
    per_folder: dict[str, list[int]] = {}
    for e in entries:
        if "/" in e.rel and e.kind != "dir":
            count_size = per_folder.setdefault(e.rel.split("/", 1)[0], [0, 0])
            count_size[0] += 1
            count_size[1] += e.size
    rank = 0 if by_count else 1
    biggest = sorted(per_folder.items(), key=lambda kv: (-kv[1][rank], kv[0]))[:3]
    if biggest:
        where = "the largest folders: " + ", ".join(
            f"{name}/ ({c} files, {_size(s)})" for name, (c, s) in biggest
        )
        example = biggest[0][0] + "/"
    else:
        largest = sorted((e for e in entries if e.kind == "file"), key=lambda e: (-e.size, e.rel))[:3]
        where = "the largest files: " + ", ".join(f"{e.rel} ({_size(e.size)})" for e in largest)
        example = largest[0].rel if largest else "data/"
    return (
        f"{str(directory)!r} holds {found} (after {IGNORE_FILE}), more than the {limit} a remote training service "
        f"uploads; {where}; add them to {str(directory / IGNORE_FILE)!r} (gitignore syntax, e.g. a line "
        f"`{example}`) and let the trial fetch large data itself, or raise "
        f"{ENV_MAX_CODE_FILES if by_count else ENV_MAX_CODE_BYTES}"
    )


def pack_code_directory(directory: Path, dest: Path | None = None) -> CodeArchive:
    """Pack a trial code directory into a ``.tar.gz`` (see the module docstring for what goes in).

    Args:
        directory: the code directory (``trialCodeDirectory``).
        dest: the archive to write (replaced if it exists; left out of the archive if it lies inside
            ``directory``); default: a new temporary file, which the caller removes.

    Returns:
        The archive: its path, SHA-256, number of files and their total size.

    Raises:
        ConfigError: on ``trialCodeDirectory``: the directory is missing or unreadable, or it holds more files or
            bytes than the limits allow (the message names the largest folders to add to ``.nniignore``).
    """
    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        raise ConfigError(
            FIELD, f"{str(directory)!r} is not a folder; give the folder that holds the trial code"
        )
    max_files = _limit(ENV_MAX_CODE_FILES, MAX_CODE_FILES)
    max_bytes = _limit(ENV_MAX_CODE_BYTES, MAX_CODE_BYTES)
    skip = set()
    if dest is not None:
        dest = Path(dest).expanduser().absolute()
        skip.add(str(dest))
    entries = _scan(directory, IgnoreRules.for_directory(directory), skip)
    files = sum(1 for e in entries if e.kind != "dir")
    total = sum(e.size for e in entries)
    if files > max_files or total > max_bytes:
        raise ConfigError(FIELD, _too_big(directory, entries, files, total, max_files, max_bytes))

    if dest is None:
        fd, name = tempfile.mkstemp(prefix="nni-pl-code-", suffix=".tar.gz")
        target = Path(name)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        target = dest
    try:
        with os.fdopen(fd, "wb") as raw:
            _write(raw, directory, entries)
        digest = hashlib.sha256()
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if Path(name) != target:
            os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return CodeArchive(path=target, sha256=digest.hexdigest(), files=files, bytes=total)


def _write(raw: object, directory: Path, entries: list[_Entry]) -> None:
    # no name and no time in the gzip header: the same tree gives the same bytes
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,  # type: ignore[arg-type]
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT, errors="surrogateescape") as tar,
    ):
        for entry in entries:
            path = directory / entry.rel
            try:
                info = tar.gettarinfo(str(path), arcname=entry.rel)  # lstat: a link stays a link
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = int(info.mtime)
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
            except OSError as e:
                raise ConfigError(
                    FIELD,
                    f"cannot pack {str(path)!r}: {e.strerror or e}; make it readable or add it to {IGNORE_FILE}",
                ) from e
