"""How many project files a command imports on its way to real work (not a test: a measure).

    python bench/imports.py train   # a tiny CycleGAN run on the demo data, up to its first optimiser step
    python bench/imports.py test    # test.py on one image, up to the first written PNG

Prints the count and the files. Run from the repository root; writes only under a temp folder, removed after.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def project_files() -> list[str]:
    out = []
    for module in list(sys.modules.values()):
        f = getattr(module, "__file__", None) or ""
        path = Path(f).resolve() if f else None
        if path and path.is_file() and path.is_relative_to(ROOT) and "/bench/" not in f and "/.venv/" not in f:
            out.append(str(Path(f).resolve().relative_to(ROOT)))
    return sorted(out)


class Reached(Exception):
    pass


def main(which: str) -> int:
    with tempfile.TemporaryDirectory() as folder:
        return measure(which, Path(folder))


def measure(which: str, tmp: Path) -> int:
    tiny = ["model.ngf=8", "model.ndf=8", "model.n_blocks=1", "data.load_size=32", "data.crop_size=32",
            "optim.n_epochs=1", "optim.n_epochs_decay=0", "train.max_batches_per_epoch=2", "data.num_workers=0",
            "train.amp=off", "log.progress=false", "device=cpu", "data.val_images=0"]
    import train

    data = [f"data.root={tmp / 'demo'}", "data.demo=true", f"log.root={tmp / 'runs'}", "name=q"]
    if which == "train":
        import torch

        def stop(*args, **kwargs):
            raise Reached

        torch.optim.Adam.step = stop  # the first optimiser step
        try:
            train.main([*data, *tiny])
        except Reached:
            pass
    else:
        # a checkpoint to translate with, made in a separate process so its imports do not count
        import subprocess

        subprocess.run([sys.executable, str(ROOT / "train.py"), *data, *tiny], check=True, capture_output=True)
        for name in list(sys.modules):
            if name == "train" or name.split(".")[0] in {"options", "methods", "training", "models", "data", "utils",
                                                          "evaluation"}:
                del sys.modules[name]
        import test

        test.main(["--checkpoint", str(tmp / "runs" / "q"), "--input", str(tmp / "demo" / "testA" / "0000.png"),
                   "--output", str(tmp / "out"), "--device", "cpu", "--no-progress"])
        assert any((tmp / "out").glob("*.png"))
    files = [f for f in project_files() if not (which == "test" and f == "train.py")]
    lines = sum(len((ROOT / f).read_text(encoding="utf-8").splitlines()) for f in files)
    plain = [f for f in files if not f.endswith("__init__.py") or f == "methods/__init__.py"]  # the table is code
    print(f"{which}: {len(files)} project files, {len(plain)} without the empty package __init__ files, "
          f"{lines} lines")
    print("\n".join(f"  {f}" for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "train"))
