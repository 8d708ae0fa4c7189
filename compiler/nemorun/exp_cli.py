"""``nemorun exp list|show|status|logs|cancel|rerun``: a thin layer over :mod:`nemorun.api`.

``nemorun exp`` is recognised before Hydra sees the command line (a bare word first is a
command; Hydra overrides always contain ``=``). ``ID`` is a full experiment id, a unique prefix,
or ``latest``. ``--json`` prints machine-readable output; on a terminal tables are drawn with
rich (which honours ``NO_COLOR``), elsewhere as plain aligned text.

A sweep's jobs are shown with the values that tell them apart (one column per swept key, from
each job's recorded overrides), not only as ``train-0..N``. ``exp list`` first records what this
machine already knows (local jobs' exit codes); a state it cannot know without asking a service
is shown with the time it was last checked (``nemorun exp status`` asks).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

from nemorun import catalog, submitters, tracking
from nemorun.api import Experiment, experiments
from nemorun.errors import ConfigError, NemorunError, StoreError, one_line, printable
from nemorun.states import AppState
from nemorun.store import ExperimentRecord


class _Parser(argparse.ArgumentParser):
    """argparse, except that a mistake is ONE line and exit 2, like every other nemorun error
    (argparse prints a usage line first); sub-command parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        print(printable(f"nemorun: error: {self.prog.removeprefix('nemorun ')}: {message} (see: {self.prog} --help)"), file=sys.stderr)
        raise SystemExit(2)


def _count(text: str) -> int:
    """``--limit``: -1 was SQLite's "no limit" and 2**64 a sqlite3 traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (0 = all), not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0 (0 = all), not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nemorun exp", description="Inspect and manage launched experiments.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ls = sub.add_parser("list", help="experiments, newest first")
    ls.add_argument("--name", help="only experiments with this name")
    ls.add_argument("--limit", type=_count, default=20, help="at most this many (0 = all; default 20)")
    for name, help_ in (("show", "config, overrides, artifacts and jobs"), ("status", "live job states from the backends")):
        c = sub.add_parser(name, help=help_)
        c.add_argument("id", metavar="ID")
    lg = sub.add_parser("logs", help="a job's output")
    lg.add_argument("id", metavar="ID")
    lg.add_argument("job", nargs="?", metavar="JOB")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    cn = sub.add_parser("cancel", help="cancel the experiment's jobs (or one)")
    cn.add_argument("id", metavar="ID")
    cn.add_argument("job", nargs="?", metavar="JOB")
    rr = sub.add_parser("rerun", help="a new experiment from the stored overrides (+ new ones), or --resume this one")
    rr.add_argument("id", metavar="ID")
    rr.add_argument("overrides", nargs="*", metavar="OVERRIDE")
    rr.add_argument("--resume", action="store_true", help="submit only this experiment's jobs not yet submitted")
    rr.add_argument("--fresh-code", action="store_true",
                    help="pack the current working tree (default: ship the code the experiment ran, by its recorded digest)")
    for c in (ls, *[sub.choices[n] for n in ("show", "status", "cancel", "rerun")]):
        c.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _ago(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _states(states: dict[str, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in sorted(states.items()))


def _settled(states: dict[str, int]) -> bool:
    """No job in a state that can still change without nemorun (submitted, running...)."""
    return all(s in AppState.__members__ and (AppState(s).is_terminal or s == AppState.UNSUBMITTED.value)
               for s in states)


def _list_states(row: dict[str, Any]) -> str:
    text = _states(row["states"])
    if not _settled(row["states"]) and row.get("checked"):
        text += f" (as of {_ago(row['checked'])})"
    return text


def _refresh_known(rows: list[dict[str, Any]]) -> bool:
    """Local jobs' states from their own folders before listing; True when any row may have changed."""
    changed = False
    for r in rows:
        if r["target"] in tracking.LOCAL_BACKENDS and not _settled(r["states"]):
            try:
                changed = tracking.refresh_known(ExperimentRecord(Path(r["path"]))) or changed
            except (StoreError, NemorunError, OSError):
                continue  # a read-only or damaged record lists as it is
    return changed


def _headers(keys: Sequence[str]) -> list[str]:
    """Column titles for swept keys: the last part (``lr``) unless two keys share it."""
    last = [k.rpartition(".")[2] for k in keys]
    return [short if last.count(short) == 1 else k for k, short in zip(keys, last)]


def _swept(exp: Any) -> tuple[list[str], dict[str, dict[str, str]]]:
    return catalog.swept_values({j.name: j.overrides for j in exp.jobs}, kind=exp.meta.get("kind", "single"))


def _cell(value: Any) -> str:
    """A cell on one line: a control character of a value (a swept value's newline, an ESC that
    would recolour the terminal) is shown escaped, never sent to the terminal as is."""
    text = str(value)
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _table(title: Optional[str], columns: Sequence[str], rows: list[Sequence[Any]]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, show_edge=False, header_style="bold")
        for i, c in enumerate(columns):
            table.add_column(c, no_wrap=i == 0)  # ids and job names are copied by hand: never cut
        for r in rows:
            table.add_row(*[Text(_cell(x)) for x in r])  # Text: a value's [brackets] are not markup
        Console().print(table)
        return
    text = [[str(c) for c in columns]] + [[_cell(x) for x in r] for r in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(columns))]
    if title:
        print(title)
    for r in text:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


