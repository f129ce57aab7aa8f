"""The benchmarks (bench/): the reference-style step is the public reference's maths, and the
command runs its sections at toy sizes and writes the JSON it promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench import bench as bench_cli
from bench.reference_step import ReferenceStep
from bench.train_step import parse_variant, synthetic_batch
from data.image_io import to_model_range


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: on a busy 2-core machine intra-op thread hand-offs cost more than the maths."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_reference_step_equals_the_trainer_on_the_first_iteration(tiny_config, make_trainer) -> None:
    """Same weights, same batch, fp32 eager, unfused Adam: the same G and D losses, and after one
    step the same weights up to Adam's first step, which is about lr * sign(gradient): an element
    whose gradient is near zero may flip sign on a last-bit difference of the gradient (the two
    sum the same terms in another order), so its update may differ by up to 2 * lr."""
    lr = 2e-4
    trainer = make_trainer(tiny_config("train.fused_adam=false", "data.batch_size=2", f"optim.lr={lr}"))
    m = trainer.cfg.model
    ref = ReferenceStep.build(torch.device("cpu"), m.ngf, m.ndf, m.n_blocks, m.n_layers_D, pool_size=4, lr=lr)
    for name, net in ref.networks().items():
        net.load_state_dict(trainer.networks()[name].state_dict())
    before = {name: {k: v.clone() for k, v in net.state_dict().items()} for name, net in ref.networks().items()}

    batch = synthetic_batch(2, 32, seed=3)
    ours = trainer.train_step(batch)
    ref.set_input(to_model_range(batch["A"]), to_model_range(batch["B"]))
    ref.optimize_parameters()

    theirs = ref.losses()
    assert set(theirs) == {"G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B", "D_A", "D_B"}
    for key, value in theirs.items():
        torch.testing.assert_close(ours[key], value, rtol=1e-6, atol=1e-7, msg=key)
    assert theirs["idt_A"] > 0 and theirs["cycle_A"] > theirs["idt_A"]  # identity weight 0.5 x lambda
    assert float(ours["nonfinite"]) == 0.0

    for name, net in ref.networks().items():
        for key, theirs_w in net.state_dict().items():
            ours_w, start = trainer.networks()[name].state_dict()[key], before[name][key]
            if not theirs_w.is_floating_point():
                continue
            assert (theirs_w - start).abs().max() > 0.5 * lr, f"{name}.{key} did not move"
            diff = (ours_w - theirs_w).abs()
            assert diff.max() <= 2 * lr * 1.001, f"{name}.{key}"
            assert (diff > 1e-3 * lr).float().mean() <= 0.02, f"{name}.{key}: updates disagree"


def test_command_runs_each_section_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = bench_cli.main([
        "--sections", "train,infer,style", "--device", "cpu", "--crop", "32", "--ngf", "8", "--ndf", "8",
        "--n-blocks", "1", "--variants", "fp32,bf16+channels_last", "--batches", "2", "--iters", "1", "--warmup", "0",
        "--rounds", "1", "--infer-sizes", "32", "--infer-batches", "1,2", "--infer-modes", "fp32,bf16",
        "--style-sizes", "32", "--style-precisions", "fp32", "--gatys-measured", "1", "--wct-width", "0.125",
        "--output", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    assert results["device_type"] == "cpu" and results["estimator"] == "fastest call"  # auto, on a CPU
    train = results["sections"]["train"]
    assert [(r["batch"], r["variant"]) for r in train["rows"]] == [
        (2, "reference-style step"), (2, "fp32"), (2, "bf16+channels_last")]
    assert all(r["images_per_s"] > 0 and r["ms_per_iter"] > 0 and r["tflops"] > 0 for r in train["rows"])
    assert train["rows"][0]["x_reference"] == 1.0 and int(train["flops_per_step"]["2"]) > 0
    infer = results["sections"]["infer"]["rows"]
    assert [(r["batch"], r["mode"]) for r in infer] == [(1, "fp32"), (1, "bf16"), (2, "fp32"), (2, "bf16")]
    assert all(r["images_per_s"] > 0 for r in infer)
    style = results["sections"]["style"]
    assert [r["method"] for r in style["rows"]] == ["gatys", "johnson", "wct", "adain"]
    assert all(r["s_per_image"] > 0 and "error" not in r for r in style["rows"])
    gatys = style["rows"][0]
    assert gatys["s_per_image"] == pytest.approx(gatys["setup_s"] + 300 * gatys["s_per_step"])
    assert style["summary"][0]["gatys_over_johnson"] > 0

    assert bench_cli.main(["--sections", "train", "--output", str(out)]) == 2  # exists, no --overwrite
    assert parse_variant("bf16+channels_last+compile=max-autotune").compile == "max-autotune"
    with pytest.raises(ValueError, match="unknown option 'bf17'"):
        parse_variant("bf17")
