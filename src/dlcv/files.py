"""The course's files as dlcv reads and writes them, in a module the hand-in folder ships as it is.

Reading: image folders, satellite tiles by id and CSVs, any image mode decoded faithfully to RGB. Writing: outputs
checked, written through a temporary file and a rename, and listed in their folder's manifest. Python 3.6's syntax,
the standard library and NumPy (Pillow where an image is read): ``dlcv handin`` ships this file, so that the graded
scripts find, decode and write files exactly as dlcv does.
"""
import contextlib
import csv
import hashlib
import json
import os
import re
import stat
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SAT_NAME = re.compile(r"^(.+)_sat\.(jpg|jpeg|png)$", re.IGNORECASE)  # a satellite tile; its id before _sat
MANIFEST = ".dlcv-output"  # a folder's record of what dlcv wrote in it (JSON: kind, version, time, files' hashes)
NAMED_FILES = "folder of yours"  # the manifest kind of a folder dlcv only wrote files named by a user into
_KINDS = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


class DlcvError(Exception):
    """A problem with the user's input (a file, a flag, a recipe): one line, exit status 2, no traceback."""


class SizeMismatch(DlcvError):
    """An image whose size differs from the one its folder's images share (see ``decode_image``)."""


# --- reading ---------------------------------------------------------------------------------------------
def check_inside(folder: Path, path: Path, row: Optional[str] = None) -> Path:
    """Return ``path`` after checking that, links followed, it lies inside ``folder``.

    Args:
        folder: the folder ``path`` must lie in.
        path: a file of ``folder``, perhaps a link.
        row: where a CSV named it (``file:line``), for the message; None: ``path`` is named alone.

    Raises:
        DlcvError: ``path`` leads outside ``folder`` (a link out of it is refused as a ``../`` name is).
    """
    target = path.resolve()
    try:
        target.relative_to(folder.resolve())
    except ValueError:
        where = "{}: {}".format(row, path.name) if row else str(path)
        raise DlcvError(f"{where} is a link to {target}, outside the folder {folder}") from None
    return path


def is_utf8_name(path) -> bool:
    """Whether ``path`` encodes as UTF-8 text.

    Python gives a name's other bytes as surrogate escapes, which no CSV, page, log or cache key can hold.
    """
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_utf8_name(path) -> None:
    """Refuse a ``path`` that is not UTF-8 text, showing it escaped as ``repr`` does.

    Raises:
        DlcvError: ``'NAME': not a UTF-8 name; rename it``.
    """
    if not is_utf8_name(path):
        raise DlcvError(f"{str(path)!r}: not a UTF-8 name; rename it")


def _check_name(folder: Path, path: Path) -> None:
    """Refuse a file name that is not UTF-8 or not printable (control characters), which no CSV can hold."""
    check_utf8_name(path)
    if not path.name.isprintable():
        raise DlcvError(f"{folder}: the file name {path.name!r} is not printable UTF-8 text; rename it")


def list_images(folder) -> List[Path]:
    """The image files (``IMAGE_SUFFIXES``, any case) of ``folder``, sorted by file name.

    Raises:
        DlcvError: no such folder, no images, a name that is not UTF-8 or not printable, a link leaving the folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DlcvError(f"{folder}: no such folder")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                   key=lambda p: p.name)
    if not files:
        raise DlcvError(f"{folder}: the folder holds no images (.png, .jpg)")
    for path in files:
        _check_name(folder, path)  # before the link check, whose message shows the name as it is
        if path.is_symlink():
            check_inside(folder, path)
    return files


def unique_ids(folder: Path, pattern) -> Dict[str, Path]:
    """The files of ``folder`` whose names match ``pattern``, by the id it captures.

    Args:
        folder: the folder to list.
        pattern: a compiled regular expression; group 1 of a name's match is the file's id.

    Raises:
        DlcvError: two files of one id differing only in case or extension (one would silently stand for the
            two), a name that is not UTF-8 or not printable, or a link leaving the folder.
    """
    found = {}  # type: Dict[str, Tuple[str, Path]]
    for path in sorted(folder.iterdir()):
        match = pattern.match(path.name)
        if not (match and path.is_file()):
            continue
        _check_name(folder, path)  # before the link check, whose message shows the name as it is
        if path.is_symlink():
            check_inside(folder, path)
        name = match.group(1)
        first, other = found.setdefault(name.casefold(), (name, path))
        if other is not path:
            same = f"the same id {name!r}" if first == name else f"the same id but for case ({first!r}, {name!r})"
            raise DlcvError(f"{folder}: {other.name} and {path.name} have {same}; keep one of them")
    return dict(found.values())


def satellite_tiles(folder) -> Dict[str, Path]:
    """The ``NNNN_sat.jpg`` tiles (.jpg, .jpeg or .png, any case) of ``folder`` by id; {} if none.

    Raises:
        DlcvError: no such folder, or as ``unique_ids``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DlcvError(f"{folder}: no such folder")
    return unique_ids(folder, SAT_NAME)


