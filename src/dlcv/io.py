"""Write outputs so that nothing is half-written and nothing dlcv did not write is replaced or deleted.

Files go to a temporary name and are renamed into place. Every folder dlcv writes into carries a manifest,
``.dlcv-output``, listing what dlcv put there with the SHA-256 of each file as written: only a folder with one is
replaced, and only a file it lists, unchanged since, is replaced without ``--overwrite``.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from dlcv import __version__
from dlcv.errors import DlcvError
from dlcv.files import (
    MANIFEST,
    NAMED_FILES,
    atomic_path,
    atomic_write,
    check_not_an_input,
    check_not_special,
    check_output_path,
    check_parent,
    current_umask,
    file_hashes,
    listed_hashes,
    read_manifest,
    record_written,
    resolved_path,
    unchanged,
    write_error,
    write_manifest,
    written_by_dlcv,
)
from dlcv.runtime import is_primary_process

FIGURES = "set of figures"  # the manifest kind of a folder that figures are added to file by file
STAGING, OLD = "dlcv-staging", "dlcv-old"  # ``.NAME.STAGING-PID`` is filled, ``.NAME.OLD-PID`` is being removed
LOOSE_KINDS = ("demo", FIGURES, NAMED_FILES)  # folders that take files one by one: a named output may go in them

PathLike = str | os.PathLike
# Errors no check can foresee before a write: full disk or quota, ``ulimit -f``, read-only folder, failing device.
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


def check_output_file(path: PathLike, overwrite: bool = False, inputs: Iterable[PathLike | None] = ()) -> Path:
    """Check, before any work, an output file that the user names.

    Args:
        path: the file to write.
        overwrite: replace an existing file that dlcv did not write (``--overwrite``).
        inputs: the command's inputs, which the output may not be, hold or lie inside (None entries are skipped).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        DlcvError: ``path`` is refused by ``check_output_path`` (no such folder; a link, folder or device; an input),
            lies inside a folder dlcv writes whole, its folder's manifest is a link or not a file, or it exists and
            that manifest does not list it as dlcv wrote it while ``overwrite`` is off.
    """
    path = check_output_path(path, inputs)
    check_not_special(path.parent / MANIFEST)  # the manifest that will list it: refused now, not after the work
    for folder in resolved_path(path).parents:  # resolved: a run reached through a link is that run
        kind = (read_manifest(folder) or {}).get("kind")
        if kind is not None and kind not in LOOSE_KINDS:
            raise DlcvError(f"{path}: lies inside the {kind} {folder}, which dlcv writes whole; write it elsewhere")
    if path.exists() and not overwrite and not written_by_dlcv(path):
        raise DlcvError(f"{path}: exists and dlcv did not write it; pass --overwrite to replace it, or choose "
                        "another name")
    return path


def record_output_file(path: PathLike) -> None:
    """List ``path``, just written where a user named it, in its folder's manifest, so that a rerun may replace it.

    Raises:
        DlcvError: the manifest could not be written (read-only folder, full disk), naming it.
    """
    record_written(path, __version__)


# --- output folders ------------------------------------------------------------------------------------
def mark_folder(folder: PathLike, kind: str, files: list[str] | None = None) -> None:
    """Write the manifest that lets a later command replace ``folder``.

    Args:
        folder: the folder dlcv wrote.
        kind: what it holds (``run``, ``set of predicted masks``...), which later commands check.
        files: the files dlcv put in it (paths below it), listed with their SHA-256 now, so that a replacement
            keeps any other and any edited since; None: no list, all count as dlcv's.
    """
    write_manifest(folder, kind, __version__, None if files is None else file_hashes(Path(folder), files))


def listed_files(folder: Path) -> list[str]:
    """Every file below ``folder`` (its manifest aside), as sorted relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if not p.is_dir() and p.name != MANIFEST)


