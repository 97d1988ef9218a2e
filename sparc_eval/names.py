"""Names that become file and folder names (floor 0: imports nothing of the package)."""
from __future__ import annotations

import re


def slug(text: str) -> str:
    """A filesystem-safe model or task name: lower-case, ``[a-z0-9._-]``, no leading dot."""
    s = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return s or "model"
