"""Download one of the public CycleGAN datasets (the reference's download_cyclegan_dataset.sh).

    python -m data.download monet2photo --root datasets
    python -m data.download monet2photo --root datasets --url http://mirror/monet2photo.zip

The zip is streamed to a temp file, checked, extracted into a temp folder and moved into
place only when it holds trainA/ trainB/ testA/ testB/, so an interrupted download never
leaves a half dataset that training would pick up.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

BASE_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
DATASETS = (
    "apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo", "cezanne2photo", "ukiyoe2photo",
    "vangogh2photo", "maps", "cityscapes", "facades", "iphone2dslr_flower", "ae_photos",
)
LAYOUT = ("trainA", "trainB", "testA", "testB")


class DownloadError(Exception):
    pass


def download_dataset(name: str, root: str | Path = "datasets", url: str | None = None, timeout: float = 60.0) -> Path:
    """Fetch ``name`` into ``root/name``; returns that folder. An existing complete copy is kept."""
    if url is None and name not in DATASETS:
        raise DownloadError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)} (or pass --url)")
    root = Path(root)
    target = root / name
    if all((target / sub).is_dir() for sub in LAYOUT):
        print(f"{target} already exists")
        return target
    url = url or f"{BASE_URL}/{name}.zip"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}.") as tmp:
        zip_path = Path(tmp) / f"{name}.zip"
        print(f"downloading {url}", flush=True)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(zip_path, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    if total:
                        print(f"\r  {done / 2**20:.1f} / {total / 2**20:.1f} MiB", end="", flush=True)
            print()
        except OSError as e:
            raise DownloadError(f"cannot download {url}: {e}") from e
        if not zipfile.is_zipfile(zip_path):
            raise DownloadError(f"{url} did not return a zip file")
        extract = Path(tmp) / "x"
        with zipfile.ZipFile(zip_path) as zf:
            for member in zf.namelist():  # refuse paths that would escape the folder
                if member.startswith("/") or ".." in Path(member).parts:
                    raise DownloadError(f"{url}: unsafe path {member!r} in the zip")
            zf.extractall(extract)
        # Zips hold either name/trainA/... or trainA/... at the top.
        candidates = [extract / name, extract] + [p for p in extract.iterdir() if p.is_dir()]
        src = next((c for c in candidates if all((c / sub).is_dir() for sub in LAYOUT)), None)
        if src is None:
            raise DownloadError(f"{url}: the zip does not contain {'/ '.join(LAYOUT)}/")
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(src), str(target))
    print(f"{name} ready in {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help=f"one of: {', '.join(DATASETS)}")
    parser.add_argument("--root", default="datasets", help="parent folder (default: datasets)")
    parser.add_argument("--url", help="download from this address instead (a mirror)")
    args = parser.parse_args(argv)
    try:
        download_dataset(args.name, args.root, args.url)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
