"""The graded folder as careful as dlcv: URLs are data, never shell; the scripts keep dlcv's output rules; bad input is
one line; inputs are read as dlcv reads them; the scripts run from any folder; labels are float32's everywhere."""

from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import torch
from conftest import run_cli, run_script
from PIL import Image

from dlcv.errors import DlcvError
from dlcv.handin import DOWNLOAD, URL_SAFE, check_url, download_script, handin

# Hostile URLs: each tries to run a command of its own (touch MARK, id), end the table or the line, reach an option,
# or is not a URL at all. Some hold only characters a URL may (&, !, (, ), *, %-escapes): the rule lets those
# through, and the script must still read them as data.
HOSTILE = [
    "https://x.org/a$(touch MARK)", "https://x.org/a`touch MARK`", "https://x.org/a;touch MARK",
    "https://x.org/a|touch MARK", "https://x.org/a&&touch${IFS}MARK", "https://x.org/a\"; touch MARK; \"",
    "https://x.org/a'; touch MARK; '", "https://x.org/a\\", "https://x.org/a\ntouch MARK",
    "https://x.org/a\nWEIGHTS\ntouch MARK\n", "https://x.org/${IFS}touch${IFS}MARK", "https://x.org/$HOME",
    "https://x.org/a b", "https://x.org/a\ttouch MARK", "https://x.org/*", "-OMARK", "https://x.org/a>MARK",
    "https://x.org/a<MARK", "https://x.org/a\rtouch MARK", "https://x.org/a%0atouch%20MARK",
    "https://x.org/a?x=$(id)", "https://x.org/a#`id`", "https://x.org/a\x1b[2J", "https://x.org/a{touch,MARK}",
    "https://x.org/a!touch(MARK)*", "file:///etc/passwd", "https://x.org/\u00fc", "https://x.org/a\u2028b",
    "https://drive.google.com/file/d/x$(touch MARK)/view", "https://drive.google.com/uc?id=x&&touch!MARK",
    "https://x.org/" + "a" * 3000,
]
FAKES = ("wget", "curl", "gdown")  # the downloaders: they record their arguments
TRAPS = ("touch", "id", "rm", "sh")  # what a payload would run: recorded as forbidden


def _tools(root: Path, downloaders: tuple[str, ...]) -> Path:
    """A folder that is the whole PATH: fake downloaders and traps that record their arguments (NUL-separated, one
    record a line's worth ending in RS), and the real sha256sum, cut, wc and python3 the script uses."""
    tools = root / "bin"
    tools.mkdir()
    for name in (*downloaders, *TRAPS):
        record = f"printf '%s\\0' {name} \"$@\" >> \"$LOG\"\nprintf '\\036' >> \"$LOG\"\n"
        (tools / name).write_text(f"#!/bin/bash\n{record}")
        (tools / name).chmod(0o755)
    for name in ("sha256sum", "cut", "wc", "python3", "bash"):
        (tools / name).symlink_to(shutil.which(name, path="/usr/bin:/bin"))
    return tools


def _records(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [r.split("\0")[:-1] for r in log.read_text(errors="surrogateescape").split("\x1e") if r]


def test_thirty_hostile_urls_are_refused_and_reach_every_written_download_script_only_as_data(tmp_path):
    """Each URL is refused by the rule unless it holds only a URL's characters; and even where the rule is bypassed,
    every year's download script hands it to the downloader as one argument and runs nothing else."""
    assert len(HOSTILE) >= 30
    digest = "0" * 64
    for url in HOSTILE:
        try:
            check_url("p1", url)
        except DlcvError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("--url p1=")
        else:
            assert all(c.isascii() and (c.isalnum() or c in URL_SAFE) for c in url), url
    for number, (year, downloaders) in enumerate([(y, FAKES) for y in DOWNLOAD] + [(2022, ("curl", "gdown"))]):
        root = tmp_path / f"run{number}"
        root.mkdir()
        tools, log = _tools(root, downloaders), root / "log"
        for index, url in enumerate(HOSTILE):
            work = root / f"u{index}"
            work.mkdir()
            script = work / DOWNLOAD[year]
            script.write_text(download_script(year, {"p1": ("p1.pth", digest, url)}))
            log.unlink(missing_ok=True)
            done = subprocess.run(["bash", str(script), "p1"], capture_output=True, text=True, cwd=work, timeout=60,
                                  env={"PATH": str(tools), "LOG": str(log), "HOME": str(work)})
            records = _records(log)
            assert "command not found" not in done.stderr and "syntax error" not in done.stderr, (url, done.stderr)
            assert len(records) == 1 and records[0][0] in downloaders, (year, url, records)
            encoded = quote(url, safe=URL_SAFE)
            assert records[0][-1] == encoded, (url, records)
            if "drive.google.com" in url and "gdown" in downloaders:
                assert records[0][0] == "gdown"
            assert done.returncode == 1 and "is not the file dlcv handin wrote" in done.stderr
            assert sorted(p.name for p in work.iterdir()) == [DOWNLOAD[year]]  # no MARK, no partial download


@pytest.fixture(scope="module")
def hand(tmp_path_factory, trained_run, seg_run) -> Path:
    """A 2022 hand-in folder of the tiny classifier and segmenter."""
    folder = tmp_path_factory.mktemp("hand") / "hand in"
    handin(2022, folder, given={"p1": str(trained_run / "best.ckpt"), "seg": str(seg_run / "best.ckpt")})
    return folder


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
            for p in sorted(root.rglob("*"))}


