"""Image folders decoded once into a uint8 array, cached as a memory-mapped ``.npy`` file.

The cache file is named by a fingerprint of the files (paths, sizes, modification times): a changed folder gets a new
file and the stale one is removed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dlcv.errors import DlcvError
from dlcv.files import SizeMismatch, atomic_path, decode_image, decode_resized, odd_size_message
from dlcv.runtime import available_memory, usable_cpus


def default_cache_dir() -> Path:
    """Return the cache folder: ``$DLCV_CACHE`` if set, else ``~/.cache/dlcv``."""
    env = os.environ.get("DLCV_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dlcv"


def load_resized_stack(files: Sequence[Path], side: int | None, use_cache: bool = True) -> np.ndarray:
    """Decode ``files`` into one uint8 array, each first resized to ``side`` x ``side`` (``load_image_stack``).

    Args:
        files: the image files.
        side: the square side in pixels, resized bicubic (for folders of mixed sizes such as Office-Home's); None:
            the images as they are, all of one size.
        use_cache: read and write the memory-mapped cache.

    Returns:
        (N, side, side, 3) uint8 ((N, H, W, 3) for None), a read-only memory map when cached.

    Raises:
        DlcvError: if an image cannot be decoded, the unresized images differ in size, or they do not fit in memory.
    """
    if side is None:
        return load_image_stack(files, use_cache=use_cache)
    return load_image_stack(files, use_cache=use_cache, decode=lambda path, size=None: decode_resized(path, side),
                            tag=f"resized{side}",
                            expected=((side, side, 3), f"images at data.image_size {side}"))


def check_memory(files: Sequence[Path], shape: tuple, what: str) -> None:
    """Refuse to decode ``files`` as uint8 arrays of ``shape`` (``what`` names them) beyond the memory free now."""
    needed, free = len(files) * int(np.prod(shape, dtype=np.int64)), available_memory()
    if free is not None and needed > free:
        raise DlcvError(f"{files[0].parent}: {len(files)} decoded {what} need {needed / 2**30:.1f} GiB, more than the "
                        f"{free / 2**30:.1f} GiB of memory free")


def fingerprint(files: Sequence[Path]) -> str:
    """A hash of the files' absolute paths, sizes and modification times."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def decode_images(files: Sequence[Path], decode=decode_image, expected: tuple | None = None) -> np.ndarray:
    """Decode ``files``, all of one size, into one uint8 array, on a few threads.

    Args:
        files: the image (or mask) files.
        decode: ``decode(path, size=None)`` decodes one file, raising ``SizeMismatch`` when it is not of ``size``
            (height, width); a mask decoder gives (H, W) class indices.
        expected: ``(each array's shape, the arrays in words)`` when known before the first is decoded (a resize),
            so that memory is checked before any; None: checked after the first.

    Returns:
        (N, H, W, 3) uint8, or (N, H, W) from a mask decoder.

    Raises:
        DlcvError: if a file cannot be decoded, one differs in size (the odd one is named), or the arrays would not
            fit in the memory free.
    """
    if expected is not None:
        check_memory(files, *expected)
    first = decode(files[0])
    if expected is None:
        check_memory(files, first.shape, f"{first.shape[1]}x{first.shape[0]} images")
    out = np.empty((len(files), *first.shape), dtype=np.uint8)
    out[0] = first
    size = first.shape[:2]

    def work(index: int) -> None:
        out[index] = decode(files[index], size)

    try:
        with ThreadPoolExecutor(max_workers=min(8, usable_cpus())) as pool:
            list(pool.map(work, range(1, len(files))))
    except SizeMismatch:  # the first file read may be the odd one: name the one that differs from most
        raise DlcvError(odd_size_message(files)) from None
    return out


def load_image_stack(files: Sequence[Path], use_cache: bool = True, decode=decode_image, tag: str = "images",
                     expected: tuple | None = None) -> np.ndarray:
    """Decode ``files`` into one uint8 array (``decode_images``), through the cache when ``use_cache``.

    Args:
        files: the image (or mask) files, all in one folder.
        use_cache: return a read-only memory map of a cache file named by the folder, ``tag`` and the files'
            fingerprint, written on first use.
        decode: decodes one file, as ``decode_images`` takes it.
        tag: the kind of decoding (e.g. a resize, or a mask decoder's policy): kinds never share a cache file.
        expected: as ``decode_images`` takes it.

    Returns:
        (N, H, W, 3) uint8 (or (N, H, W) from a mask decoder).

    Raises:
        DlcvError: if ``files`` is empty, or ``decode_images`` refuses them.
    """
    files = list(files)
    if not files:
        raise DlcvError("no images to load")
    if not use_cache:
        return decode_images(files, decode=decode, expected=expected)
    folder = str(files[0].parent.resolve())
    folder_key = hashlib.sha256((folder if tag == "images" else f"{folder}\0{tag}").encode()).hexdigest()[:12]
    target = default_cache_dir() / "images" / f"{folder_key}-{fingerprint(files)}-{len(files)}.npy"
    if target.exists():
        try:
            return np.load(target, mmap_mode="r")
        except (ValueError, OSError):
            target.unlink()  # a damaged cache file is rebuilt, never trusted
    array = decode_images(files, decode=decode, expected=expected)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)
    # The folder changed since an earlier cache was written: drop the stale file(s).
    for stale in target.parent.glob(f"{folder_key}-*.npy"):
        if stale != target:
            stale.unlink(missing_ok=True)
    return np.load(target, mmap_mode="r")
