"""The scheduler of ``sldp study``: runs the unfinished cells of a grid (:mod:`sldpack.pipelines.study`), up to
``jobs`` at a time, each in its own process, shows what they do and writes the tables.

While a cell runs, its lines in ``cells/<id>/job.log`` (:class:`~sldpack.pipelines.study.CellProgress`) are
read as they come: a resumption is shown at once, progress (iteration or step, loss, held-out score, the
cell's ETA and the study's) when a cell first reports and then every ``progress_every`` seconds. The study's
ETA (:func:`estimate_eta`) deals the queue out to the job slots from measured cell times per row.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sldpack.atomic import atomic_write_bytes
from sldpack.errors import DataError, UsageError
from sldpack.pipelines.inputs import DataSpec, RuntimeSpec
from sldpack.pipelines.study import Cell, CellProgress, Row, StudyGrid, cell_config, hms, plan_cells, plan_rows
from sldpack.pipelines.study_report import write_report

__all__ = [
    "CellLauncher",
    "StudyOutcome",
    "estimate_eta",
    "run_study",
    "subprocess_launcher",
]


CellLauncher = Callable[[Path, Path, Path], "subprocess.Popen[bytes] | int"]
"""Start a cell: (cell.json, result.json, log file) -> a running process, or the exit status when the
launcher ran it to the end itself (tests run cells in-process)."""


def subprocess_launcher(config_path: Path, result_path: Path, log_path: Path, *,
                        command: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """Run a cell as ``python -m sldpack.pipelines.study CELL RESULT [-- COMMAND...]`` (its output, unbuffered,
    appended to ``log_path``; ``command``: the user's command line, for the provenance of the cell's file)."""
    import sldpack

    env = dict(os.environ)
    root = str(Path(sldpack.__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"  # warnings and tracebacks reach job.log as they happen
    tail = ["--", *map(str, command)] if command else []
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "sldpack.pipelines.study", str(config_path),
                                 str(result_path), *tail], stdout=log, stderr=subprocess.STDOUT, env=env)


class _RowLike(Hashable, Protocol):
    @property
    def method(self) -> str: ...


_R = TypeVar("_R", bound=_RowLike)


def estimate_eta(running: Sequence[tuple[_R, float, float | None]], queued: Sequence[_R],
                 measured: Mapping[_R, Sequence[float]], jobs: int) -> float | None:
    """Seconds until the last cell finishes, from measured cell times; ``None`` before anything is measured.

    A cell's expected time is the mean of the finished cells of its row (other seeds), else the projected
    time of a running cell of its row (its elapsed time plus the ETA of its own progress), else the mean of
    the finished cells of its method, else of all finished cells. A running cell (row, seconds elapsed, the
    remaining seconds its progress reports or ``None``) needs the larger of its reported remainder and its
    expected time minus its elapsed time. The queue is then dealt out in order to whichever of the ``jobs``
    slots frees first, as the scheduler does; the ETA is when the last slot is free.
    """
    projected = {r: el + rem for r, el, rem in running if rem is not None}
    every = [t for ts in measured.values() for t in ts]

    def expected(row: _R) -> float | None:
        same = measured.get(row)
        if same:
            return float(sum(same) / len(same))
        if row in projected:
            return projected[row]
        by_method = [t for r, ts in measured.items() if r.method == row.method for t in ts]
        pool = by_method or every
        return float(sum(pool) / len(pool)) if pool else None

    slots: list[float] = []
    for row, elapsed, rem in running:
        exp = expected(row)
        if exp is None and rem is None:
            return None
        slots.append(max(rem if rem is not None else 0.0, (exp - elapsed) if exp is not None else 0.0))
    slots += [0.0] * max(0, jobs - len(slots))
    for row in queued:
        exp = expected(row)
        if exp is None:
            return None
        i = min(range(len(slots)), key=slots.__getitem__)
        slots[i] += exp
    return max(slots, default=0.0)


class _LogTail:
    """The lines a running cell appends to its ``job.log`` (read as they come, complete lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.is_file() else 0  # a rerun appends to an old log
        self.partial = b""

    def lines(self) -> list[str]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        self.offset += len(data)
        *done, self.partial = (self.partial + data).split(b"\n")
        return [d.decode("utf-8", "replace").rstrip("\r") for d in done]


def _last_line(path: Path) -> str:
    """The last non-empty line of a log (a failed cell's error), shortened."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 4096))
            lines = [ln for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:200] if lines else ""


@dataclass
class StudyOutcome:
    """What :func:`run_study` did: cells run now, skipped (finished before), failed (id -> log path)."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n").encode())


