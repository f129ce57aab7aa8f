"""CycleGAN as a method (methods/cyclegan.py) and the generator files it reads (utils/checkpoint.py):
our run folders and checkpoints, the public reference's state_dicts of every vintage, files that
are not a matching generator (each refused with what it is), the padding, grey generators, amp,
colour preservation and the fingerprint the report reuses outputs by."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from image_corpus import noise
from PIL import Image

from data.image_io import pil_to_uint8, to_model_range, to_uint8
from methods.base import MethodError, load_method
from methods.cyclegan import CycleGANMethod, infer_cyclegan_arch
from models.color import grey, rgb_to_yiq
from models.cyclegan import build_discriminator, build_generator
from models.gan_networks import GeneratorArch
from options.methods import MethodOptions
from utils.checkpoint import CheckpointError
from utils.device import DeviceError

TINY_ARCH = GeneratorArch(ngf=8, n_blocks=1)
LEGACY_KEYS = ["model.10.conv_block.2.num_batches_tracked", "model.2.running_mean", "model.2.running_var",
               "model.5.running_mean", "model.5.running_var"]


@pytest.fixture(scope="module")
def nets() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    # Larger init gain than the default 0.02 so the random generators give visibly different images.
    return {"G_A": build_generator(ngf=8, n_blocks=1, init_gain=0.2).eval(),
            "G_B": build_generator(ngf=8, n_blocks=1, init_gain=0.2).eval(),
            "D_A": build_discriminator(ndf=8)}


@pytest.fixture(scope="module")
def ref(nets, tmp_path_factory) -> dict[str, Path]:
    """G_A, G_B and D_A as the public reference saves them (latest_net_*.pth)."""
    folder = tmp_path_factory.mktemp("reference")
    for name in ("G_A", "G_B"):
        sd = dict(nets[name].state_dict())
        # What PyTorch < 0.4 saved for InstanceNorm layers; the loader must drop these.
        for i in (2, 5):
            sd[f"model.{i}.running_mean"] = torch.zeros(nets[name].model[i].num_features)
            sd[f"model.{i}.running_var"] = torch.ones(nets[name].model[i].num_features)
        sd["model.10.conv_block.2.num_batches_tracked"] = torch.tensor(0)
        torch.save(sd, folder / f"latest_net_{name}.pth")
    torch.save(nets["D_A"].state_dict(), folder / "latest_net_D_A.pth")
    return {"dir": folder, "A": folder / "latest_net_G_A.pth", "B": folder / "latest_net_G_B.pth",
            "D": folder / "latest_net_D_A.pth"}


@pytest.fixture
def run(nets, tiny_config, make_trainer) -> Path:
    """A run folder whose step-12 checkpoint (written by the trainer itself) holds the same G_A / G_B."""
    trainer = make_trainer(tiny_config())
    trainer.G_A.load_state_dict(nets["G_A"].state_dict())
    trainer.G_B.load_state_dict(nets["G_B"].state_dict())
    trainer.step = 12
    assert trainer.save().name == "step_00000012.pt"
    return trainer.run_dir


def _method(checkpoint, direction: str = "AtoB", **kw) -> CycleGANMethod:
    return load_method(MethodOptions(checkpoint=str(checkpoint), direction=direction, **kw), "cpu")


def _batch(w: int, h: int, n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.stack([pil_to_uint8(Image.fromarray(noise(w, h, seed=seed + i))) for i in range(n)])


def _reference_output(G: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return to_uint8(G(to_model_range(x)))


# ---------------------------------------------------------------------------------------------
# Every source of the same generator gives the same images


def test_reference_state_dict_and_our_checkpoint_give_identical_outputs(nets, ref, run):
    x = torch.cat([_batch(20, 12, 2, seed=1)])
    odd = _batch(37, 53, seed=3)
    outputs = {}
    for label, source, direction in (("ours_A", run, "AtoB"), ("ref_A", ref["A"], "AtoB"),
                                     ("ours_B", run / "checkpoints" / "step_00000012.pt", "BtoA"),
                                     ("ref_B", ref["B"], "AtoB"), ("refdir_B", ref["dir"], "BtoA")):
        m = _method(source, direction)
        outputs[label] = (m(x), m(odd))
        assert m.loaded.arch == TINY_ARCH
        if label.startswith("ref"):
            assert m.file.source == "state_dict" and m.file.step is None and m.loaded.name is None
            assert sorted(m.loaded.ignored_keys) == LEGACY_KEYS
            assert "ignored 5 InstanceNorm running-stat keys" in m.describe()
            assert m.name == "CycleGAN" and m.settings()["direction"] == "as trained"
        else:
            name = "G_A" if direction == "AtoB" else "G_B"
            assert m.file.step == 12 and m.loaded.name == name and m.loaded.ignored_keys == []
            assert m.file.source == ("run" if label == "ours_A" else "checkpoint")
            assert f"loaded {name} ({'A->B' if name == 'G_A' else 'B->A'})" in m.describe()
            assert "step 12" in m.describe() and m.name == "CycleGAN (step 12)"
            assert m.settings()["step"] == 12 and m.settings()["direction"] == direction
    for a, b in (("ours_A", "ref_A"), ("ours_B", "ref_B"), ("ours_B", "refdir_B")):
        assert torch.equal(outputs[a][0], outputs[b][0]) and torch.equal(outputs[a][1], outputs[b][1]), (a, b)
    # G_A and G_B really are different networks, so the direction was honoured.
    assert not torch.equal(outputs["ours_A"][0], outputs["ours_B"][0])
    assert torch.equal(outputs["ours_A"][0], _reference_output(nets["G_A"], x))


def test_method_is_the_generator_with_reflect_padding(nets, ref):
    m = _method(ref["A"])
    x = _batch(64, 48, seed=9)
    out = m(x)
    assert out.shape == (1, 3, 48, 64) and out.dtype == torch.uint8 and out.device.type == "cpu"
    assert torch.equal(out, _reference_output(nets["G_A"], x))

    odd = _batch(37, 53, seed=10)
    padded = torch.nn.functional.pad(to_model_range(odd), (1, 2, 1, 2), mode="reflect")  # 37 -> 40, 53 -> 56
    with torch.no_grad():
        expected = to_uint8(nets["G_A"](padded))[..., 1:54, 1:38]
    assert torch.equal(m(odd), expected)


def test_batches_do_not_mix_images(ref):
    m = _method(ref["A"])
    imgs = _batch(20, 12, 4)
    batched = m(imgs)
    single = torch.cat([m(imgs[i:i + 1]) for i in range(4)])
    assert batched.shape == (4, 3, 12, 20) and batched.dtype == torch.uint8
    assert (batched.int() - single.int()).abs().max() <= 1  # instance norm is per image


def test_grey_generator_gets_exactly_pils_luminance(tmp_path):
    rgb = noise(23, 17, seed=4)
    x = pil_to_uint8(Image.fromarray(rgb)).unsqueeze(0)
    pil_grey = pil_to_uint8(Image.fromarray(rgb).convert("L")).unsqueeze(0)
    assert torch.equal(grey(x), pil_grey)  # ITU-R 601-2 with PIL's rounding, on every pixel
    torch.manual_seed(2)
    for arch in (GeneratorArch(input_nc=1, output_nc=3, ngf=4, n_blocks=1),
                 GeneratorArch(input_nc=1, output_nc=1, ngf=4, n_blocks=1)):
        net = arch.build().eval()
        torch.save(net.state_dict(), tmp_path / "g.pth")
        m = _method(tmp_path / "g.pth")
        assert m.loaded.arch == arch
        out = m(x)
        assert out.shape == (1, arch.output_nc, 17, 23)
        padded = torch.nn.functional.pad(to_model_range(pil_grey), (0, 1, 1, 2), mode="reflect")  # 23 -> 24, 17 -> 20
        with torch.no_grad():
            assert torch.equal(out, to_uint8(net(padded))[..., 1:18, 0:23])


def test_preserve_color_keeps_the_inputs_chroma(ref):
    x = (_batch(24, 16, 2, seed=5) // 4 + 96).to(torch.uint8)  # mid-range colours: no clipping back to RGB
    free, kept = _method(ref["A"])(x), _method(ref["A"], preserve_color=True)(x)
    chroma = rgb_to_yiq(x.float() / 255)[:, 1:]
    err_kept = (rgb_to_yiq(kept.float() / 255)[:, 1:] - chroma).abs().mean().item()
    err_free = (rgb_to_yiq(free.float() / 255)[:, 1:] - chroma).abs().mean().item()
    assert err_kept < 0.01 and err_free > 0.05, (err_kept, err_free)
    # ... and the luminance is the generator's.
    y_free, y_kept = rgb_to_yiq(free.float() / 255)[:, :1], rgb_to_yiq(kept.float() / 255)[:, :1]
    assert (y_free - y_kept).abs().mean() < 0.02


def test_bf16_autocast_on_cpu_and_fp16_refused(ref):
    x = _batch(24, 20)
    full = _method(ref["A"])(x).int()
    half = _method(ref["A"], amp="bf16")(x).int()
    assert half.shape == full.shape and (half - full).abs().float().mean() < 4 and not torch.equal(half, full)
    with pytest.raises(DeviceError, match="amp fp16 needs a CUDA device"):
        _method(ref["A"], amp="fp16")


def test_style_images_and_bad_settings_are_refused(ref):
    with pytest.raises(MethodError, match="takes no --style image"):
        _method(ref["A"], style=["s.png"])
    with pytest.raises(Exception, match="ngf: must be in"):
        _method(ref["A"], settings=["ngf=-1"])
    with pytest.raises(Exception, match="valid keys"):
        _method(ref["A"], settings=["ngff=8"])


# ---------------------------------------------------------------------------------------------
# The fingerprint the report reuses outputs by


def test_fingerprint_follows_the_file_content_and_the_settings(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "g.pth"
    torch.save(TINY_ARCH.build().state_dict(), path)
    first = _method(path).fingerprint()
    assert _method(path).fingerprint() == first  # stable while nothing changes
    assert first["files"][0]["path"] == str(path.resolve()) and first["amp"] == "off"

    # Another generator of the same size, with the file's old modification time put back: the
    # content hash still tells them apart.
    st = path.stat()
    torch.save(TINY_ARCH.build().state_dict(), path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    assert _method(path).fingerprint() != first

    # A different architecture in the same file: the settings (arch) and the file both change.
    torch.save(GeneratorArch(ngf=4, n_blocks=1).build().state_dict(), path)
    fp = _method(path).fingerprint()
    assert fp["settings"]["arch"] != first["settings"]["arch"] and fp["files"] != first["files"]
    assert _method(path, preserve_color=True).fingerprint()["settings"] != fp["settings"]
    assert _method(path, amp="bf16").fingerprint()["amp"] == "bf16"


def test_fingerprint_sees_a_change_anywhere_in_the_first_and_last_mib(tmp_path):
    from methods.base import file_fingerprint

    path = tmp_path / "g.pth"
    path.write_bytes(bytes(3 << 19))  # 1.5 MiB: "first and last MiB" cover every byte
    first, st = file_fingerprint(path), path.stat()
    with open(path, "r+b") as f:
        f.seek(1_300_000)
        f.write(b"\1")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # copied with its time kept (cp -p, rsync -t)
    assert file_fingerprint(path) != first


# ---------------------------------------------------------------------------------------------
# Files that are not a matching generator


def _unet_like() -> dict[str, torch.Tensor]:
    return {"model.model.0.weight": torch.zeros(8, 3, 4, 4), "model.model.1.model.1.weight": torch.zeros(16, 8, 4, 4)}


@pytest.mark.parametrize(
    ("make", "settings", "needles"),
    [
        ("D", [], ["this is a discriminator, not a generator", "4x4 conv"]),
        ("A", ["ngf=16"], ["does not fit the expected ResNet generator ngf=16", "in the file",
                           "looks like a ResNet generator ngf=8, n_blocks=1"]),
        ("A", ["n_blocks=3"], ["missing keys", "model.11.conv_block.1.weight", "n_blocks=1"]),
        ("other", [], ["not a checkpoint this project reads", "model.1.weight", "conv1.weight (4x3x3x3)"]),
        ("unet", [], ["U-Net generator", "unet_256"]),
        ("truncated", [], ["not a readable checkpoint (truncated or corrupt?)"]),
        ("text", [], ["not a PyTorch checkpoint", "zip archive", "b'not '"]),
        ("empty", [], ["empty (0 bytes)"]),
        ("pickled", [], ["pickled Python objects", "weights_only=True"]),
        ("wrapped", [], ["not a checkpoint this project reads", "found 1 keys: step (int)"]),
        ("missing", [], ["does not exist"]),
    ],
)
def test_refuses_what_is_not_a_matching_generator(ref, tmp_path, make, settings, needles):
    path = tmp_path / "file.pth"
    if make in ref:
        path = ref[make]
    elif make == "other":
        torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.bias": torch.zeros(2)}, path)
    elif make == "unet":
        torch.save(_unet_like(), path)
    elif make == "truncated":
        data = ref["A"].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif make == "text":
        path.write_text("not a checkpoint\n")
    elif make == "empty":
        path.write_bytes(b"")
    elif make == "pickled":
        torch.save(build_generator(ngf=8, n_blocks=1), path)  # a whole pickled module, not a state_dict
    elif make == "wrapped":
        torch.save({"step": 3}, path)
    with pytest.raises(CheckpointError) as e:
        _method(path, method="cyclegan", settings=settings)
    for needle in needles:
        assert needle in str(e.value)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "arch",
    [
        GeneratorArch(ngf=8, n_blocks=2, dropout=True),
        GeneratorArch(ngf=4, n_blocks=1, norm="none", dropout=True),
        GeneratorArch(ngf=4, n_blocks=0, norm="none"),
        GeneratorArch(ngf=4, n_blocks=3, norm="batch", upsample="resize_conv"),
        GeneratorArch(input_nc=1, output_nc=3, ngf=6, n_blocks=1, upsample="resize_conv"),
    ],
)
def test_architecture_is_read_off_the_keys(arch, tmp_path):
    assert infer_cyclegan_arch(arch.build().state_dict()) == arch
    sd = {f"module.{k}": v for k, v in arch.build().state_dict().items()}  # saved from DataParallel
    torch.save(sd, tmp_path / "g.pth")
    m = _method(tmp_path / "g.pth")
    assert m.loaded.arch == arch and m.settings()["arch"] == arch.describe()
    out = m(_batch(13, 9, seed=11))
    assert out.shape == (1, 3, 9, 13) and out.dtype == torch.uint8


def test_pre_1_6_serialization_loads_like_the_network(nets, tmp_path):
    # The reference's pretrained files (style_monet.pth ...) predate the zip format.
    torch.save(nets["G_A"].state_dict(), tmp_path / "style_monet.pth", _use_new_zipfile_serialization=False)
    m = _method(tmp_path / "style_monet.pth", "BtoA")
    assert m.file.source == "state_dict" and "direction it was trained" in m.loaded.note
    x = _batch(32, 24, seed=12)
    assert torch.equal(m(x), _reference_output(nets["G_A"], x))


def test_nets_dict_without_our_header_picks_the_direction(nets, tmp_path):
    torch.save({"nets": {k: v.state_dict() for k, v in nets.items()}}, tmp_path / "nets.pt")
    x = _batch(12, 16, seed=13)
    for direction, name in (("AtoB", "G_A"), ("BtoA", "G_B")):
        m = _method(tmp_path / "nets.pt", direction)
        assert m.loaded.name == name and m.loaded.note == ""
        assert torch.equal(m(x), _reference_output(nets[name], x))


def test_checkpoint_config_decides_the_architecture(nets, run, tmp_path):
    # Our checkpoint's stored config, not a guess from the keys, builds the network; forcing another
    # width is refused with what the file really holds.
    m = _method(run)
    assert m.loaded.arch == dataclasses.replace(TINY_ARCH)
    with pytest.raises(CheckpointError, match="does not fit the expected ResNet generator ngf=16"):
        _method(run, settings=["ngf=16"])
    assert np.array_equal(m(_batch(8, 8)).numpy(), _reference_output(nets["G_A"], _batch(8, 8)).numpy())
