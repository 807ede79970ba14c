"""The ``dlcv`` argument parser: the whole-homework commands here, each task's from ``dlcv.registry.TASKS``."""

from __future__ import annotations

import argparse
from importlib import import_module

from dlcv import registry
from dlcv.cli import commands as run
from dlcv.cli.options import command, group, seed
from dlcv.recipes import RECIPES


def _top_commands(commands) -> None:
    """Add the whole-homework commands: demo, report, handin, launch."""
    demo = command(commands, "demo", run.demo,
                   "synthesise the default data, train, predict and evaluate at small scale")
    demo.add_argument("--output", default="demo", help="folder for the data, runs and results (default: demo)")
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo in that folder")

    report = command(commands, "report", run.report,
                     "every table and figure of the homework from run folders, as a page")
    report.add_argument("--runs", default="runs", help="folder of run folders (default: runs)")
    report.add_argument("--output", default="report",
                        help="folder for index.html, report.md and figures/ (new, empty or an earlier report)")
    report.add_argument("--overwrite", action="store_true",
                        help="also replace a folder of dlcv's that is not a report (an earlier report always is)")
    report.add_argument("--year", type=int, help="order the sections as that year's homework (2021-2024) numbers "
                        "its problems")
    report.add_argument("--no-pdf", action="store_true", help="write no report.pdf (it needs a Chromium)")
    report.add_argument("--answers-template", metavar="FILE",
                        help="write FILE: the year's questions, each with what dlcv places for it, to answer in")
    report.add_argument("--answers", metavar="FILE", help="your answers (the template filled in): each under its "
                        "question, your name and student id at the top")

    hand = command(commands, "handin", run.handin, "gather a year's course scripts and the checkpoints they load "
                   "(weights only) into one folder")
    hand.add_argument("--year", type=int, required=True, help="the homework's year: 2021, 2022, 2023 or 2024")
    hand.add_argument("--output", required=True, help="folder to write (new or empty)")
    hand.add_argument("--runs", default="runs", help="folder of run folders holding the checkpoints (default: runs)")
    hand.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                      help="the checkpoint for p1, seg or ssl instead of the first of the script's runs that exists")
    hand.add_argument("--url", action="append", default=[], metavar="NAME=URL",
                      help="where the download script fetches NAME's weights (p1, ssl, seg), e.g. a Google Drive or "
                      "Dropbox link (repeatable)")
    hand.add_argument("--half", action="store_true", help="store each weights file in float16 (half the size) where "
                      "dlcv's predictions on the images its run validated on stay the same; otherwise float32")
    hand.add_argument("--autocast", action="store_true", help="the scripts predict under the autocast of dlcv's "
                      "predict --autocast (bf16 or float16 where the machine has it); else in float32, so that their "
                      "labels do not depend on the grader's GPU or torch")
    hand.add_argument("--overwrite", action="store_true", help="replace an earlier hand-in folder")

    launch = command(commands, "launch", run.launch, "run a training command in several processes or on several "
                     "nodes (torchrun's launcher), failures in one line")
    launch.add_argument("--nnodes", type=int, default=1, help="machines taking part (default 1)")
    launch.add_argument("--node-rank", type=int, default=0, help="this machine's place, 0 .. nnodes-1 (default 0)")
    launch.add_argument("--nproc-per-node", type=int, default=1,
                        help="processes on this machine: one per GPU, or CPU processes (default 1)")
    launch.add_argument("--master", metavar="HOST:PORT", help="with --nnodes > 1: node 0's address, the same on "
                        "every node")
    launch.add_argument("--join-timeout", type=int, default=600, metavar="SECONDS",
                        help="how long the nodes wait for each other before stopping (default 600)")
    launch.add_argument("dlcv_command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                        help="the dlcv command each process runs, e.g. -- classify fit --config ...")


def _data_commands(commands) -> None:
    """Add ``dlcv data``: synthetic data and the transfer split."""
    data = group(commands, "data", "data sets")
    synth = command(data, "synth", run.synth, "write the embedded default data in the course's formats")
    synth.add_argument("--output", required=True, help="folder to write p1_data/ and p2_data/ into")
    synth.add_argument("--problems", default="p1,p2",
                       help="which data sets, comma-separated: p1, p2, ssl (default p1,p2)")
    synth.add_argument("--classes", type=int, default=10)
    synth.add_argument("--train-per-class", type=int, default=100)
    synth.add_argument("--val-per-class", type=int, default=20)
    synth.add_argument("--p2-train", type=int, default=24, help="satellite training pairs (default 24)")
    synth.add_argument("--p2-validation", type=int, default=8, help="satellite validation pairs (default 8)")
    synth.add_argument("--p2-size", type=int, default=512, help="side of the satellite images (default 512)")
    synth.add_argument("--ssl-arch", default="resnet50",
                       help="architecture of the synthetic pretrain_model_SL.pt (default resnet50, the course's)")
    synth.add_argument("--seed", type=seed, default=0)
    synth.add_argument("--overwrite", action="store_true", help="replace data already there")
    split = command(data, "transfer-split", run.transfer_split, "the p1 images as Mini-ImageNet (classes 0-24) and "
                    "Office-Home (classes 25-49) for the self-supervised problem")
    split.add_argument("--p1", required=True, help="the p1_data folder (train_50/, val_50/)")
    split.add_argument("--output", required=True, help="folder to write mini/, office/ and supervised/ into")
    split.add_argument("--seed", type=seed, default=0)
    split.add_argument("--overwrite", action="store_true", help="replace a folder that already holds files")


def _rest_commands(commands) -> None:
    """Add ``dlcv export``, ``dlcv models`` and ``dlcv keys``."""
    export = command(commands, "export", run.export, "a checkpoint's model as plain torch code or ONNX, checked "
                     "against the checkpoint")
    export.add_argument("checkpoint", help="a classification or segmentation checkpoint (best.ckpt)")
    export.add_argument("--format", choices=("torch", "onnx"), default="torch",
                        help="torch: a folder of model.py and weights.pth (torch alone runs it); onnx: one file")
    export.add_argument("--output", required=True, help="the folder (torch) or file (onnx) to write")
    export.add_argument("--torch", metavar="VERSION",
                        help="the oldest torch the code must run on (default 1.12, the course machine's of 2022 and "
                        "2023): newer operations are written as their older equivalents, or refused")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export (or a file of yours)")

    command(commands, "models", run.models, "list the model names a recipe can use")
    keys = command(commands, "keys", run.keys, "list every recipe key of a task: its default, rule and meaning")
    keys.add_argument("task", nargs="?", choices=list(RECIPES))
    keys.add_argument("--markdown", action="store_true", help="Markdown tables, one per section (of every task without "
                      "one): the tables of docs/configuration.md")


def build_parser() -> argparse.ArgumentParser:
    """Return the ``dlcv`` argument parser: every command, its options and the function that runs it."""
    parser = argparse.ArgumentParser(prog="dlcv", description="The computer-vision work of DLCV HW1, end to end.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _top_commands(commands)
    _data_commands(commands)
    for task in registry.TASKS:
        import_module(f"dlcv.cli.{task.name}").add(commands)
    _rest_commands(commands)
    return parser
