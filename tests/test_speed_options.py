"""Speed options on tiny nets: amp, channels_last, grad_checkpoint, compile modes (with the eager
fallback), fused Adam, and a training step that never reads a value back from the device."""

from __future__ import annotations

import warnings

import pytest
import torch

from models.cyclegan import CycleWeights, GeneratorLosses, Translations, build_generator
from models.gan_networks import discriminator_loss
from training.trainer import CompiledOrEager, CompileFallback, TrainingError


def _batch(t) -> dict:
    t.sampler.set_epoch(0)
    return next(iter(t.loader))


def _layout(t) -> dict[str, dict[str, tuple[int, ...]]]:
    return {name: {k: tuple(v.shape) for k, v in net.state_dict().items()} for name, net in t.nets.items()}


def _finite(logs: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v)) for v in logs.values()) and logs["nonfinite"].item() == 0


@pytest.mark.parametrize(
    "overrides",
    [("train.amp=bf16",), ("train.channels_last=true",), ("train.grad_checkpoint=true",),
     ("train.amp=bf16", "train.channels_last=true", "train.grad_checkpoint=true")],
    ids=["bf16", "channels_last", "grad_checkpoint", "all"],
)
def test_options_train_with_finite_losses_and_reference_layout(tiny_config, make_trainer, overrides) -> None:
    plain = make_trainer(tiny_config("name=plain", "data.batch_size=2"))
    t = make_trainer(tiny_config("name=opt", "data.batch_size=2", *overrides))
    before = {k: v.clone() for k, v in t.G_A.state_dict().items()}
    batch = _batch(t)
    assert batch["A"].shape == (2, 3, 32, 32)
    for _ in range(2):
        assert _finite(t.train_step(batch))
    assert _layout(t) == _layout(plain)
    assert "model.1.weight" in t.G_A.state_dict()  # the reference's key names, no wrapper prefix
    assert all(p.dtype == torch.float32 for net in t.nets.values() for p in net.parameters())  # fp32 master weights
    assert any(not torch.equal(before[k], v) for k, v in t.G_A.state_dict().items())
    if t.cfg.train.channels_last:
        assert t.G_A.model[1].weight.is_contiguous(memory_format=torch.channels_last)
        assert t.to_device(batch["A"]).is_contiguous(memory_format=torch.channels_last)


def test_losses_reduce_in_fp32_under_bf16_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    imgs = [torch.rand(2, 3, 8, 8, generator=g) * 2 - 1 for _ in range(8)]
    preds = [torch.randn(2, 1, 4, 4, generator=g) for _ in range(2)]
    w = CycleWeights()

    def losses(ims, ps):
        tr = Translations(ims[0], ims[1], ims[2], ims[3], ims[4], ims[5])
        return GeneratorLosses.compute(tr, ps[0], ps[1], ims[6], ims[7], w)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = losses([x.bfloat16() for x in imgs], [p.bfloat16() for p in preds])
        d = discriminator_loss(preds[0].bfloat16(), preds[1].bfloat16())
    assert out.total.dtype == torch.float32 and d.dtype == torch.float32
    ref = losses([x.bfloat16().float() for x in imgs], [p.bfloat16().float() for p in preds])
    torch.testing.assert_close(out.total, ref.total)


def test_fp16_refuses_on_cpu_with_a_clear_message(tiny_config, make_trainer) -> None:
    with pytest.raises(TrainingError, match=r"fp16 needs a CUDA device.*bf16"):
        make_trainer(tiny_config("device=cpu", "train.amp=fp16"))


def test_adam_is_fused_on_cuda_and_the_references_elsewhere_by_default(tiny_config, make_trainer) -> None:
    t = make_trainer(tiny_config())  # auto on a CPU: the unfused Adam, bit-identical to the reference
    assert not t.fused and all(o.defaults["fused"] is None for o in t.optimizers.values())
    t = make_trainer(tiny_config("train.fused_adam=on", "name=fused"))
    assert t.fused and all(o.defaults["fused"] for o in t.optimizers.values())


@pytest.mark.parametrize("mode", ["default", "reduce-overhead", "max-autotune"])
def test_compile_modes_reach_torch_compile(tiny_config, make_trainer, monkeypatch, mode: str) -> None:
    seen = []

    def fake_compile(net, mode=None, **kwargs):
        seen.append(mode)
        return net

    monkeypatch.setattr(torch, "compile", fake_compile)
    t = make_trainer(tiny_config(f"train.compile={mode}"))
    assert seen == [mode] * 4 and isinstance(t.gen_pair.G_A, CompiledOrEager)
    assert _finite(t.train_step(_batch(t)))


