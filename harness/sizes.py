"""The one size parser: ``30G``, ``512M``, ``1.5T``, ``64KiB``, ``100B``, and a bare number.

A bare number means different things to different callers, so each says
what: guest memory follows QEMU (``-m 2048`` is 2048 MiB, ``bare="M"``),
image and kernel-cache sizes count bytes (``bare="B"``).  Suffixes are
powers of 1024 (``K``, ``M``, ``G``, ``T``, optionally ``iB``/``B``:
``2MiB`` = ``2MB`` = ``2M``), any case; ``B`` alone is bytes.  An int is a
bare number.  A bad size is a one-line ``SpecError``.
"""

from __future__ import annotations

import re

from harness.errors import SpecError

UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
NAMES = {"B": "bytes", "K": "KiB", "M": "MiB", "G": "GiB", "T": "TiB"}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:i?B)?|(B))?\s*", re.IGNORECASE)


def parse_size(text: str | int, *, bare: str, what: str = "size") -> int:
    """Bytes in ``text``; a number without a unit is in ``bare`` units (``"B"``, ``"K"``, ``"M"``, ``"G"``, ``"T"``).

    ``what`` names the value in the error (``memory size``, ``--max-size``).
    """
    if bare not in UNITS:
        raise ValueError(f"bare={bare!r}: expected one of {', '.join(UNITS)}")
    m = None if isinstance(text, bool) else _SIZE_RE.fullmatch(str(text))
    if not m:
        raise SpecError(f"{what} {text!r} is not a size: use a number with K, M, G or T (e.g. 30G, 512M); "
                        f"a bare number is {NAMES[bare]}")
    unit = (m.group(2) or m.group(3) or bare).upper()
    return int(float(m.group(1)) * UNITS[unit])
