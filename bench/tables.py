"""Writing a bench's results file: atomically, so an interrupted run never leaves half a table."""

from __future__ import annotations

from pathlib import Path


def write_table(path: Path, text: str) -> None:
    """Write `text` to `path` (creating its folder) through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
