"""Process-level facts and settings: the place in a multi-process run, fast number formats, inference, allocator."""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from pathlib import Path

from dlcv.errors import DlcvError

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def retain_freed_memory(trim_mb: int = 256, mmap_mb: int = 32) -> bool:
    """Let glibc's malloc keep freed memory, so that buffers freed each step are reused, not faulted in afresh.

    Linux with glibc only.

    Args:
        trim_mb: the heap is not trimmed below this many MiB.
        mmap_mb: blocks under this many MiB come from the heap, not from mmap.

    Returns:
        Whether the settings took.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl) or none by that name
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_mb << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_mb << 20))


def usable_cpus() -> int:
    """Return how many CPUs this process may use: its affinity mask (SLURM, ``taskset``), not ``os.cpu_count``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks (macOS, Windows)
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Return the bytes of memory free for a new allocation (Linux's MemAvailable; None where it cannot be read)."""
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def inference_device():
    """Return where prediction runs: the first GPU when there is one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def inference_autocast(device, precision: str):
    """Return the autocast context in which a model trained at ``precision`` predicts on ``device``.

    Below float32 on a GPU: the GPU's native half type (bf16, else float16); a bf16-trained model on a CPU with bf16
    units: bf16; anything else: float32 (autocast disabled).
    """
    import torch

    precision = resolve_precision(precision, device.type)  # auto: as a run on this device would train
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
        return torch.autocast("cuda", dtype=dtype, enabled=not precision.startswith(("32", "64")))
    fast = precision.startswith("bf16") and cpu_computes_bf16_fast()
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast)


def inference_batches(model, images, precision: str, batch_size: int, load=None, autocast: bool = False):
    """Yield the batches of ``images`` on the inference device, with ``model`` ready there for the caller's work.

    The model goes into evaluation mode, channels-last, on the device; gradients are off. Float32 by default: labels
    then depend on neither the torch version nor the machine's half types, as the hand-in's scripts predict.

    Args:
        model: the model to predict with.
        images: uint8 (N, H, W, 3) images, or what ``load`` reads.
        precision: the model's training precision, for ``autocast``.
        batch_size: images per batch.
        load: turns a slice of ``images`` into a uint8 batch; None: the slice itself.
        autocast: predict under ``inference_autocast(device, precision)`` instead of in float32.

    Yields:
        ``(start, batch)``: the batch's first index and its uint8 images on the device.
    """
    import torch

    from dlcv.tta import batches

    device = inference_device()  # the uint8 batches travel; preparation and TTA run on the device
    model.eval().to(device, memory_format=torch.channels_last)
    context = inference_autocast(device, precision) if autocast else torch.autocast(device.type, enabled=False)
    with torch.inference_mode(), context:
        yield from batches(images, batch_size, device, load=load)


def is_primary_process() -> bool:
    """Whether this is the primary process, the only one of a multi-process run that writes the run folder."""
    return all(int(os.environ.get(var, "0") or 0) == 0 for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def barrier() -> None:
    """Wait for every process of a multi-process run, e.g. for a file the first one wrote (a no-op in one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def lost_peer(exc: BaseException) -> str | None:
    """Return what to tell the user when ``exc`` is a collective failing because another process stopped, or None."""
    if "torch.distributed" not in sys.modules:
        return None
    import torch.distributed as dist

    text = str(exc)
    cut = isinstance(exc, dist.DistError) or any(
        sign in text for sign in ("gloo", "NCCL", "Connection reset by peer", "Connection closed by peer"))
    if not (cut and dist.is_available() and dist.is_initialized()):
        return None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return (f"process {dist.get_rank()} of {dist.get_world_size()}: another process of the run stopped ({first}); "
            "the same command with --resume goes on from the last checkpoint")


def end_process_group() -> None:
    """Close a multi-process run's process group once its command succeeded.

    gloo's threads left to the exit can abort it (SIGABRT); callers skip this after an error, where closing would
    hang on a peer still in a collective.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# oneDNN's ISA levels (its ONEDNN_MAX_CPU_ISA values) from AVX512_CORE_BF16 up, where it computes bf16 natively
ONEDNN_BF16_ISAS = frozenset({"ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16",
                              "AVX10_1_512_AMX", "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16"})


def bf16_is_native(cpu_flags: str, environ: dict) -> bool:
    """Whether torch computes bf16 natively on a CPU with ``cpu_flags`` (``/proc/cpuinfo``) in ``environ``.

    The CPU must have AVX512-BF16 or AMX, and torch must not be held below it: ``ATEN_CPU_CAPABILITY`` (torch's own
    kernels) under ``avx512``, or ``ONEDNN_MAX_CPU_ISA`` (oneDNN's convolutions and matrix products) under
    ``AVX512_CORE_BF16``. There bf16 is emulated, several times slower than float32. The hand-in's scripts apply
    the same rule.
    """
    if " avx512_bf16" not in cpu_flags and " amx_bf16" not in cpu_flags:
        return False
    aten = (environ.get("ATEN_CPU_CAPABILITY") or "avx512").strip().lower()
    onednn = (environ.get("ONEDNN_MAX_CPU_ISA") or environ.get("DNNL_MAX_CPU_ISA") or "ALL").strip().upper()
    return aten == "avx512" and onednn in ONEDNN_BF16_ISAS


@functools.cache
def cpu_computes_bf16_fast() -> bool:
    """Whether this process computes bf16 natively on its CPU (``bf16_is_native``); read once a process."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bf16_is_native(flags, dict(os.environ))


def resolve_precision(precision: str, accelerator: str) -> str:
    """Resolve the precision ``auto`` for this machine; other values pass unchanged.

    ``auto`` is bf16-mixed where it is fast (Ampere and later GPUs, bf16 CPUs), 16-mixed on older GPUs, else 32-true.
    """
    if precision != "auto":
        return precision
    import torch

    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported(including_emulation=False) else "16-mixed"
    return "bf16-mixed" if cpu_computes_bf16_fast() else "32-true"


def adopt_slurm_layout() -> None:
    """Under ``srun --ntasks N`` alone, set ``SLURM_NTASKS_PER_NODE`` to the tasks SLURM placed on each node.

    Lightning reads only ``SLURM_NTASKS_PER_NODE``.

    Raises:
        DlcvError: if SLURM spread the tasks unevenly over the nodes (``3,1``).
    """
    layout = os.environ.get("SLURM_TASKS_PER_NODE", "")
    if "SLURM_NTASKS" not in os.environ or "SLURM_NTASKS_PER_NODE" in os.environ or not layout:
        return
    counts = {part.split("(")[0] for part in layout.split(",")}  # "2(x3),2" -> {"2"}
    if len(counts) != 1:
        raise DlcvError(f"SLURM placed {layout} tasks on the nodes (SLURM_TASKS_PER_NODE): give srun "
                        "--ntasks-per-node so that every node runs the same number")
    os.environ["SLURM_NTASKS_PER_NODE"] = counts.pop()


def launched_nodes() -> int:
    """Return the nodes a launcher started this run on: an srun step's, or torchrun's worker groups (1 without)."""
    return int(os.environ.get("SLURM_STEP_NUM_NODES") or os.environ.get("GROUP_WORLD_SIZE") or 1)


def check_devices(accelerator: str, num_nodes: int) -> None:
    """Refuse an accelerator this machine lacks, or nodes no launcher started, before anything is read or written.

    Without the check, the first process would wait for the missing nodes for ever.

    Raises:
        DlcvError: naming ``train.accelerator`` or ``train.num_nodes`` and what to give instead.
    """
    import importlib.util

    import torch

    present = {"gpu": torch.cuda.is_available, "cuda": torch.cuda.is_available,
               "mps": lambda: hasattr(torch.backends, "mps") and torch.backends.mps.is_available(),
               "tpu": lambda: importlib.util.find_spec("torch_xla") is not None}.get(accelerator, lambda: True)
    if not present():
        raise DlcvError(f"train.accelerator={accelerator}: this machine has none that torch can use; give auto or cpu")
    if num_nodes > 1:
        launched = launched_nodes()
        if launched < num_nodes and int(os.environ.get("WORLD_SIZE") or 1) <= 1:
            raise DlcvError(f"train.num_nodes={num_nodes}: this process was not started on {num_nodes} nodes; start "
                            f"it on each with torchrun --nnodes {num_nodes}, or with srun on {num_nodes} nodes")
