"""Writing outputs so that nothing is half-written and nothing dlcv did not write is ever replaced or deleted.

Files go to a temporary name, are renamed into place and marked (``user.dlcv``); a folder a command fills carries a
manifest, ``.dlcv-output``, and only a folder with one is replaced."""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from dlcv import __version__
from dlcv.errors import DlcvError
from dlcv.files import (
    MANIFEST,
    atomic_path,
    atomic_write,
    check_not_an_input,
    check_not_special,
    check_output_path,
    check_parent,
    current_umask,
    read_manifest,
    resolved_path,
    write_error,
    written_by_dlcv,
)
from dlcv.runtime import is_primary_process

FIGURES = "set of figures"  # the manifest kind of a folder that figures are added to file by file
STAGING, OLD = "dlcv-staging", "dlcv-old"  # ``.NAME.STAGING-PID`` is filled, ``.NAME.OLD-PID`` is being removed
LOOSE_KINDS = ("demo", FIGURES)  # folders of dlcv's that take files one by one: a named output may go in them

PathLike = str | os.PathLike
# What a write into a folder meets that the checks before it cannot foresee: full disk or quota, ``ulimit -f``,
# a read-only or locked-down folder, a failing device.
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


def check_output_file(path: PathLike, overwrite: bool = False, inputs: Iterable[PathLike | None] = ()) -> Path:
    """Check an output file a user names: ``check_output_path``; not inside a folder dlcv writes whole; an existing
    file replaced only when dlcv wrote it (its mark) or with ``overwrite``."""
    path = check_output_path(path, inputs)
    for folder in resolved_path(path).parents:  # resolved: a run reached through a link is that run
        kind = (read_manifest(folder) or {}).get("kind")
        if kind is not None and kind not in LOOSE_KINDS:
            raise DlcvError(f"{path}: lies inside the {kind} {folder}, which dlcv writes whole; write it elsewhere")
    if path.exists() and not overwrite and not written_by_dlcv(path):
        raise DlcvError(f"{path}: exists and dlcv did not write it; pass --overwrite to replace it, or choose "
                        "another name")
    return path


