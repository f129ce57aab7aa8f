"""CUT as a method (methods/cut.py): the authors' published generator files (a plain state_dict,
``latest_net_G.pth``, in taesungp/contrastive-unpaired-translation's layout) and our checkpoints
(``nets["G"]``) give the generator's own output; files of other kinds are told apart from
CycleGAN's both ways; one generator means one direction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from image_corpus import noise
from PIL import Image

from data.image_io import pil_to_uint8, to_model_range, to_uint8
from methods.base import MethodError, load_method
from methods.cut import CUTMethod, infer_cut_arch
from methods.cyclegan import CycleGANMethod
from models.cut import CUTGeneratorArch, build_discriminator, build_generator
from models.gan_networks import GeneratorArch
from options.methods import MethodOptions
from utils.checkpoint import FORMAT, VERSION, CheckpointError

TINY = CUTGeneratorArch(ngf=8, n_blocks=1)


@pytest.fixture(scope="module")
def G() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_generator(ngf=8, n_blocks=1, init_gain=0.2).eval()  # visibly non-trivial outputs


@pytest.fixture(scope="module")
def authors_file(G, tmp_path_factory) -> Path:
    """What the authors' save_networks writes: torch.save(netG.state_dict(), 'latest_net_G.pth')."""
    path = tmp_path_factory.mktemp("horse2zebra_cut_pretrained") / "latest_net_G.pth"
    torch.save(G.state_dict(), path)
    return path


def _ours(G: torch.nn.Module, folder: Path, mode: str = "cut", direction: str = "AtoB") -> Path:
    """One of our training checkpoints holding G (the format the trainer writes)."""
    path = folder / f"step_{mode}_{direction}.pt"
    config = {"method": "cut", "mode": mode, "direction": direction, "model": {"ngf": 8, "n_blocks": 1}}
    torch.save({"format": FORMAT, "version": VERSION, "method": "cut", "config": config,
                "nets": {"G": G.state_dict()}, "optim": {}, "sched": {}, "scaler": None,
                "counters": {"step": 7}, "metrics": {}, "skipped_images": [], "rng": {}, "extra": {}}, path)
    return path


def _method(checkpoint, method: str = "cut", **kw) -> CUTMethod:
    return load_method(MethodOptions(method=method, checkpoint=str(checkpoint), **kw), "cpu")


