"""How client commands print a result: a readable rich table, or the raw JSON with ``--json``.

Rule 1: with ``as_json`` the output is exactly ``json.dumps(result, indent=2, sort_keys=True)``
on stdout, so scripts can parse it; nothing else is printed.
Rule 2: otherwise a list of objects is one table (columns in first-seen order), an object is a
field/value table, and nested values are shown as compact JSON in their cell.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["render"]


def _cell(v: Any) -> str:
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def render(result: Any, as_json: bool, title: str = "", out: Console | None = None) -> None:
    """Print ``result``: JSON if asked, a key/value table for objects, a table for lists.

    Args:
        result: a JSON-able value (a JSON-RPC result or a local command's answer).
        as_json: print raw JSON instead of a table.
        title: the table's title (ignored for JSON).
        out: where tables go (default: a new stdout console).
    """
    console = out or Console()
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    if isinstance(result, list) and result and all(isinstance(r, dict) for r in result):
        cols = list(dict.fromkeys(k for r in result for k in r))
        table = Table(*cols, title=title or None)
        for r in result:
            table.add_row(*(_cell(r.get(c, "")) for c in cols))
        console.print(table)
    elif isinstance(result, dict):
        table = Table("field", "value", title=title or None, show_header=False)
        for k, v in result.items():
            table.add_row(str(k), _cell(v))
        console.print(table)
    elif isinstance(result, list):
        for item in result:
            console.print(_cell(item))
    else:
        console.print(_cell(result))
