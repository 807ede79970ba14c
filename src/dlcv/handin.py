"""``dlcv handin``: one folder holding what a year's course scripts need (the scripts, their shared
``common.sh`` and, weights only, each checkpoint they load), which runs with nothing but dlcv installed.

The scripts come from the repository's ``scripts/YEAR/``; each names its checkpoint as
``checkpoint VAR NAME CANDIDATE...`` (``scripts/common.sh``), and the folder holds it as
``checkpoints/NAME.ckpt``, which that function looks for beside the scripts before the repository's runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dlcv.errors import DlcvError
from dlcv.io import atomic_path, staged_folder

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"  # the clone's scripts/ (the README installs editable)
CALL = re.compile(r"checkpoint (DLCV_\w+) (\w+) ((?:[^)\\]|\\\n)+)\)")
TASKS = {"p1": "classify", "ssl": "classify", "seg": "segment"}  # what kind of checkpoint each name is
KIND = "hand-in folder"


def script_checkpoint(script: Path) -> tuple[str, str, list[str]]:
    """``(variable, name, candidates)`` of the checkpoint a course script loads."""
    found = CALL.search(script.read_text())
    if found is None:
        raise DlcvError(f"{script}: names no checkpoint (expected a line 'checkpoint VAR NAME CANDIDATE...')")
    return found.group(1), found.group(2), found.group(3).replace("\\\n", " ").split()


def choose_checkpoint(name: str, candidates: list[str], runs: Path, given: dict[str, str]) -> Path:
    """The checkpoint given for ``name``, else the first candidate (``runs/...``) found under ``runs``."""
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


def write_weights_only(source: Path, target: Path, task: str) -> None:
    """``source``'s model weights and recipe, without the optimiser and the training state."""
    import torch

    from dlcv.checkpoints import read_checkpoint

    ckpt, _ = read_checkpoint(source, task)
    slim = {"state_dict": {k: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")},
            "hyper_parameters": ckpt["hyper_parameters"]}
    with atomic_path(target) as tmp:
        torch.save(slim, tmp)


def handin(year: int, output: str | os.PathLike, runs: str | os.PathLike = "runs", given: dict[str, str] | None = None,
           overwrite: bool = False) -> list[tuple[str, int, str]]:
    """Write the hand-in folder of ``year`` into ``output``; return ``(file, bytes, where from)`` per file."""
    folder, runs, given = SCRIPTS / str(year), Path(runs), given or {}
    years = sorted(p.name for p in SCRIPTS.glob("20*")) if SCRIPTS.is_dir() else []
    if not years:
        raise DlcvError(f"{SCRIPTS}: no course scripts here; dlcv handin runs from a clone of the repository "
                        "installed with 'pip install -e .'")
    if not folder.is_dir():
        raise DlcvError(f"--year {year}: choose among {', '.join(years)}")
    unknown = sorted(set(given) - set(TASKS))
    if unknown:
        raise DlcvError(f"--checkpoint {unknown[0]}=...: name one of {', '.join(TASKS)}")
    scripts = sorted(folder.glob("hw1_*.sh"))
    wanted = {name: candidates for _, name, candidates in map(script_checkpoint, scripts)}
    ignored = sorted(set(given) - set(wanted))
    if ignored:
        raise DlcvError(f"--checkpoint {ignored[0]}=...: the {year} hand-in grades no {ignored[0]} problem (its "
                        f"scripts load {', '.join(wanted)})")
    needs = {name: choose_checkpoint(name, candidates, runs, given) for name, candidates in wanted.items()}
    written = []
    with staged_folder(output, overwrite, inputs=(runs, *needs.values()), kind=KIND) as staging:
        for source in (SCRIPTS / "common.sh", *scripts):  # the scripts lie beside common.sh here, not below it
            target = staging / source.name
            target.write_text(source.read_text().replace('/../common.sh"', '/common.sh"'))
            target.chmod(0o755)
            written.append((source.name, source))
        (staging / "checkpoints").mkdir()
        for name, source in needs.items():
            write_weights_only(source, staging / "checkpoints" / f"{name}.ckpt", TASKS[name])
            written.append((f"checkpoints/{name}.ckpt", source))
        return [(name, (staging / name).stat().st_size, str(source)) for name, source in written]