def _refused(done: subprocess.CompletedProcess, pattern: str) -> None:
    """Exit status 2 and one line naming the problem, no traceback."""
    import re

    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.slow
def test_the_scripts_never_write_over_an_input_their_own_files_or_a_file_they_did_not_write(
        tmp_path, hand, p1_data, p2_data, course_python):
    images, tiles = p1_data / "val_50", p2_data / "validation"
    before = {p: _snapshot(p) for p in (hand, images, tiles)}
    _refused(run_script(hand, "hw1_2.sh", tiles, tiles, cwd=tmp_path), r"is an input of this command")
    _refused(run_script(hand, "hw1_2.sh", tiles, tiles / "masks", cwd=tmp_path), r"lies inside the input folder")
    first = sorted(images.iterdir())[0]
    _refused(run_script(hand, "hw1_1.sh", images, first, cwd=tmp_path), r"lies inside the input folder")
    for own in ("p1.pth", "hw1_1.sh", "p1_model.py", "files.py"):
        _refused(run_script(hand, "hw1_1.sh", images, hand / own, cwd=tmp_path),
                 r"is one of this hand-in folder's own files")
    _refused(run_script(hand, "hw1_2.sh", tiles, hand, cwd=tmp_path), r"holds the input")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "0000_mask.png").write_bytes(b"a mask of mine")
    (mine / "notes.csv").write_text("my,notes\n")
    _refused(run_script(hand, "hw1_2.sh", tiles, mine, cwd=tmp_path), r"mine: holds files this script did not write")
    _refused(run_script(hand, "hw1_1.sh", images, mine / "notes.csv", cwd=tmp_path),
             r"notes\.csv: exists and this script did not write it")
    _refused(run_script(hand, "hw1_1.sh", images, mine, cwd=tmp_path), r"mine: is a folder, expected a file name")
    _refused(run_script(hand, "hw1_2.sh", tiles, mine / "notes.csv", cwd=tmp_path), r"is a regular file, expected a "
             r"folder")
    (mine / ".dlcv-output").mkdir()  # where the script would list its output: refused before any work
    _refused(run_script(hand, "hw1_1.sh", images, mine / "new.csv", cwd=tmp_path),
             r"mine/\.dlcv-output: is a folder, expected a file name")
    assert not (mine / "new.csv").exists()
    (tmp_path / "link.csv").symlink_to(mine / "notes.csv")
    _refused(run_script(hand, "hw1_1.sh", images, tmp_path / "link.csv", cwd=tmp_path), r"is a link")
    assert (mine / "0000_mask.png").read_bytes() == b"a mask of mine"
    assert (mine / "notes.csv").read_text() == "my,notes\n"
    assert {p: _snapshot(p) for p in (hand, images, tiles)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "mine"]  # nothing else was written