def to_rgb(image, path: Path) -> np.ndarray:
    """Convert a PIL image of any mode to an RGB uint8 array (H, W, 3), keeping its values faithfully.

    16-bit grey is scaled to 8 bits (PIL's own conversion clips it to white) and a palette's transparency is resolved.

    Args:
        image: an opened, loaded PIL image.
        path: its file, for the messages.

    Raises:
        DlcvError: a mode whose range is unknown (floating point) or 32-bit values outside 0-65535.
    """
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


def decode_image(path: Path, size: Optional[Tuple[int, int]] = None, rgb_only: bool = False) -> np.ndarray:
    """Decode one image file as an RGB uint8 array (H, W, 3), any mode faithfully (``to_rgb``).

    Args:
        path: the image file.
        size: the (height, width) in pixels it must have; None: any.
        rgb_only: refuse a file not stored as RGB (masks, whose channels the course's script reads as stored).

    Raises:
        SizeMismatch: the image is not of ``size``.
        DlcvError: the file is not a readable image, has more pixels than PIL's limit (a decompression bomb, refused
            before decoding), is not RGB where ``rgb_only``, or is refused by ``to_rgb``.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if rgb_only and image.mode != "RGB":
                    raise DlcvError(f"{path}: a {image.mode} image, but masks must be RGB (the course's script "
                                    "reads the three colour channels as stored)")
                image.load()
                array = to_rgb(image, path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DlcvError(f"{path}: more pixels than an image dlcv reads ({Image.MAX_IMAGE_PIXELS:,}); "
                        "a decompression bomb?") from None
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
        raise DlcvError(f"{path}: not a readable image ({exc})") from None
    if size is not None and array.shape[:2] != tuple(size):
        raise SizeMismatch(f"{path}: image is {array.shape[1]}x{array.shape[0]}, expected {size[1]}x{size[0]}")
    return array


def decode_resized(path: Path, side: int) -> np.ndarray:
    """Decode an image, resized bicubic to uint8 (side, side, 3) as dlcv reads folders of mixed sizes."""
    from PIL import Image

    array = decode_image(path)
    if array.shape[:2] == (side, side):
        return array
    return np.asarray(Image.fromarray(array).resize((side, side), Image.BICUBIC), dtype=np.uint8)


def odd_size_message(files: Sequence[Path]) -> str:
    """The odd-sized image among ``files`` (sizes read from the headers) and the size most share, in words."""
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


def check_one_size(files: Sequence[Path]) -> None:
    """Refuse ``files`` whose headers give more than one size, naming the odd one (``odd_size_message``)."""
    from PIL import Image

    sizes = set()
    for path in files:
        try:
            with Image.open(path) as image:
                sizes.add(image.size)
        except Exception:  # noqa: BLE001, S112 -- an unreadable file is named when it is decoded
            continue
    if len(sizes) > 1:
        raise DlcvError(odd_size_message(files))


def safe_member(folder: Path, name: str, csv_path: Path, line: int) -> Path:
    """Return ``folder / name`` for a file name a CSV gives, once checked to stay inside ``folder``.

    Args:
        folder: the image folder.
        name: the file name as the CSV gives it.
        csv_path: the CSV, for the message.
        line: the name's line in the CSV, for the message.

    Raises:
        DlcvError: a name that leaves the folder (absolute, ``..``, a drive, a link out of it), at ``csv_path:line``.
    """
    if (not name or PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute()
            or PureWindowsPath(name).drive or ".." in PurePosixPath(name.replace("\\", "/")).parts):
        raise DlcvError(f"{csv_path}:{line}: file name {name!r} points outside the image folder {folder}")
    return check_inside(folder, folder / name, f"{csv_path}:{line}")


def read_csv_rows(path, required: Tuple[str, ...]) -> List[Dict[str, str]]:
    """The rows of a CSV (UTF-8, a byte-order mark allowed) as dicts of stripped values.

    Args:
        path: the CSV file.
        required: the columns its header must have.

    Raises:
        DlcvError: no such file, not text, not valid CSV, a column named twice or missing from ``required``, or a
            row whose field count differs from the header's.
    """
    path = Path(path)
    if not path.is_file():
        raise DlcvError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            twice = sorted({c for c in columns if columns.count(c) > 1})
            if twice:
                raise DlcvError(f"{path}: the header names column(s) {', '.join(twice)} more than once")
            missing = [c for c in required if c not in columns]
            if missing:
                raise DlcvError(f"{path}: missing column(s) {', '.join(missing)} (header is "
                                f"{','.join(columns) or 'empty'})")
            rows = []
            for row in reader:
                # DictReader files extra fields under None and fills missing ones with None.
                if None in row or None in row.values():
                    fields = len(columns) + len(row.get(None) or ()) - sum(v is None for v in row.values())
                    raise DlcvError(f"{path}:{reader.line_num}: {fields} field(s), but the header has "
                                    f"{len(columns)}")
                rows.append({k.strip(): v.strip() for k, v in row.items()})
    except UnicodeDecodeError:
        raise DlcvError(f"{path}: not a text CSV file") from None
    except csv.Error as exc:
        raise DlcvError(f"{path}: not a valid CSV ({exc})") from None
    return rows


def office_rows(csv_path, folder) -> Tuple[List[Dict[str, str]], List[Path]]:
    """The rows of an Office-Home CSV (``id,filename[,label]``) in file order, and the image each names.

    Raises:
        DlcvError: no such folder, no rows, a file name that leaves the folder or names no file (``file:line``), or
            as ``read_csv_rows``.
    """
    csv_path, folder = Path(csv_path), Path(folder)
    if not folder.is_dir():
        raise DlcvError(f"{folder}: no such image folder")
    rows = read_csv_rows(csv_path, ("id", "filename"))
    if not rows:
        raise DlcvError(f"{csv_path}: the CSV has no rows")
    files = []
    for line, row in enumerate(rows, start=2):
        path = safe_member(folder, row["filename"], csv_path, line)
        if not path.is_file():
            raise DlcvError(f"{csv_path}:{line}: no such image {row['filename']!r} in {folder}")
        files.append(path)
    return rows, files


# --- writing ---------------------------------------------------------------------------------------------
def write_error(path, exc: OSError) -> DlcvError:
    """The ``DlcvError`` (returned, not raised) for an output that could not be written, naming it and why."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return DlcvError(f"{path}: cannot be written ({reason})")


