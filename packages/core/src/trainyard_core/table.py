"""The summary table a run ends with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["format_value", "print_table"]


def format_value(value: Any) -> str:
    """Large floats as whole numbers with separators, others to four significant digits."""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def print_table(title: str,
                rows: Sequence[Mapping[str, Any]],
                console: Console | None = None) -> None:
    """Print ``rows`` (dicts sharing keys) as one table; the first key names each row."""
    table = Table(title=title)
    columns = list(rows[0]) if rows else []
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*(format_value(row.get(c, "")) for c in columns))
    if console is None:
        console = Console()
        if not console.is_terminal:
            # Logs and pipes have no width; do not squeeze tables into 80 columns.
            console = Console(width=160)
    console.print(table)
