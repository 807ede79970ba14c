"""The GPU paths that a CPU can check: dtypes each CUDA kernel accepts, how many devices and which
precision a run takes on a given machine, constants not rebuilt per batch."""

from __future__ import annotations

import torch

from dlcv.data import augment
from dlcv.data.augment import device_constant, scale_shift, to_float
from dlcv.recipes import SegmentData
from dlcv.runtime import resolve_precision
from dlcv.trainer import resolve_devices

SEG_CFG = SegmentData(eval_size=64)


def test_off_the_cpu_the_segmentation_batch_is_float_before_it_is_resized(monkeypatch):
    """CUDA has no anti-aliased bilinear resize of uint8 ('upsample_bilinear2d_out_frame' for 'Byte')."""
    seen = []
    real = augment.F.interpolate
    monkeypatch.setattr(augment.F, "interpolate", lambda x, *a, **k: seen.append(x.dtype) or real(x, *a, **k))
    out = augment.segment_input(torch.zeros(2, 96, 96, 3, dtype=torch.uint8, device="meta"), SEG_CFG)
    assert seen == [torch.float32] and out.shape == (2, 3, 64, 64) and out.dtype == torch.float32


def test_the_float_resize_matches_the_cpus_uint8_resize_to_rounding():
    images = torch.randint(0, 256, (2, 96, 96, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    on_cpu = augment.segment_input(images, SEG_CFG)
    float_first = augment.resize_float(to_float(images, SEG_CFG.mean, SEG_CFG.std), 64)
    one_level = 1 / (255 * min(SEG_CFG.std))  # the uint8 kernel works in fixed point and rounds to levels
    assert (on_cpu - float_first).abs().max() <= one_level + 1e-5


def test_precision_auto_takes_fp16_on_gpus_that_only_emulate_bf16(monkeypatch):
    asked = []

    def bf16(including_emulation=True):
        asked.append(including_emulation)
        return native

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", bf16)
    native = False  # a T4 or V100
    assert resolve_precision("auto", "auto") == "16-mixed"
    native = True  # Ampere and later
    assert resolve_precision("auto", "gpu") == "bf16-mixed"
    assert asked == [False, False]
    assert resolve_precision("32-true", "gpu") == "32-true"


def _scheduler_stepped_after_a_skipped_step(precision: str) -> list[str]:
    """What a float16 run's first step looks like to torch when the gradient scaler skips it: the schedule
    steps, the optimiser did not; the warnings left after ``quiet_lightning(precision)``."""
    import warnings

    from dlcv.trainer import quiet_lightning

    optimiser = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_lightning(precision)
        schedule.step()
    return [str(w.message) for w in seen]


def test_a_float16_runs_skipped_first_steps_do_not_warn_of_a_wrong_call_order():
    assert _scheduler_stepped_after_a_skipped_step("16-mixed") == []
    # elsewhere no scaler skips a step, so the same call would be a real misuse: torch's warning stays
    assert any("before `optimizer.step()`" in m for m in _scheduler_stepped_after_a_skipped_step("bf16-mixed"))
    assert any("before `optimizer.step()`" in m for m in _scheduler_stepped_after_a_skipped_step("32-true"))


def test_devices_auto_is_one_device_unless_a_launcher_started_several(monkeypatch):
    for var in ("WORLD_SIZE", "LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"):
        monkeypatch.delenv(var, raising=False)
    assert resolve_devices("auto") == 1  # never every GPU of the host
    assert resolve_devices(2) == 2
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert resolve_devices("auto") == 4  # torchrun: the processes of this node
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "3")
    assert resolve_devices("auto") == 3


def test_per_batch_constants_are_made_once_per_device():
    a = scale_shift([0.5, 0.5, 0.5], [0.2, 0.2, 0.2], "cpu")
    b = scale_shift((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    assert a[0] is b[0] and a[1] is b[1]
    assert device_constant((1.0, 2.0), torch.device("cpu"), torch.float32) is device_constant(
        (1.0, 2.0), torch.device("cpu"), torch.float32)


def test_prediction_on_a_gpu_uses_the_half_type_the_gpu_computes(monkeypatch):
    import warnings

    from dlcv.runtime import inference_autocast

    cuda = torch.device("cuda")
    for native, expected in ((False, torch.float16), (True, torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, n=native: n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "CUDA is not available": the choice is what is checked here
            assert inference_autocast(cuda, "bf16-mixed").fast_dtype == expected
    assert not inference_autocast(torch.device("cpu"), "32-true")._enabled


def test_prediction_moves_the_model_and_the_uint8_batches_to_the_inference_device(monkeypatch, trained_run, p1_data):
    """Wherever ``inference_device`` says (a GPU when there is one), the model and every batch go there."""
    from dlcv import classify, runtime
    from dlcv.data.images import load_image_stack
    from dlcv.files import list_images

    moved = []
    real_to = torch.Tensor.to

    def spy_to(self, *args, **kwargs):
        if self.dtype == torch.uint8 and args and isinstance(args[0], torch.device):
            moved.append(args[0])
        return real_to(self, *args, **kwargs)

    target = torch.device("cpu", 0)  # a device object of our own: the batches must be sent to it
    monkeypatch.setattr(runtime, "inference_device", lambda: target)
    monkeypatch.setattr(torch.Tensor, "to", spy_to)
    model, recipe = classify.load_classifier(trained_run / "best.ckpt")
    images = load_image_stack(list_images(p1_data / "val_50"), use_cache=False)
    scores = classify.predict_scores(model, images, recipe, batch_size=8)
    assert scores.shape == (len(images), 4) and scores.device.type == "cpu"
    assert moved == [target] * -(-len(images) // 8)


def test_sync_batchnorm_keeps_timms_activations_and_frozen_layers_modes():
    from timm.layers import BatchNormAct2d
    from torch import nn

    from dlcv.trainer import TimmAwareSyncBatchNorm

    model = nn.Sequential(nn.Conv2d(3, 4, 1), BatchNormAct2d(4, act_layer=nn.ReLU), nn.BatchNorm2d(4))
    model[2].eval()  # a frozen layer
    synced = TimmAwareSyncBatchNorm().apply(model)
    assert isinstance(synced[1], nn.SyncBatchNorm) and isinstance(synced[1].act, nn.ReLU)
    assert isinstance(synced[2], nn.SyncBatchNorm) and not synced[2].training and synced[1].training


def test_a_half_precision_model_gets_its_batches_in_its_dtype(p1_data):
    """bf16-true / 16-true: Lightning converts inputs before on_after_batch_transfer, when ours are uint8."""
    from types import SimpleNamespace

    from lightning.pytorch.plugins import HalfPrecision

    from dlcv.data.batches import ClassificationData
    from dlcv.recipes import ClassifyData

    data = ClassificationData(p1_data, ClassifyData(), seed=0)
    data.prepare()
    images, labels = next(iter(data.val_dataloader()))
    for precision, dtype in (("bf16-true", torch.bfloat16), ("16-true", torch.float16)):
        data.trainer = SimpleNamespace(precision_plugin=HalfPrecision(precision), training=False)
        x, y = data.on_after_batch_transfer((images, labels), 0)
        assert x.dtype == dtype and y.dtype == labels.dtype


def test_bf16_is_native_only_on_bf16_units_that_torch_is_not_held_below(monkeypatch):
    """``auto`` takes bf16-mixed on a CPU only where torch computes bf16 natively: held below AVX512-BF16 by
    ``ATEN_CPU_CAPABILITY`` or ``ONEDNN_MAX_CPU_ISA``, bf16 is emulated, several times slower than float32."""
    from dlcv.runtime import bf16_is_native, cpu_computes_bf16_fast

    epyc, xeon, avx2 = " avx2 avx512f avx512_bf16 avx512_vnni", " avx2 avx512f avx512_bf16 amx_bf16 amx_tile", " avx2"
    assert bf16_is_native(epyc, {}) and bf16_is_native(xeon, {}) and not bf16_is_native(avx2, {})
    for native in ({"ATEN_CPU_CAPABILITY": "avx512"}, {"ATEN_CPU_CAPABILITY": ""}, {"ONEDNN_MAX_CPU_ISA": "all"},
                   {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, {"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"},
                   {"ONEDNN_MAX_CPU_ISA": " avx10_1_512_amx_fp16 "}):
        assert bf16_is_native(xeon, native), native
    for held in ({"ATEN_CPU_CAPABILITY": "avx2"}, {"ATEN_CPU_CAPABILITY": "default"},
                 {"ONEDNN_MAX_CPU_ISA": "AVX2"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"},
                 {"DNNL_MAX_CPU_ISA": "AVX512_CORE"}, {"ONEDNN_MAX_CPU_ISA": "AVX2_VNNI_2"}):
        assert not bf16_is_native(epyc, held) and not bf16_is_native(xeon, held), held
    assert not bf16_is_native(xeon, {"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "ALL"})  # oneDNN's own order
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # this process, whatever its CPU
    cpu_computes_bf16_fast.cache_clear()
    try:
        assert resolve_precision("auto", "cpu") == "32-true"
    finally:
        monkeypatch.undo()
        cpu_computes_bf16_fast.cache_clear()