@pytest.mark.slow
def test_outputs_go_through_a_rename_into_new_or_empty_places_and_a_rerun_replaces_its_own(
        tmp_path, hand, p1_data, p2_data, course_python):
    images, tiles = p1_data / "val_50", p2_data / "validation"
    nested = tmp_path / "not" / "there" / "pred.csv"  # the output's folders are made
    assert run_script(hand, "hw1_1.sh", images, nested, cwd=tmp_path).returncode == 0
    rows = list(csv.reader(open(nested)))
    assert rows[0] == ["filename", "label"] and len(rows) == 17
    done = run_script(hand, "hw1_1.sh", images, nested, cwd=tmp_path)  # its own output: replaced
    assert done.returncode == 0, done.stderr
    copied = tmp_path / "copied"  # copied with new times (a grader's cp -r): the same bytes, still the script's
    shutil.copytree(nested.parent, copied, copy_function=shutil.copy)
    done = run_script(hand, "hw1_1.sh", images, copied / "pred.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    empty = tmp_path / "empty.csv"
    empty.touch()  # an empty file holds nothing to lose (a grader may make the file first)
    assert run_script(hand, "hw1_1.sh", images, empty, cwd=tmp_path).returncode == 0 and empty.stat().st_size
    given = tmp_path / "given"
    given.mkdir()  # an existing empty folder, as the 2023 FAQ gives them: filled in place
    assert run_script(hand, "hw1_2.sh", tiles, given, cwd=tmp_path).returncode == 0
    masks = sorted(p.name for p in given.glob("*_mask.png"))
    assert masks == [f"{i:04d}_mask.png" for i in range(4)]
    (given / "notes.txt").write_text("mine")  # a file of the user's beside the masks stays
    assert run_script(hand, "hw1_2.sh", tiles, given, cwd=tmp_path).returncode == 0
    assert (given / "notes.txt").read_text() == "mine"
    (given / "0001_mask.png").write_bytes(b"touched up")  # a mask edited since: the grader's, never written over
    _refused(run_script(hand, "hw1_2.sh", tiles, given, cwd=tmp_path),
             r"0001_mask\.png: was not written by this script, or changed since")
    assert (given / "0001_mask.png").read_bytes() == b"touched up"
    (given / "0001_mask.png").unlink()
    new = tmp_path / "deep" / "masks"
    assert run_script(hand, "hw1_2.sh", tiles, new, cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in new.glob("*_mask.png")) == masks
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name or "staging" in p.name]


@pytest.mark.slow
def test_bad_input_is_one_line_naming_the_file(tmp_path, hand, p1_data, p2_data, course_python):
    out = tmp_path / "out.csv"
    _refused(run_script(hand, "hw1_1.sh", tmp_path / "nowhere", out, cwd=tmp_path), r"nowhere: no such folder")
    (tmp_path / "empty").mkdir()
    _refused(run_script(hand, "hw1_1.sh", tmp_path / "empty", out, cwd=tmp_path), r"empty: the folder holds no images")
    broken = tmp_path / "broken"
    shutil.copytree(p1_data / "val_50", broken)
    (broken / "9_9.png").write_bytes(b"not a png")
    _refused(run_script(hand, "hw1_1.sh", broken, out, cwd=tmp_path), r"9_9\.png: not a readable image")
    mixed = tmp_path / "mixed"
    shutil.copytree(p1_data / "val_50", mixed)
    Image.new("RGB", (40, 30)).save(mixed / "0_0.png")  # sorted first: the odd one is named, not the rest
    _refused(run_script(hand, "hw1_1.sh", mixed, out, cwd=tmp_path), r"0_0\.png: image is 40x30, but 16 of the 17")
    tiles = tmp_path / "tiles"
    shutil.copytree(p2_data / "validation", tiles)
    Image.new("RGB", (50, 50)).save(tiles / "0009_sat.jpg")
    _refused(run_script(hand, "hw1_2.sh", tiles, tmp_path / "m", cwd=tmp_path), r"0009_sat\.jpg: image is 50x50")
    _refused(run_script(hand, "hw1_2.sh", tmp_path / "empty", tmp_path / "m", cwd=tmp_path), r"no satellite images")
    (tmp_path / "a file").write_text("x")
    _refused(run_script(hand, "hw1_1.sh", p1_data / "val_50", tmp_path / "a file" / "out.csv", cwd=tmp_path),
             r"the output folder .*a file is not a folder")
    assert not out.exists() and not (tmp_path / "m").exists()


