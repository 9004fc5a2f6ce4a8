"""Draw the MiniMind Studio icon with QPainter and write resources/icons/*.png and minimind-studio.ico.

The outputs are committed; rerun after changing the drawing: ``python packaging/make_icons.py``.
The design: a rounded indigo square, a small "neural" glyph (three layers of nodes joined by edges) and a spark,
readable down to 16 px (the edges thin out and the spark drops below 32 px).
"""
from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, QRectF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QGuiApplication, QImage, QLinearGradient, QPainter, QPainterPath, QPen  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "resources" / "icons"
SIZES = [16, 24, 32, 48, 64, 128, 256, 512]
ICO_SIZES = [16, 24, 32, 48, 64, 128, 256]  # the .ico format stops at 256

LAYERS = [[0.5], [0.3, 0.7], [0.2, 0.5, 0.8], [0.35, 0.65]]  # node y positions per layer, left to right


def draw(size: int) -> QImage:
    img = QImage(size, size, QImage.Format.Format_ARGB32)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = float(size)
    margin = s * 0.04
    box = QRectF(margin, margin, s - 2 * margin, s - 2 * margin)
    grad = QLinearGradient(box.topLeft(), box.bottomRight())
    grad.setColorAt(0.0, QColor("#6366f1"))  # indigo
    grad.setColorAt(1.0, QColor("#312e81"))
    path = QPainterPath()
    path.addRoundedRect(box, s * 0.22, s * 0.22)
    p.fillPath(path, grad)

    inner = box.adjusted(s * 0.17, s * 0.2, -s * 0.17, -s * 0.2)
    xs = [inner.left() + inner.width() * i / (len(LAYERS) - 1) for i in range(len(LAYERS))]
    nodes = [[QPointF(x, inner.top() + inner.height() * y) for y in ys] for x, ys in zip(xs, LAYERS)]
    edge = QPen(QColor(255, 255, 255, 150 if size >= 32 else 200))
    edge.setWidthF(max(1.0, s * 0.018))
    p.setPen(edge)
    for left, right in zip(nodes, nodes[1:]):
        for a in left:
            for b in right:
                p.drawLine(a, b)
    p.setPen(Qt.PenStyle.NoPen)
    radius = max(1.2, s * 0.055)
    for i, layer in enumerate(nodes):
        p.setBrush(QColor("#fbbf24") if i == len(nodes) - 1 else QColor("#ffffff"))
        for point in layer:
            p.drawEllipse(point, radius, radius)
    if size >= 32:  # a four-pointed spark in the top-right corner: "studio", something being made
        c, r = QPointF(box.right() - s * 0.16, box.top() + s * 0.16), s * 0.08
        spark = QPainterPath(QPointF(c.x(), c.y() - r))
        for dx, dy in [(0.25, -0.25), (1, 0), (0.25, 0.25), (0, 1), (-0.25, 0.25), (-1, 0), (-0.25, -0.25), (0, -1)]:
            spark.lineTo(QPointF(c.x() + dx * r, c.y() + dy * r))
        p.fillPath(spark, QColor("#fde68a"))
    p.end()
    return img


def png_bytes(img: QImage) -> bytes:
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    img.save(buf, "PNG")
    buf.close()
    return bytes(data)


def write_ico(images: dict[int, bytes], out: Path) -> None:
    """ICO with PNG-compressed entries (supported since Windows Vista): ICONDIR, ICONDIRENTRY[n], data."""
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    entries, blobs = b"", b""
    for size, data in images.items():
        dim = 0 if size >= 256 else size  # 0 means 256 in an ICONDIRENTRY
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset + len(blobs))
        blobs += data
    out.write_bytes(header + entries + blobs)


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (fonts/raster need it)
    OUT.mkdir(parents=True, exist_ok=True)
    pngs = {}
    for size in SIZES:
        pngs[size] = png_bytes(draw(size))
        (OUT / f"minimind-studio-{size}.png").write_bytes(pngs[size])
    write_ico({s: pngs[s] for s in ICO_SIZES}, OUT / "minimind-studio.ico")
    print(f"wrote {len(SIZES)} PNGs and minimind-studio.ico to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