def _batch(w: int, h: int, n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.stack([pil_to_uint8(Image.fromarray(noise(w, h, seed=seed + i))) for i in range(n)])


def test_authors_generator_file_gives_the_generators_own_output(G, authors_file) -> None:
    m = _method(authors_file)
    assert isinstance(m, CUTMethod) and m.loaded.arch == TINY and m.file.kind == "cut-generator"
    x = _batch(32, 24, 2, seed=1)
    with torch.no_grad():
        assert torch.equal(m(x), to_uint8(G(to_model_range(x))))
    odd = _batch(37, 53, seed=3)  # padded by reflection to 40 x 56, translated, cropped back
    padded = torch.nn.functional.pad(to_model_range(odd), (1, 2, 1, 2), mode="reflect")
    with torch.no_grad():
        assert torch.equal(m(odd), to_uint8(G(padded))[..., 1:54, 1:38])
    assert m.name == "CUT" and m.settings()["direction"] == "as trained"
    assert "CUT generator G (as trained)" in m.describe() and "anti-aliased down and up" in m.describe()


def test_our_checkpoint_and_the_authors_file_are_the_same_generator(G, authors_file, tmp_path) -> None:
    x = _batch(24, 16, seed=5)
    ours = _method(_ours(G, tmp_path, "fastcut"))
    assert ours.file.kind == "training" and ours.file.step == 7 and ours.loaded.arch == TINY
    assert ours.name == "FastCUT (step 7)" and ours.settings()["mode"] == "fastcut"
    assert torch.equal(ours(x), _method(authors_file)(x))
    assert _method(_ours(G, tmp_path), method="auto").name == "CUT (step 7)"  # our files say their method


@pytest.mark.parametrize("antialias,antialias_up,blocks", [(False, True, 2), (True, False, 0), (True, True, 3)])
def test_architecture_is_read_off_the_keys(tmp_path, antialias, antialias_up, blocks) -> None:
    arch = CUTGeneratorArch(input_nc=3, output_nc=1, ngf=4, n_blocks=blocks, antialias=antialias,
                            antialias_up=antialias_up)
    net = arch.build()
    assert infer_cut_arch(net.state_dict()) == arch
    torch.save(net.state_dict(), tmp_path / "latest_net_G.pth")
    assert _method(tmp_path).loaded.arch == arch  # a folder of the authors': its latest_net_G.pth
    dropout = CUTGeneratorArch(ngf=4, n_blocks=2, dropout=True)
    assert infer_cut_arch(dropout.build().state_dict()) == dropout


def test_one_generator_one_direction(authors_file, G, tmp_path) -> None:
    for source, fix in ((authors_file, "drop --direction"), (_ours(G, tmp_path), "pass --direction AtoB")):
        with pytest.raises(MethodError, match="CUT has one generator, A->B") as e:
            _method(source, direction="BtoA")
        assert fix in str(e.value) and "\n" not in str(e.value)
    # A run trained with direction: BtoA (the demo's photo -> painting) translates B -> A, and says so.
    back = _ours(G, tmp_path, direction="BtoA")
    m = _method(back, direction="BtoA")
    assert m.settings()["direction"] == "BtoA" and "G (B->A)" in m.describe()
    with pytest.raises(MethodError, match="CUT has one generator, B->A .*pass --direction BtoA"):
        _method(back)


def test_cut_and_cyclegan_files_are_told_apart(authors_file, tmp_path) -> None:
    cyclegan_ref = GeneratorArch(ngf=8, n_blocks=1).build().state_dict()  # latest_net_G_A.pth of CycleGAN's
    cut = torch.load(authors_file, weights_only=True)
    assert CUTMethod.recognise(cyclegan_ref) == "" and CUTMethod.recognise({"state_dict": cut}) == "cut-generator"
    assert CUTMethod.recognise(cut) == "cut-generator"
    assert CUTMethod.recognise({"module." + k: v for k, v in cut.items()}) == "cut-generator"  # DataParallel prefix
    # Without any blur pooling (--no_antialias --no_antialias_up) the file is CycleGAN's layout: CycleGAN reads
    # it, and so does --method cut, to the same network.
    plain = CUTGeneratorArch(ngf=8, n_blocks=1, antialias=False, antialias_up=False).build()
    torch.save(plain.state_dict(), tmp_path / "plain.pth")
    x = _batch(16, 16)
    assert torch.equal(_method(tmp_path / "plain.pth")(x), load_method(
        MethodOptions(method="cyclegan", checkpoint=str(tmp_path / "plain.pth")), "cpu")(x))


def test_cyclegan_does_not_claim_cut_files(authors_file) -> None:
    cut = torch.load(authors_file, weights_only=True)
    assert CycleGANMethod.recognise(cut) == ""
    assert _method(authors_file, method="auto").key == "cut"


def test_other_cut_files_are_named(tmp_path) -> None:
    D = build_discriminator(ndf=8)
    torch.save(D.state_dict(), tmp_path / "latest_net_D.pth")
    with pytest.raises(CheckpointError, match="this is a discriminator"):
        _method(tmp_path / "latest_net_D.pth")
    netF = {f"mlp_{i}.{j}.{p}": torch.zeros(2) for i in range(2) for j in (0, 2) for p in ("weight", "bias")}
    assert CUTMethod.recognise(netF) == "cut-netF"
    torch.save(netF, tmp_path / "latest_net_F.pth")
    with pytest.raises(CheckpointError, match="feature head netF"):
        _method(tmp_path / "latest_net_F.pth")
    cyc = {"format": FORMAT, "version": VERSION, "method": "cyclegan", "config": {}, "nets": {}, "optim": {},
           "sched": {}, "scaler": None, "counters": {}, "metrics": {}, "skipped_images": [], "rng": {}, "extra": {}}
    torch.save(cyc, tmp_path / "cyc.pt")
    with pytest.raises(CheckpointError, match="is a cyclegan checkpoint, not a CUT one"):
        _method(tmp_path / "cyc.pt")


def test_forced_settings_and_style_are_checked(authors_file) -> None:
    with pytest.raises(CheckpointError, match="drop ngf= / n_blocks="):
        _method(authors_file, settings=["ngf=16"])
    with pytest.raises(MethodError, match="takes no --style image"):
        _method(authors_file, style=["s.png"])
    with pytest.raises(Exception, match="n_blocks: must be in"):
        _method(authors_file, settings=["n_blocks=-1"])