def _dump(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def _cmd_list(args: argparse.Namespace) -> int:
    rows = experiments(name=args.name, limit=args.limit or None)
    if _refresh_known(rows):
        rows = experiments(name=args.name, limit=args.limit or None)
    if args.json:
        _dump(rows)
        return 0
    _table(None, ["ID", "NAME", "EXECUTOR", "KIND", "JOBS", "SWEEP", "STATES", "CREATED"],
           [(r["id"], r["name"], r["target"], r["kind"], r["jobs"], ",".join(_headers(r["swept"])) or "-",
             _list_states(r), _ago(r["created"])) for r in rows])
    return 0


def _job_rows(exp: Any, values: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    return [
        {"name": j.name, "values": values.get(j.name, {}), "phase": j.phase, "state": j.state, "exit_code": j.exit_code,
         "handle": (j.handle or {}).get("id"), "error": j.error, "in_doubt": j.in_doubt, "overrides": j.overrides,
         "folder": str(exp.record.job_dir(j.name))}
        for j in exp.jobs
    ]


def _cmd_show(args: argparse.Namespace) -> int:
    exp = Experiment.load(args.id)
    try:  # the rest of a record is worth showing when its config is gone (a rerun says why it cannot)
        config = (exp.path / "config.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        config = f"(config.yaml cannot be read: {type(exc).__name__}; the record is damaged)\n"
    keys, values = _swept(exp)
    jobs = _job_rows(exp, values)
    if args.json:
        _dump({**exp.meta, "path": str(exp.path), "config": config, "jobs": jobs,
               "artifacts": {j.name: [str(exp.record.job_dir(j.name) / a) for a in j.artifacts] for j in exp.jobs}})
        return 0
    m = exp.meta
    print(f"experiment {m['name']}/{m['id']} ({m['target']}, {m.get('kind', 'single')}) created {_ago(m['created'])}")
    print(f"folder:    {exp.path}")
    print(f"submitted from: {m['submit_dir']}")
    print(f"overrides: {' '.join(_cell(o) for o in m.get('overrides', [])) or '(none)'}")
    print("config:")
    print("  " + config.rstrip().replace("\n", "\n  "))
    _table("jobs", ["JOB", *_headers(keys), "PHASE", "STATE", "EXIT", "HANDLE", "ARTIFACTS"],
           [(j["name"], *[j["values"][k] for k in keys], j["phase"] + (" (in doubt)" if j["in_doubt"] else ""),
             j["state"], "-" if j["exit_code"] is None else j["exit_code"], j["handle"] or "-",
             ", ".join(str(exp.record.job_dir(r.name) / a) for a in r.artifacts))
            for j, r in zip(jobs, exp.jobs)])
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    exp = Experiment.load(args.id)
    records = exp.jobs  # read once: Experiment.status() would read them again, as would _swept
    states = tracking.refresh(exp.record, records)
    jobs = {j.name: j for j in records}
    keys, values = catalog.swept_values({j.name: j.overrides for j in records}, kind=exp.meta.get("kind", "single"))
    if args.json:
        _dump({"id": exp.id, "name": exp.name, "swept": keys, "jobs": {
            n: {"state": s.state.value, "exit_code": s.exit_code, "detail": s.detail, "values": values.get(n, {}),
                "handle": (jobs[n].handle or {}).get("id")} for n, s in states.items()}})
        return 0
    _table(f"{exp.name}/{exp.id}", ["JOB", *_headers(keys), "STATE", "EXIT", "HANDLE", "DETAIL"],
           [(n, *[values.get(n, {}).get(k, "-") for k in keys], s.state.value, "-" if s.exit_code is None else s.exit_code,
             (jobs[n].handle or {}).get("id", "-"), s.detail)
            for n, s in states.items()])
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    exp = Experiment.load(args.id)
    job = args.job
    if job is None and len(exp.meta["jobs"]) == 1:
        job = exp.meta["jobs"][0]
    if job is None:
        for name in exp.meta["jobs"]:
            if (rec := exp.record.try_job(name)) is not None and rec.handle:
                print(f"==> {name} <==")
                for line in exp.logs(name):
                    sys.stdout.write(line)
        return 0
    if args.follow:  # stderr lines to our stderr, as wait=true does
        submitters.echo(exp.follow(job))
        return 0
    for line in exp.logs(job):
        sys.stdout.write(line)
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    exp = Experiment.load(args.id)
    done = exp.cancel(args.job)
    if args.json:
        _dump({"id": exp.id, "cancelled": done})
    else:
        print(f"cancelled {len(done)} job(s) of {exp.name}/{exp.id}" + (f": {', '.join(done[:10])}" if done else ""))
    return 0


def _cmd_rerun(args: argparse.Namespace) -> int:
    exp = Experiment.load(args.id)
    if args.resume and args.overrides:
        raise ConfigError("--resume completes the same experiment: it takes no overrides")
    if args.resume and args.fresh_code:
        raise ConfigError("--resume completes the same experiment with its own code: it takes no --fresh-code")
    new = exp.rerun(args.overrides, resume=args.resume, fresh_code=args.fresh_code, out=sys.stderr if args.json else sys.stdout)
    if args.json:
        _dump({"id": new.id if new else None, "path": str(new.path) if new else None})
    return 0


_COMMANDS = {"list": _cmd_list, "show": _cmd_show, "status": _cmd_status, "logs": _cmd_logs,
             "cancel": _cmd_cancel, "rerun": _cmd_rerun}


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        return _COMMANDS[args.command](args)
    except NemorunError as exc:
        print(f"nemorun: error: {printable(one_line(str(exc)))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
