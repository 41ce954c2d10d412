"""Fractures drawn by annotators on known example radiographs, drawn over a map.

A heatmap alone cannot tell a user whether the model looked at the fracture; beside the drawn
outline it can. Examples are recognised by their bytes (sha256), so a copy under any name works; only
an upload of an example's length is read and hashed, so other uploads cost one ``stat``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

OUTLINES_FILE = Path(__file__).resolve().parents[1] / "assets" / "examples" / "fracatlas" / "outlines.json"


@dataclass(frozen=True)
class Outline:
    polygons: list[list[float]]  # x0, y0, x1, y1, ... in the pixels of the stored file
    size: tuple[int, int]  # the stored file's (width, height)
    credit: str

    def draw(self, image: Image.Image, colour: str = "#00ff66") -> Image.Image:
        """A copy of ``image`` (the file at any scale) with the outlines drawn on it."""
        out = image.convert("RGB")
        sx, sy = out.width / self.size[0], out.height / self.size[1]
        pen = ImageDraw.Draw(out)
        width = max(2, round(out.width / 200))
        for poly in self.polygons:
            pts = [(poly[i] * sx, poly[i + 1] * sy) for i in range(0, len(poly) - 1, 2)]
            pen.line(pts + pts[:1], fill=colour, width=width, joint="curve")
        return out


class Outlines:
    """sha256 of a file -> its drawn outline (``outlines.json``: ``{sha: {polygons, size, credit}}``)."""

    def __init__(self, table: dict[str, dict], lengths: set[int] | None = None) -> None:
        """``lengths``: the byte lengths of the outlined files (None: unknown, every upload is hashed)."""
        self._table = table
        self._lengths = lengths

    @classmethod
    def load(cls, path: str | Path = OUTLINES_FILE) -> "Outlines":
        """The table beside the example files it names (their lengths read once, here)."""
        path = Path(path)
        table = json.loads(path.read_text()) if path.is_file() else {}
        files = [path.parent / entry["file"] for entry in table.values()]
        lengths = {f.stat().st_size for f in files} if all(f.is_file() for f in files) else None
        return cls(table, lengths)

    def find(self, path: str | Path | None) -> Outline | None:
        if not path or not self._table or not Path(path).is_file():
            return None
        if self._lengths is not None and Path(path).stat().st_size not in self._lengths:
            return None
        entry = self._table.get(hashlib.sha256(Path(path).read_bytes()).hexdigest())
        return Outline(entry["polygons"], tuple(entry["size"]), entry["credit"]) if entry else None
