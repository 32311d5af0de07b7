"""A few SVG elements written as text: enough for boxes, bars and labels, no dependency.

Monospace text at a fixed size has a known width, so a box is sized from the
lines it holds, and the same input always gives the same bytes (the tests
compare a re-drawn picture with the committed one).
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
CHAR_WIDTH = 0.6  # of the font size, for a monospace font
LINE_HEIGHT = 1.4  # of the font size


def text_width(text: str, size: float) -> float:
    return len(text) * size * CHAR_WIDTH


def _number(value: float) -> str:
    """Coordinates rounded to a tenth: stable text across platforms."""
    return f"{round(value, 1):g}"


class Svg:
    """Elements in drawing order; :meth:`render` gives the document."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.elements: list[str] = []
        self.width = 0.0
        self.height = 0.0

    def _grow(self, x: float, y: float) -> None:
        self.width = max(self.width, x)
        self.height = max(self.height, y)

    def rect(
        self,
        x: float,
        y: float,
        width: float,
        height: float,
        fill: str,
        stroke: str = "none",
        radius: float = 0,
    ) -> None:
        self._grow(x + width, y + height)
        self.elements.append(
            f'<rect x="{_number(x)}" y="{_number(y)}" width="{_number(width)}" height="{_number(height)}" '
            f'rx="{_number(radius)}" fill="{fill}" stroke="{stroke}"/>'
        )

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str, dash: str | None = None) -> None:
        self._grow(max(x1, x2), max(y1, y2))
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        self.elements.append(
            f'<line x1="{_number(x1)}" y1="{_number(y1)}" x2="{_number(x2)}" y2="{_number(y2)}" '
            f'stroke="{stroke}"{dashed}/>'
        )

    def text(
        self,
        x: float,
        y: float,
        text: str,
        size: float = 12,
        *,
        bold: bool = False,
        anchor: str = "start",
        fill: str = "#222",
    ) -> None:
        """``y`` is the baseline."""
        left = {"start": x, "middle": x - text_width(text, size) / 2, "end": x - text_width(text, size)}[
            anchor
        ]
        self._grow(left + text_width(text, size), y + size * 0.3)
        weight = ' font-weight="bold"' if bold else ""
        self.elements.append(
            f'<text x="{_number(x)}" y="{_number(y)}" font-size="{_number(size)}"{weight} '
            f'text-anchor="{anchor}" fill="{fill}">{escape(text)}</text>'
        )

    def render(self, margin: float = 10) -> str:
        width, height = _number(self.width + margin), _number(self.height + margin)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family={quoteattr(FONT)}>\n'
            f"<title>{escape(self.title)}</title>\n"
            f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(self.elements) + "\n</svg>\n"
        )
