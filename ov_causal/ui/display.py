"""Rich display in Jupyter: HTML tables for models, presets, results and cache listings; pandas and figures.

Every ``_repr_html_`` in the package is built here, with every value escaped. pandas and matplotlib
are imported only when asked for (``pip install "ov_causal[notebook]"``).
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OptionError

NOTEBOOK_EXTRA = 'pip install "ov_causal[notebook]"'
_STYLE = "border-collapse:collapse;font-size:0.9em;text-align:left"
_CELL = "padding:2px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top"


def cell(value: Any) -> str:
    """A value as table text: floats with 4 significant digits, None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def html_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "",
               marked: int | None = None) -> str:
    """An HTML table (header row, body rows; row ``marked`` in bold), every value escaped."""
    head = "".join(f'<th style="{_CELL}">{html.escape(str(c))}</th>' for c in columns)
    body = []
    for index, row in enumerate(rows):
        weight = ";font-weight:bold" if index == marked else ""
        cells = "".join(f'<td style="{_CELL}{weight}">{html.escape(cell(v))}</td>' for v in row)
        body.append(f"<tr>{cells}</tr>")
    title = f'<caption style="text-align:left;font-weight:bold">{html.escape(caption)}</caption>' if caption else ""
    return f'<table style="{_STYLE}">{title}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def html_fields(fields: Sequence[tuple[str, Any]], caption: str = "", note: str = "") -> str:
    """A two-column (name, value) HTML table, e.g. a model summary; ``note`` is a line of text below it."""
    rows = "".join(
        f'<tr><th style="{_CELL}">{html.escape(name)}</th><td style="{_CELL}">{html.escape(cell(value))}</td></tr>'
        for name, value in fields
    )
    title = f'<caption style="text-align:left;font-weight:bold">{html.escape(caption)}</caption>' if caption else ""
    below = f'<div style="font-size:0.85em;color:#555">{html.escape(note)}</div>' if note else ""
    return f'<div><table style="{_STYLE}">{title}<tbody>{rows}</tbody></table>{below}</div>'


def text_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same table as aligned plain text (for ``__repr__`` and terminals)."""
    cells = [[str(c) for c in columns]] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_json(data: Any, path: str | os.PathLike[str] | None = None) -> str:
    """``data`` as indented JSON text, also written to ``path`` when one is given (the results' ``.to_json``)."""
    text = json.dumps(data, indent=2)
    if path is not None:
        Path(path).write_text(text + "\n", encoding="utf-8")
    return text


def to_pandas(records: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Any:
    """A ``pandas.DataFrame`` of flat records; a clear error when pandas is not installed."""
    try:
        import pandas
    except ImportError:
        raise OptionError(f"to_pandas() needs pandas: {NOTEBOOK_EXTRA} (or pip install pandas).") from None
    return pandas.DataFrame(list(records), columns=list(columns) if columns is not None else None)


def new_figure(ncols: int, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """(figure, axes) for a ``plot()`` method: shown once in Jupyter when returned, saved with ``fig.savefig``.

    The figure is made with pyplot (so Jupyter's inline backend is loaded and displays it) and closed
    there at once, so the cell does not show it a second time; the global backend is never changed.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise OptionError(f"plot() needs matplotlib: {NOTEBOOK_EXTRA} (or pip install matplotlib).") from None
    fig, axes = plt.subplots(1, ncols, figsize=figsize)
    plt.close(fig)
    return fig, axes


def finished_figure(fig: Any, title: str, path: str | os.PathLike[str] | None) -> Any:
    """``fig`` titled and laid out, saved to ``path`` when given: the end of every ``plot()``."""
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


@dataclass(frozen=True, repr=False)
class Table:
    """A small table that shows as HTML in Jupyter and as text elsewhere (``str``, ``print``)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    caption: str = ""

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_pandas(self) -> Any:
        return to_pandas(self.records(), self.columns)

    def _repr_html_(self) -> str:
        return html_table(self.columns, self.rows, self.caption)

    def __str__(self) -> str:
        table = text_table(self.columns, self.rows)
        return f"{self.caption}\n{table}" if self.caption else table

    __repr__ = __str__

    def __len__(self) -> int:
        return len(self.rows)
