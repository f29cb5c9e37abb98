"""Run folders and their records (result.json, written before anything can go wrong)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from harness.paths import results_dir


def write_text(path: Path, text: str) -> Path:
    """Atomic write: a reader (or a crash) never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def slug(text: str) -> str:
    """A filesystem- and QEMU-safe name (no ',', '=', ':' or '/')."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")


def new_run_folder(repro: str, kernel: str, root: Path | None = None) -> Path:
    """A new run folder under ``root``, as an absolute path: guests and the commands they run reach it
    from other working directories (a vng guest's cwd is not the host's; `--results out/x` in a CI job)."""
    root = Path(root or results_dir()).absolute()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = root / f"{stamp}-{slug(repro)}-{slug(kernel)}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}.{n}")
    folder.mkdir(parents=True)
    return folder