def resolved_path(path) -> Path:
    """``path`` made absolute with links followed (a missing tail kept as named)."""
    return Path(os.path.abspath(str(Path(path).expanduser()))).resolve()


def check_not_an_input(output, inputs: Iterable) -> None:
    """Refuse an output that is an input, holds one, or lies inside an input folder (None inputs skipped)."""
    out = resolved_path(output)
    for given in inputs:
        if given is None:
            continue
        source = resolved_path(given)
        if out == source:
            raise DlcvError(f"{output}: is an input of this command ({given}); write the output elsewhere")
        if out in source.parents:
            raise DlcvError(f"{output}: holds the input {given}; write the output elsewhere")
        if source in out.parents:
            raise DlcvError(f"{output}: lies inside the input folder {given}; write the output elsewhere")


def check_parent(path: Path, label: str = "the folder") -> None:
    """Refuse an output whose parent is missing or not a folder (``label`` names the parent in the message)."""
    if not path.parent.is_dir():
        what = "is not a folder" if path.parent.exists() else "does not exist"
        raise DlcvError(f"{path}: {label} {path.parent} {what}")


def check_not_special(path: Path, folder: bool = False) -> None:
    """Refuse an existing ``path`` that is a link or not a regular file (``folder``: not a folder)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise write_error(path, exc) from None
    if stat.S_ISLNK(mode):
        raise DlcvError(f"{path}: is a link; give the {'folder' if folder else 'file'} itself, not a link to it")
    if (stat.S_ISDIR if folder else stat.S_ISREG)(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "of an unknown kind")
    raise DlcvError(f"{path}: is {kind}, expected {'a folder' if folder else 'a file name'}")


def check_output_path(path, inputs: Iterable = ()) -> Path:
    """Check ``path`` as a new or replaced output file, and return it as a ``Path``.

    Raises:
        DlcvError: its folder is missing; it is a link, folder, device, FIFO or socket (the rename would replace it);
            or it is, holds or lies inside one of ``inputs``.
    """
    path = Path(path)
    check_parent(path, "the output folder")
    check_not_special(path)
    check_not_an_input(path, inputs)
    return path


def file_sha256(path) -> str:
    """The SHA-256 of ``path``'s bytes, as ``"sha256:HEX"``: an edit changes it, a copy keeps it.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def read_manifest(folder) -> Optional[dict]:
    """The manifest of a folder dlcv wrote (``MANIFEST``), or None (no manifest, or not one of dlcv's)."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "kind" in data else None


def listed_hashes(manifest: Optional[dict]) -> Dict[str, Optional[str]]:
    """The files a manifest lists, each with its hash as written (None: an older manifest's bare name)."""
    files = manifest.get("files") if manifest else None
    if isinstance(files, dict):
        return {str(name): sha if isinstance(sha, str) else None for name, sha in files.items()}
    if isinstance(files, list):
        return {str(name): None for name in files}
    return {}


def unchanged(folder: Path, name: str, listed: Dict[str, Optional[str]]) -> bool:
    """Whether ``folder / name`` is listed in ``listed`` and is as dlcv wrote it (its hash, where one is listed)."""
    if name not in listed:
        return False
    try:
        return listed[name] in (None, file_sha256(folder / name))
    except OSError:
        return False


def written_by_dlcv(path) -> bool:
    """Whether ``path`` is a file as dlcv wrote it: listed in its folder's manifest, and unchanged since.

    An edited file (an answers template filled in), a copy, or a file the manifest does not list is not.
    """
    path = Path(path)
    return unchanged(path.parent, path.name, listed_hashes(read_manifest(path.parent)))


def write_manifest(folder, kind: str, version: str, files: Optional[Dict[str, Optional[str]]] = None) -> None:
    """Write ``folder``'s manifest: what it holds (``kind``), dlcv's ``version``, the time, and ``files``' hashes.

    Args:
        folder: a folder dlcv writes into.
        kind: what it holds (``run``, ``set of predicted masks``...), which later commands check.
        version: the dlcv version writing it.
        files: each file dlcv put there, by its path below ``folder``, with its ``file_sha256`` (None: to be written);
            None: no list, the whole folder counts as dlcv's.
    """
    data = {"kind": kind, "dlcv": version, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if files is not None:
        data["files"] = files
    with atomic_write(Path(folder) / MANIFEST) as handle:
        json.dump(data, handle)
        handle.write("\n")


def file_hashes(folder: Path, names: Iterable[str]) -> Dict[str, str]:
    """Each of ``names`` below ``folder`` with its ``file_sha256`` now."""
    return {name: file_sha256(folder / name) for name in sorted(names)}


@contextlib.contextmanager
def manifest_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` itself while its manifest is read and rewritten (none on Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError as exc:
        raise write_error(Path(folder) / MANIFEST, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record_written(path, version: str) -> None:
    """Add the file ``path``, as it is now, to its folder's manifest, made (``NAMED_FILES``) where there is none.

    One command at a time rewrites the manifest (``manifest_lock``), so two writing beside each other both count.

    Raises:
        DlcvError: the manifest could not be written (read-only folder, full disk), naming it.
    """
    path = Path(path)
    with manifest_lock(path.parent):
        manifest = read_manifest(path.parent) or {"kind": NAMED_FILES}
        files = listed_hashes(manifest)
        files[path.name] = file_sha256(path)
        write_manifest(path.parent, manifest["kind"], version, files)


def current_umask() -> int:
    """The process's umask (read without changing it), for giving temporary files the usual mode."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``, renamed onto it if the block raises nothing.

    On an error the temporary file is removed and ``path`` is left as it was.

    Raises:
        DlcvError: ``check_output_path`` refuses ``path``, or its write failed (read-only folder, full disk), naming
            ``path``.
        OSError: another file's error, raised inside the block, passed on.
    """
    path = check_output_path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    except OSError as exc:
        raise write_error(path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(str(tmp_path), 0o666 & ~current_umask())  # mkstemp makes 0600; outputs get the usual mode
        yield tmp_path
        os.replace(str(tmp_path), str(path))
    except OSError as exc:
        if exc.filename not in (None, str(tmp_path), str(path)):
            raise  # another file's problem: not this output's to name
        raise write_error(path, exc) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_write(path, mode: str = "w", **kwargs) -> Iterator:
    """Open a temporary file beside ``path`` to write, renamed onto ``path`` on success (``atomic_path``).

    ``mode`` and ``kwargs`` are ``open``'s.
    """
    with atomic_path(path) as tmp, open(str(tmp), mode, **kwargs) as handle:
        yield handle