def foreign_files(folder: Path) -> list[str]:
    """Files of a dlcv folder that its manifest does not list or that changed since (none if it lists no files)."""
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is None or "files" not in manifest:
        return []
    listed = listed_hashes(manifest)
    return [name for name in listed_files(folder) if not unchanged(folder, name, listed)]


def check_output_folder(output: PathLike, kind: str, overwrite: bool = False, inputs: Iterable[PathLike | None] = (),
                        need_parent: bool = True, replaces_same_kind: bool = False) -> Path:
    """Refuse, before any work, an output folder that may not take an output of ``kind``.

    Args:
        output: the folder to fill.
        kind: the manifest kind of what is written (``run``, ``hand-in folder``...).
        overwrite: allow replacing an earlier output of the same ``kind`` (``--overwrite``).
        inputs: the command's inputs, which the folder may not be, hold or lie inside (None entries are skipped).
        need_parent: refuse a folder whose parent is missing (False: the parents are made later).
        replaces_same_kind: allow an earlier output of the same ``kind`` even without ``overwrite``.

    Returns:
        ``output`` as a ``Path``.

    Raises:
        DlcvError: ``output`` is a link or not a folder, is or holds the current folder, is or holds an input or lies
            inside one, has no parent folder (``need_parent``), holds files dlcv did not write or an output of another
            kind (even with ``overwrite``), or holds a ``kind`` already without ``overwrite`` or ``replaces_same_kind``.
    """
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
        if manifest["kind"] == NAMED_FILES:
            raise DlcvError(f"{output}: holds files of yours, not a {kind} (dlcv only wrote some of them where you "
                            "named them); choose a new or empty folder")
        if manifest["kind"] != kind:
            raise DlcvError(f"{output}: holds a {manifest['kind']}, not a {kind}; choose another folder")
        if not (overwrite or replaces_same_kind):
            raise DlcvError(f"{output}: already holds a {kind}; pass --overwrite to replace it, or choose a new "
                            "folder")
    return output


