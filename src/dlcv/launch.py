"""``dlcv launch``: torchrun's launcher (``torch.distributed.run``) for a dlcv command.

A missing node or a failed process is said in one line instead of pages of traceback.
"""

from __future__ import annotations

import logging
import os
import signal

from dlcv.errors import DlcvError, exception_line, shown
from dlcv.rules import MAX_PROCESSES

MAX_JOIN_TIMEOUT = 24 * 3600  # a day: nodes that have not all started by then will not


def torchrun_argv(command: list[str], nnodes: int, node_rank: int, nproc_per_node: int, master: str | None,
                  join_timeout: int) -> list[str]:
    """Build torchrun's arguments for ``python -m dlcv COMMAND`` on this node.

    One node runs standalone; several meet at the static rendezvous at ``master``, which waits ``join_timeout``
    seconds for every node.

    Args:
        command: the dlcv command and its arguments.
        nnodes: the run's nodes.
        node_rank: this node's rank, from 0.
        nproc_per_node: processes on each node.
        master: node 0's ``host:port``; needed with several nodes.
        join_timeout: seconds the rendezvous waits for every node.

    Returns:
        The arguments of ``torch.distributed.run``.

    Raises:
        DlcvError: for no command, a command that is itself a launch, counts or ranks out of range, a join timeout
            outside 1 s to a day, or a missing or malformed ``master``.
    """
    if not command:
        raise DlcvError("launch: no command to run; give it after --, e.g. dlcv launch -- classify fit ...")
    if command[0] == "launch":
        raise DlcvError("launch: the command to run is itself a launch")
    if not (1 <= nnodes <= MAX_PROCESSES and 1 <= nproc_per_node <= MAX_PROCESSES and 0 <= node_rank < nnodes):
        raise DlcvError(f"launch: --node-rank {node_rank} of --nnodes {nnodes} with --nproc-per-node "
                        f"{nproc_per_node}: need nodes and processes >= 1 and <= {MAX_PROCESSES}, and 0 <= node rank < "
                        "nodes")
    if not 1 <= join_timeout <= MAX_JOIN_TIMEOUT:
        raise DlcvError(f"launch: --join-timeout {join_timeout}: need a number of seconds >= 1 and <= "
                        f"{MAX_JOIN_TIMEOUT} (a day)")
    where = ["--standalone"]
    if nnodes > 1:
        host, _, port = (master or "").rpartition(":")
        if not host or not port.isdigit():
            given = f" (got {master!r})" if master else ""
            raise DlcvError(f"launch: --nnodes {nnodes} needs --master HOST:PORT, the address of node 0 that every "
                            f"node can reach{given}")
        digits = port.lstrip("0")
        if len(digits) > 5 or not 1 <= int(digits or 0) <= 65535:  # int() of a thousand digits is slow: length first
            raise DlcvError(f"launch: --master {shown(master)}: the port must be in 1..65535")
        where = ["--nnodes", str(nnodes), "--node-rank", str(node_rank), "--master-addr", host,
                 "--master-port", port, "--rdzv-conf", f"timeout={join_timeout}"]
    return [*where, "--nproc-per-node", str(nproc_per_node), "--max-restarts", "0", "-m", "dlcv", *command]


def _ending(failure) -> str:
    """``exit status 2`` or ``signal SIGKILL`` for one failed process."""
    code = failure.exitcode
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def launch(argv: list[str], nnodes: int, join_timeout: int) -> None:
    """Run torchrun with ``argv`` (``torchrun_argv``'s) in this process.

    Args:
        argv: torchrun's arguments.
        nnodes: the run's nodes, for the message.
        join_timeout: the rendezvous's timeout in seconds, for the message.

    Raises:
        DlcvError: if a process ended early, or the nodes did not all join in time.
    """
    os.environ["TORCH_CPP_LOG_LEVEL"] = "FATAL"  # c10d's connection retries, with C++ frames, while nodes are awaited
    import torch.distributed as dist
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous import RendezvousError
    from torch.distributed.run import get_args_parser, run

    del os.environ["TORCH_CPP_LOG_LEVEL"]  # read when torch loaded: the processes started keep their warnings
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its own tracebacks of the below
    try:
        run(get_args_parser().parse_args(argv))
    except ChildFailedError as exc:
        failed = ", ".join(f"rank {rank}: {_ending(f)}" for rank, f in sorted(exc.failures.items()))
        raise DlcvError(f"launch: a process ended early ({failed}); with a last.ckpt in its run folder, the same "
                        "command with --resume goes on from there") from None
    except (dist.DistError, RendezvousError) as exc:
        detail = exception_line(exc)
        raise DlcvError(f"launch: the {nnodes} nodes did not all join within {join_timeout} s ({detail}); start "
                        "the same command on every node, with its own --node-rank") from None
