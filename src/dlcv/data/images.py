"""Image folders decoded once into a uint8 array, cached as a memory-mapped ``.npy`` file keyed by a fingerprint of
the files (paths, sizes, modification times): a changed folder gets a new file and the stale one is removed."""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dlcv.errors import DlcvError
from dlcv.io import atomic_path
from dlcv.runtime import available_memory, usable_cpus

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def default_cache_dir() -> Path:
    """``$DLCV_CACHE`` if set, else ``~/.cache/dlcv``."""
    env = os.environ.get("DLCV_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dlcv"


def check_inside(folder: Path, path: Path, row: str | None = None) -> Path:
    """``path`` after checking that, links followed, it lies inside ``folder``: a link that leaves the
    folder is refused like a ``../`` name (``row``, a CSV's ``file:line``, names where it was named)."""
    target = path.resolve()
    try:
        target.relative_to(folder.resolve())
    except ValueError:
        where = f"{row}: {path.name}" if row else str(path)
        raise DlcvError(f"{where} is a link to {target}, outside the folder {folder}") from None
    return path


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files of ``folder`` sorted by file name (none a link leaving it); an error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DlcvError(f"{folder}: no such folder")
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: p.name,
    )
    if not files:
        raise DlcvError(f"{folder}: the folder holds no images (.png, .jpg)")
    for path in files:
        if path.is_symlink():
            check_inside(folder, path)
        if not path.name.isprintable():  # undecodable bytes (surrogates) or control characters: not a CSV's text
            raise DlcvError(f"{folder}: the file name {path.name!r} is not printable UTF-8 text; rename it")
    return files


class SizeMismatch(DlcvError):
    """An image whose size differs from the one its folder's images share (see ``decode_images``)."""


def _to_rgb(image, path: Path) -> np.ndarray:
    """Any PIL mode as RGB uint8, faithfully: 16-bit grey is scaled to 8 bits (PIL's own conversion
    clips it to white), a palette's transparency is resolved; modes whose range is unknown are refused."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image, dtype=np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise DlcvError(f"{path}: a {mode} image with values outside 0-65535; not an image dlcv reads")
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)  # 0-65535 onto 0-255, rounded
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        raise DlcvError(f"{path}: a floating-point image (mode F), whose range is unknown; save it as 8-bit RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # PIL warns when a palette's transparency is dropped directly
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)


def decode_image(path: Path, size: tuple[int, int] | None = None, rgb_only: bool = False) -> np.ndarray:
    """Decode one image, any mode faithfully (``_to_rgb``), to an RGB uint8 array (H, W, 3); an error naming the
    file if it cannot, if it is over PIL's pixel limit (a decompression bomb, refused before decoding), or if
    ``rgb_only`` (masks, whose channels the course's script reads as stored) and it is not RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if rgb_only and image.mode != "RGB":
                    raise DlcvError(f"{path}: a {image.mode} image, but masks must be RGB (the course's script "
                                    "reads the three colour channels as stored)")
                image.load()
                array = _to_rgb(image, path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DlcvError(f"{path}: more pixels than an image dlcv reads ({Image.MAX_IMAGE_PIXELS:,}); "
                        "a decompression bomb?") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DlcvError(f"{path}: not a readable image ({exc})") from None
    if size is not None and array.shape[:2] != size:
        raise SizeMismatch(f"{path}: image is {array.shape[1]}x{array.shape[0]}, expected {size[1]}x{size[0]}")
    return array


def odd_size_message(files: Sequence[Path]) -> str:
    """Names the odd-sized image among ``files`` (read from the headers), with the size most of them share."""
    from PIL import Image

    sizes = {}
    for path in files:
        try:
            with Image.open(path) as image:
                sizes[path] = image.size
        except Exception:  # noqa: BLE001, S112 -- an unreadable file is named when it is decoded
            continue
    common, count = Counter(sizes.values()).most_common(1)[0]
    odd = next(p for p, s in sizes.items() if s != common)
    return (f"{odd}: image is {sizes[odd][0]}x{sizes[odd][1]}, but {count} of the {len(files)} images here "
            f"{'is' if count == 1 else 'are'} {common[0]}x{common[1]}")


def load_resized_stack(files: Sequence[Path], side: int | None, use_cache: bool = True) -> np.ndarray:
    """``load_image_stack`` of ``files``, each resized to ``side`` x ``side`` first (bicubic, antialiased:
    for folders of mixed sizes such as Office-Home's; None: as they are, all of one size)."""
    if side is None:
        return load_image_stack(files, use_cache=use_cache)
    from PIL import Image

    def decode(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
        array = decode_image(path)
        if array.shape[:2] == (side, side):
            return array
        return np.asarray(Image.fromarray(array).resize((side, side), Image.BICUBIC), dtype=np.uint8)

    return load_image_stack(files, use_cache=use_cache, decode=decode, tag=f"resized{side}",
                            expected=((side, side, 3), f"images at data.image_size {side}"))


def check_memory(files: Sequence[Path], shape: tuple, what: str) -> None:
    """Refuse to decode ``files`` as uint8 arrays of ``shape`` when they would not fit in the memory free now."""
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
    """Decode ``files`` (all of one size) into one (N, H, W, 3) uint8 array; ``decode(path, size=None)`` decodes
    one file (a mask decoder gives (H, W) class indices); ``expected``: (each array's shape, it in words) when known
    before the first is decoded (a resize), so that memory is checked before any."""
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
    """``decode_images`` of ``files``; with ``use_cache``, a read-only memory map of a cache file named by the files'
    fingerprint and ``tag`` (the kind of decoding, a mask decoder's policy say: kinds never share a file)."""
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