def test_compile_failure_falls_back_to_eager_with_one_warning(tiny_config, make_trainer, monkeypatch) -> None:
    calls = []

    def broken_compile(net, *args, **kwargs):
        def run(*a, **k):
            calls.append(1)
            raise RuntimeError("no working C++ compiler (simulated)")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    t = make_trainer(tiny_config("train.compile=true"))
    assert isinstance(t.gen_pair.G_A, CompiledOrEager)
    batch = _batch(t)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            assert _finite(t.train_step(batch))
    compile_warnings = [w for w in caught if "torch.compile failed" in str(w.message)]
    assert len(compile_warnings) == 1, [str(w.message) for w in caught]
    assert "simulated" in str(compile_warnings[0].message)
    assert len(calls) == 4  # each of the four networks tried its compiled version once, then eager
    assert all(not k.startswith("_orig_mod") for sd in t.state_dict()["nets"].values() for k in sd)


def test_compile_unavailable_at_build_time_falls_back(tiny_config, make_trainer, monkeypatch) -> None:
    def unavailable(net, *args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python (simulated)")

    monkeypatch.setattr(torch, "compile", unavailable)
    with pytest.warns(UserWarning, match="running eager"):
        t = make_trainer(tiny_config("train.compile=true"))
    assert _finite(t.train_step(_batch(t)))


def test_working_compile_wrapper_is_transparent() -> None:
    """A compile that works is used from then on, and the wrapper adds no parameters of its own."""
    net = build_generator(ngf=8, n_blocks=1)
    seen = []

    def fake_compiled(x):
        seen.append(1)
        return net(x)

    wrapped = CompiledOrEager(net, fake_compiled, CompileFallback())
    x = torch.rand(1, 3, 16, 16)
    for _ in range(3):
        torch.testing.assert_close(wrapped(x), net(x))
    assert len(seen) == 3
    assert [n for n, _ in wrapped.named_parameters()] == [f"net.{n}" for n, _ in net.named_parameters()]


# ---------------------------------------------------------------------------------------------
# No host synchronisation inside a step


class _HostReads:
    """Counts the Python-level ways a tensor's value reaches the host (each one a device sync on a GPU)."""

    NAMES = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        for name in self.NAMES:
            real = getattr(torch.Tensor, name)

            def counted(t, *a, _name=name, _real=real, **k):
                self.calls.append(_name)
                return _real(t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.mark.parametrize("extra", [(), ("train.d_steps_per_g=2", "train.d_clip=0.1"), ("train.amp=bf16",)],
                         ids=["default", "d_steps_clip", "bf16"])
def test_a_training_step_reads_nothing_back_from_the_device(tiny_config, make_trainer, monkeypatch,
                                                           extra) -> None:
    """Loss values and finite flags stay on the device; they are read once per log.scalars_every
    steps (here: never within the steps counted)."""
    t = make_trainer(tiny_config("log.scalars_every=1000", "log.images_every=0", "train.fused_adam=on", *extra))
    batch = _batch(t)
    t.window.add(t.train_step(batch))  # warm-up: lazy state (Adam moments, pools) is created here
    reads = _HostReads(monkeypatch)
    for _ in range(3):
        t.window.add(t.train_step(batch))
        t.step += 1
    assert reads.calls == [], reads.calls
    t._flush_scalars(None)  # the one read of the window: a single transfer of every value
    monkeypatch.undo()
    assert reads.calls == ["tolist"], reads.calls


def test_the_unfused_optimiser_reads_one_flag_per_update(tiny_config, make_trainer, monkeypatch) -> None:
    t = make_trainer(tiny_config("train.fused_adam=false", "log.scalars_every=1000"))
    batch = _batch(t)
    t.train_step(batch)
    reads = _HostReads(monkeypatch)
    t.train_step(batch)
    monkeypatch.undo()
    assert reads.calls.count("__bool__") == 2  # G and D


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_steps_pass_the_sync_debug_mode(tiny_config, make_trainer) -> None:
    t = make_trainer(tiny_config("device=cuda", "log.scalars_every=1000", "log.images_every=0", "train.amp=bf16"))
    batch = _batch(t)
    t.window.add(t.train_step(batch))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            t.window.add(t.train_step(batch))
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast + GradScaler needs CUDA")
def test_fp16_scaler_is_checkpointed_on_cuda(tiny_config, make_trainer) -> None:
    t = make_trainer(tiny_config("device=cuda", "train.amp=fp16", "train.channels_last=true"))
    batch = _batch(t)
    for _ in range(3):
        assert _finite(t.train_step(batch))
    state = t.state_dict()
    assert state["scaler"] is not None and state["scaler"]["scale"] > 0
    path = t.save()
    t.close()
    t2 = make_trainer(tiny_config("device=cuda", "train.amp=fp16", f"resume={path}"))
    assert t2.scaler.get_scale() == t.scaler.get_scale()
