"""A code directory's annotations: the search space they give, and the rewritten copy that trials run in.

Every ``.py`` file under the directory is read (folders whose name starts with ``.`` and ``__pycache__`` are
skipped, as is an experiment folder inside it); a file's module is its path with dots (``models/cnn.py`` ->
``models.cnn``), as in NNI. The user's directory is never written to.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from nni_pl.annotation._transform import FileAnnotations, transform_source
from nni_pl.errors import ConfigError
from nni_pl.space import SearchSpace

__all__ = ["MARKER", "expand_annotations", "generate_search_space", "prepare_trial_code", "read_annotations"]

#: written into a rewritten copy: the search space it was made for (a kept copy is checked against it)
MARKER = ".nni-pl-annotation.json"
_SKIPPED_DIRS = ("__pycache__",)


def _inside(path: Path, folders: list[Path]) -> bool:
    return any(path == f or path in f.parents for f in folders)


def python_files(code_dir: Path, exclude: Iterable[Path] = ()) -> Iterator[Path]:
    """The ``.py`` files under ``code_dir`` in a stable order, hidden folders and ``exclude`` left out.

    Example:
        >>> import tempfile
        >>> code = Path(tempfile.mkdtemp())
        >>> for name in ("b.py", "a.py", ".venv/x.py", "notes.txt"):
        ...     (code / name).parent.mkdir(exist_ok=True)
        ...     _ = (code / name).write_text("")
        >>> [p.name for p in python_files(code)]
        ['a.py', 'b.py']
    """
    excluded = [Path(p).resolve() for p in exclude]
    for folder, dirs, files in os.walk(code_dir):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in _SKIPPED_DIRS
            and not _inside(Path(folder, d).resolve(), excluded)
        )
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(folder, name)


def module_name(code_dir: Path, path: Path) -> str:
    """NNI's module name of a file: its path inside the code directory, with dots, without ``.py``.

    Example:
        >>> module_name(Path("/code"), Path("/code/models/cnn.py"))
        'models.cnn'
    """
    return ".".join(path.relative_to(code_dir).with_suffix("").parts)


def read_annotations(
    code_dir: str | os.PathLike[str], exclude: Iterable[Path] = ()
) -> dict[Path, FileAnnotations]:
    """Every file's annotations, by path (files without annotations included, with ``code`` ``None``).

    Raises:
        AnnotationError: a file is not valid Python or an annotation is wrong (file and line named).

    Example:
        >>> import tempfile
        >>> code = Path(tempfile.mkdtemp())
        >>> _ = (code / "util.py").write_text("x = 1\\n")
        >>> [(p.name, f.module, f.annotated) for p, f in read_annotations(code).items()]
        [('util.py', 'util', False)]
    """
    root = Path(code_dir)
    out: dict[Path, FileAnnotations] = {}
    for path in python_files(root, exclude):
        out[path] = transform_source(path.read_bytes(), module_name(root, path), path)
    return out


def _space_of(found: dict[Path, FileAnnotations], code_dir: Path) -> SearchSpace:
    entries: dict[str, object] = {}
    for file in found.values():
        entries.update(file.space)
    if not entries:
        raise ConfigError(
            "useAnnotation",
            f"no @nni.variable or @nni.function_choice annotation in the .py files under {str(code_dir)!r}; "
            "annotate the values to tune (e.g. '''@nni.variable(nni.choice(0.1, 0.01), name=lr)''' above "
            "lr = 0.1) or set useAnnotation: false and give a searchSpace",
        )
    return SearchSpace.parse(entries)


def generate_search_space(code_dir: str | os.PathLike[str], exclude: Iterable[Path] = ()) -> SearchSpace:
    """The search space that the annotations under ``code_dir`` give (NNI's ``generate_search_space``).

    Keys are NNI's ``<module>/<name>/<function>``.

    Args:
        code_dir: the trial code directory.
        exclude: folders inside it that are not read (an experiment folder kept there).

    Raises:
        AnnotationError: naming the file and line of a wrong annotation.
        ConfigError: there is no annotation to tune.

    Example:
        >>> import tempfile
        >>> code = Path(tempfile.mkdtemp())
        >>> _ = (code / "train.py").write_text(
        ...     "'''@nni.variable(nni.uniform(0.1, 0.9), name=dropout)'''\\ndropout = 0.5\\n")
        >>> generate_search_space(code).to_json()
        {'train/dropout/uniform': {'_type': 'uniform', '_value': [0.1, 0.9]}}
    """
    root = Path(code_dir)
    return _space_of(read_annotations(root, exclude), root)


def expand_annotations(
    src_dir: str | os.PathLike[str], dst_dir: str | os.PathLike[str], exclude: Iterable[Path] = ()
) -> SearchSpace:
    """Copy ``src_dir`` to ``dst_dir`` (a new folder) with every annotated file rewritten; returns the space.

    The rewritten files import ``nni_pl`` and read the tuned values with :func:`nni_pl.annotation.given`,
    :func:`~nni_pl.annotation.value` and :func:`~nni_pl.annotation.index`; the reports become calls of
    ``nni_pl.report_intermediate_result``/``nni_pl.report_final_result``. Other files are copied as they are
    (``__pycache__`` and ``.git`` are left out). ``dst_dir`` also receives :data:`MARKER`, the space as JSON.

    Raises:
        AnnotationError: naming the file and line of a wrong annotation (nothing is left in ``dst_dir``).
        ConfigError: there is no annotation to tune, or ``dst_dir`` exists.

    Example:
        >>> import tempfile
        >>> work = Path(tempfile.mkdtemp())
        >>> (work / "code").mkdir()
        >>> _ = (work / "code" / "train.py").write_text(
        ...     "'''@nni.variable(nni.randint(1, 4), name=layers)'''\\nlayers = 2\\n")
        >>> expand_annotations(work / "code", work / "copy").to_json()
        {'train/layers/randint': {'_type': 'randint', '_value': [1, 4]}}
        >>> print((work / "copy" / "train.py").read_text(), end="")
        import nni_pl
        import nni_pl.annotation
        layers = nni_pl.annotation.value('train/layers/randint') if nni_pl.annotation.given('train/layers/randint') else 2
    """
    src, dst = Path(src_dir).resolve(), Path(dst_dir).resolve()
    if dst.exists():
        raise ConfigError("useAnnotation", f"the folder for the rewritten code {str(dst)!r} exists already")
    excluded = [Path(p).resolve() for p in exclude] + [dst]
    found = read_annotations(src, excluded)
    space = _space_of(found, src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    try:

        def ignore(folder: str, names: list[str]) -> list[str]:
            return [
                n
                for n in names
                if n in _SKIPPED_DIRS or n == ".git" or _inside(Path(folder, n).resolve(), [*excluded, tmp])
            ]

        shutil.copytree(src, tmp / "code", symlinks=True, ignore=ignore)
        for path, file in found.items():
            if file.code is not None:
                target = tmp / "code" / path.relative_to(src)
                target.unlink()  # a hard or symbolic link must not carry the rewrite back to the user's file
                target.write_text(file.code, encoding="utf-8")
        (tmp / "code" / MARKER).write_text(json.dumps(space.to_json(), indent=2) + "\n")
        os.replace(tmp / "code", dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return space


def prepare_trial_code(
    src_dir: str | os.PathLike[str],
    dst_dir: str | os.PathLike[str],
    space: SearchSpace,
    exclude: Iterable[Path] = (),
) -> Path:
    """The rewritten copy the trials run in: kept when ``dst_dir`` holds one (its :data:`MARKER` written), else made.

    A resumed experiment keeps its copy, so its new trials run the code its first ones ran, whatever happened to
    the user's code since. When the copy is gone it is made again from ``src_dir``, whose annotations must still
    give ``space``.

    Raises:
        ConfigError: the annotations give another space than ``space`` (the code changed since the start).
        AnnotationError: a wrong annotation (file and line named).

    Example:
        >>> import tempfile
        >>> work = Path(tempfile.mkdtemp())
        >>> (work / "code").mkdir()
        >>> _ = (work / "code" / "train.py").write_text("'''@nni.variable(nni.choice(1, 2), name=k)'''\\nk = 1\\n")
        >>> space = generate_search_space(work / "code")
        >>> copy = prepare_trial_code(work / "code", work / "copy", space)
        >>> prepare_trial_code(work / "code", work / "copy", space) == copy   # kept
        True
    """
    dst = Path(dst_dir)
    if (dst / MARKER).is_file():
        return dst
    if dst.exists():  # a copy cut short: made again
        shutil.rmtree(dst)
    made = expand_annotations(src_dir, dst, exclude)
    if made != space:
        shutil.rmtree(dst, ignore_errors=True)
        raise ConfigError(
            "useAnnotation",
            f"the annotations under {str(src_dir)!r} now give the search space {json.dumps(made.to_json())}, "
            f"not the experiment's {json.dumps(space.to_json())}; restore the code it started with, or launch "
            "a new experiment",
        )
    return dst