def run_study(out: str | Path, grid: StudyGrid, spec: DataSpec, runtime: RuntimeSpec, *, jobs: int = 1,
              log: Callable[[str], None] | None = None, launcher: CellLauncher | None = None,
              command: Sequence[str] = (), progress_every: float = 20.0) -> StudyOutcome:
    """Run every unfinished cell of ``grid`` (up to ``jobs`` at a time) and write the tables into ``out``.

    Args:
        out: the study folder (created; an existing study continues).
        grid, spec, runtime: what to run, on which data, where (``runtime.threads`` per cell, default 1).
        jobs: cells at a time (each its own process).
        log: progress lines: one when a cell starts, its progress while it runs (iteration or step, loss,
            held-out score, the cell's and the study's ETA; read from the cell's ``job.log``), "resumed from
            ..." when a cell continues a killed run, one with its result, elapsed time and ETA.
        launcher: how a cell is started (default :func:`subprocess_launcher`, output to
            ``cells/ID/job.log``).
        command: the command line, recorded in ``study.json`` and (default launcher) in the provenance of
            every file a cell writes.
        progress_every: seconds between two progress lines of a running cell (its first is shown at once).

    Raises:
        UsageError: a bad grid, ``jobs`` < 1, a finished cell whose settings differ from this grid's.
    """
    grid.validate()
    if jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs}")
    spec.check_one_source(allow_source=False)
    if spec.split is not None:
        raise UsageError("sldp study trains on the train split and evaluates on the test split: drop --split")
    spec.select("test")  # bad data fails here, once, before any cell starts
    say = log or (lambda _m: None)
    root = Path(out)
    cells = plan_cells(grid)
    todo: list[tuple[Cell, Path, Path, Path]] = []
    outcome = StudyOutcome()
    measured: dict[Row, list[float]] = {}  # cell times per row (this run's and, from their results, earlier)
    configs: dict[str, dict[str, Any]] = {}
    for c in cells:
        cfg = cell_config(grid, c, spec, runtime)
        cdir = root / "cells" / c.id
        res_path = root / "cells" / f"{c.id}.json"
        if res_path.is_file():
            try:
                done = json.loads(res_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise DataError(f"{res_path}: unreadable cell result ({exc}); delete it to run the cell again") \
                    from exc
            if done.get("config") != json.loads(json.dumps(cfg)):
                raise UsageError(f"{res_path} was made with other settings than this grid's; use another --out "
                                 "(or delete that cell to run it again)")
            outcome.skipped.append(c.id)
            if isinstance(done.get("wall_seconds"), (int, float)):  # a measured cell time for the ETA
                measured.setdefault(c.row, []).append(float(done["wall_seconds"]))
            continue
        todo.append((c, cdir / "cell.json", res_path, cdir / "job.log"))
        configs[c.id] = cfg
    # validated (every finished cell has this grid's settings), then written: a refused rerun leaves
    # study.json and the cells as they were
    (root / "cells").mkdir(parents=True, exist_ok=True)
    _write_json(root / "study.json", {"grid": grid.to_obj(), "data": asdict(spec), "runtime": asdict(runtime),
                                      "command": list(command), "cells": [c.id for c in cells]})
    for c, cell_json, _rp, _lp in todo:
        cell_json.parent.mkdir(parents=True, exist_ok=True)
        _write_json(cell_json, configs[c.id])
    show_bn = grid.kind == "batchnorm"
    show_arch = len(grid.archs) > 1

    def name(c: Cell) -> str:
        return f"{c.row.label(show_arch=show_arch, show_bn=show_bn)} seed {c.seed}"

    total = len(cells)
    if outcome.skipped:
        say(f"study {root}: {len(outcome.skipped)} of {total} cells already done (skipped), {len(todo)} to run")
    else:
        say(f"study {root}: {total} cells ({len(plan_rows(grid))} rows x {len(grid.seeds)} seeds), jobs {jobs}")
    cmd = tuple(str(a) for a in command)

    def launch_default(cp: Path, rp: Path, lp: Path) -> subprocess.Popen[bytes]:
        return subprocess_launcher(cp, rp, lp, command=cmd)

    launch: CellLauncher = launcher or launch_default
    t0 = time.monotonic()
    running: dict[str, tuple[Cell, Any, Path, Path, float]] = {}
    tails: dict[str, _LogTail] = {}
    latest: dict[str, CellProgress] = {}
    shown: dict[str, float] = {}
    queue = list(todo)
    finished = len(outcome.skipped)

    def study_eta() -> str:
        now = time.monotonic()
        eta = estimate_eta([(c.row, now - st, latest[cid].eta if cid in latest else None)
                            for cid, (c, _h, _rp, _lp, st) in running.items()], [q[0].row for q in queue],
                           measured, jobs)
        return "n/a (no cell measured yet)" if eta is None else hms(eta)

    def finish(c: Cell, rc: int, res_path: Path, log_path: Path, started: float) -> None:
        nonlocal finished
        finished += 1
        dt = time.monotonic() - started
        el = time.monotonic() - t0
        if rc == 0 and res_path.is_file():
            measured.setdefault(c.row, []).append(dt)
            outcome.ran.append(c.id)
            r = json.loads(res_path.read_text(encoding="utf-8"))
            m = r["metrics"]
            hm = "n/a" if m.get("hm") is None else f"{m['hm']:.3f}"
            status = f"HM {hm}, {r['bytes']} B, {dt:.0f}s"
            if r.get("selected_iteration"):
                status += f", selected iteration {r['selected_iteration']}"
            if r.get("resumed_from") or r.get("resumed_from_step"):
                unit = "iteration" if r.get("resumed_from") else "step"
                status += f", resumed from {unit} {r.get('resumed_from') or r.get('resumed_from_step')}"
        else:
            outcome.failed[c.id] = str(log_path)
            last = _last_line(log_path)
            status = f"FAILED (exit {rc}; see {log_path})" + (f": {last}" if last else "")
        say(f"[{finished}/{total}] {name(c)}: {status}; elapsed {hms(el)}, ETA {study_eta()}")

    def watch(cid: str) -> None:
        """Show what a running cell wrote: resumptions at once, progress at most every progress_every s."""
        c = running[cid][0]
        for line in tails[cid].lines():
            if CellProgress.is_resumption(line):
                say(f"  {name(c)}: {line.strip()}")
            p = CellProgress.parse(line)
            if p is not None:
                latest[cid] = p
        p = latest.get(cid)
        now = time.monotonic()
        if p is not None and (cid not in shown or now - shown[cid] >= progress_every):
            shown[cid] = now
            held = f", held-out {p.held_out[0]} {p.held_out[1]:.3f} at {p.held_out[2]}" if p.held_out else ""
            cell_eta = "n/a" if p.eta is None else hms(p.eta)
            say(f"  {name(c)}: {p.unit} {p.done}/{p.total}, loss {p.loss:.4f}{held}; cell ETA {cell_eta}, "
                f"study ETA {study_eta()}")

    def on_term(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # `kill` the study: stop its cells too, never leave orphans writing

    old_term = signal.signal(signal.SIGTERM, on_term) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        while queue or running:
            while queue and len(running) < jobs:
                c, cp, rp, lp = queue.pop(0)
                say(f"  start {name(c)} ({c.id})")
                started = time.monotonic()
                tail = _LogTail(lp)  # before the launch: only what this run appends
                h = launch(cp, rp, lp)
                if isinstance(h, int):
                    finish(c, h, rp, lp, started)
                else:
                    running[c.id] = (c, h, rp, lp, started)
                    tails[c.id] = tail
            for cid in list(running):
                c, h, rp, lp, started = running[cid]
                rc = h.poll()
                watch(cid)
                if rc is not None:
                    del running[cid]
                    finish(c, int(rc), rp, lp, started)
            if running:
                time.sleep(0.2)
    except BaseException:
        for _c, h, _rp, _lp, _st in running.values():  # our own children only
            h.terminate()
        for _c, h, _rp, _lp, _st in running.values():
            try:
                h.wait(timeout=30)
            except subprocess.TimeoutExpired:
                h.kill()
        raise
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    outcome.seconds = time.monotonic() - t0
    write_report(root)
    return outcome
