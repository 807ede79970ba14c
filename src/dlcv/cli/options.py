"""What the task commands share: training and file-writing flags, and turning them into a library call's arguments."""

from __future__ import annotations

import argparse
import re

from dlcv.errors import DlcvError
from dlcv.recipes import Duration, describe, parse_duration


def run_options(parser: argparse.ArgumentParser) -> None:
    """Add the flags every training command shares: where its run folder goes and how an old one is treated."""
    parser.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    parser.add_argument("--name", help="run folder name (default: the recipe's name)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set train.epochs=5 (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="replace a run folder that already exists")
    budget_option(parser, "train.budget")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run of this name from its last.ckpt, with its saved recipe")


def seed(text: str) -> int:
    """Parse ``--seed``: a whole number from 0 to 2**32 - 1, as a random generator takes it.

    Raises:
        argparse.ArgumentTypeError: for any other text.
    """
    if not re.fullmatch(r"[0-9]{1,10}", text.strip()) or int(text) >= 2**32:  # isdigit() takes "²" and "٢" too
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from 0 to {2**32 - 1}")
    return int(text)


def budget_option(parser: argparse.ArgumentParser, key: str) -> None:
    """Add ``--budget``, whose help says it sets the recipe key ``key``."""
    parser.add_argument("--budget", metavar="DURATION",
                        help=f"end the whole command within this time, e.g. 20m or 1h30m (sets {key}): the steps are "
                             "planned from the measured speed and the schedule runs over them; none: train by epochs")


def file_overwrite(parser) -> None:
    """Add the ``--overwrite`` of a command that writes files a user names (``dlcv.io.check_output_file``'s rule)."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output file that dlcv did not write (one it wrote is replaced)")


def tta_option(parser: argparse.ArgumentParser, modes: tuple[str, ...]) -> None:
    """Add ``--tta``, one of ``modes``."""
    parser.add_argument("--tta", choices=modes, help="test-time augmentation (default: the recipe's train.tta)")


def autocast_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--autocast``: predict in the training precision's autocast instead of float32."""
    parser.add_argument("--autocast", action="store_true",
                        help="predict under the autocast of the model's training precision (bf16 or float16 where the "
                             "machine computes it fast); default float32, whose labels depend on no torch version or "
                             "machine")


def group(commands, name: str, help: str):
    """Add a command whose actions are commands of their own (``dlcv classify fit``); return its subparsers."""
    return commands.add_parser(name, help=help).add_subparsers(dest="action", required=True, metavar="ACTION")


def command(commands, name: str, handler, help: str) -> argparse.ArgumentParser:
    """Add a command that runs ``handler(args)``; return its parser."""
    command = commands.add_parser(name, help=help)
    command.set_defaults(handler=handler)
    return command


def fit_command(parent, handler, help: str, example: str, data: str) -> argparse.ArgumentParser:
    """Add a ``fit`` command: a recipe (``example``), its data folder (``data`` says which) and the run options."""
    fit = command(parent, "fit", handler, help)
    fit.add_argument("--config", required=True, help=f"recipe YAML, e.g. {example}")
    fit.add_argument("--data", required=True, help=data)
    run_options(fit)
    return fit


def overrides(args, budget_key: str) -> tuple[str, ...]:
    """Return the command's ``--set`` overrides, with ``--budget`` set as the recipe key ``budget_key``.

    Raises:
        DlcvError: if ``--budget`` is neither a duration nor ``none``.
    """
    if args.budget is None:
        return tuple(args.set)
    if args.budget.strip().lower() == "none":  # no budget: the run trains its recipe's epochs
        return (*args.set, f"{budget_key}=null")
    if parse_duration(args.budget) is None:
        raise DlcvError(f"--budget {args.budget!r}: give {describe(Duration)}, or none")
    return (*args.set, f"{budget_key}={args.budget}")


def run_name(args) -> str | None:
    """Return ``--name``, refused with ``DlcvError`` unless a plain folder name (the rule of the recipe's ``name``)."""
    from dlcv.run_setup import check_run_name

    if args.name is not None:
        check_run_name(args.name, "--name")
    return args.name


def run_kwargs(args) -> dict:
    """Return what every training command passes on from ``run_options``.

    Raises:
        DlcvError: if ``--resume`` and ``--overwrite`` are both given, or ``--name`` or ``--budget`` is refused.
    """
    if args.resume and args.overwrite:
        raise DlcvError("--resume and --overwrite: give one (--resume continues the run folder, --overwrite "
                        "starts it afresh)")
    return {"runs_dir": args.runs_dir, "name": run_name(args), "overrides": overrides(args, "train.budget"),
            "overwrite": args.overwrite, "resume": args.resume}
