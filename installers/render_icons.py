"""Render resources/icons/quantlens.svg to the PNG sizes desktops want (16..512), with QtSvg.

Run from the repository root: ``QT_QPA_PLATFORM=offscreen python3 installers/render_icons.py``.
Also writes ``quantlens.ico`` (Windows, PNG-compressed entries); macOS's ``.icns`` is made by
``installers/macos/make-app.sh`` from these PNGs with ``iconutil``.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"


def render(svg: Path, size: int) -> QImage:
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image


def main() -> int:
    _app = QGuiApplication(sys.argv[:1])
    svg = ICONS / "quantlens.svg"
    for size in SIZES:
        out = ICONS / f"quantlens-{size}.png"
        if not render(svg, size).save(str(out)):
            raise SystemExit(f"could not write {out}")
        print(out)
    write_ico(ICONS / "quantlens.ico", [ICONS / f"quantlens-{s}.png" for s in SIZES if s <= 256])
    print(ICONS / "quantlens.ico")
    return 0


def write_ico(out: Path, pngs: list[Path]) -> None:
    """An .ico that embeds PNGs (Windows Vista and later read these)."""
    images = [p.read_bytes() for p in pngs]
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    entries = b""
    for png in images:
        width, height = struct.unpack(">II", png[16:24])
        entries += struct.pack(
            "<BBBBHHII", width % 256, height % 256, 0, 0, 1, 32, len(png), offset
        )
        offset += len(png)
    out.write_bytes(header + entries + b"".join(images))


if __name__ == "__main__":
    sys.exit(main())
