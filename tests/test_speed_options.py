"""Speed options (train.amp, channels_last, grad_checkpoint, compile) on tiny nets: they train,
keep the reference's weight layout, and keep the maths (finite fp32 losses, same gradients)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from models.cyclegan import build_generator
from models.losses import discriminator_loss, generator_losses
from utils.trainer import CompiledOrEager, Trainer, TrainingError


def _batch(t: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    batch = next(iter(t.loader))
    return t._to_device(batch["A"]), t._to_device(batch["B"])


def _layout(t: Trainer) -> dict[str, dict[str, tuple[int, ...]]]:
    return {name: {k: tuple(v.shape) for k, v in net.state_dict().items()} for name, net in t.nets.items()}


@pytest.mark.parametrize(
    "overrides",
    [
        ("train.amp=bf16",),
        ("train.channels_last=true",),
        ("train.grad_checkpoint=true",),
        ("train.amp=bf16", "train.channels_last=true", "train.grad_checkpoint=true"),
    ],
    ids=["bf16", "channels_last", "grad_checkpoint", "all"],
)
def test_options_train_with_finite_losses_and_reference_layout(tiny_config, overrides) -> None:
    plain = Trainer(tiny_config("name=plain", "data.batch_size=2"))
    t = Trainer(tiny_config("name=opt", "data.batch_size=2", *overrides))
    before = {k: v.clone() for k, v in t.G_A.state_dict().items()}
    real_A, real_B = _batch(t)
    assert real_A.shape == (2, 3, 32, 32)
    for _ in range(2):
        logs = t.train_step(real_A, real_B)
        assert "nonfinite" not in logs
        assert all(math.isfinite(v) for v in logs.values()), logs
    assert _layout(t) == _layout(plain)
    assert "model.1.weight" in t.G_A.state_dict()  # the reference's key names, no wrapper prefix
    assert all(p.dtype == torch.float32 for net in t.nets.values() for p in net.parameters())  # fp32 master weights
    assert any(not torch.equal(before[k], v) for k, v in t.G_A.state_dict().items())
    if t.cfg.train.channels_last:
        w = t.G_A.model[1].weight
        assert w.is_contiguous(memory_format=torch.channels_last) and real_A.is_contiguous(
            memory_format=torch.channels_last)


def test_losses_reduce_in_fp32_under_bf16_autocast() -> None:
    g = torch.Generator().manual_seed(0)
    imgs = [torch.rand(2, 3, 8, 8, generator=g) * 2 - 1 for _ in range(6)]
    preds = [torch.randn(2, 1, 4, 4, generator=g) for _ in range(2)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = [x.to(torch.bfloat16) for x in imgs]
        lp = [p.to(torch.bfloat16) for p in preds]
        out = generator_losses(lp[0], lp[1], *low)
        d = discriminator_loss(lp[0], lp[1])
    assert out.total.dtype == torch.float32 and d.dtype == torch.float32
    ref = generator_losses(preds[0].bfloat16().float(), preds[1].bfloat16().float(),
                           *[x.bfloat16().float() for x in imgs])
    torch.testing.assert_close(out.total, ref.total)


def test_grad_checkpoint_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    plain = build_generator(ngf=8, n_blocks=2)
    ckpt = build_generator(ngf=8, n_blocks=2, grad_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    target = torch.rand(2, 3, 32, 32) * 2 - 1
    for net in (plain, ckpt):
        net.train()
        (net(x) - target).abs().mean().backward()
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=name)
    with torch.no_grad():  # no recomputation path outside training: same outputs
        torch.testing.assert_close(ckpt.eval()(x), plain.eval()(x))


def test_fp16_refuses_on_cpu_with_a_clear_message(tiny_config) -> None:
    with pytest.raises(TrainingError, match=r"fp16 needs a CUDA device.*bf16"):
        Trainer(tiny_config("device=cpu", "train.amp=fp16"))


def test_compile_failure_falls_back_to_eager_with_one_warning(tiny_config, monkeypatch) -> None:
    calls = []

    def broken_compile(net, *args, **kwargs):
        def run(*a, **k):
            calls.append(1)
            raise RuntimeError("no working C++ compiler (simulated)")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    t = Trainer(tiny_config("train.compile=true"))
    assert isinstance(t.gen_pair.G_A, CompiledOrEager)
    real_A, real_B = _batch(t)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            logs = t.train_step(real_A, real_B)
            assert all(math.isfinite(v) for v in logs.values())
    compile_warnings = [w for w in caught if "torch.compile failed" in str(w.message)]
    assert len(compile_warnings) == 1, [str(w.message) for w in caught]
    assert "simulated" in str(compile_warnings[0].message)
    assert len(calls) == 4  # each of the four networks tried its compiled version once, then eager
    assert all(not k.startswith("_orig_mod") for sd in t.state_dict()["nets"].values() for k in sd)


def test_compile_unavailable_at_call_time_falls_back(tiny_config, monkeypatch) -> None:
    def unavailable(net, *args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python (simulated)")

    monkeypatch.setattr(torch, "compile", unavailable)
    with pytest.warns(UserWarning, match="running eager"):
        t = Trainer(tiny_config("train.compile=true"))
    logs = t.train_step(*_batch(t))
    assert all(math.isfinite(v) for v in logs.values())


def test_working_compile_wrapper_is_transparent() -> None:
    """A compile that works is used from then on, and the wrapper adds no parameters of its own."""
    net = build_generator(ngf=8, n_blocks=1)
    seen = []

    def fake_compiled(x):
        seen.append(1)
        return net(x)

    wrapped = CompiledOrEager(net, fake_compiled, {})
    x = torch.rand(1, 3, 16, 16)
    for _ in range(3):
        torch.testing.assert_close(wrapped(x), net(x))
    assert len(seen) == 3
    assert [n for n, _ in wrapped.named_parameters()] == [f"net.{n}" for n, _ in net.named_parameters()]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast + GradScaler needs CUDA")
def test_fp16_scaler_is_checkpointed_on_cuda(tiny_config, tmp_path) -> None:
    t = Trainer(tiny_config("device=cuda", "train.amp=fp16", "train.channels_last=true"))
    real_A, real_B = _batch(t)
    for _ in range(3):
        logs = t.train_step(real_A, real_B)
        assert all(math.isfinite(v) for v in logs.values())
    state = t.state_dict()
    assert state["scaler"] is not None and state["scaler"]["scale"] > 0
    path = t.save()
    t2 = Trainer(tiny_config("device=cuda", "train.amp=fp16", f"resume={path}"))
    assert t2.scaler.get_scale() == t.scaler.get_scale()
