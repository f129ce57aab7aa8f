"""CUT / FastCUT training: one step equals the authors' ``optimize_parameters`` (D first, then G
and netF), netF exists before the first batch and survives resume, a resumed run continues
exactly, and configs a CUT run cannot use are refused."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from helpers import same, snapshot

import train
from models.cut import nce_channels
from options.common import load_training_config
from options.config import ConfigError
from utils.checkpoint import list_checkpoints, read_training_checkpoint

CUT_TINY = [
    "method=cut", "device=cpu", "data.load_size=36", "data.crop_size=32", "data.num_workers=0", "data.val_images=2",
    "model.ngf=8", "model.ndf=8", "model.n_blocks=1", "model.n_layers_D=2", "model.netF_nc=16",
    "loss.nce_layers=[0,4,8,12]", "loss.num_patches=16", "optim.n_epochs=1", "optim.n_epochs_decay=1",
    "log.progress=false", "log.scalars_every=2", "log.images_every=4",
]


@pytest.fixture
def cut_config(tiny_dataset: Path, tmp_path: Path):
    def make(*overrides: str):
        return load_training_config(None, [f"data.root={tiny_dataset}", f"log.root={tmp_path / 'runs'}", "name=cut",
                                           *CUT_TINY, *overrides])

    return make


# --- the oracle: the authors' training step (taesungp/contrastive-unpaired-translation, models/cut_model.py
# optimize_parameters and models/patchnce.py), written out here independently of models/cut.py -------------

def patchnce_by_hand(q: torch.Tensor, k: torch.Tensor, tau: float, batch: int) -> torch.Tensor:
    """Per query row: -log softmax of [q_i . k_i, then q_i . k_j for every location j of the same
    image, the j = i entry replaced by -10], all over tau (paper eqs. 2-3, the authors' masking)."""
    k = k.detach()
    per = q.shape[0] // batch
    out = []
    for b in range(batch):
        sims = q[b * per:(b + 1) * per] @ k[b * per:(b + 1) * per].T
        for i in range(per):
            negatives = sims[i].clone()
            negatives[i] = -10.0
            logits = torch.cat([sims[i, i].view(1), negatives]) / tau
            out.append(torch.logsumexp(logits, 0) - logits[0])
    return torch.stack(out)


def reference_step(G, Fnet, D, opt_G, opt_F, opt_D, real_A, real_B, lo, flipped: bool) -> None:
    """One iteration in the authors' order: G's forward on [a, b] (flipped for FastCUT), then a D
    step on (real b, detached G(a)), then one G + F step on GAN(D(G(a))) + the PatchNCE terms,
    scored by the D just updated; a separate Adam for G and for F."""
    def lsgan(pred: torch.Tensor, target: float) -> torch.Tensor:
        return ((pred - target) ** 2).mean()

    def nce(source: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        q = G(generated, lo.nce_layers, encode_only=True)
        q = [torch.flip(f, [3]) for f in q] if flipped else q
        k_pool, ids = Fnet(G(source, lo.nce_layers, encode_only=True), lo.num_patches, None)
        q_pool, _ = Fnet(q, lo.num_patches, ids)
        per_layer = [lo.lambda_NCE * patchnce_by_hand(a, b, lo.nce_T, real_A.shape[0]).mean()
                     for a, b in zip(q_pool, k_pool)]
        return sum(per_layer) / len(per_layer)

    both = torch.cat([real_A, real_B]) if lo.nce_idt else real_A
    out = G(torch.flip(both, [3]) if flipped else both)
    fake_B, idt_B = out[: len(real_A)], out[len(real_A):]

    D.requires_grad_(True)
    opt_D.zero_grad()
    (0.5 * (lsgan(D(fake_B.detach()), 0.0) + lsgan(D(real_B), 1.0))).backward()
    opt_D.step()

    D.requires_grad_(False)
    opt_G.zero_grad()
    opt_F.zero_grad()
    contrast = nce(real_A, fake_B)
    if lo.nce_idt:
        contrast = 0.5 * (contrast + nce(real_B, idt_B))
    (lo.lambda_GAN * lsgan(D(fake_B), 1.0) + contrast).backward()
    opt_G.step()
    opt_F.step()


@pytest.mark.parametrize("mode", ["cut", "fastcut"])
def test_one_step_is_the_authors_optimize_parameters(cut_config, make_trainer, mode) -> None:
    t = make_trainer(cut_config(f"mode={mode}", "seed=3"))
    lo = t.cfg.loss
    assert (lo.lambda_NCE, lo.nce_idt, lo.flip_equivariance) == ((1.0, True, False) if mode == "cut" else
                                                                   (10.0, False, True))
    G, Fnet, D = (copy.deepcopy(n) for n in (t.G, t.F, t.D))
    o = t.cfg.optim
    opt_G, opt_F, opt_D = (torch.optim.Adam(n.parameters(), lr=o.lr, betas=(o.beta1, o.beta2)) for n in (G, Fnet, D))
    t.sampler.set_epoch(0)
    batch = next(iter(t.loader))
    flipped = t._flipped()
    before = [snapshot(n) for n in (t.G, t.F, t.D)]
    rng = torch.get_rng_state()
    t.train_step(batch)
    torch.set_rng_state(rng)  # netF draws the same patch locations
    reference_step(G, Fnet, D, opt_G, opt_F, opt_D, t.to_device(batch["A"]), t.to_device(batch["B"]), lo, flipped)
    for ours, theirs, start in zip((t.G, t.F, t.D), (G, Fnet, D), before):
        assert not same(snapshot(ours), start)  # the step moved every network
        scale = max(float(q.grad.abs().max()) for q in ours.parameters())
        for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
            # The same gradients up to float32 summation order (the oracle's PatchNCE sums differently)
            assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5 * scale), name
            # and the same Adam step wherever the gradient's sign is beyond that rounding (a first Adam
            # step is lr * sign(g): a conv bias just before an instance norm has a true gradient of 0,
            # and its rounding noise alone would decide its sign)
            sure = a.grad.abs() > 1e-3 * scale
            assert torch.allclose(a[sure], b[sure], atol=2e-6), name
        for (name, a), b in zip(ours.named_buffers(), theirs.buffers()):
            assert torch.equal(a, b), name


def test_the_discriminator_steps_before_the_generator(cut_config, make_trainer, monkeypatch) -> None:
    """G's adversarial term is scored by the D of after this step's D update (the authors' order)."""
    t = make_trainer(cut_config())
    t.sampler.set_epoch(0)
    batch = next(iter(t.loader))
    seen = []
    real_update = t.update

    def update(name, loss):
        seen.append((name, snapshot(t.D)))
        return real_update(name, loss)

    monkeypatch.setattr(t, "update", update)
    t.train_step(batch)
    assert [n for n, _ in seen] == ["D", "G"]
    assert not same(seen[0][1], seen[1][1])  # D had already moved when the G loss was backpropagated


def test_netF_exists_before_the_first_batch_the_same_on_every_rank(cut_config, make_trainer) -> None:
    cfg = cut_config("seed=5")
    a = make_trainer(cfg)
    assert a.F.channels == nce_channels([0, 4, 8, 12], 3, 8, 1) == [3, 16, 32, 32]
    torch.manual_seed(123)  # another global RNG state (another rank's history) gives the same netF
    b = make_trainer(cut_config("seed=5", "name=other"))
    assert same(snapshot(a.F), snapshot(b.F))
    assert {"F"} <= set(read_state_names(a))


def read_state_names(trainer) -> list[str]:
    return list(trainer.state_dict()["nets"])


def test_resume_continues_exactly_with_netF(cut_config, make_trainer, tmp_path) -> None:
    straight = make_trainer(cut_config("name=straight", "deterministic=true"))
    straight.fit()
    assert train.main([f"data.root={straight.cfg.data.root}", f"log.root={tmp_path / 'runs'}", "name=halves",
                       *CUT_TINY, "deterministic=true", "optim.n_epochs_decay=0"]) == 0
    assert train.main(["--resume", str(tmp_path / "runs" / "halves"), "optim.n_epochs_decay=1"]) == 0
    a = read_training_checkpoint(straight.run_dir)
    b = read_training_checkpoint(tmp_path / "runs" / "halves")
    assert a.step == b.step == 12 and a.method == b.method == "cut"
    for name in ("G", "F", "D"):
        assert same(a.nets[name], b.nets[name]), name
    assert same(a.optim["G"]["state"], b.optim["G"]["state"])


def test_configs_a_cut_run_cannot_use_are_refused(cut_config, tiny_config, make_trainer, tmp_path, capsys) -> None:
    with pytest.raises(ConfigError, match="loss.nce_layers"):
        cut_config("loss.nce_layers=[0,4,8,13]")  # the encoder of a 1-block generator ends at layer 12
    cyc = make_trainer(tiny_config("optim.n_epochs_decay=0"))
    cyc.fit()
    before = sorted(p.name for p in list_checkpoints(cyc.run_dir))
    assert train.main(["--resume", str(cyc.run_dir), "method=cut"]) == 2
    assert "cannot change on resume" in capsys.readouterr().err
    assert sorted(p.name for p in list_checkpoints(cyc.run_dir)) == before


def test_the_report_measures_a_cut_row_from_its_saved_outputs(cut_config, make_trainer, tiny_dataset, tmp_path,
                                                               tiny_features, monkeypatch) -> None:
    """A `methods:` entry is all the report needs: CUT's row is measured from the files it wrote."""
    import numpy as np

    from data.image_io import load_rgb, pil_to_uint8
    from evaluation.metrics import psnr_ssim
    from evaluation.report_data import build_report_data
    from options.config import load
    from options.report import ReportConfig

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # offline: no VGG, no Inception
    t = make_trainer(cut_config("direction=BtoA"))
    t.step = 3
    t.save()
    cfg = load(ReportConfig, None, [f"dataset={tiny_dataset}", "direction=BtoA", "device=cpu", "download=false",
                                    f"methods=[{{method: cut, checkpoint: {t.run_dir}, direction: BtoA}}]",
                                    "scoring.vgg.weights=imagenet", "scoring.vgg.random_if_unavailable=true",
                                    "scoring.content_layers=[relu2_2]", "scoring.style_layers=[relu1_1]"])
    out = tmp_path / "report"
    data = build_report_data(cfg, out, torch.device("cpu"), feature_extractor=tiny_features, log=lambda s: None)
    rows = {r.method: r for r in data.rows}
    assert rows["cut"].title == "CUT (step 3)"
    inputs = sorted((tiny_dataset / "testB").glob("*.png"))
    values = [psnr_ssim(pil_to_uint8(load_rgb(out / "outputs" / "cut" / p.name)),
                        pil_to_uint8(load_rgb(tiny_dataset / "testA" / p.name))) for p in inputs]
    assert rows["cut"].psnr == pytest.approx(np.mean([v[0] for v in values]), rel=1e-9)
    assert rows["cut"].ssim == pytest.approx(np.mean([v[1] for v in values]), rel=1e-9)
