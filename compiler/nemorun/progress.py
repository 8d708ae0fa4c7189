"""Progress a person watches on a terminal: bars for long work, a live table of a waited sweep.

Why one module: the launch code (:mod:`nemorun.execute`) says *what* is happening (n of N jobs
submitted, these states now) through two small calls and never touches rich. Nothing is drawn
unless stdout is a terminal: tests, pipes and log files get exactly the plain lines they got
before (rich is imported only when something is drawn). Drawing goes to stderr, so a terminal
user can still pipe stdout, and a reader that left (closed pipe) is ignored.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from nemorun import catalog
from nemorun.states import AppState, JobStatus
from nemorun.store import ExperimentRecord

# rows of the live table; the rest of a big sweep is counted, not listed
MAX_ROWS = 15


def active() -> bool:
    """Draw only for a person: stdout and stderr are a terminal, and TERM is not ``dumb``."""
    if os.environ.get("TERM") == "dumb":
        return False
    return all(getattr(s, "isatty", lambda: False)() for s in (sys.stdout, sys.stderr))


def bar(label: str, total: int, min_total: int = 1) -> tuple[Callable[[], None], Callable[[], None]]:
    """``(advance, close)`` of a bar with counts (``label ━━━━ 12/40 0:00:03``); no-ops when not
    :func:`active`, for fewer than ``min_total`` steps, or while another bar is shown (rich draws
    one live display at a time: packing code while a sweep is planned keeps the planning bar)."""
    global _drawing
    if total < min_total or _drawing or not active():
        return (lambda: None), (lambda: None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    shown = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     console=Console(stderr=True), transient=True)
    task = shown.add_task(label, total=total)
    shown.start()
    _drawing = True

    def close() -> None:
        global _drawing
        shown.stop()
        _drawing = False

    return (lambda: shown.advance(task)), close


_drawing = False


def summary(states: Mapping[str, JobStatus]) -> str:
    """``3 succeeded, 1 failed`` (states in a fixed order, zero counts left out)."""
    counts: dict[AppState, int] = {}
    for s in states.values():
        counts[s.state] = counts.get(s.state, 0) + 1
    order = [AppState.SUCCEEDED, AppState.FAILED, AppState.CANCELLED, AppState.RUNNING, AppState.PENDING,
             AppState.SUBMITTED, AppState.UNKNOWN, AppState.UNSUBMITTED]
    return ", ".join(f"{counts[s]} {s.value.lower()}" for s in order if counts.get(s))


def _printable(text: str) -> str:
    """Control characters escaped (as ``exp status`` shows them): a value cannot move the cursor."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass
class StateBoard:
    """The live table of a waited sweep or multi-task experiment: job, swept values, state, exit code."""

    names: Sequence[str]
    keys: list[str] = field(default_factory=list)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    _live: Any = None

    @classmethod
    def of(cls, record: ExperimentRecord, names: Sequence[str]) -> "StateBoard":
        jobs = {n: record.try_job(n) for n in names}
        keys, values = catalog.swept_values({n: j.overrides for n, j in jobs.items() if j is not None},
                                            kind=record.meta.get("kind", "single"))
        return cls(list(names), keys, values)

    def table(self, states: Mapping[str, JobStatus]) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=summary(states) or "waiting", show_edge=False, header_style="bold")
        for column in ("JOB", *[k.rpartition(".")[2] for k in self.keys], "STATE", "EXIT"):
            table.add_column(column)
        # jobs still going first: they are what a waiting person looks at
        ordered = sorted(self.names, key=lambda n: states[n].state.is_terminal if n in states else False)
        for name in ordered[:MAX_ROWS]:
            s = states.get(name)
            # Text: a swept value's [brackets] are not rich markup, its control characters not drawn
            table.add_row(name, *[Text(_printable(self.values.get(name, {}).get(k, "-"))) for k in self.keys],
                          s.state.value if s else "-", "-" if s is None or s.exit_code is None else str(s.exit_code))
        if len(ordered) > MAX_ROWS:
            table.caption = f"... and {len(ordered) - MAX_ROWS} more jobs"
        return table

    def update(self, states: Mapping[str, JobStatus]) -> None:
        if self._live is None:
            return
        self._live.update(self.table(states))


@contextlib.contextmanager
def watching(record: ExperimentRecord, names: Sequence[str]) -> Iterator[Optional[Callable[[Mapping[str, JobStatus]], None]]]:
    """While waiting for ``names``: a callback that redraws the live table with each poll's
    states (None when not :func:`active`); the last table and a summary line stay on screen."""
    if not active():
        yield None
        return
    from rich.console import Console
    from rich.live import Live

    board = StateBoard.of(record, names)
    console = Console(stderr=True)
    last: dict[str, Mapping[str, JobStatus]] = {}

    def update(states: Mapping[str, JobStatus]) -> None:
        last["states"] = states
        board.update(states)

    with Live(console=console, refresh_per_second=4, transient=True) as live:
        board._live = live
        try:
            yield update
        finally:
            board._live = None
    if "states" in last:
        console.print(board.table(last["states"]))
        console.print(f"{record.meta['name']}/{record.id}: {summary(last['states'])}", highlight=False)
