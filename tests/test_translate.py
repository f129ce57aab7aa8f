"""test.py and utils/translate.py: loading generators of every source, folders of awkward images."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.unaligned import pil_to_uint8, to_model_range, to_uint8
from models.cyclegan import build_discriminator, build_generator
from options.config import Config, ModelConfig
from utils.checkpoint import FORMAT, VERSION, CheckpointError
from utils.translate import (
    GeneratorArch,
    TranslateError,
    infer_architecture,
    load_generator,
    padded_size,
    translate_batch,
    translate_folder,
    translate_image,
    working_size,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = {"ngf": 8, "n_blocks": 1}


def _load_cli():
    # By path: a plain `import test` can resolve to the standard library's `test` package.
    spec = importlib.util.spec_from_file_location("cyclegan_test_cli", ROOT / "test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli = _load_cli()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors gain nothing from a second intra-op thread, and on a shared 2-core machine
    # OpenMP barriers then stall (5x slower here under load); restored for the other modules.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def nets() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    # Larger init gain than the default 0.02 so the random generators give visibly different images.
    return {
        "G_A": build_generator(**TINY, init_gain=0.2).eval(),
        "G_B": build_generator(**TINY, init_gain=0.2).eval(),
        "D_A": build_discriminator(ndf=8),
        "D_B": build_discriminator(ndf=8),
    }


@pytest.fixture(scope="module")
def files(nets, tmp_path_factory) -> dict[str, Path]:
    """A run folder with one of our checkpoints and the same G_A / G_B as reference-format files."""
    root = tmp_path_factory.mktemp("ckpt")
    cfg = Config(model=ModelConfig(**TINY))
    run = root / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = {"format": FORMAT, "version": VERSION, "config": dataclasses.asdict(cfg),
            "nets": {k: v.state_dict() for k, v in nets.items()}, "counters": {"step": 12}}
    torch.save(ckpt, run / "checkpoints" / "step_00000012.pt")
    ref_dir = root / "reference"
    ref_dir.mkdir()
    for name in ("G_A", "G_B"):
        sd = dict(nets[name].state_dict())
        # What PyTorch < 0.4 saved for InstanceNorm layers; the loader must drop these.
        for i in (2, 5):
            sd[f"model.{i}.running_mean"] = torch.zeros(nets[name].model[i].num_features)
            sd[f"model.{i}.running_var"] = torch.ones(nets[name].model[i].num_features)
        sd["model.10.conv_block.2.num_batches_tracked"] = torch.tensor(0)
        torch.save(sd, ref_dir / f"latest_net_{name}.pth")
    torch.save(nets["D_A"].state_dict(), ref_dir / "latest_net_D_A.pth")
    return {"run": run, "ckpt": run / "checkpoints" / "step_00000012.pt", "ref_dir": ref_dir,
            "ref_A": ref_dir / "latest_net_G_A.pth", "ref_B": ref_dir / "latest_net_G_B.pth",
            "ref_D": ref_dir / "latest_net_D_A.pth", "root": root}


def _noise(w: int, h: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, channels), dtype=np.uint8).squeeze()


def make_folder(folder: Path) -> dict[str, tuple[int, int]]:
    """Awkward inputs; returns relative output name -> expected (width, height) for the good ones."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sub").mkdir(exist_ok=True)
    Image.fromarray(_noise(37, 53)).save(folder / "odd.png")
    Image.fromarray(_noise(20, 31, 1, seed=1)).save(folder / "grey.png")
    rgba = np.dstack([_noise(33, 17, seed=2), np.tile(np.linspace(0, 255, 33, dtype=np.uint8), (17, 1))])
    Image.fromarray(rgba).save(folder / "rgba.png")
    pal = Image.fromarray(_noise(21, 19, seed=3)).quantize(16)
    pal.save(folder / "palette.png", transparency=0)
    deep = (np.arange(24 * 18, dtype=np.uint16).reshape(18, 24) * 150).astype(np.uint16)
    Image.fromarray(deep).save(folder / "deep16.png")  # mode I;16
    Image.fromarray(_noise(29, 41, seed=4)).convert("CMYK").save(folder / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(_noise(40, 24, seed=5)).save(folder / "rotated.jpg", exif=exif)
    Image.fromarray(_noise(3, 5, seed=6)).save(folder / "tiny.png")
    Image.fromarray(_noise(45, 45, seed=7)).save(folder / "sub" / "nested.bmp")
    (folder / "empty.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(_noise(50, 50, seed=8)).save(buf, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return {"odd.png": (37, 53), "grey.png": (20, 31), "rgba.png": (33, 17), "palette.png": (21, 19),
            "deep16.png": (24, 18), "cmyk.png": (29, 41), "rotated.png": (24, 40), "tiny.png": (3, 5),
            "sub/nested.png": (45, 45)}


def _run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--no-progress", "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out, err


def test_folder_of_awkward_images(files, tmp_path, capsys):
    expected = make_folder(tmp_path / "in")
    out = tmp_path / "out"
    args = ("--checkpoint", str(files["run"]), "--input", str(tmp_path / "in"), "--output", str(out), "--recursive")
    code, stdout, stderr = _run_cli(capsys, *args)
    assert code == 0
    assert "loaded G_A (A->B)" in stdout and "step 12" in stdout
    assert "translated 9, skipped 0 (already there), failed 2" in stdout
    assert "images/s" in stdout
    assert "empty.jpg: file is empty (0 bytes)" in stderr
    assert "truncated.jpg: cannot decode" in stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(expected)
    for name, size in expected.items():
        with Image.open(out / name) as img:
            assert img.size == size, name
            assert img.mode == ("RGBA" if name in ("rgba.png", "palette.png") else "RGB"), name
    # Alpha kept exactly; palette transparency (index 0) comes back as alpha 0 where it was.
    with Image.open(out / "rgba.png") as img, Image.open(tmp_path / "in" / "rgba.png") as src:
        assert np.array_equal(np.asarray(img)[..., 3], np.asarray(src)[..., 3])
    with Image.open(out / "palette.png") as img, Image.open(tmp_path / "in" / "palette.png") as src:
        assert np.array_equal(np.asarray(img)[..., 3] == 0, np.asarray(src) == 0)

    # Second run: everything is there, nothing is overwritten, still a success.
    before = (out / "odd.png").stat().st_mtime_ns
    code, stdout, _ = _run_cli(capsys, *args)
    assert code == 0 and "translated 0, skipped 9 (already there), failed 2" in stdout
    assert (out / "odd.png").stat().st_mtime_ns == before
    code, stdout, _ = _run_cli(capsys, *args, "--overwrite", "--batch-size", "1")
    assert code == 0 and "translated 9, skipped 0 (already there), failed 2" in stdout

    # Not recursive: sub/ is left out.
    code, stdout, _ = _run_cli(capsys, "--checkpoint", str(files["run"]), "--input", str(tmp_path / "in"),
                               "--output", str(tmp_path / "flat"))
    assert code == 0 and "translated 8," in stdout and not (tmp_path / "flat" / "sub").exists()


def test_reference_state_dict_and_our_checkpoint_give_identical_outputs(files, tmp_path):
    make_folder(tmp_path / "in")
    outputs = {}
    for label, source, direction in (("ours_A", files["run"], "AtoB"), ("ref_A", files["ref_A"], "AtoB"),
                                     ("ours_B", files["ckpt"], "BtoA"), ("ref_B", files["ref_B"], "AtoB"),
                                     ("refdir_B", files["ref_dir"], "BtoA")):
        gen, info = load_generator(source, direction)
        summary = translate_folder(gen, tmp_path / "in", tmp_path / label, recursive=True, progress=False)
        assert summary.translated == 9 and len(summary.failed) == 2
        outputs[label] = {p.name: np.asarray(Image.open(p)) for p in sorted((tmp_path / label).rglob("*.png"))}
        if label.startswith("ref"):
            assert info["source"] == "state_dict" and info["step"] is None
            assert info["arch"] == dataclasses.asdict(GeneratorArch(ngf=8, n_blocks=1))
            assert sorted(info["ignored_keys"]) == ["model.10.conv_block.2.num_batches_tracked",
                                                    "model.2.running_mean", "model.2.running_var",
                                                    "model.5.running_mean", "model.5.running_var"]
        else:
            assert info["step"] == 12 and info["net"] == ("G_A" if direction == "AtoB" else "G_B")
    assert len(outputs["ours_A"]) == 9
    for a, b in (("ours_A", "ref_A"), ("ours_B", "ref_B"), ("ours_B", "refdir_B")):
        assert outputs[a].keys() == outputs[b].keys()
        for name in outputs[a]:
            assert np.array_equal(outputs[a][name], outputs[b][name]), (a, b, name)
    # G_A and G_B really are different networks, so the direction was honoured.
    assert not np.array_equal(outputs["ours_A"]["odd.png"], outputs["ours_B"]["odd.png"])


def test_translate_image_is_the_generator_with_reflect_padding(nets):
    G = nets["G_A"]
    img = Image.fromarray(_noise(64, 48, seed=9))
    out = translate_image(G, img)
    x = to_model_range(pil_to_uint8(img)).unsqueeze(0)
    with torch.no_grad():
        ref = to_uint8(G(x))[0]
    assert out.size == (64, 48) and torch.equal(pil_to_uint8(out), ref)

    odd = Image.fromarray(_noise(37, 53, seed=10))
    assert padded_size(53, 37) == (56, 40)
    x = to_model_range(pil_to_uint8(odd)).unsqueeze(0)
    padded = torch.nn.functional.pad(x, (1, 2, 1, 2), mode="reflect")  # 37 -> 40 wide, 53 -> 56 high
    with torch.no_grad():
        ref = to_uint8(G(padded))[0, :, 1:54, 1:38]
    out = translate_image(G, odd)
    assert out.size == (37, 53) and torch.equal(pil_to_uint8(out), ref)


def test_batches_do_not_mix_images(nets):
    imgs = torch.stack([pil_to_uint8(Image.fromarray(_noise(20, 12, seed=s))) for s in range(4)])
    batched = translate_batch(nets["G_A"], imgs)
    single = torch.cat([translate_batch(nets["G_A"], imgs[i:i + 1]) for i in range(4)])
    assert batched.shape == (4, 3, 12, 20) and batched.dtype == torch.uint8
    assert (batched.int() - single.int()).abs().max() <= 1  # instance norm is per image


def _unet_like() -> dict[str, torch.Tensor]:
    return {"model.model.0.weight": torch.zeros(8, 3, 4, 4), "model.model.1.model.1.weight": torch.zeros(16, 8, 4, 4)}


@pytest.mark.parametrize(
    ("make", "kwargs", "needles"),
    [
        ("ref_D", {}, ["this is a discriminator, not a generator", "4x4 conv"]),
        ("ref_A", {"ngf": 16}, ["does not fit the expected ResNet generator ngf=16", "in the file",
                                "looks like a ResNet generator ngf=8, n_blocks=1"]),
        ("ref_A", {"n_blocks": 3}, ["missing keys", "model.11.conv_block.1.weight", "n_blocks=1"]),
        ("other", {}, ["not a CycleGAN ResNet generator state_dict", "model.1.weight", "conv1.weight"]),
        ("unet", {}, ["U-Net generator", "unet_256"]),
        ("truncated", {}, ["not a readable checkpoint (truncated or corrupt?)"]),
        ("text", {}, ["not a PyTorch checkpoint", "zip archive", "b'not '"]),
        ("empty", {}, ["empty (0 bytes)"]),
        ("pickled", {}, ["pickled Python objects", "weights_only=True"]),
        ("wrapped", {}, ["expected a generator state_dict", "found a dict with 1 keys: step (int)"]),
        ("missing", {}, ["does not exist"]),
    ],
)
def test_refuses_what_is_not_a_matching_generator(files, tmp_path, make, kwargs, needles):
    path = tmp_path / "file.pth"
    if make in files:
        path = files[make]
    elif make == "other":
        torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.bias": torch.zeros(2)}, path)
    elif make == "unet":
        torch.save(_unet_like(), path)
    elif make == "truncated":
        data = files["ref_A"].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif make == "text":
        path.write_text("not a checkpoint\n")
    elif make == "empty":
        path.write_bytes(b"")
    elif make == "pickled":
        torch.save(build_generator(**TINY), path)  # a whole pickled module, not a state_dict
    elif make == "wrapped":
        torch.save({"step": 3}, path)
    with pytest.raises(CheckpointError) as e:
        load_generator(path, **kwargs)
    for needle in needles:
        assert needle in str(e.value)


def test_cli_reports_bad_checkpoint_and_empty_inputs(files, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    Image.fromarray(_noise(16, 16)).save(tmp_path / "in" / "a.png")
    code, _, err = _run_cli(capsys, "--checkpoint", str(files["ref_D"]), "--input", str(tmp_path / "in"),
                            "--output", str(tmp_path / "o"))
    assert code == 2 and "this is a discriminator, not a generator" in err
    code, _, err = _run_cli(capsys, "--checkpoint", str(files["ref_A"]), "--input", str(tmp_path / "nope"),
                            "--output", str(tmp_path / "o"))
    assert code == 2 and "does not exist" in err
    code, _, err = _run_cli(capsys, "--checkpoint", str(files["ref_A"]), "--input", str(tmp_path / "in"),
                            "--output", str(tmp_path / "o"), "--amp", "fp16")
    if not torch.cuda.is_available():
        assert code == 2 and "fp16 needs a CUDA device" in err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"")
    (tmp_path / "bad" / "y.jpg").write_bytes(b"\xff\xd8\xff garbage")
    code, out, err = _run_cli(capsys, "--checkpoint", str(files["ref_A"]), "--input", str(tmp_path / "bad"),
                              "--output", str(tmp_path / "o2"))
    assert code == 1 and "failed 2" in out and "x.png" in err and "y.jpg" in err
    (tmp_path / "none").mkdir()
    code, _, err = _run_cli(capsys, "--checkpoint", str(files["ref_A"]), "--input", str(tmp_path / "none"),
                            "--output", str(tmp_path / "o3"))
    assert code == 1 and "no images found" in err
    # One image file as input, output named after it.
    code, out, _ = _run_cli(capsys, "--checkpoint", str(files["ref_A"]), "--input", str(tmp_path / "in" / "a.png"),
                            "--output", str(tmp_path / "single"), "--format", "jpg")
    assert code == 0 and Image.open(tmp_path / "single" / "a.jpg").size == (16, 16)


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
    assert infer_architecture(arch.build().state_dict()) == arch
    sd = {f"module.{k}": v for k, v in arch.build().state_dict().items()}  # saved from DataParallel
    torch.save(sd, tmp_path / "g.pth")
    gen, info = load_generator(tmp_path / "g.pth")
    assert info["arch"] == dataclasses.asdict(arch)
    out = translate_image(gen, Image.fromarray(_noise(13, 9, seed=11)))
    assert out.size == (13, 9) and out.mode == "RGB"


def test_alpha_drop_jpg_format_name_collisions_and_gallery(files, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rgba = np.dstack([_noise(18, 14), np.full((14, 18), 100, np.uint8)])
    Image.fromarray(rgba).save(src / "a.png")
    Image.fromarray(_noise(18, 14, seed=1)).save(src / "a.jpg")
    Image.fromarray(_noise(10, 10, seed=2)).save(src / "b.tif")
    gen, _ = load_generator(files["ref_A"])
    s = translate_folder(gen, src, tmp_path / "drop", alpha="drop", progress=False, gallery=True)
    assert s.translated == 3 and not s.failed
    names = sorted(p.name for p in (tmp_path / "drop").glob("*.png"))
    assert names == ["a.jpg.png", "a.png.png", "b.png"]
    assert Image.open(tmp_path / "drop" / "a.png.png").mode == "RGB"
    html_text = (tmp_path / "drop" / "index.html").read_text()
    assert html_text.count("<tr><td") == 3 and 'src="a.png.png"' in html_text and 'src="../in/a.jpg"' in html_text
    assert 'src="_gallery_inputs/b.png"' in html_text  # browsers cannot show TIFF: an 8-bit copy
    assert Image.open(tmp_path / "drop" / "_gallery_inputs" / "b.png").size == (10, 10)

    s = translate_folder(gen, src, tmp_path / "jpg", fmt="jpg", progress=False)
    assert s.translated == 3
    with Image.open(tmp_path / "jpg" / "a.png.jpg") as img:
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (18, 14)

    # Output folder inside the input folder: a second recursive run does not translate outputs.
    for _ in range(2):
        s = translate_folder(gen, src, src / "out", recursive=True, progress=False)
    assert s.skipped == 3 and s.translated == 0 and len(list((src / "out").rglob("*.png"))) == 3


def test_size_options_keep_the_input_size(files, tmp_path):
    assert working_size((37, 53), max_size=16) == (11, 16)
    assert working_size((37, 53), load_size=256) == (256, 367)
    assert working_size((37, 53), load_size=256, max_size=300) == (209, 300)
    assert working_size((37, 53)) == (37, 53)
    gen, _ = load_generator(files["ref_A"])
    img = Image.fromarray(_noise(37, 53))
    small = translate_image(gen, img, max_size=16)
    assert small.size == (37, 53)
    with pytest.raises(TranslateError, match="does not exist"):
        translate_folder(gen, tmp_path / "missing", tmp_path / "o", progress=False)


def test_bf16_autocast_on_cpu_and_fp16_refused(files):
    gen, _ = load_generator(files["ref_A"])
    img = Image.fromarray(_noise(24, 20))
    full = np.asarray(translate_image(gen, img), dtype=np.int16)
    half = np.asarray(translate_image(gen, img, amp="bf16"), dtype=np.int16)
    assert half.shape == full.shape and np.abs(half - full).mean() < 4
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
            translate_image(gen, img, amp="fp16")


def test_pre_1_6_serialization_loads_like_the_network(nets, tmp_path):
    # The reference's pretrained files (style_monet.pth ...) predate the zip format.
    torch.save(nets["G_A"].state_dict(), tmp_path / "style_monet.pth", _use_new_zipfile_serialization=False)
    gen, info = load_generator(tmp_path / "style_monet.pth")
    assert info["source"] == "state_dict" and "direction it was trained" in info["note"]
    img = Image.fromarray(_noise(30, 22, seed=12))
    ours = translate_image(nets["G_A"], img)
    theirs = translate_image(gen, img)
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_nets_dict_without_our_header_picks_the_direction(nets, tmp_path):
    torch.save({"nets": {k: v.state_dict() for k, v in nets.items()}}, tmp_path / "nets.pt")
    img = Image.fromarray(_noise(12, 16, seed=13))
    for direction, name in (("AtoB", "G_A"), ("BtoA", "G_B")):
        gen, info = load_generator(tmp_path / "nets.pt", direction)
        assert info["net"] == name and info["note"] == ""
        assert np.array_equal(np.asarray(translate_image(gen, img)), np.asarray(translate_image(nets[name], img)))