# --- output folders ------------------------------------------------------------------------------------
def mark_folder(folder: PathLike, kind: str, files: list[str] | None = None) -> None:
    """Write the manifest that lets a later command replace ``folder`` (``files``: those dlcv put in it, so that a
    replacement keeps any other)."""
    extra = {} if files is None else {"files": files}
    write_json(Path(folder) / MANIFEST, {"kind": kind, "dlcv": __version__,
                                         "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}, indent=None)


def listed_files(folder: Path) -> list[str]:
    """Every file below ``folder`` (its manifest aside), as sorted relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if not p.is_dir() and p.name != MANIFEST)


def foreign_files(folder: Path) -> list[str]:
    """The files of a dlcv folder that its manifest does not list, added by others (none if it lists no files)."""
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is None or not isinstance(manifest.get("files"), list):
        return []
    return sorted(set(listed_files(folder)) - set(manifest["files"]))


def check_output_folder(output: PathLike, kind: str, overwrite: bool = False, inputs: Iterable[PathLike | None] = (),
                        need_parent: bool = True, replaces_same_kind: bool = False) -> Path:
    """Refuse, before any work, an output folder that may not take a ``kind`` of output: files dlcv did not write or a
    folder of another kind even with ``overwrite``; one of ``kind`` unless ``overwrite`` or ``replaces_same_kind``."""
    output = Path(output)
    check_not_special(output, folder=True)
    here = resolved_path(".")
    target = resolved_path(output)
    if target == here or target in here.parents:
        raise DlcvError(f"{output}: is the current folder or holds it; give a new folder for the output")
    check_not_an_input(output, inputs)
    if need_parent:
        check_parent(output)
    if output.is_dir() and any(output.iterdir()):
        manifest = read_manifest(output)
        if manifest is None:
            raise DlcvError(f"{output}: holds files that dlcv did not write (no {MANIFEST}); choose a new or "
                            "empty folder")
        if manifest["kind"] != kind:
            raise DlcvError(f"{output}: holds a {manifest['kind']}, not a {kind}; choose another folder")
        if not (overwrite or replaces_same_kind):
            raise DlcvError(f"{output}: already holds a {kind}; pass --overwrite to replace it, or choose a new "
                            "folder")
    return output


def make_output_folder(output: PathLike, kind: str) -> Path:
    """Create ``output`` and its parents as a dlcv folder that later commands may fill and replace (check it with
    ``check_output_folder`` first); an existing dlcv folder keeps its manifest."""
    output = Path(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
        if read_manifest(output) is None:
            mark_folder(output, kind)
    except OSError as exc:
        raise write_error(output, exc) from None
    return output


def figures_folder(output: PathLike) -> Path:
    """``output`` made ready to take figures file by file: new, empty, a folder of figures dlcv wrote, or a run's
    ``figures/``; a folder holding anything else is refused, so that no one else's file is written over."""
    output = Path(output)
    check_not_special(output, folder=True)
    check_parent(output)
    if output.is_dir() and any(output.iterdir()):
        kind = (read_manifest(output) or {}).get("kind")
        in_run = (read_manifest(output.parent) or {}).get("kind") == "run" and output.name == "figures"
        if kind is None and not in_run:
            raise DlcvError(f"{output}: holds files that dlcv did not write (no {MANIFEST}); choose a new or "
                            "empty folder for the figures")
        if kind not in (None, FIGURES):
            raise DlcvError(f"{output}: already holds a {kind}; choose a new folder for the figures")
    return make_output_folder(output, FIGURES)


def process_alive(pid: int) -> bool:
    """Whether a process of that id runs (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(output: Path) -> None:
    """Remove the staging and old folders killed runs left beside ``output`` (its marked ones, of dead processes)."""
    for leftover in output.parent.glob(f".{glob.escape(output.name)}.dlcv-*-*"):  # the name literally, not a pattern
        kind, _, pid = leftover.name[len(output.name) + 2 :].rpartition("-")
        if kind not in (STAGING, OLD) or not pid.isdigit() or int(pid) == os.getpid() or process_alive(int(pid)):
            continue
        if leftover.is_dir() and not leftover.is_symlink() and (kind == OLD or read_manifest(leftover) is not None):
            shutil.rmtree(leftover, ignore_errors=True)


def replace_folder(staging: Path, output: Path) -> None:
    """Put ``staging`` where ``output`` is; an old ``output`` (checked replaceable) stays whole till the new is in."""
    if output.is_dir() and not any(output.iterdir()):
        output.rmdir()
    if not output.exists():
        os.replace(staging, output)
        return
    old = output.with_name(f".{output.name}.{OLD}-{os.getpid()}")
    os.replace(output, old)
    try:
        os.replace(staging, output)
    except OSError:
        os.replace(old, output)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(output: PathLike, overwrite: bool = False, inputs: Iterable[PathLike | None] = (),
                  kind: str = "output", keep: tuple[str, ...] = (), replaces_same_kind: bool = False
                  ) -> Iterator[Path]:
    """Yield a new folder beside ``output`` to fill; on success it replaces the checked ``output`` whole, and an
    interrupted run leaves it as it was. ``keep``: entries of an earlier ``output`` taken over when not rewritten."""
    with FolderLock(output, what=kind, option="--output") as lock:  # a second command into it is refused
        lock.take()
        with _staged(output, overwrite, inputs, kind, keep, replaces_same_kind) as staging:
            yield staging


@contextlib.contextmanager
def _staged(output: PathLike, overwrite: bool, inputs: Iterable[PathLike | None], kind: str, keep: tuple[str, ...],
            replaces_same_kind: bool) -> Iterator[Path]:
    """``staged_folder`` once its lock is held."""
    output = check_output_folder(output, kind, overwrite, inputs, replaces_same_kind=replaces_same_kind)
    clean_leftovers(output)
    staging = output.with_name(f".{output.name}.{STAGING}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(mode=0o777 & ~current_umask())
        mark_folder(staging, kind)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise write_error(output, exc) from None
    taken: list[str] = []
    try:
        yield staging
        for name in keep:
            if (output / name).exists() and not (staging / name).exists():
                os.replace(output / name, staging / name)
                taken.append(name)
        written = listed_files(staging)
        # What someone else put in an earlier folder replaced unasked (a report) moves into the new one.
        added = [] if overwrite else foreign_files(output)
        clash = next((name for name in added if (staging / name).exists()), None)
        if clash:
            raise DlcvError(f"{output / clash}: not written by dlcv, and the new {kind} has a file of that name; "
                            "move it away, then run the command again")
        for name in added:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(output / name, staging / name)
            taken.append(name)
        mark_folder(staging, kind, files=written)
        replace_folder(staging, output)
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        raise write_error(output, exc) from None
    finally:
        if staging.exists():
            for name in taken:  # the old output gets back what it lent, whole
                os.replace(staging / name, output / name)
            shutil.rmtree(staging, ignore_errors=True)


def save_torch(obj, path: PathLike) -> None:
    """``torch.save(obj)`` to ``path`` through a temporary file beside it, written to disk, then renamed onto it.

    The bytes are serialised in memory first: ``torch.save`` to a file reports a full disk or ``ulimit -f`` as an
    unnamed ``RuntimeError``, where a plain write gives the ``OSError`` that names the file.

    Raises:
        DlcvError: the file could not be written (full disk, file size limit, read-only folder), naming ``path``;
            an earlier ``path`` is left whole.
    """
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(buffer.getbuffer())
        handle.flush()
        os.fsync(handle.fileno())  # on disk before the rename: a crash then leaves the old file or the new, whole


def read_json(path: Path) -> dict:
    """A JSON object written by dlcv; one line naming the file when it is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DlcvError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DlcvError(f"{path}: expected a JSON object")
    return data


def write_json(path: Path, data: dict | list, indent: int | None = 2) -> None:
    with atomic_write(path) as handle:
        json.dump(data, handle, indent=indent)
        handle.write("\n")


class FolderLock:
    """An exclusive ``flock`` on ``.NAME.dlcv-lock`` beside ``folder`` (a run, a table, an output) while this process
    writes it: of the folder links lead to, it outlives ``--overwrite``, is never opened through a link and ends with
    its process. A second process is refused at once, naming the first (``option``: what to choose instead); only
    the primary process of a multi-process run takes it."""

    def __init__(self, folder: str | os.PathLike, what: str = "run", option: str = "--name"):
        self.folder, self.what, self.option = Path(folder), what, option
        real = Path(os.path.realpath(self.folder))
        self.path = real.parent / f".{real.name}.dlcv-lock"
        self.fd: int | None = None

    def take(self, create: bool = False) -> FolderLock:
        """Hold the lock from now on; ``create``: make a missing parent folder (else wait for a later ``take``, so
        that a command refused before it writes leaves no folder behind)."""
        try:
            import fcntl
        except ImportError:  # no flock on this system (Windows): runs there are not locked
            return self
        if self.fd is not None or not is_primary_process() or not (create or self.path.parent.is_dir()):
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            while self.fd is None:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                    os.close(fd)
                    pid = f" (pid {holder})" if holder.isdigit() else ""
                    raise DlcvError(f"{self.folder}: another dlcv process{pid} is writing this {self.what}; wait "
                                    f"for it or choose another {self.option}") from None
                # The holder before this one removes the file as it lets go: hold the file at the path, or try again.
                if _same_file(fd, self.path):
                    self.fd = fd
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                else:
                    os.close(fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise DlcvError(f"{self.path}: is a link, not dlcv's lock file; remove it") from None
            raise write_error(self.path, exc) from None
        return self

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # while still held: no other process holds the file at the path yet
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
