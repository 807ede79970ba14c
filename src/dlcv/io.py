"""File writing that never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dlcv.errors import DlcvError


def check_output_path(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path after checking that its folder exists and it is not a folder."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DlcvError(f"{path}: the output folder {parent} does not exist")
    if path.is_dir():
        raise DlcvError(f"{path}: is a folder, expected a file name")
    return path


def current_umask() -> int:
    """The process's umask (read without changing it), for giving temporary files the usual mode."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator:
    """Open a temporary file beside ``path`` for writing; rename it onto ``path`` on success."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle


@contextlib.contextmanager
def staged_folder(output: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a new folder beside ``output`` to fill; on success it replaces ``output`` whole.

    ``output`` never mixes old and new files, and an interrupted run leaves it as it was. A folder
    that already holds files is refused unless ``overwrite``.
    """
    import shutil

    output = Path(output)
    if output.exists() and not output.is_dir():
        raise DlcvError(f"{output}: exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise DlcvError(f"{output}: already holds files; choose a new folder or pass --overwrite to replace it")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise DlcvError(f"{output}: the folder {parent} does not exist")
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~current_umask())
        if output.exists():
            shutil.rmtree(output)
        os.replace(staging, output)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
