"""Training curves drawn with PIL alone: one panel per series (step on x), the value range on the axis."""
from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207))


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def draw_panel(title: str, series: dict[str, Sequence[tuple[int, float]]], size: tuple[int, int] = (420, 260)
               ) -> Image.Image:
    """A line plot of each named (step, value) series, sharing the axes; the legend is the title line."""
    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 52, w - 12, 30, h - 28
    points = [p for s in series.values() for p in s]
    d.text((left, 8), title, fill="black", font=font)
    d.rectangle((left, top, right, bottom), outline=(120, 120, 120))
    if not points:
        d.text((left + 10, top + 10), "no data", fill="gray", font=font)
        return img
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    sx = lambda x: left + (x - x0) / (x1 - x0) * (right - left)  # noqa: E731
    sy = lambda y: bottom - (y - y0) / (y1 - y0) * (bottom - top)  # noqa: E731
    d.text((4, top - 4), _fmt(y1), fill="black", font=font)
    d.text((4, bottom - 8), _fmt(y0), fill="black", font=font)
    d.text((left, bottom + 6), str(x0), fill="black", font=font)
    d.text((right - 40, bottom + 6), str(x1), fill="black", font=font)
    legend_x = left + 8 + 6 * len(title)
    for i, (name, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        xy = [(sx(x), sy(y)) for x, y in sorted(pts)]
        if len(xy) > 1:
            d.line(xy, fill=colour, width=2)
        for x, y in xy if len(xy) <= 30 else ():
            d.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        d.text((legend_x, 8), name, fill=colour, font=font)
        legend_x += 8 + 6 * len(name)
    return img


def compose(panels: Sequence[Image.Image], columns: int = 2, extra: Image.Image | None = None) -> Image.Image:
    """The panels in a grid of `columns`, `extra` (a sample grid) below them, scaled to the grid's width."""
    pw, ph = panels[0].size
    rows = -(-len(panels) // columns)
    width = pw * columns
    tail = None
    if extra is not None:
        scale = width / extra.width
        tail = extra.resize((width, max(1, round(extra.height * scale))), Image.Resampling.NEAREST)
    sheet = Image.new("RGB", (width, ph * rows + (tail.height if tail else 0)), "white")
    for i, p in enumerate(panels):
        sheet.paste(p, ((i % columns) * pw, (i // columns) * ph))
    if tail is not None:
        sheet.paste(tail, (0, ph * rows))
    return sheet
