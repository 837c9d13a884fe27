"""The month's figures as a horizontal bar chart: the geometry, as a pure function.

The page draws the chart as inline SVG from this layout (``templates/_chart.html``), so it needs
no image library, scales with the page, is read by screen readers through its labels, and every
label passes through the template's escaping like any other text. One bar per figure, grouped
by section with a heading row per section; bar lengths are proportional to the largest value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from registry.monthly_report import Figure

__all__ = ["Bar", "Chart", "Heading", "lay_out"]

WIDTH: Final = 720
ROW: Final = 22  # the height of one row
LABEL_WIDTH: Final = 300  # the text column left of the bars
VALUE_ROOM: Final = 60  # room right of the longest bar for its value
BAR_HEIGHT: Final = 14


@dataclass(frozen=True)
class Heading:
    text: str
    y: float  # the text's baseline


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    y: float  # the bar's top
    width: float  # 1 at least for a non-zero value, so it is seen

    @property
    def text_y(self) -> float:
        return self.y + BAR_HEIGHT - 3

    @property
    def value_x(self) -> float:
        return LABEL_WIDTH + self.width + 6


@dataclass(frozen=True)
class Chart:
    headings: list[Heading]
    bars: list[Bar]
    width: int
    height: int
    label_width: int = LABEL_WIDTH
    bar_height: int = BAR_HEIGHT

    @property
    def empty(self) -> bool:
        return not self.bars


def lay_out(
    figures: Sequence[Figure],
    *,
    section_name: Callable[[str], str],
    key_name: Callable[[str], str],
) -> Chart:
    """Place one bar per figure, sections in the order first seen, with the names given."""
    largest = max((figure.value for figure in figures), default=0)
    scale = (WIDTH - LABEL_WIDTH - VALUE_ROOM) / largest if largest > 0 else 0.0
    headings: list[Heading] = []
    bars: list[Bar] = []
    y = 0.0
    section: str | None = None
    for figure in figures:
        if figure.section != section:
            section = figure.section
            headings.append(Heading(section_name(section), y + ROW - 6))
            y += ROW
        width = figure.value * scale
        if figure.value > 0:
            width = max(width, 1.0)
        bars.append(Bar(key_name(figure.key), figure.value, y + (ROW - BAR_HEIGHT) / 2, width))
        y += ROW
    return Chart(headings, bars, WIDTH, int(y) + 4)
