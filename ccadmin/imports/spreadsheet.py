"""Formula injection (OWASP's "CSV injection"): what CSV exports guard and CSV imports undo.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a
formula to Excel, LibreOffice and Google Sheets. Exports put a `'` before
such a cell (and before a cell of `'`s followed by one, so the guard can be
undone exactly); CSV imports take exactly that `'` off again, so an exported
file imports back to the values it was made from.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
GUARD = "'"


def _needs_guard(value: str) -> bool:
    return value.lstrip(GUARD).startswith(FORMULA_STARTS)


def guarded(value: str) -> str:
    """`value` as a spreadsheet shows it as text, never runs it."""
    return GUARD + value if _needs_guard(value) else value


def unguarded(value: str) -> str:
    """The value an exported cell was made from (other cells unchanged)."""
    if value.startswith(GUARD) and _needs_guard(value[1:]):
        return value[1:]
    return value
