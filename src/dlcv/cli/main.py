"""``dlcv``: one command per job of the homework (the parser in ``parser``, what each runs in ``commands``)."""

from __future__ import annotations

import os
import signal
import sys
import threading

from dlcv.cli.parser import build_parser
from dlcv.errors import DlcvError, Stopped
from dlcv.files import check_utf8_name
from dlcv.io import WRITE_ERRORS

STOPPED = "stopped by {name} before the command ended; what it had not finished was not written"


def stop_on_signal(signum, frame) -> None:
    """End the command on SIGTERM as Ctrl-C does, raising ``Stopped`` (exit status 143).

    Its writes are undone by their ``finally`` blocks.
    """
    raise Stopped(STOPPED.format(name=signal.Signals(signum).name), signum)


def quiet_thread_write_errors(hook_args) -> None:
    """Print a thread's exception as Python does, except a write error (a full disk, say), left unprinted.

    Installed as ``threading.excepthook``: a writer thread (TensorBoard's) hands that error to the main thread, which
    says it in one line.
    """
    if isinstance(hook_args.exc_value, OSError) and hook_args.exc_value.errno in WRITE_ERRORS:
        return
    threading.__excepthook__(hook_args)


def check_arguments(args) -> None:
    """Refuse, before any command runs, an argument (a path: --data, --runs, --output...) that is not UTF-8.

    Raises:
        DlcvError: naming the first such argument.
    """
    for value in vars(args).values():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                check_utf8_name(text)


def say_error(text: str) -> None:
    """Print ``dlcv: error: TEXT`` on stderr, escaping a character its encoding lacks (a name's undecodable byte)."""
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    print(f"dlcv: error: {text}".encode(encoding, "backslashreplace").decode(encoding), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one ``dlcv`` command and return its exit status.

    Args:
        argv: the arguments after ``dlcv``; None: ``sys.argv[1:]``.

    Returns:
        0 on success (or when the reader of the output left); 2 after a ``DlcvError`` or an ``OSError``, said in
        one line on stderr; 1 when another process of a multi-process run stopped; 128 plus the signal's number
        when SIGTERM or SIGINT stopped it.

    Raises:
        SystemExit: from argparse, for ``--help`` (status 0) or arguments it refuses (status 2).
    """
    args = build_parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set a signal's handler
    previous = signal.signal(signal.SIGTERM, stop_on_signal) if main_thread else None
    previous_hook, threading.excepthook = threading.excepthook, quiet_thread_write_errors
    try:
        check_arguments(args)
        args.handler(args)
    except DlcvError as exc:
        say_error(str(exc))
        return 2
    except Stopped as exc:
        print(f"dlcv: {exc}", file=sys.stderr, flush=True)
        return exc.exit_status
    except BrokenPipeError:  # the reader left (``dlcv keys classify | head``): nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush into the closed pipe at exit
        return 0
    except OSError as exc:  # a file the checks could not foresee (permissions, a full disk, a vanished file)
        where = f"{exc.filename}: " if exc.filename else ""
        say_error(f"{where}{exc.strerror or exc}")
        return 2
    except KeyboardInterrupt:
        print(f"dlcv: {STOPPED.format(name='SIGINT')}", file=sys.stderr)
        return 128 + signal.SIGINT
    except RuntimeError as exc:  # a multi-process run whose other process stopped: the same line in each
        from dlcv.runtime import lost_peer

        said = lost_peer(exc)
        if said is None:
            raise
        say_error(said)
        return 1
    finally:
        threading.excepthook = previous_hook
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    if "torch.distributed" in sys.modules:  # torch was loaded: close a multi-process run's group, if any
        from dlcv.runtime import end_process_group

        end_process_group()
    return 0
