"""Line charts written as PNG files (matplotlib, headless): the one figure layout the equity and
training charts share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def line_chart(path: Path, *, title: str, xlabel: str, ylabel: str) -> Iterator[Any]:
    """Yields the axes to plot lines on; on leaving, adds the zero line, labels, legend and grid
    and saves the PNG at ``path`` (its directory created)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(9, 4.5), dpi=110)
    try:
        yield axes
        axes.axhline(0.0, color="grey", linewidth=0.6)
        axes.set_title(title)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.legend(loc="best")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    finally:
        pyplot.close(figure)
