"""``sldp study``: seed-averaged tables (SLDD vs DD vs normal training) from one command.

Torch is imported only in the cells' own processes, so ``sldp study --help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from sldpack.cli.common import fmt_time, folder_entries, parse_key_values, run_dir_lock
from sldpack.cli.exit_codes import EXIT_INTERRUPTED
from sldpack.cli.options import COUNT, MAX_INT, data_options, number, runtime_options, spec_option
from sldpack.errors import UsageError
from sldpack.nn.config import SELECT_RULES, DistillConfig

__all__ = ["study_cmd"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _csv_ints(value: str | None, option: str, lo: int, hi: int = MAX_INT) -> list[int] | None:
    if value is None:
        return None
    try:
        values = [int(v) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise UsageError(f"{option} takes comma-separated integers, got {value!r}") from exc
    bad = [v for v in values if not lo <= v <= hi]
    if bad or not values:
        raise UsageError(f"{option} takes comma-separated integers in [{lo}, {hi}], got {value!r}")
    return values


def _claim_study_dir(root: Any) -> None:
    """A study writes into an empty or new folder, or continues its own (one holding study.json)."""
    names = folder_entries(root)
    if names and "study.json" not in names:
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        raise UsageError(f"--out {root} is not empty and holds no study (study.json); it holds {shown}: "
                         "choose another --out")


def _typed_command() -> list[str]:
    """``sldp study`` with every option given on this command line (the same command resumes a study)."""
    ctx = click.get_current_context()
    words = ["sldp", "study"]
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or p.name is None or ctx.get_parameter_source(p.name) in (
                click.core.ParameterSource.DEFAULT, None):
            continue
        value, flag = ctx.params[p.name], max(p.opts, key=len)
        if p.is_flag:
            words += [flag] if value or not p.secondary_opts else [max(p.secondary_opts, key=len)]
        else:
            for item in (value if p.multiple else [value]):
                words += [flag, *(str(v) for v in (item if p.nargs > 1 else [item]))]
    return words


@click.command("study")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True,
              help="Study folder (created; an existing study continues where it stopped).")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False), default=None,
              help="TOML grid file (kind, seeds, images_per_class, methods, normal, archs, [arch_options], "
                   "[distill], [train], [eval]); the flags below override it.")
@click.option("--kind", type=click.Choice(["table1", "min-images", "batchnorm", "ablation"]), default=None,
              help="table1: methods (paper Table 1); min-images: smallest k reaching --target-hm per "
                   "architecture (Tables 5/6); batchnorm: every row with and without BN (Table 3); "
                   "ablation: each [variants.NAME] of the grid file against the baseline. [table1]")
@click.option("--seeds", default=None, metavar="0,1,2", help="Seeds of every row. [0]")
@click.option("--images-per-class", "-M", "ks", default=None, metavar="1,2,3",
              help="k of SLDD(k)/DD(k). [1]")
@click.option("--methods", default=None, metavar="sldd,dd", help="Distillation rows. [sldd,dd]")
@click.option("--normal", default=None, metavar="all,50",
              help="Normal-training rows: 'all' and/or N per class; 'none' for no such row. [all]")
@click.option("--baselines", default=None, metavar="trivial,random",
              help="Baseline rows: trivial (organ mean intensity thresholded on the training split) and/or "
                   "random (k real training images per class, only the step sizes learned); 'none' for neither. "
                   "[both for table1 and min-images]")
@click.option("--arch", "archs", multiple=True, help="Architecture id (repeat for several). [convnet@1]")
@click.option("--arch-option", multiple=True, metavar="KEY=VALUE", help="Option of every architecture.")
@click.option("--batchnorm/--no-batchnorm", default=None, help="Batch-norm variant (not for --kind batchnorm).")
@click.option("--target-hm", type=number(0.0, 1.0), default=None, help="min-images: mean HM to reach. [0.8]")
@spec_option(DistillConfig, "iterations", default=None, help="Distillation: outer iterations.", min=0)
@spec_option(DistillConfig, "steps", default=None, help="Distillation: inner steps per epoch.")
@spec_option(DistillConfig, "select", default=None, choices=tuple(r for r in SELECT_RULES if r != "auto"),
             help="Distillation: which iterate is written (see sldp distill --select).")
@click.option("--train-steps", type=COUNT, default=None, help="Normal training: optimiser steps.")
@click.option("--bootstrap", type=click.IntRange(100, 10**6), default=None,
              help="Bootstrap resamples of the paired CIs. [2000]")
@click.option("--jobs", "-j", type=COUNT, default=1, show_default=True,
              help="Cells run at a time, each in its own process (with --threads torch threads, default 1).")
@click.option("--report-only", is_flag=True, help="Rebuild the tables from the finished cells; run nothing.")
@data_options
@runtime_options
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def study_cmd(out: str, grid_file: str | None, kind: str | None, seeds: str | None, ks: str | None,
              methods: str | None, normal: str | None, baselines: str | None, archs: tuple[str, ...],
              arch_option: tuple[str, ...],
              batchnorm: bool | None, target_hm: float | None, iterations: int | None, steps: int | None,
              select: str | None, train_steps: int | None, bootstrap: int | None, jobs: int, report_only: bool,
              quiet: bool, **kwargs: Any) -> None:
    """Run a grid of trainings and distillations on one data set and write the comparison table.

    Rows: SLDD(k) and DD(k) for every k, normal training on all training data and on N per class, the
    baselines (trivial: mean intensity threshold; random(k): k real images per class replayed with learned
    step sizes); each row once per seed. Every cell (row x seed) is its own process and result file in OUT/cells/, so a
    killed study continues where it stopped (finished cells are skipped, a distillation resumes from its
    checkpoint). Each cell is evaluated on the test split exactly like `sldp eval` (image level: Sen, Spe,
    HM, AUC; patch accuracy), with the stored bytes and wall time.

    Shows each running cell's progress (iteration, loss, held-out score, the cell's and the study's ETA from
    measured cell times; the cell's own log is OUT/cells/ID/job.log) and prints the table at the end.
    Writes OUT/table.md (with every effective setting, defaults included, and the selected iteration per
    cell), rows.csv (mean ± std per row), runs.csv (one line per run), comparisons.csv (paired: SLDD vs DD
    with the same seed; each distilled row vs random(k), trivial and normal training; BN vs no BN; ΔHM with
    an image-level and a seed-aware 95 % CI, the verdict from the seed-aware one), results.json,
    hm_vs_bytes.png, comparisons.png and montages.png (the distilled
    images of every cell).

    Data: the options every data command takes (--data / --phantom, the split rule, patch geometry).
    """
    import time
    from dataclasses import replace
    from pathlib import Path

    from sldpack.pipelines.inputs import DataSpec, RuntimeSpec
    from sldpack.pipelines.study import StudyGrid
    from sldpack.pipelines.study_report import render_markdown, write_report
    from sldpack.pipelines.study_scheduler import run_study

    if report_only:
        doc = write_report(out)
        from sldpack.pipelines.study_report import load_results

        click.echo(render_markdown(load_results(out)[0], doc))
        return
    grid = StudyGrid.from_toml(grid_file) if grid_file else StudyGrid()
    over: dict[str, Any] = {}
    if kind is not None:
        over["kind"] = kind
    for name, value in (("seeds", _csv_ints(seeds, "--seeds", 0, 2**32 - 1)),
                        ("images_per_class", _csv_ints(ks, "-M", 1))):
        if value is not None:
            over[name] = tuple(value)
    if methods is not None:
        over["methods"] = tuple(m.strip() for m in methods.split(",") if m.strip())
    if normal is not None:
        vals = [v.strip() for v in normal.split(",") if v.strip() and v.strip() != "none"]
        try:
            over["normal"] = tuple(v if v == "all" else int(v) for v in vals)
        except ValueError as exc:
            raise UsageError(f"--normal takes 'all', 'none' or integers, got {normal!r}") from exc
    if baselines is not None:
        over["baselines"] = tuple(b.strip() for b in baselines.split(",") if b.strip() and b.strip() != "none")
    if archs:
        over["archs"] = tuple(archs)
    if arch_option:
        over["arch_options"] = parse_key_values(arch_option, option="--arch-option")
    if batchnorm is not None:
        over["batchnorm"] = batchnorm
    if target_hm is not None:
        over["target_hm"] = target_hm
    if bootstrap is not None:
        over["bootstrap"] = bootstrap
    dist = dict(grid.distill)
    given: dict[str, Any] = {"iterations": iterations, "steps": steps, "select": select}
    dist.update({k: v for k, v in given.items() if v is not None})
    train = dict(grid.train)
    if train_steps is not None:
        train["steps"] = train_steps
    grid = replace(grid, distill=dist, train=train, **over)
    spec, rt = DataSpec.from_kwargs(kwargs), RuntimeSpec.from_kwargs(kwargs)
    say: Callable[[str], None] = (lambda _m: None) if quiet else (lambda m: click.echo(m, err=True))
    t0 = time.monotonic()
    argv = sys.argv[1:]
    command = ["sldp", *argv[argv.index("study"):]] if "study" in argv else ["sldp", "study"]
    try:
        # one study per folder at a time: a second `sldp study --out S` exits 2 naming the holder
        with run_dir_lock(out, scratch=(), claim=_claim_study_dir):
            outcome = run_study(out, grid, spec, rt, jobs=jobs, log=say, command=command)
    except KeyboardInterrupt:
        import shlex

        click.echo(f"sldp study: interrupted; finished cells are kept in {Path(out, 'cells')}. Resume with:\n"
                   f"  {shlex.join(_typed_command())}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    click.echo(Path(out, "table.md").read_text(encoding="utf-8"))  # the table itself, not only where it is
    click.echo(f"study {out}: {len(outcome.ran)} cell(s) run, {len(outcome.skipped)} skipped, "
               f"{len(outcome.failed)} failed in {fmt_time(time.monotonic() - t0)}; tables in {out}/table.md")
    if outcome.failed:
        for cid, log in outcome.failed.items():
            click.echo(f"  failed: {cid} (log {log})", err=True)
        raise UsageError(f"{len(outcome.failed)} cell(s) failed (logs above); fix the cause and run the same "
                         "command again: finished cells are kept")
