"""Writing a small text file so that a failure (a full disk, a kill) never leaves half of it, nor
destroys the previous version: a temp file in the same folder, then an atomic rename."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; on failure the previous file is untouched, the
    temp file removed, and the OSError raised."""
    path = Path(path)
    tmp = path.with_name(f".{os.getpid()}.{path.name[:40]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
