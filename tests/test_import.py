"""The core must not import torch: apps embed the reader with numpy alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_import_sldpack_does_not_import_torch() -> None:
    code = ("import sys, sldpack, sldpack.format.container, sldpack.format.conformance, sldpack.cli.main, "
            "sldpack.cli.cmd_container; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_api_has_all() -> None:
    import sldpack

    for name in sldpack.__all__:
        assert hasattr(sldpack, name), name


_RUN_WITHOUT_TORCH = r'''
import sys
from pathlib import Path

import numpy as np

import sldpack
from sldpack.cli.main import cli

out = Path(sys.argv[1])
m = sldpack.Manifest(arch=sldpack.ArchSpec("convnet@1", 1, 2, (16, 16)), init=sldpack.InitSpec(seed=0),
                     provenance=sldpack.Provenance("test", "2026-01-01T00:00:00Z"),
                     preprocessing=sldpack.Preprocessing((0.5,), (0.25,), (16, 16), 1))
rng = np.random.default_rng(0)
sldpack.write(out / "x.sldp", m, {"images": sldpack.Tensor("images", rng.standard_normal((2, 1, 16, 16), np.float32)),
                                  "lrs": sldpack.Tensor("lrs", np.full(2, 0.01, np.float32))})
f = str(out / "x.sldp")


def run(args):
    try:
        cli.main(args=args, prog_name="sldp", standalone_mode=False)
    except SystemExit as exc:  # audit exits 1 when it flags an image: the verdict is not what is tested
        assert exc.code in (None, 0, 1), (args, exc.code)


# torch installed: these never import it
for args in (["inspect", f], ["verify", f],
             ["audit", f, "--phantom", "8", "--phantom-size", "32", "--no-sheet", "--real-sample", "8"]):
    run(args)
    assert "torch" not in sys.modules, f"sldp {args[0]} imported torch"
import sldpack.pipelines.audit, sldpack.pipelines.audit_items, sldpack.pipelines.report  # noqa: E401
import sldpack.pipelines.inputs, sldpack.pipelines.datasets, sldpack.pipelines.sources  # noqa: E401
import sldpack.pipelines.patch_source, sldpack.cli.cmd_report, sldpack.cli.cmd_container  # noqa: E401
assert "torch" not in sys.modules, "a module behind report/audit/inspect/verify imported torch"
# sldp report sizes the full checkpoint with torch (pipelines/sharing.py) when it can; without, it must still run
sys.modules["torch"] = None  # `import torch` now raises ModuleNotFoundError, as on a machine without it
run(["report", f])
run(["report", f, "--json"])
'''


def test_report_audit_inspect_verify_run_without_torch(tmp_path: Path) -> None:
    # ARCHITECTURE.md promises these four commands on a machine without torch: run them and look
    done = subprocess.run([sys.executable, "-c", _RUN_WITHOUT_TORCH, str(tmp_path)], check=True, timeout=300,
                          capture_output=True, text=True)
    assert "needs torch for the architecture zoo" in done.stdout  # report ran, without the zoo size
