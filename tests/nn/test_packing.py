"""Packing: the ``sldp pack`` input's tensor roles follow the one name rule of the format (spec 6.2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import sldpack
from sldpack.errors import UsageError
from sldpack.format.constants import role_for_name
from sldpack.nn.distill import DistillConfig, distill
from sldpack.nn.network import build_module
from sldpack.nn.packing import load_pack_input, pack, write_pack_input
from sldpack.pipelines.sources import ArraySource


def _pack_input(tmp_path: Path) -> Path:
    """A pack input as an external distiller writes it: manifest.json without a roles map + tensors.npz."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    x = rng.integers(0, 200, (40, 8, 8)).astype(np.uint8)
    cfg = DistillConfig(arch_options={"depth": 1, "width": 4}, steps=2, iterations=0, batch_real=8, device="cpu",
                        checkpoint_every=0, lr=0.05)
    res = distill(ArraySource(x, y, class_names=("a", "b")), cfg)
    folder = tmp_path / "in"
    write_pack_input(folder, res.manifest, res.tensors)
    obj = json.loads((folder / "manifest.json").read_text())
    obj.pop("roles")
    (folder / "manifest.json").write_text(json.dumps(obj))
    return folder


def test_pack_gives_theta0_copies_the_role_the_writer_requires(tmp_path: Path) -> None:
    folder = _pack_input(tmp_path)
    with np.load(folder / "tensors.npz") as z:
        arrays = {k: z[k] for k in z.files}
    manifest, _ = load_pack_input(folder)
    module, _digests = build_module(manifest.arch, manifest.init)
    name, param = next(iter(module.named_parameters()))
    # optional theta0 copies (role theta0_check) and a free-form tensor (extra), no roles map to say so
    arrays[f"theta0.{name}"] = param.detach().numpy()
    arrays["notes"] = np.arange(3, dtype=np.float32)
    np.savez(folder / "tensors.npz", **arrays)
    _manifest, tensors = load_pack_input(folder)
    assert tensors[f"theta0.{name}"].role == "theta0_check"
    assert tensors["notes"].role == "extra"
    assert {n: t.role for n, t in tensors.items()} == {n: role_for_name(n) for n in tensors}
    # the distiller's reading and the writer's check are one rule: the file is written, roles intact
    out = tmp_path / "out.sldp"
    pack(folder, out)
    with sldpack.open(out) as f:
        assert f.manifest.tensors[f"theta0.{name}"].role == "theta0_check"
        assert f.manifest.tensors["notes"].role == "extra"


def test_pack_role_rule_has_no_exceptions_for_bare_prefixes(tmp_path: Path) -> None:
    # spec 6.2: "bn." and "theta0." alone are not bn_stats/theta0_check names (a prefix needs one more character)
    folder = _pack_input(tmp_path)
    with np.load(folder / "tensors.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["bn."] = np.zeros(2, np.float32)
    arrays["theta0."] = np.zeros(2, np.float32)
    np.savez(folder / "tensors.npz", **arrays)
    _manifest, tensors = load_pack_input(folder)
    assert tensors["bn."].role == "extra"
    assert tensors["theta0."].role == "extra"


def test_pack_without_tensor_file_names_the_parameter(tmp_path: Path) -> None:
    folder = _pack_input(tmp_path)
    (folder / "tensors.npz").unlink()
    with pytest.raises(UsageError) as info:
        pack(folder, tmp_path / "x.sldp")
    assert info.value.field == "tensors"
    assert "--" not in str(info.value)
    assert "--tensors" in info.value.render(lambda n: "--" + n)