def _odd_images(folder: Path) -> None:
    """Every image mode dlcv reads, at 32x32: 16-bit grey, palette with transparency, RGBA, grey, grey with alpha,
    CMYK JPEG, an EXIF-rotated JPEG, upper-case suffixes."""
    folder.mkdir()
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray((rng.integers(0, 65536, (32, 32))).astype(np.uint16)).save(folder / "0_1.png")
    palette = Image.fromarray(rgb).convert("P")
    palette.info["transparency"] = 0
    palette.save(folder / "0_2.png", transparency=0)
    Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (32, 32), dtype=np.uint8)])).save(folder / "1_3.png")
    Image.fromarray(rgb[..., 0]).save(folder / "1_4.png")
    Image.fromarray(rgb).convert("LA").save(folder / "2_5.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "2_6.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    Image.fromarray(rgb).save(folder / "3_7.JPG", exif=exif.tobytes())
    Image.fromarray(rgb).save(folder / "3_8.JPEG")


@pytest.mark.slow
def test_the_scripts_read_every_kind_of_input_as_dlcv_does(capsys, tmp_path, trained_run, seg_run, p2_data,
                                                           course_python):
    """Each image mode and name pattern dlcv accepts, and a CSV with a byte-order mark: the arrays decoded under the
    grading stand-in equal dlcv's, and so do the outputs."""
    from dlcv.files import decode_image, list_images

    odd = tmp_path / "odd"
    _odd_images(odd)
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    for i, name in enumerate(("0000_SAT.JPG", "0001_sat.png", "0002_Sat.jpeg")):
        shutil.copy(sorted((p2_data / "validation").glob("*_sat.jpg"))[i], tiles / "x.jpg")
        Image.open(tiles / "x.jpg").save(tiles / name)
        (tiles / "x.jpg").unlink()
    hand = tmp_path / "hand"
    hand.mkdir()
    for year in (2022, 2023):  # 2023 grades the Office-Home CSV too
        code, _, err = run_cli(capsys, "handin", "--year", year, "--output", hand / str(year), "--checkpoint",
                               f"p1={trained_run / 'best.ckpt'}", "--checkpoint", f"seg={seg_run / 'best.ckpt'}",
                               *(("--checkpoint", f"ssl={trained_run / 'best.ckpt'}") if year == 2023 else ()))
        assert code == 0, err
    folder = hand / "2022"
    probe = ("import sys, hashlib; sys.path.insert(0, sys.argv[1]); from files import decode_image, list_images\n"
             "for p in list_images(sys.argv[2]): print(p.name, hashlib.sha256(decode_image(p).tobytes()).hexdigest())")
    done = subprocess.run([str(course_python), "-c", probe, str(folder), str(odd)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    ours = [f"{p.name} {hashlib.sha256(decode_image(p).tobytes()).hexdigest()}" for p in list_images(odd)]
    assert done.stdout.split("\n")[:-1] == ours and len(ours) == 8
    assert run_script(folder, "hw1_1.sh", odd, tmp_path / "hand.csv", cwd=tmp_path).returncode == 0
    code, _, err = run_cli(capsys, "classify", "predict", "--checkpoint", trained_run / "best.ckpt", "--images", odd,
                           "--output", tmp_path / "dlcv.csv")
    assert code == 0, err
    assert (tmp_path / "hand.csv").read_text() == (tmp_path / "dlcv.csv").read_text()
    done = run_script(folder, "hw1_2.sh", tiles, tmp_path / "hand_masks", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    code, _, err = run_cli(capsys, "segment", "predict", "--checkpoint", seg_run / "best.ckpt", "--images", tiles,
                           "--output", tmp_path / "dlcv_masks")
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "dlcv_masks").glob("*_mask.png"))
    assert names == ["0000_mask.png", "0001_mask.png", "0002_mask.png"]
    assert sorted(p.name for p in (tmp_path / "hand_masks").glob("*_mask.png")) == names
    for name in names:
        assert np.array_equal(np.asarray(Image.open(tmp_path / "hand_masks" / name)),
                              np.asarray(Image.open(tmp_path / "dlcv_masks" / name)))
    table = tmp_path / "test.csv"
    table.write_bytes("\ufeffid,filename,label\n".encode() + b"".join(
        f"{i},{p.name},\n".encode() for i, p in enumerate(list_images(odd))))
    assert run_script(hand / "2023", "hw1_2.sh", table, odd, tmp_path / "hand_ssl.csv", cwd=tmp_path).returncode == 0
    code, _, err = run_cli(capsys, "ssl", "predict", "--checkpoint", trained_run / "best.ckpt", "--csv", table,
                           "--images", odd, "--output", tmp_path / "dlcv_ssl.csv")
    assert code == 0, err
    assert (tmp_path / "hand_ssl.csv").read_text() == (tmp_path / "dlcv_ssl.csv").read_text()


@pytest.mark.slow
def test_the_scripts_run_from_a_folder_of_any_name(tmp_path, hand, p1_data, course_python):
    """Folders named like an option, ending in a newline, or holding quotes and a dollar sign; the script given by an
    absolute or a relative path, or run from inside its folder (the three ways for the last name)."""
    for index, name in enumerate(("-x", "ends in a newline\n", "it's \"$(id)\" `id`")):
        folder = tmp_path / name
        shutil.copytree(hand, folder)
        out = tmp_path / f"out{index}.csv"
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
        ways = (([f"./{name}/hw1_1.sh"], tmp_path), ([str(folder / "hw1_1.sh")], tmp_path), (["hw1_1.sh"], folder))
        for argv, cwd in ways if index == 2 else ways[:1]:
            done = subprocess.run(["bash", *argv, str(p1_data / "val_50"), str(out)], capture_output=True, text=True,
                                  cwd=cwd, env=env, timeout=600, check=False)
            assert done.returncode == 0, (name, argv, done.stderr[-2000:])
            assert len(list(csv.reader(open(out)))) == 17
            out.unlink()
        shutil.rmtree(folder)


@pytest.mark.slow
def test_a_near_tie_gets_float32s_label_from_dlcv_and_the_scripts_and_autocast_only_when_asked(
        capsys, tmp_path, trained_run, seg_run, p1_data, course_python, monkeypatch):
    """Classes 0 and 1 of the head read one feature times 1 and 1 + 1e-3: float32 keeps class 1 ahead on every
    image; bf16 (8 bits of mantissa) rounds both to 1, a tie class 0 wins. dlcv's predict and the hand-in's script
    both give class 1; ``--autocast`` on a bf16 CPU gives class 0, on both sides alike, and class 1 again where
    oneDNN is held below its bf16 instructions (``ONEDNN_MAX_CPU_ISA=AVX2``: bf16 would be emulated)."""
    from dlcv.classify import load_classifier
    from dlcv.data.augment import prepare_batch
    from dlcv.files import list_images
    from dlcv.runtime import cpu_computes_bf16_fast

    model, recipe = load_classifier(trained_run / "best.ckpt")
    images = torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB"))
                                        for p in list_images(p1_data / "val_50")]))
    with torch.no_grad():
        x = prepare_batch(images, recipe.data)
        lowest = torch.cat([model.forward_features(x), model.forward_features(x.flip(3))]).min(0).values
    j = int(lowest.argmax())
    assert lowest[j] > 0.05
    tied = tmp_path / "tied.ckpt"
    ckpt = torch.load(trained_run / "best.ckpt", weights_only=False)
    ckpt["hyper_parameters"]["train"]["precision"] = "bf16-mixed"
    head = ckpt["state_dict"]["model.head.weight"]
    head.zero_()
    head[:, j] = -1.0
    head[0, j], head[1, j] = 1.0, 1.0 + 1e-3
    if "model.head.bias" in ckpt["state_dict"]:
        ckpt["state_dict"]["model.head.bias"].zero_()
    torch.save(ckpt, tied)
    try:
        for autocast, held in (((), False), (("--autocast",), False), (("--autocast",), True)):
            if held:
                monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
                cpu_computes_bf16_fast.cache_clear()
            assert not (held and cpu_computes_bf16_fast())
            want = "0" if autocast and cpu_computes_bf16_fast() else "1"
            name = f"{len(autocast)}{'_held' if held else ''}"
            out = tmp_path / f"dlcv{name}.csv"
            code, _, err = run_cli(capsys, "classify", "predict", "--checkpoint", tied, "--images",
                                   p1_data / "val_50", "--output", out, *autocast)
            assert code == 0, err
            assert {row[1] for row in list(csv.reader(open(out)))[1:]} == {want}
            hand = tmp_path / f"hand{name}"
            code, _, err = run_cli(capsys, "handin", "--year", 2022, "--output", hand, "--checkpoint", f"p1={tied}",
                                   "--checkpoint", f"seg={seg_run / 'best.ckpt'}", *autocast)
            assert code == 0, err
            done = run_script(hand, "hw1_1.sh", p1_data / "val_50", tmp_path / f"hand{name}.csv", cwd=tmp_path,
                              env={"ONEDNN_MAX_CPU_ISA": "AVX2"} if held else None)
            assert done.returncode == 0, done.stderr
            assert (tmp_path / f"hand{name}.csv").read_text() == out.read_text()
    finally:
        cpu_computes_bf16_fast.cache_clear()  # read again, from the environment as it is restored
