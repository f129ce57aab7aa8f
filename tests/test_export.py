"""export.py and what it writes: ONNX (checked here with onnxruntime), TorchScript (torch.jit.load)
and safetensors (read back by test.py's loader) for CycleGAN (our runs and the reference's files),
CUT, Johnson (single and multi-style, the style weights an input), AdaIN (one graph with content,
style and alpha inputs) and WCT (safetensors); each compared with the PyTorch method on images of
odd sizes, independently of export.py's own check. test.py --checkpoint model.onnx over a folder,
the refusals (Gatys, another method's checkpoint, an output inside the input, an opset the
exporter cannot write, a failed check) and the rule that nothing is replaced without --overwrite.

Tiny random networks (ngf 8, one residual block; Johnson c8; AdaIN decoder width 1/8 on a
random-weight VGG), images up to 64 px."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import randomise
from PIL import Image

import export as export_cli
from methods.base import load_method, open_weights
from methods.onnx import ONNXMethod
from models.color import grey
from models.cut import build_generator as build_cut_generator
from models.cyclegan import build_generator
from models.johnson import TransformerNet
from models.wct import build_decoders
from options.common import load_training_config
from options.config import to_dict
from options.methods import MethodOptions
from utils.checkpoint import (
    CheckpointError,
    checkpoint_path,
    load_file,
    read_training_checkpoint,
    save_atomic,
    training_state,
)

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
ROOT = Path(__file__).resolve().parents[1]
SIZES = ((1, 37, 45), (3, 31, 22), (1, 9, 50))  # odd, unequal, not multiples of 4; none seen by export's check


def _load_test_cli():
    spec = importlib.util.spec_from_file_location("export_test_cli", ROOT / "test.py")  # not the stdlib `test`
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


test_cli = _load_test_cli()


def _export(capsys, *args: str) -> tuple[int, str, str]:
    code = export_cli.main([*args, "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out, err


def _translate(capsys, *args: str) -> tuple[int, str, str]:
    code = test_cli.main([*args, "--device", "cpu", "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def _images(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=g) for n, h, w in SIZES]


def _ort(path: Path, **feeds: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _max_diff(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int32) - np.asarray(b, dtype=np.int32)).max())


def _method(checkpoint: Path, **kw) -> object:
    return load_method(MethodOptions(checkpoint=str(checkpoint), **kw), "cpu")


def _folder(path: Path, sizes: tuple[tuple[int, int], ...] = ((45, 37), (22, 31), (64, 64))) -> Path:
    rng = np.random.default_rng(3)
    path.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path / f"img{i}.png")
    return path


def _pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def _run_folder(root: Path, method: str, nets: dict[str, torch.nn.Module], config: dict, step: int = 7) -> Path:
    """A run folder holding one of our checkpoints (networks only; no training needed to export)."""
    state = training_state(method, config, nets, {}, {}, None, {"step": step, "epoch": 0}, {}, [], {}, {})
    save_atomic(state, checkpoint_path(root, step))
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export_inputs")
    torch.manual_seed(0)
    g_a, g_b = (build_generator(ngf=8, n_blocks=1, init_gain=0.2).eval() for _ in range(2))
    run = _run_folder(root / "cyclegan_run", "cyclegan", {"G_A": g_a, "G_B": g_b},
                      {"method": "cyclegan", "model": {"ngf": 8, "n_blocks": 1}})
    torch.save(g_a.state_dict(), root / "latest_net_G_A.pth")
    cut = build_cut_generator(ngf=8, n_blocks=1, init_gain=0.2).eval()
    torch.save(cut.state_dict(), root / "cut_latest_net_G.pth")
    single = randomise(TransformerNet(channels=8, n_blocks=1, output="clamp"), 1).eval()
    torch.save(single.state_dict(), root / "candy_like.pth")
    multi = randomise(TransformerNet(channels=8, n_blocks=1, n_styles=3), 2).eval()
    johnson = _run_folder(root / "johnson_run", "johnson", {"transformer": multi},
                          {"method": "johnson", "model": {"channels": 8, "n_blocks": 1, "output": "tanh"}})
    cfg = load_training_config(None, ["method=wct", f"data.root={root}", f"log.root={root / 'runs'}",
                                      "vgg.weights=random", "model.width=0.125", "model.levels=[relu3_1,relu4_1]"])
    decoders = randomise(build_decoders(["relu3_1", "relu4_1"], 0.125), 4, 0.1)
    wct = _run_folder(root / "wct_run", "wct", {"decoders": decoders}, to_dict(cfg))
    style = root / "style.png"
    yy, xx = np.mgrid[0:40, 0:52]
    Image.fromarray(np.stack([xx * 4, yy * 6, (xx * yy) % 255], -1).astype(np.uint8)).save(style)
    return {"root": root, "run": run, "ref": root / "latest_net_G_A.pth", "cut": root / "cut_latest_net_G.pth",
            "single": root / "candy_like.pth", "johnson": johnson, "wct": wct, "style": style}


# ---------------------------------------------------------------------------------------------
# CycleGAN


def test_cyclegan_run_to_onnx_with_dynamic_axes_matches_the_method(files, tmp_path, capsys) -> None:
    out = tmp_path / "g_b.onnx"
    code, stdout, _ = _export(capsys, "--checkpoint", str(files["run"]), "--direction", "BtoA", "--format", "onnx",
                              "--output", str(out))
    assert code == 0, stdout
    assert "input  image: uint8 (N, 3, H, W) in [0, 255]" in stdout
    assert "max |export - PyTorch method| = 0/255" in stdout or "= 1/255" in stdout
    model = onnx.load(str(out))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, "H", "W"] and model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert model.opset_import[0].version == 17
    meta = json.loads({p.key: p.value for p in model.metadata_props}["export"])
    assert meta["method"] == "cyclegan" and meta["net"] == "G_B" and meta["step"] == 7
    assert meta["inputs"][0] == {"name": "image", "dtype": "uint8", "shape": ["N", 3, "H", "W"], "range": [0, 255],
                                 "doc": "RGB images"}
    method = _method(files["run"], direction="BtoA")
    other = _method(files["run"], direction="AtoB")
    for images in _images():
        got = _ort(out, image=images.numpy())
        assert got.shape == tuple(images.shape) and got.dtype == np.uint8
        assert _max_diff(got, method(images)) <= 1
        assert _max_diff(got, other(images)) > 20  # the other generator would not pass


def test_reference_generator_as_float_onnx_and_torchscript(files, tmp_path, capsys) -> None:
    onnx_file, ts_file = tmp_path / "f.onnx", tmp_path / "g.pt"
    assert _export(capsys, "--checkpoint", str(files["ref"]), "--format", "onnx", "--output", str(onnx_file),
                   "--input-type", "float")[0] == 0
    assert _export(capsys, "--checkpoint", str(files["ref"]), "--format", "torchscript", "--output",
                   str(ts_file))[0] == 0
    method = _method(files["ref"])
    scripted = torch.jit.load(str(ts_file))
    for images in _images(1):
        expected = method(images).numpy()
        got = _ort(onnx_file, image=images.numpy().astype(np.float32) / 255)
        assert got.dtype == np.float32 and 0 <= got.min() and got.max() <= 1
        assert np.abs(got * 255 - expected).max() <= 1.0
        assert _max_diff(scripted(images), expected) <= 1


def test_batch_norm_and_grey_generators(tmp_path, capsys) -> None:
    """A BatchNorm generator must be exported in eval mode (running statistics; a fresh wrapper module
    is in training mode), and a 1-channel generator takes grey images, as the method gives it."""
    torch.manual_seed(1)
    for name, kw in (("bn", {"norm": "batch"}), ("grey", {"input_nc": 1, "output_nc": 1})):
        net = build_generator(ngf=8, n_blocks=1, init_gain=0.2, **kw).eval()
        if name == "bn":
            for m in net.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
        torch.save(net.state_dict(), tmp_path / f"{name}.pth")
        out = tmp_path / f"{name}.onnx"
        code, _, err = _export(capsys, "--checkpoint", str(tmp_path / f"{name}.pth"), "--format", "onnx", "--output",
                               str(out))
        assert code == 0, err
        method = _method(tmp_path / f"{name}.pth")
        images = _images(7)[1]
        feed = images if name == "bn" else grey(images)
        got = _ort(out, image=feed.numpy())
        assert got.shape[1] == (3 if name == "bn" else 1)
        assert _max_diff(got, method(images)) <= 1


def test_safetensors_export_loads_where_a_weights_file_does(files, tmp_path, capsys) -> None:
    from safetensors.torch import load_file as st_load

    out = tmp_path / "G_A.safetensors"
    assert _export(capsys, "--checkpoint", str(files["run"]), "--format", "safetensors", "--output", str(out))[0] == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # as any file the user writes (save_file: 0600)
    tensors = st_load(str(out))
    assert set(tensors) == set(torch.load(files["ref"], weights_only=True))  # the reference's layout, unchanged
    assert torch.equal(tensors["model.1.weight"], torch.load(files["ref"], weights_only=True)["model.1.weight"])
    code, _, err = _translate(capsys, "--checkpoint", str(out), "--input", str(_folder(tmp_path / "in")),
                              "--output", str(tmp_path / "st"))
    assert code == 0, err
    code, _, err = _translate(capsys, "--checkpoint", str(files["ref"]), "--input", str(tmp_path / "in"),
                              "--output", str(tmp_path / "pth"))
    assert code == 0, err
    a, b = _pngs(tmp_path / "st"), _pngs(tmp_path / "pth")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------
# CUT, Johnson, AdaIN, WCT


def test_cut_generator_to_onnx_matches_the_method(files, tmp_path, capsys) -> None:
    out = tmp_path / "cut.onnx"
    code, stdout, err = _export(capsys, "--checkpoint", str(files["cut"]), "--format", "onnx", "--output", str(out))
    assert code == 0, err
    assert "CUT generator G" in stdout
    method = _method(files["cut"])
    for images in _images(2):
        assert _max_diff(_ort(out, image=images.numpy()), method(images)) <= 1


def test_johnson_multi_style_weights_are_an_input(files, tmp_path, capsys) -> None:
    out = tmp_path / "multi.onnx"
    code, stdout, err = _export(capsys, "--checkpoint", str(files["johnson"]), "--format", "onnx", "--output",
                                str(out))
    assert code == 0, err
    assert "input  style_weights: float32 (3)" in stdout
    images = _images(3)[0]
    outs = []
    for weights in ([1, 0, 0], [0, 1, 0], [0.5, 0.5, 0], [2, 2, 0]):
        got = _ort(out, image=images.numpy(), style_weights=np.asarray(weights, np.float32))
        assert _max_diff(got, _method(files["johnson"], style_weights=weights)(images)) <= 1
        outs.append(got)
    assert _max_diff(outs[0], outs[1]) > 20 and _max_diff(outs[2], outs[3]) == 0  # weights are normalised inside
    # test.py runs the graph with --style-weights as the PyTorch method does
    folder = _folder(tmp_path / "in")
    assert _translate(capsys, "--checkpoint", str(out), "--input", str(folder), "--output", str(tmp_path / "o"),
                      "--style-weights", "0", "1", "0")[0] == 0
    assert _translate(capsys, "--checkpoint", str(files["johnson"]), "--input", str(folder), "--output",
                      str(tmp_path / "p"), "--style-weights", "0", "1", "0")[0] == 0
    a, b = _pngs(tmp_path / "o"), _pngs(tmp_path / "p")
    assert a.keys() == b.keys() and max(_max_diff(a[k], b[k]) for k in a) <= 1
    code, _, err = _translate(capsys, "--checkpoint", str(out), "--input", str(folder), "--output",
                              str(tmp_path / "bad"), "--style-weights", "1", "0")
    assert code == 2 and "2 weight(s) for a network of 3 styles" in err


def test_johnson_safetensors_keeps_the_output_convention(files, tmp_path, capsys) -> None:
    """Our runs' networks end in a scaled tanh, fast_neural_style's in a clamp: not in the weights, so
    the run's config travels in the file's metadata, and the file reads back as that run's."""
    st, ts = tmp_path / "multi.safetensors", tmp_path / "single.ts"
    assert _export(capsys, "--checkpoint", str(files["johnson"]), "--format", "safetensors", "--output",
                   str(st))[0] == 0
    obj = load_file(st)
    assert obj["method"] == "johnson" and obj["config"]["model"]["output"] == "tanh" and obj["exported"]
    images = _images(4)[1]
    weights = [0.2, 0.3, 0.5]
    expected = _method(files["johnson"], style_weights=weights)(images)
    assert torch.equal(_method(st, style_weights=weights)(images), expected)
    with pytest.raises(CheckpointError, match="exported weights file"):
        read_training_checkpoint(st)  # inference only: no resume from it
    assert _export(capsys, "--checkpoint", str(files["single"]), "--format", "torchscript", "--output",
                   str(ts))[0] == 0
    assert _max_diff(torch.jit.load(str(ts))(images), _method(files["single"])(images)) <= 1
    # a fast_neural_style .pth converted to safetensors by anyone reads exactly as the .pth
    from safetensors.torch import save_file

    plain = tmp_path / "candy.safetensors"
    save_file(torch.load(files["single"], weights_only=True), str(plain))
    assert torch.equal(_method(plain)(images), _method(files["single"])(images))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(plain.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_file(cut)


def test_adain_is_one_graph_with_content_style_and_alpha(files, tmp_path, capsys) -> None:
    out = tmp_path / "adain.onnx"
    code, stdout, err = _export(capsys, "--checkpoint", str(files["wct"]), "--method", "adain", "--format", "onnx",
                                "--output", str(out))
    assert code == 0, err
    assert "input  style: uint8 (1, 3, H_style, W_style)" in stdout and "input  alpha: float32 ()" in stdout
    style = np.asarray(Image.open(files["style"]))[None].transpose(0, 3, 1, 2).copy()
    for alpha in (1.0, 0.4):
        method = _method(files["wct"], method="adain", style=[str(files["style"])], alpha=alpha)
        for images in _images(5)[:2]:
            got = _ort(out, image=images.numpy(), style=style, alpha=np.asarray(alpha, np.float32))
            assert _max_diff(got, method(images)) <= 1
    folder = _folder(tmp_path / "in")
    common = ["--input", str(folder), "--style", str(files["style"])]
    assert _translate(capsys, "--checkpoint", str(out), "--output", str(tmp_path / "o"), "--alpha", "0.4",
                      *common)[0] == 0
    assert _translate(capsys, "--checkpoint", str(files["wct"]), "--method", "adain", "--output", str(tmp_path / "p"),
                      "--alpha", "0.4", *common)[0] == 0
    a, b = _pngs(tmp_path / "o"), _pngs(tmp_path / "p")
    assert a.keys() == b.keys() and max(_max_diff(a[k], b[k]) for k in a) <= 1


def test_wct_exports_its_decoders_as_safetensors_only(files, tmp_path, capsys) -> None:
    code, _, err = _export(capsys, "--checkpoint", str(files["wct"]), "--format", "onnx", "--output",
                           str(tmp_path / "wct.onnx"))
    assert code == 2 and "eigendecomposition" in err and "--format safetensors" in err
    assert not (tmp_path / "wct.onnx").exists()
    st = tmp_path / "wct.safetensors"
    code, _, err = _export(capsys, "--checkpoint", str(files["wct"]), "--format", "safetensors", "--output", str(st))
    assert code == 0, err
    images = _images(6)[0]
    kw = {"method": "wct", "style": [str(files["style"])]}
    assert torch.equal(_method(st, **kw)(images), _method(files["wct"], **kw)(images))


# ---------------------------------------------------------------------------------------------
# test.py over a folder, and the refusals


def test_test_py_translates_a_folder_through_onnxruntime(files, tmp_path, capsys) -> None:
    graph = tmp_path / "g.onnx"
    assert _export(capsys, "--checkpoint", str(files["ref"]), "--format", "onnx", "--output", str(graph))[0] == 0
    folder = _folder(tmp_path / "in", ((45, 37), (22, 31), (3, 5)))  # 3 x 5: below the graph's 4 px
    code, out, err = _translate(capsys, "--checkpoint", str(graph), "--input", str(folder), "--output",
                                str(tmp_path / "o"), "--preserve-color")
    assert code == 0, err
    assert "loaded ONNX graph" in out and "CPUExecutionProvider" in out
    assert _translate(capsys, "--checkpoint", str(files["ref"]), "--input", str(folder), "--output",
                      str(tmp_path / "p"), "--preserve-color")[0] == 0
    a, b = _pngs(tmp_path / "o"), _pngs(tmp_path / "p")
    assert len(a) == 3 and a.keys() == b.keys() and max(_max_diff(a[k], b[k]) for k in a) <= 1
    # the output-safety rules are test.py's: existing outputs kept, an output inside the input refused
    before = (tmp_path / "o" / "img0.png").stat().st_mtime_ns
    again = _translate(capsys, "--checkpoint", str(graph), "--input", str(folder), "--output", str(tmp_path / "o"))
    assert again[0] == 1
    assert (tmp_path / "o" / "img0.png").stat().st_mtime_ns == before
    code, _, err = _translate(capsys, "--checkpoint", str(graph), "--input", str(folder), "--output",
                              str(folder / "sub"))
    assert code == 2 and "inside the input" in err
    # a style image for a generator graph, an amp, a graph without export.py's metadata: one line, exit 2
    code, _, err = _translate(capsys, "--checkpoint", str(graph), "--input", str(folder), "--output",
                              str(tmp_path / "x"), "--style", str(files["style"]))
    assert code == 2 and "takes no --style" in err
    model = onnx.load(str(graph))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    code, _, err = _translate(capsys, "--checkpoint", str(bare), "--input", str(folder), "--output",
                              str(tmp_path / "y"))
    assert code == 2 and "without export.py's metadata" in err and len(err.strip().splitlines()) == 1
    code, _, err = _translate(capsys, "--checkpoint", str(graph), "--method", "cyclegan", "--input", str(folder),
                              "--output", str(tmp_path / "z"))
    assert code == 2 and "exported ONNX graph" in err
    assert isinstance(_method(graph), ONNXMethod)


def test_refusals_exit_2_and_nothing_is_replaced_without_overwrite(files, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "m.onnx"

    def refused(*args: str) -> str:
        code, _, err = _export(capsys, *args)
        assert code == 2, err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
        return err

    ckpt = ["--checkpoint", str(files["run"])]
    assert "optimisation per image" in refused("--method", "gatys", *ckpt, "--format", "onnx", "--output", str(out))
    assert "not a Johnson network" in refused(*ckpt, "--method", "johnson", "--format", "onnx", "--output", str(out))
    assert "inside the input" in refused(*ckpt, "--format", "onnx", "--output", str(files["run"] / "m.onnx"))
    assert "writes opsets up to" in refused(*ckpt, "--format", "onnx", "--output", str(out), "--opset", "99")
    assert "need at least 11" in refused(*ckpt, "--format", "onnx", "--output", str(out), "--opset", "9")
    assert "ends in .onnx" in refused(*ckpt, "--format", "onnx", "--output", str(tmp_path / "m.pt"))
    graph = tmp_path / "g.onnx"
    assert _export(capsys, *ckpt, "--format", "onnx", "--output", str(graph))[0] == 0
    assert "already an exported ONNX graph" in refused("--checkpoint", str(graph), "--format", "onnx", "--output",
                                                       str(out))
    st = tmp_path / "g.safetensors"
    assert _export(capsys, *ckpt, "--format", "safetensors", "--output", str(st))[0] == 0
    assert "the checkpoint being exported" in refused("--checkpoint", str(st), "--format", "safetensors",
                                                      "--output", str(st), "--overwrite")
    st.unlink()
    assert not out.exists()
    # existing output: kept (exit 1) unless --overwrite; --dry-run writes nothing
    before = graph.read_bytes()
    code, _, err = _export(capsys, "--checkpoint", str(files["ref"]), "--format", "onnx", "--output", str(graph))
    assert code == 1 and "--overwrite" in err and graph.read_bytes() == before
    code, stdout, _ = _export(capsys, "--checkpoint", str(files["ref"]), "--format", "onnx", "--output",
                              str(tmp_path / "new.onnx"), "--dry-run")
    assert code == 0 and "nothing written" in stdout and not (tmp_path / "new.onnx").exists()
    # a failed check: exit 2, the previous file intact, no temp file left
    import methods.export_files as ef

    monkeypatch.setattr(ef, "TOLERANCE", -1)
    err = refused("--checkpoint", str(files["ref"]), "--format", "onnx", "--output", str(graph), "--overwrite")
    assert "does not match the PyTorch method" in err
    assert graph.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]
    # TorchScript files are named for what they are where a checkpoint is expected
    monkeypatch.undo()
    ts = tmp_path / "g.pt"
    assert _export(capsys, "--checkpoint", str(files["ref"]), "--format", "torchscript", "--output", str(ts))[0] == 0
    with pytest.raises(CheckpointError, match="TorchScript module"):
        open_weights(ts)


def test_bench_onnx_section_times_both_runtimes(tmp_path) -> None:
    from bench import bench as bench_cli

    out = tmp_path / "bench.json"
    code = bench_cli.main(["--sections", "onnx", "--device", "cpu", "--infer-sizes", "32", "--infer-batches", "1",
                           "--ngf", "8", "--n-blocks", "1", "--iters", "1", "--warmup", "0", "--output", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["sections"]["onnx"]["rows"]
    assert [r["runtime"].split()[0] for r in rows] == ["PyTorch", "onnxruntime"]
    assert all(r["images_per_s"] > 0 and r["max_diff_uint8"] <= 1 for r in rows)


@pytest.mark.slow
def test_help_is_fast_shows_defaults_and_imports_nothing_heavy() -> None:
    code = ("import sys, time; t = time.perf_counter(); sys.argv = ['export.py', '--help']\n"
            "try:\n    import export; export.main()\nexcept SystemExit as e: print('EXIT', e.code)\n"
            "print('HEAVY', sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'safetensors', 'numpy') "
            "if m in sys.modules))")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    took = time.perf_counter() - start
    out = result.stdout
    assert "EXIT 0" in out and "HEAVY []" in out, out + result.stderr
    assert "  python export.py --checkpoint runs/monet --direction BtoA --format onnx --output monet.onnx" in out
    assert "(default: 17)" in out and "--overwrite" in out and "--dry-run" in out and "--device" in out
    assert "``" not in out and ":func:" not in out
    assert took < 3.0, f"export.py --help took {took:.2f} s"


def test_johnson_truncated_rounding_is_refused_rather_than_ignored(files, tmp_path, capsys) -> None:
    out = tmp_path / "t.onnx"
    code, _, err = _export(capsys, "--checkpoint", str(files["single"]), "--format", "onnx", "--output", str(out),
                           "output_rounding=truncate")
    assert code == 2 and "output_rounding" in err and not out.exists()
