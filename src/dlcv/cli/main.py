"""``dlcv``: one command per job of the homework (the parser in ``parser``, what each runs in ``commands``)."""

from __future__ import annotations

import os
import sys

from dlcv.cli.parser import build_parser
from dlcv.errors import DlcvError


def main(argv: list[str] | None = None) -> int:
    """Run one ``dlcv`` command; a ``DlcvError`` is one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except DlcvError as exc:
        print(f"dlcv: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left (``dlcv keys classify | head``): nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush into the closed pipe at exit
        return 0
    except OSError as exc:  # a file the checks could not foresee (permissions, a full disk, a vanished file)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"dlcv: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dlcv: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # a multi-process run whose other process stopped: the same line in each
        from dlcv.runtime import lost_peer

        said = lost_peer(exc)
        if said is None:
            raise
        print(f"dlcv: error: {said}", file=sys.stderr)
        return 1
    if "torch.distributed" in sys.modules:  # torch was loaded: close a multi-process run's group, if any
        from dlcv.runtime import end_process_group

        end_process_group()
    return 0
