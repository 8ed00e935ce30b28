"""Packing an experiment into one file and unpacking it elsewhere (``nni-pl experiment save`` / ``load``).

The archive (``nni_experiment_<id>.tar.gz``) holds:

* ``nni-pl-experiment.json``: the experiment's store rows (experiment, trials, metrics), exported from
  whatever store it lives in, so an experiment of a shared PostgreSQL/MySQL store moves as well as one in
  its own SQLite file;
* ``experiment/``: its folder (trial folders with parameters, metrics, outputs and checkpoints; logs), without
  the SQLite store and ``config.yml``, which are rebuilt from the rows (the store URL's password is not kept);
* ``code/``: the trial code folder, with ``--saveCodeDir``.

Loading rebuilds the rows in the experiment's own SQLite store (or ``--store URL``) with every path moved to
the new folder, and indexes it, so ``list``, ``show``, ``export``, ``view`` and ``resume`` work there.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nni_pl.errors import NniPlError

__all__ = ["ARCHIVE_MANIFEST", "load", "save"]

ARCHIVE_MANIFEST = "nni-pl-experiment.json"
FORMAT = "nni-pl-experiment"
VERSION = 1
# never packed: the store and config.yml (both rebuilt from the rows at load; config.yml holds the store URL with
# its password), the manager's lock and the running dashboard's address
_SKIPPED = {
    "store.sqlite",
    "store.sqlite-wal",
    "store.sqlite-shm",
    "config.yml",
    ".manager.lock",
    "webui.json",
    "webui.tmp",
}
_SKIPPED_CODE = {".git", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


def archive_name(experiment_id: str) -> str:
    return f"nni_experiment_{experiment_id}.tar.gz"


def save(loc: Any, folder: Path, *, save_code: bool) -> Path:
    """Write ``folder/nni_experiment_<id>.tar.gz`` for a located experiment that no manager runs.

    Raises:
        NniPlError: the experiment runs, the folder is missing, or the archive already exists.
    """
    from nni_pl.experiment import locate
    from nni_pl.experiment import store as st

    exp = loc.experiment
    if exp.status == st.EXP_RUNNING and locate.manager_alive(exp):
        raise NniPlError(
            f"experiment {exp.id} is running; stop it first (`nni-pl stop {exp.id}`), then save it"
        )
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise NniPlError(f"--path {str(folder)!r} is not a folder; give an existing folder for the archive")
    target = folder / archive_name(exp.id)
    if target.exists():
        raise NniPlError(f"{target} already exists; remove it or give another --path")
    directory = Path(exp.directory)
    code = Path(exp.config.get("trialCodeDirectory") or "")
    if save_code and not (exp.config.get("trialCodeDirectory") and code.is_dir()):
        raise NniPlError(f"the trial code folder {str(code)!r} of experiment {exp.id} is not on this machine")
    rows = loc.store.export_experiment(exp.id)
    stored = rows["experiment"]["config"]
    if stored.get("storeUrl"):  # only where the rows were; loading puts them elsewhere: keep no password
        stored["storeUrl"] = st.redact_url(str(stored["storeUrl"]))
    manifest = {"format": FORMAT, "version": VERSION, "saved_at": time.time(), "has_code": save_code, **rows}
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            data = json.dumps(manifest).encode("utf-8")
            info = tarfile.TarInfo(ARCHIVE_MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(data))
            if directory.is_dir():
                tar.add(directory, arcname="experiment", filter=_skip(_SKIPPED, top=True))
            if save_code:
                # not the experiments (when they live inside the code folder), nor this archive itself
                inside = [_relative(p, code) for p in (directory.parent, tmp)]
                tar.add(
                    code, arcname="code", filter=_skip(_SKIPPED_CODE, exclude=tuple(i for i in inside if i))
                )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _relative(path: Path, base: Path) -> str | None:
    """``path`` under ``base`` as an archive name below ``code/`` (the experiments folder inside the code)."""
    try:
        rel = path.resolve().relative_to(base.resolve())
    except ValueError:
        return None
    return f"code/{rel.as_posix()}" if rel.parts else "code"


def _skip(names: set[str], *, top: bool = False, exclude: tuple[str, ...] = ()) -> Any:
    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = info.name.split("/")
        if any(info.name == x or info.name.startswith(x + "/") for x in exclude):
            return None
        if top:
            return None if len(parts) == 2 and parts[1] in names else info
        return None if any(p in names for p in parts[1:]) else info

    return keep


def read_manifest(archive: Path) -> dict[str, Any]:
    try:
        with tarfile.open(archive, "r:*") as tar:
            member = tar.extractfile(ARCHIVE_MANIFEST)
            assert member is not None
            manifest = json.loads(member.read().decode("utf-8"))
    except (tarfile.TarError, KeyError, AssertionError, ValueError, EOFError, OSError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NniPlError(
            f"{archive} is not an experiment saved by `nni-pl experiment save` ({why})"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise NniPlError(f"{archive} is not an experiment saved by `nni-pl experiment save`")
    if manifest.get("version", 0) > VERSION:
        raise NniPlError(
            f"{archive} was saved by a newer nni-pl (format {manifest['version']}); upgrade to load it"
        )
    return manifest


@contextlib.contextmanager
def _unpacked(archive: Path, into: Path) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix=".load-", dir=into))
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(tmp, filter="data")  # no absolute paths, no "..", no devices: an archive is input
        yield tmp
    except (tarfile.TarError, OSError) as e:
        raise NniPlError(f"cannot unpack {archive}: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load(
    archive: Path,
    *,
    experiments_folder: Path,
    code_dir: Path | None = None,
    search_space_path: Path | None = None,
    store_url: str | None = None,
) -> tuple[Any, list[str]]:
    """Unpack an archive as an experiment of this machine; returns its located row and notes for the user.

    Raises:
        NniPlError: the archive is not one, the id exists here already, or a path is unusable.
    """
    from nni_pl._files import dump_yaml
    from nni_pl.experiment import locate
    from nni_pl.experiment import store as st

    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise NniPlError(f"--path {str(archive)!r}: no such archive file")
    manifest = read_manifest(archive)
    exp_row = dict(manifest["experiment"])
    exp_id = str(exp_row["id"])
    experiments_folder = Path(experiments_folder).expanduser().resolve()
    if not experiments_folder.is_dir():
        raise NniPlError(
            f"the experiments folder {str(experiments_folder)!r} does not exist; create it first"
        )
    known = locate.is_known(exp_id)
    directory = experiments_folder / exp_id
    if known is not None or directory.exists():
        raise NniPlError(
            f"experiment {exp_id} already exists here ({known or directory}); "
            f"delete it first (`nni-pl experiment delete {exp_id}`) to load this copy"
        )
    if search_space_path is not None and (search_space_path.exists() or search_space_path.is_dir()):
        raise NniPlError(f"--searchSpacePath {str(search_space_path)!r} exists; give a new file name")
    if code_dir is not None and not code_dir.is_dir():
        raise NniPlError(f"--codeDir {str(code_dir)!r} is not a folder; create it first")
    notes: list[str] = []
    old_directory = str(exp_row.get("directory") or "")
    config = dict(exp_row.get("config") or {})
    with _unpacked(archive, experiments_folder) as tmp:
        (tmp / "experiment").mkdir(exist_ok=True)
        shutil.move(str(tmp / "experiment"), directory)
        try:
            if (tmp / "code").is_dir():
                target = code_dir or directory / "code"
                target.mkdir(parents=True, exist_ok=True)
                for item in sorted((tmp / "code").iterdir()):
                    dest = target / item.name
                    if dest.exists():
                        notes.append(f"kept {dest} (exists); the saved copy was not unpacked over it")
                        continue
                    shutil.move(str(item), dest)
                config["trialCodeDirectory"] = str(target.resolve())
            elif code_dir is not None:
                config["trialCodeDirectory"] = str(code_dir.resolve())
            elif config.get("trialCommand") and not Path(config.get("trialCodeDirectory") or "").is_dir():
                notes.append(
                    f"its trial code folder {config.get('trialCodeDirectory')!r} is not on this machine: "
                    "load again with --codeDir DIR (or save with --saveCodeDir) before resuming it"
                )
            config["experimentWorkingDirectory"] = str(experiments_folder)
            if store_url:
                config["storeUrl"] = store_url
            else:
                config.pop("storeUrl", None)
            exp_row.update(
                config=config,
                directory=str(directory),
                manager_pid=None,
                manager_host=None,
                manager_started_at=None,
                port=None,
            )
            trials = []
            for t in manifest["trials"]:
                t = dict(t)
                t["trial_dir"] = _moved(str(t.get("trial_dir") or ""), old_directory, directory)
                trials.append(t)
            url = store_url or st.sqlite_url(directory / "store.sqlite")
            store = st.Store(url)
            try:
                store.import_experiment(
                    {"experiment": exp_row, "trials": trials, "metrics": manifest["metrics"]}
                )
            except Exception:
                store.close()
                raise
            (directory / "config.yml").write_text(
                dump_yaml({k: v for k, v in config.items() if k != "searchSpace"}), encoding="utf-8"
            )
            if search_space_path is not None:
                search_space_path.parent.mkdir(parents=True, exist_ok=True)
                search_space_path.write_text(
                    json.dumps(config.get("searchSpace") or {}, indent=2), encoding="utf-8"
                )
            locate.register(exp_id, directory, url)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
    return locate.Located(store, store.get_experiment(exp_id)), notes


def _moved(path: str, old: str, new: Path) -> str:
    """A path inside the saved experiment folder, moved to the loaded one."""
    if old and (path == old or path.startswith(old.rstrip("/") + "/")):
        return str(new / Path(path).relative_to(old))
    return path
