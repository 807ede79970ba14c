"""``dlcv handin``: write the folder the course grades, which runs with the course's packages alone.

The folder runs on the course's machine with torch, torchvision, numpy and Pillow, without dlcv. Each of the year's
``scripts/YEAR/hw1_N.sh`` loads the checkpoint its ``checkpoint VAR NAME CANDIDATE...`` line names
(``scripts/common.sh``).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from importlib import import_module
from pathlib import Path
from urllib.parse import quote, urlparse

import torch

from dlcv import __version__
from dlcv.errors import DlcvError
from dlcv.export import checkpoint_model
from dlcv.files import MANIFEST
from dlcv.io import save_torch, staged_folder
from dlcv.plain_source import DEFAULT_TORCH, plain_source
from dlcv.runs import RunFolder
from dlcv.runtime import ONEDNN_BF16_ISAS

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"  # the clone's scripts/ (the README installs editable)
CALL = re.compile(r"checkpoint (DLCV_\w+) (\w+) ((?:[^)\\]|\\\n)+)\)")
KIND = "hand-in folder"


def script_checkpoint(script: Path) -> tuple[str, str, list[str]]:
    """``(variable, name, candidates)`` of the checkpoint a course script loads.

    Raises:
        DlcvError: the script has no ``checkpoint VAR NAME CANDIDATE...`` line.
    """
    found = CALL.search(script.read_text())
    if found is None:
        raise DlcvError(f"{script}: names no checkpoint (expected a line 'checkpoint VAR NAME CANDIDATE...')")
    return found.group(1), found.group(2), found.group(3).replace("\\\n", " ").split()


def choose_checkpoint(name: str, candidates: list[str], runs: Path, given: dict[str, str]) -> Path:
    """The checkpoint for problem ``name``: the one given, else the first candidate found under ``runs``.

    Args:
        name: the problem (``p1``, ``ssl``, ``seg``).
        candidates: the course script's paths, each starting with ``runs/``.
        runs: the runs folder those paths are looked up in.
        given: checkpoints by problem, from ``--checkpoint NAME=PATH``.

    Raises:
        DlcvError: the checkpoint given is no file, or none of the candidates exists.
    """
    if name in given:
        path = Path(given[name])
        if not path.is_file():
            raise DlcvError(f"--checkpoint {name}={path}: no such file")
        return path
    paths = [runs / Path(c).relative_to("runs") for c in candidates]
    found = next((p for p in paths if p.is_file()), None)
    if found is None:
        raise DlcvError(f"{runs}: no {name} checkpoint for the scripts (none of {', '.join(map(str, paths))}); "
                        f"train one or give --checkpoint {name}=PATH")
    return found


# What each checkpoint name predicts, as the course runs it: (task of its checkpoint, predict.py's mode).
PROBLEMS = {"p1": ("classify", "folder"), "ssl": ("classify", "csv"), "seg": ("segment", "masks")}
# The torch of the course's grading machine by year (HANDIN.md): the exported models run on it.
COURSE_TORCH = {2021: "1.4", 2022: "1.12", 2023: "1.12", 2024: "2.4"}
# The download script's name by year (2021: each script fetches what it loads itself).
DOWNLOAD = {2021: "hw1_download.sh", 2022: "hw1_download.sh", 2023: "hw1_download_ckpt.sh",
            2024: "hw1_download_ckpt.sh"}
TEMPLATE = Path(__file__).resolve().parent / "handin_files" / "predict.py"
# Shipped as they are: the scripts average views (tta.py) and read and write files (files.py) as dlcv does.
SHIPPED = tuple(Path(__file__).resolve().parent / name for name in ("tta.py", "files.py"))


def handin(year: int, output: str | os.PathLike, runs: str | os.PathLike = "runs", given: dict[str, str] | None = None,
           overwrite: bool = False, urls: dict[str, str] | None = None, half: bool = False,
           autocast: bool = False) -> list[tuple[str, int, str]]:
    """Write ``year``'s hand-in folder into ``output``, and list each file and where it came from.

    Per graded problem: its script, a plain inference file, and the model as plain torch code with its state_dict;
    then dlcv's shipped modules (``SHIPPED``) and the download script, which fetches each weights file from ``urls``
    and checks its sha256.

    Args:
        year: the course's year, one of the folders of ``scripts/``.
        output: the hand-in folder, written whole (``staged_folder``).
        runs: the runs folder where the scripts' checkpoints are looked up.
        given: checkpoints by problem (``p1``, ``ssl``, ``seg``), in place of the scripts' candidates.
        overwrite: replace an earlier hand-in folder (``--overwrite``).
        urls: each weights file's address by problem; without one, the download script asks for the file by hand.
        half: save the weights in float16 where ``halved`` finds dlcv's predictions unchanged.
        autocast: the scripts predict under the autocast ``dlcv ... predict --autocast`` uses (else float32).

    Returns:
        ``(file, bytes, where from)`` per file written.

    Raises:
        DlcvError: no course scripts (not a clone of the repository), an unknown year, a checkpoint or URL for a
            problem the year does not grade, a bad URL, a missing checkpoint or one that does not export for the
            year's torch, or an output folder refused or not written.
    """
    folder, runs, given, urls = SCRIPTS / str(year), Path(runs), given or {}, urls or {}
    years = sorted(p.name for p in SCRIPTS.glob("20*"))  # none where SCRIPTS is no folder
    if not years:
        raise DlcvError(f"{SCRIPTS}: no course scripts here; dlcv handin runs from a clone of the repository "
                        "installed with 'pip install -e .'")
    if not folder.is_dir():
        raise DlcvError(f"--year {year}: choose among {', '.join(years)}")
    calls = {script: script_checkpoint(script) for script in sorted(folder.glob("hw1_*.sh"))}
    wanted = {name: candidates for _, name, candidates in calls.values()}
    for option, names in (("--checkpoint", given), ("--url", urls)):
        unknown = sorted(set(names) - set(PROBLEMS))
        if unknown:
            raise DlcvError(f"{option} {unknown[0]}=...: name one of {', '.join(PROBLEMS)}")
        ignored = sorted(set(names) - set(wanted))
        if ignored:
            raise DlcvError(f"{option} {ignored[0]}=...: the {year} hand-in grades no {ignored[0]} problem (its "
                            f"scripts load {', '.join(wanted)})")
    for name, url in urls.items():
        check_url(name, url)
    needs = {name: choose_checkpoint(name, candidates, runs, given) for name, candidates in wanted.items()}
    exported = {name: export_problem(name, path, half, COURSE_TORCH[year])  # refused before writing
                for name, path in needs.items()}
    for script, (_, name, _) in calls.items():  # the year's CSV header (2021: image_id), as its script asks dlcv
        if "--id-column image_id" in script.read_text():
            exported[name][0]["id_column"] = "image_id"
    files = folder_files(year, calls, exported)
    for config, _, _ in exported.values():
        config.update({"autocast": autocast, "onednn_bf16_isas": sorted(ONEDNN_BF16_ISAS), "folder_files": files,
                       "dlcv": __version__})
    with staged_folder(output, overwrite, inputs=(runs, *needs.values()), kind=KIND) as staging:
        written = write_folder(staging, year, calls, exported, needs, urls)
        return [(name, (staging / name).stat().st_size, str(source)) for name, source in written]


def write_folder(staging: Path, year: int, calls: dict, exported: dict, needs: dict, urls: dict) -> list[tuple]:
    """Write the hand-in folder's files into ``staging``, and return ``(file, where from)`` per file.

    Per problem its inference file, model and weights; per course script its ``hw1_N.sh``; dlcv's shipped modules
    (``SHIPPED``) and the download script.
    """
    download, written, sums = DOWNLOAD[year], [], {}
    for name, (config, source, state) in exported.items():
        config["download"] = f"bash {download}"
        note = config.pop("precision_note", "")
        (staging / f"{name}_model.py").write_text(source)
        (staging / f"{name}_predict.py").write_text(predict_source(config))
        sums[name] = save_weights(state, staging / config["weights"])
        written += [(f"{name}_predict.py", needs[name]), (f"{name}_model.py", needs[name]),
                    (config["weights"], f"{needs[name]}{note}")]
    for script, (_, name, _) in calls.items():
        fetch = f'bash "$here/{download}" {name} || exit 1\n' if year == 2021 else ""
        target = staging / script.name
        target.write_text(f"#!/usr/bin/env bash\n# {script_usage(script)} (written by dlcv handin)\n{HERE}{fetch}"
                          f'python3 -B "$here/{name}_predict.py" "$@"\n')  # -B: no __pycache__ in the folder
        target.chmod(0o755)
        written.append((script.name, script))
    for shipped in SHIPPED:
        (staging / shipped.name).write_text(shipped.read_text())
        written.append((shipped.name, shipped))
    target = staging / download
    target.write_text(download_script(year, {n: (exported[n][0]["weights"], sums[n], urls.get(n, ""))
                                             for n in exported}))
    target.chmod(0o755)
    return [*written, (download, "dlcv handin")]


def folder_files(year: int, calls: dict, exported: dict) -> list[str]:
    """The names of every file the hand-in folder holds, which its scripts never write over."""
    per_problem = [name for n, (config, _, _) in exported.items()
                   for name in (f"{n}_predict.py", f"{n}_model.py", config["weights"])]
    return sorted({*per_problem, *(s.name for s in calls), *(s.name for s in SHIPPED), DOWNLOAD[year], MANIFEST})


def script_usage(script: Path) -> str:
    """The first comment line of a course script: the year, the problem and its arguments."""
    return next(line[2:] for line in script.read_text().splitlines() if line.startswith("# DLCV"))


def export_problem(name: str, checkpoint: Path, half: bool = False, torch_version: str = DEFAULT_TORCH
                   ) -> tuple[dict, str, dict]:
    """Export problem ``name``'s checkpoint for the hand-in as ``(config, model source, state_dict)``.

    The model becomes plain torch code for ``torch_version``, traced at its input (``plain_source``); ``config`` holds
    what ``predict.py`` needs to prepare the input as dlcv does.

    Args:
        name: the problem (``p1``, ``ssl``, ``seg``).
        checkpoint: its dlcv checkpoint.
        half: float16 weights where ``halved`` allows.
        torch_version: the torch the code must run on (``"1.12"``).

    Raises:
        DlcvError: the checkpoint is unreadable or not of the problem's task, or its model cannot be plain torch code
            for ``torch_version`` (naming the checkpoint).
    """
    task, mode = PROBLEMS[name]
    model, recipe, example = checkpoint_model(checkpoint, task)
    config = import_module(f"dlcv.{task}").handin_config(recipe)
    try:
        source, state, any_size, any_batch = plain_source(model, example, torch_version)
    except DlcvError as exc:
        raise DlcvError(f"{checkpoint}: {exc}") from None
    config.update({"task": mode, "model": f"{name}_model", "weights": f"{name}.pth", "batch": len(example),
                   "any_batch": any_batch, "side": None if any_size else example.shape[-1],
                   "mean": list(recipe.data.mean), "std": list(recipe.data.std), "tta": recipe.train.tta,
                   "precision": str(recipe.train.precision)})
    if half:
        state, config["precision_note"] = halved(task, model, recipe, checkpoint, state)
    return config, source, state


def halved(task: str, model, recipe, checkpoint: Path, state: dict) -> tuple[dict, str]:
    """``state`` in float16 if that leaves dlcv's predictions on the run's validation images unchanged.

    The images are those the run validated on (its holdout, else its validation folder): a classifier must keep every
    label, a segmenter its mIoU to 1e-4 (the scripts' own bar). ``model``'s weights are rounded in place to check.

    Returns:
        ``(state, note)``: the state_dict to save (float16, or as it was), and what was found, in words.
    """
    folder = RunFolder(checkpoint.parent).resolved.get("data")  # {} without resolved.json
    if not folder or not Path(folder).is_dir():
        return state, f" (float32: the run's data {folder or '(not recorded)'} is not here to check float16 on)"
    commands = import_module(f"dlcv.{task}")  # classify or segment: its data, its score and its bar
    data = commands.data_module(folder, recipe)
    data.prepare()
    where, before = f"{len(data.val):,} images it validated on", commands.half_score(model, data, recipe)
    with torch.no_grad():
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    changed = commands.half_change(before, commands.half_score(model, data, recipe), where)
    if changed:
        return state, f" (float32: {changed})"
    return ({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
            f" (float16: dlcv's predictions of the {where} unchanged)")


def predict_source(config: dict) -> str:
    """``predict.py`` with ``config`` in place of its empty ``CONFIG``."""
    return TEMPLATE.read_text().replace("CONFIG = {}  # filled in by dlcv handin",
                                        f"CONFIG = {config!r}  # written by dlcv handin", 1)


def save_weights(state: dict, path: Path) -> str:
    """Write ``state`` as a plain state_dict file, the same bytes for the same weights; return its sha256."""
    save_torch(state, path)  # serialised in memory: the archive is named alike each time
    return hashlib.sha256(path.read_bytes()).hexdigest()


HOSTS = ("drive.google.com", "docs.google.com")  # fetched with gdown, the course's tool for them
# RFC 3986's characters less those a shell gives a meaning (quotes, $, `, ;, \, whitespace): a URL holds none of them.
URL_SAFE = "-._~:/?#[]@!&()*+,=%"
MAX_URL = 2048  # characters; browsers and servers refuse longer ones


def check_url(name: str, url: str) -> None:
    """Refuse a URL the download script could not fetch, or holding a character a shell gives a meaning.

    Raises:
        DlcvError: a character other than ASCII letters, digits and ``URL_SAFE``; not http(s); no host; more than
            ``MAX_URL`` characters; or a ``%`` not followed by two hexadecimal digits (naming the URL and why).
    """
    shown = url if url.isprintable() else repr(url)
    shown = shown if len(shown) <= 120 else shown[:100] + "..."
    ask = f"--url {name}={shown}: give an http(s) address of the weights file"
    odd = next((c for c in url if not (c.isascii() and (c.isalnum() or c in URL_SAFE))), None)
    if odd is not None:
        raise DlcvError(f"{ask}; {odd!r} is not a URL's character (RFC 3986's only, and none of \" ' ` $ ; \\ or "
                        "spaces: copy the address as the browser's address bar shows it)")
    try:
        parsed = urlparse(url)
    except ValueError:  # a malformed bracketed host
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise DlcvError(ask)
    if len(url) > MAX_URL:
        raise DlcvError(f"{ask}; this one has {len(url):,} characters, more than a URL may ({MAX_URL:,})")
    if re.search(r"%(?![0-9A-Fa-f]{2})", url):
        raise DlcvError(f"{ask}; a '%' here is not followed by two hexadecimal digits")


def _direct(url: str) -> str:
    """A share link as a direct download (Dropbox's ``dl=0`` -> ``dl=1``)."""
    return url.replace("dl=0", "dl=1") if "dropbox.com" in url else url


def _tool(url: str) -> str:
    """The download tool for ``url``: gdown for Google Drive's hosts, else wget (curl where wget is missing)."""
    return "gdown" if (urlparse(url).hostname or "").lower() in HOSTS else "wget"


def download_script(year: int, files: dict[str, tuple[str, str, str]]) -> str:
    """The download script's text; it leaves alone a weights file already there with the right sha256.

    Its table of weights is data the script reads, never runs: each URL is percent-encoded past ``URL_SAFE`` (a no-op
    for one that ``check_url`` passed), so no value can end the table or reach a shell as code.

    Args:
        year: the course's year, for the script's heading.
        files: per problem name, ``(weights file name, sha256, url)``; an empty url: none given.
    """
    rows = []
    for name, (file, digest, url) in files.items():
        url = quote(_direct(url), safe=URL_SAFE) if url else "-"
        rows.append(f"{name} {file} {digest} {_tool(url) if url != '-' else '-'} {url}")
    return DOWNLOAD_TEMPLATE.format(year=year, names="|".join(files), table="\n".join(rows))


# The script's folder from $0: no command substitution (it drops trailing newlines), no leading '-' (read as an option).
HERE = """case "$0" in */*) here="${0%/*}" ;; *) here=. ;; esac
case "$here" in /*) ;; "") here=/ ;; *) here="./$here" ;; esac
"""

DOWNLOAD_TEMPLATE = """#!/usr/bin/env bash
# DLCV {year} HW1: fetch the weights the hw1 scripts load (written by dlcv handin). Each file is checked by its
# sha256; one already here and good is left alone. Usage: bash $0 [NAME]  (no NAME: every file)
""" + HERE.replace("{", "{{").replace("}", "}}") + """
sha256() {{  # the file's sha256, read from standard input (sha256sum escapes odd file names)
    sha256sum < "$1" | cut -d' ' -f1
}}

fetch() {{  # NAME FILE SHA256 TOOL URL
    local path="$here/$2" part="$here/.$2.part"
    if [ -f "$path" ] && [ "$(sha256 "$path")" = "$3" ]; then
        echo "$2: already here ($(wc -c < "$path") bytes)"
        return 0
    fi
    if [ "$5" = "-" ]; then
        echo "$2: no URL was given to dlcv handin; put the file (sha256 $3) at $path" >&2
        return 1
    fi
    if [ "$4" = gdown ]; then
        if command -v gdown > /dev/null; then gdown --fuzzy -q -O "$part" -- "$5" < /dev/null
        else python3 -m gdown --fuzzy -q -O "$part" -- "$5" < /dev/null; fi
    elif command -v wget > /dev/null; then
        wget -q -O "$part" -- "$5" < /dev/null
    else
        curl -fsSL -o "$part" --url "$5" < /dev/null
    fi
    if [ ! -f "$part" ] || [ "$(sha256 "$part")" != "$3" ]; then
        echo "$2: the download from $5 is not the file dlcv handin wrote (sha256 differs); check the link" >&2
        python3 -c 'import os, sys; os.path.exists(sys.argv[1]) and os.remove(sys.argv[1])' "$part"
        return 1
    fi
    python3 -c 'import os, sys; os.replace(sys.argv[1], sys.argv[2])' "$part" "$path" || return 1
    echo "$2: fetched ($(wc -c < "$path") bytes)"
}}

# The weights, one per line: NAME FILE SHA256 TOOL URL ('-': no URL). Read as text, never run.
names=() files=() sums=() tools=() urls=()
while read -r name file sum tool url; do
    names+=("$name") files+=("$file") sums+=("$sum") tools+=("$tool") urls+=("$url")
done <<'WEIGHTS'
{table}
WEIGHTS

status=0 found=0
for i in "${{!names[@]}}"; do
    if [ "${{1:-all}}" = all ] || [ "$1" = "${{names[$i]}}" ]; then
        found=1
        fetch "${{names[$i]}}" "${{files[$i]}}" "${{sums[$i]}}" "${{tools[$i]}}" "${{urls[$i]}}" || status=1
    fi
done
if [ "$found" = 0 ]; then
    echo "usage: bash $0 [{names}]" >&2
    exit 2
fi
exit $status
"""
