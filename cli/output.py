"""How the `axis` command talks: machine output on stdout, people's messages on stderr.

Every refusal is printed the same way (`AX301 SIGNATURE_INVALID: detail` plus what
to do) and exits with REFUSED, so scripts can rely on the exit code alone.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from typing import Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from axis.logs import printable
from axis.refusals import Refusal

OK = 0
REFUSED = 1  # the input was refused with a refusal code
# 2 is typer's own code for a usage error
QUEUED = 3   # nothing was refused, but Axis holds a submission no hub has decided yet (is the hub running?)
INCOMPLETE = 3  # evidence that checks, but part of it no checkpoint covers yet (build it again later)

# Markup off: what Axis prints is data (agency names, subjects, receipts' details, file names), which must never be
# read as rich markup (a name "[/]" would end the command in a MarkupError); styled lines say markup=True.
stdout = Console(highlight=False, soft_wrap=True, markup=False)
stderr = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)


def refuse(refusal: Refusal, *, as_json: bool = False) -> NoReturn:
    if as_json:
        print(json.dumps({"ok": False, "refusal": refusal.as_dict()}, ensure_ascii=False))
    stderr.print(f"[bold red]{refusal.code.label}[/]: {escape(refusal.detail or refusal.code.message)}", markup=True)
    if refusal.detail:
        stderr.print(refusal.code.message, markup=False)
    raise typer.Exit(REFUSED)


def fail(message: str, code: int = REFUSED) -> NoReturn:
    stderr.print(f"[bold red]error[/]: {escape(message)}", markup=True)
    raise typer.Exit(code)


class _Bar(Progress):
    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self.refresh()  # each step as it happens, not at the next tick of the refresh thread


def progress(*, quiet: bool = False) -> Progress:
    """A progress bar on stderr for a long command; shown only on a terminal, never with `quiet` (--json), and
    gone when done (the command's own output is what stays)."""
    return _Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=stderr, transient=True, redirect_stderr=False, disable=quiet or not stderr.is_terminal)


class _Escaped(Table):
    """A table whose text cells show their control characters escaped: much of what commands print is what
    packets, agencies and callers said (a DocumentId, a recipient's failure reason), which must not drive the
    operator's terminal. A `Text` cell is one the command made itself, its parts escaped (for a line break)."""

    def add_row(self, *cells: Any, **options: Any) -> None:
        super().add_row(*(printable(c) if isinstance(c, str) else c for c in cells), **options)


def table(*columns: str | Column) -> Table:
    """A table that fits 80 columns: one rule under the header, no frame (the auditor's reports look the same).
    Give codes, ids and times `Column(..., no_wrap=True)` and free text `overflow="fold"`. Text cells are
    shown with their control characters escaped (`axis.logs.printable`)."""
    return _Escaped(*columns, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)


def to_jsonable(value: Any) -> Any:
    """Models as JSON: ISO 8601 dates, enums by value, `from_` as `from`."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name.rstrip("_"): to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    print(json.dumps(to_jsonable(value), ensure_ascii=False, indent=2))