def make_output_folder(output: PathLike, kind: str) -> Path:
    """Create ``output`` and its parents as a dlcv folder of ``kind``, which later commands may replace.

    Check it with ``check_output_folder`` first; an existing dlcv folder keeps its manifest.

    Raises:
        DlcvError: the folder or its manifest could not be written.
    """
    output = Path(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
        if read_manifest(output) is None:
            mark_folder(output, kind)
    except OSError as exc:
        raise write_error(output, exc) from None
    return output


def figures_folder(output: PathLike) -> Path:
    """Make ``output`` ready to take figures file by file, and return it.

    It may be new, empty, a folder of figures dlcv wrote, or a run's ``figures/``; a folder holding anything else is
    refused, so that no one else's file is written over.

    Raises:
        DlcvError: ``output`` is a link or not a folder, has no parent folder, holds files dlcv did not write or another
            kind of output, or could not be created.
    """
    output = Path(output)
    check_not_special(output, folder=True)
    check_parent(output)
    if output.is_dir() and any(output.iterdir()):
        kind = (read_manifest(output) or {}).get("kind")
        in_run = (read_manifest(output.parent) or {}).get("kind") == "run" and output.name == "figures"
        if kind is None and not in_run:
            raise DlcvError(f"{output}: holds files that dlcv did not write (no {MANIFEST}); choose a new or "
                            "empty folder for the figures")
        if kind == NAMED_FILES:
            raise DlcvError(f"{output}: holds files of yours (dlcv only wrote some of them where you named them); "
                            "choose a new or empty folder for the figures")
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
    """Remove the staging and old folders that killed commands left beside ``output``.

    Only those of processes no longer alive, and a staging folder only where it holds dlcv's manifest.
    """
    for leftover in output.parent.glob(f".{glob.escape(output.name)}.dlcv-*-*"):  # the name literally, not a pattern
        kind, _, pid = leftover.name[len(output.name) + 2 :].rpartition("-")
        if kind not in (STAGING, OLD) or not pid.isdigit() or int(pid) == os.getpid() or process_alive(int(pid)):
            continue
        if leftover.is_dir() and not leftover.is_symlink() and (kind == OLD or read_manifest(leftover) is not None):
            shutil.rmtree(leftover, ignore_errors=True)


def replace_folder(staging: Path, output: Path) -> None:
    """Move ``staging`` into ``output``'s place; an old ``output`` stays whole until the new one is in.

    Raises:
        OSError: a rename failed; an old ``output`` is then back in its place.
    """
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
    """Yield a folder to fill beside ``output``, replacing ``output`` with it if the block raises nothing.

    An interrupted or failed command leaves ``output`` as it was. Files that others added to an earlier ``output`` move
    into the new one (unless ``overwrite``); one process at a time writes ``output`` (``FolderLock``).

    Args:
        output: the folder to write.
        overwrite: replace an earlier output of ``kind`` (``--overwrite``), dropping files that others added to it.
        inputs: the command's inputs, which ``output`` may not be, hold or lie inside.
        kind: the manifest kind of what is written.
        keep: entries of an earlier ``output`` carried into the new one where the command did not write them anew.
        replaces_same_kind: replace an earlier output of ``kind`` even without ``overwrite``.

    Raises:
        DlcvError: another process is writing ``output``, ``check_output_folder`` refuses it, a file that others added
            has the name of a new file, or a write failed (full disk, quota, read-only folder: ``WRITE_ERRORS``).
        OSError: any other failure of the file system.
    """
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
        # What someone else put or edited in an earlier folder replaced unasked (a report) moves into the new one.
        added = [] if overwrite else foreign_files(output)
        clash = next((name for name in added if (staging / name).exists()), None)
        if clash:
            raise DlcvError(f"{output / clash}: not written by dlcv or changed since, and the new {kind} has a file of "
                            "that name; move it away, then run the command again")
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
    """Save ``obj`` (``torch.save``) to a temporary file beside ``path``, synced, then renamed onto it.

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
    """Read a JSON object that dlcv wrote.

    Raises:
        DlcvError: the file cannot be read, is not JSON, or holds no JSON object (naming ``path``).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DlcvError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DlcvError(f"{path}: expected a JSON object")
    return data


def write_json(path: Path, data: dict | list, indent: int | None = 2) -> None:
    """Write ``data`` to ``path`` as JSON, atomically (``atomic_write``); ``indent`` None writes one line."""
    with atomic_write(path) as handle:
        json.dump(data, handle, indent=indent)
        handle.write("\n")


class FolderLock:
    """A lock that refuses, at once, a second dlcv process writing the same folder.

    An exclusive ``flock`` on ``.NAME.dlcv-lock`` beside the folder that links lead to: it outlives ``--overwrite``'s
    replacement of the folder, is never opened through a link and ends with its process. Only the primary process of
    a multi-process run takes it. Used as ``with FolderLock(folder) as lock: lock.take()``.

    Args:
        folder: the folder to be written (a run, a table, an output).
        what: what the folder is, for the message (``run``, ``table``).
        option: what the refused process may choose instead (``--name``, ``--output``).
    """

    def __init__(self, folder: str | os.PathLike, what: str = "run", option: str = "--name"):
        self.folder, self.what, self.option = Path(folder), what, option
        real = Path(os.path.realpath(self.folder))
        self.path = real.parent / f".{real.name}.dlcv-lock"
        self.fd: int | None = None

    def take(self, create: bool = False) -> FolderLock:
        """Hold the lock from now on (nothing where the system has no ``flock``), and return this lock.

        Args:
            create: make a missing parent folder; else a missing one defers the lock to a later ``take``, so that a
                command refused before it writes leaves no folder behind.

        Raises:
            DlcvError: another process holds the lock (naming its pid), the lock file is a link, or it cannot be
                written.
        """
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
        """Let go of the lock and remove its file (nothing when it is not held)."""
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
    """Whether the open file ``fd`` is the file now at ``path``."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
