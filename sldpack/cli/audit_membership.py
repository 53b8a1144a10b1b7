"""The membership part of ``sldp audit`` (``--membership``): its options, and running it beside the
image-similarity audit (:mod:`sldpack.pipelines.membership_audit` does the work)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sldpack.cli.options import COUNT, NONNEGATIVE, bounded_int, number
from sldpack.errors import UsageError
from sldpack.pipelines.membership import DEFAULT_FLAG_AUC, MIN_PER_CLASS

if TYPE_CHECKING:
    from sldpack.pipelines.inputs import DataSpec, RuntimeSpec
    from sldpack.pipelines.membership import MembershipReport

__all__ = ["MEMBERSHIP_OPTION_NAMES", "check_membership_options", "membership_options", "roc_path", "run_membership"]

_F = TypeVar("_F", bound=Callable[..., Any])

_OPTIONS = [
    click.option("--membership", is_flag=True,
                 help="Also run membership-inference attacks on the network FILE replays to: the --split (train) "
                      "images are members, held-out images of the same data non-members (see --nonmembers); "
                      "needs torch."),
    click.option("--nonmembers", type=click.Path(exists=True), default=None, metavar="PATH",
                 help="Non-member images (any layout --data takes, read with the same data options) [default: the "
                      "held-out images of --data: a MedMNIST file's test split, else the test part of the split "
                      "rule]."),
    click.option("--nonmember-split", default=None,
                 help="Split of the non-members [default: test for a MedMNIST file or without --nonmembers, all "
                      "otherwise]."),
    click.option("--references", type=NONNEGATIVE, default=4, show_default=True,
                 help="Reference networks of the offline LiRA attack, trained on non-member images that are not "
                      "attacked (half of each class); 0: the loss attack only."),
    click.option("--flag-auc", type=number(0.5, 1, max_open=True), default=DEFAULT_FLAG_AUC, show_default=True,
                 help="FLAG when the lower bound of the 95% CI of an attack's AUC on the distilled file's network "
                      "exceeds this."),
    click.option("--compare", "compare_model", type=click.Path(exists=True, dir_okay=False), default=None,
                 metavar="MODEL",
                 help="The normally trained network to compare with (`sldp train --save`, same architecture) "
                      "[default: train one here on the member data]."),
    click.option("--no-compare", is_flag=True, help="No normally trained comparison network."),
    click.option("--train-steps", type=COUNT, default=500, show_default=True,
                 help="Training steps of each reference network and of the comparison network (batch 64, Adam "
                      "lr 1e-3, cosine decay: the `sldp train` defaults)."),
    click.option("--max-per-class", type=COUNT, default=None,
                 help="At most this many members (and non-members) per class [default: as many as the "
                      "non-members allow]."),
    click.option("--bootstrap", type=bounded_int(10, 1_000_000), default=1000, show_default=True,
                 help="Bootstrap resamples per 95% CI."),
    click.option("--roc", "roc", type=click.Path(dir_okay=False), default=None,
                 help="ROC plot path (log-scale FPR; no patient image in it) [default: FILE with .roc.png]."),
]

MEMBERSHIP_OPTION_NAMES = ("membership", "nonmembers", "nonmember_split", "references", "flag_auc", "compare_model",
                           "no_compare", "train_steps", "max_per_class", "bootstrap", "roc")


def membership_options(fn: _F) -> _F:
    """Decorate ``sldp audit`` with the membership options."""
    for o in reversed(_OPTIONS):
        fn = o(fn)
    return fn


def roc_path(file: str, opts: dict[str, Any]) -> str | None:
    """Where the ROC plot goes (``None``: no membership audit). It shows curves only, never a patient's
    image, so --no-sheet (which keeps real images off disk) does not suppress it."""
    if not opts["membership"]:
        return None
    return str(opts["roc"] or Path(file).with_suffix(".roc.png"))


def check_membership_options(ctx: click.Context, opts: dict[str, Any]) -> None:
    """Membership options without ``--membership``, or contradicting each other, are usage errors."""
    from click.core import ParameterSource

    if not opts["membership"]:
        given = [n for n in MEMBERSHIP_OPTION_NAMES[1:] if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"--{given[0].replace('_', '-')} belongs to the membership audit: add --membership")
    if opts["compare_model"] and opts["no_compare"]:
        raise click.UsageError("--compare and --no-compare contradict each other")


def run_membership(file: str, spec: DataSpec, split: str, rt: RuntimeSpec, opts: dict[str, Any], seed: int,
                   *, quiet: bool = False) -> MembershipReport:
    """Read members and non-members, replay FILE, attack it (and the comparison network); progress on stderr."""
    try:
        from sldpack.pipelines.membership_audit import membership_audit, read_member_sets
        from sldpack.pipelines.models import load_trained_model
    except ImportError as exc:
        raise UsageError(f"sldp audit --membership needs torch (it replays the network): {exc}") from None
    from sldpack.pipelines.membership import MembershipConfig

    def say(line: str) -> None:
        if not quiet:
            click.echo(f"membership: {line}", err=True)

    members, nonmembers = read_member_sets(spec, split, opts["nonmembers"], opts["nonmember_split"])
    say(f"members: {len(members):,} images of {members.name}; non-members: {len(nonmembers):,} of {nonmembers.name}")
    cfg = MembershipConfig(references=opts["references"], flag_auc=opts["flag_auc"], bootstrap=opts["bootstrap"],
                           max_per_class=opts["max_per_class"], seed=seed, train_steps=opts["train_steps"],
                           min_per_class=MIN_PER_CLASS)
    compare: Any = None if opts["no_compare"] else "train"
    name = ""
    if opts["compare_model"]:
        compare = load_trained_model(opts["compare_model"], device=rt.device)
        name = str(opts["compare_model"])
    return membership_audit(file, members, nonmembers, config=cfg, compare=compare, compare_name=name,
                            device=rt.device, threads=rt.threads, progress=say)
