"""The distiller: resume after a kill, DD vs SLDD, schedules, theta_bn, run-directory outputs, pack."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import sldpack
from sldpack.errors import DataError, UsageError
from sldpack.nn.distill import DistillConfig, distill
from sldpack.nn.materialize import measure_bn_stats
from sldpack.nn.network import build_module, canonical_state, theta_digest
from sldpack.nn.packing import pack
from sldpack.nn.verify import verify_replay
from sldpack.pipelines.sources import ArraySource


def toy_source(n: int = 160, size: int = 8, seed: int = 0) -> ArraySource:
    """Two separable classes: bright top half vs bright bottom half, plus noise (uint8)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 80, (n, size, size)).astype(np.uint8)
    half = size // 2
    for i in range(n):
        if y[i] == 0:
            x[i, :half] += 120
        else:
            x[i, half:] += 120
    return ArraySource(x, y, class_names=("top", "bottom"))


def tiny_config(**kw: object) -> DistillConfig:
    base: dict[str, object] = {"arch_options": {"depth": 2, "width": 8}, "steps": 2, "epochs": 2,
                               "iterations": 6, "batch_real": 16, "device": "cpu", "checkpoint_every": 2,
                               "bn_batches": 2, "bn_batch_size": 32, "lr": 0.05}
    base.update(kw)
    return DistillConfig(**base)  # type: ignore[arg-type]


class KilledError(Exception):
    pass


def test_resume_after_kill_is_bit_identical(tmp_path: Path) -> None:
    src = toy_source()
    cfg = tiny_config(batchnorm=True)
    full = distill(src, cfg, run_dir=tmp_path / "full")

    def kill_at_5(done: int, loss: float) -> None:
        if done == 5:  # after the checkpoint of iteration 4 and one more iteration that will be lost
            raise KilledError

    with pytest.raises(KilledError):
        distill(src, cfg, run_dir=tmp_path / "killed", on_iteration=kill_at_5)
    assert not (tmp_path / "killed" / "distilled.sldp").exists()
    ck = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert ck["iteration"] == 4
    with pytest.raises(UsageError, match="resume"):
        distill(src, cfg, run_dir=tmp_path / "killed")  # refuses to overwrite a run silently
    resumed = distill(src, cfg, run_dir=tmp_path / "killed", resume=True)
    assert resumed.resumed_from == 4
    for name in ("images", "labels", "lrs"):
        assert np.array_equal(resumed.tensors[name].array, full.tensors[name].array), name
    assert resumed.manifest.replay is not None
    assert full.manifest.replay is not None
    assert resumed.manifest.replay.theta_opt_sha256 == full.manifest.replay.theta_opt_sha256
    assert resumed.losses == full.losses[4:]
    log = [json.loads(line) for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert [e.get("event") for e in log if "event" in e and e["event"] != "phase"] == \
        ["start", "resume", "select", "done"]
    # every phase after the last iteration is logged with its time (batch norm: theta_bn is measured)
    phases = [e for e in log if e.get("event") == "phase"]
    assert [e["phase"] for e in phases] == ["theta_opt", "theta_bn", "fingerprint", "write"]
    assert all(e["seconds"] >= 0 for e in phases)


def test_resume_rejects_changed_settings(tmp_path: Path) -> None:
    src = toy_source()
    distill(src, tiny_config(iterations=2), run_dir=tmp_path)
    with pytest.raises(UsageError, match="inner_lr") as info:
        distill(src, tiny_config(iterations=4, inner_lr=0.5), run_dir=tmp_path, resume=True)
    # the engine names settings by field, never by a command-line flag (the CLI spells them as options)
    assert info.value.field == "resume" and "inner_lr" in info.value.fields
    assert "--" not in str(info.value)
    assert "--inner_lr" in info.value.render(lambda name: "--" + name)
    # more iterations is an allowed change: the run continues from its last checkpoint
    res = distill(src, tiny_config(iterations=4), run_dir=tmp_path, resume=True)
    assert res.resumed_from == 2
    assert len(res.losses) == 2
    with pytest.raises(UsageError, match="no checkpoint") as info:
        distill(src, tiny_config(), run_dir=tmp_path / "empty", resume=True)
    assert info.value.field == "resume"
    assert str(info.value).startswith("resume: no checkpoint")


def test_sldd_outputs_manifest_and_run_files(tmp_path: Path) -> None:
    src = toy_source()
    res = distill(src, tiny_config(batchnorm=True, schedule="per-step", iterations=3), run_dir=tmp_path)
    m = res.manifest
    assert m.distill is not None
    assert m.distill.method == "sldd"
    assert m.distill.label_transform == "softmax"
    assert m.distill.schedule == ((0, 1), (2, 3))  # per step: one image per class
    assert res.tensors["images"].array.shape == (4, 1, 8, 8)
    assert res.tensors["lrs"].array.shape == (4,)  # steps x epochs
    assert m.labels is not None
    assert m.labels.names == ("top", "bottom")
    assert m.preprocessing is not None
    assert m.preprocessing.image_size == (8, 8)
    assert m.provenance.dataset_sha256 == src.fingerprint
    assert m.init.theta0_sha256 is not None
    assert "conv1.weight" in m.init.theta0_sha256
    bn = sorted(n for n, t in res.tensors.items() if t.role == "bn_stats")
    assert bn == ["bn.bn1.running_mean", "bn.bn1.running_var", "bn.bn2.running_mean", "bn.bn2.running_var"]
    # labels were learned: no longer the initial logits
    lab = res.tensors["labels"].array
    assert not np.array_equal(lab, np.array([[2, 0], [0, 2], [2, 0], [0, 2]], dtype=np.float32))
    for name in ("run.json", "log.jsonl", "checkpoint.pt", "final/manifest.json", "final/tensors.npz",
                 "distilled.sldp", "montage.png"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "montage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in lines if "loss" in e] == [1, 2, 3]
    sel = [e for e in lines if e.get("event") == "select"]
    assert sel[0]["rule"] == "best"
    assert sel[0]["iteration"] == m.distill.options["selected_iteration"]
    assert 0 <= sel[0]["iteration"] <= 3
    with sldpack.open(tmp_path / "distilled.sldp") as f:
        f.verify()
        assert f.manifest.replay == m.replay
    rep = verify_replay(tmp_path / "distilled.sldp")
    assert rep.status == "exact", rep.summary()
    assert rep.theta0 == "match"


def test_dd_mode_keeps_one_hot_labels() -> None:
    res = distill(toy_source(), tiny_config(mode="dd", iterations=2, images_per_class=2))
    m = res.manifest
    assert m.distill is not None
    assert m.distill.method == "dd"
    assert m.distill.label_transform == "identity"
    np.testing.assert_array_equal(res.tensors["labels"].array,
                                  np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32))
    assert m.distill.schedule == ((0, 1, 2, 3), (0, 1, 2, 3))
    assert not any(t.role == "bn_stats" for t in res.tensors.values())  # no batch norm, no theta_bn


def test_select_best_and_last(tmp_path: Path) -> None:
    src = toy_source()
    last = distill(src, tiny_config(iterations=5, select="last"), run_dir=tmp_path / "last")
    ck = torch.load(tmp_path / "last" / "checkpoint.pt", weights_only=True)
    np.testing.assert_array_equal(last.tensors["images"].array, ck["images"].numpy())
    assert last.manifest.distill is not None
    assert last.manifest.distill.options["selected_iteration"] == 5
    # fewer losses than the average's warm-up (1/ema): no candidate yet, the last iterate is written
    short = distill(src, tiny_config(iterations=5, select="best", ema=0.1))
    np.testing.assert_array_equal(short.tensors["images"].array, last.tensors["images"].array)
    best = distill(src, tiny_config(iterations=5, select="best", ema=0.5))
    assert best.manifest.distill is not None
    it = best.manifest.distill.options["selected_iteration"]
    # the best iterate minimises the running average (plain mean of the first 2 losses, then weight 0.5)
    # over iterates 1..4 (the loss of iterate j is measured in iteration j + 1; iterate 0 is warm-up)
    ema, emas = 0.0, []
    for n, v in enumerate(last.losses, start=1):
        ema += max(0.5, 1.0 / n) * (v - ema)
        emas.append(ema)
    assert it == 1 + int(np.argmin(emas[1:]))
    if it != 5:
        assert not np.array_equal(best.tensors["images"].array, last.tensors["images"].array)


def test_measure_bn_stats_is_cumulative_average_of_batch_stats() -> None:
    src = toy_source()
    cfg = tiny_config(batchnorm=True)
    module, _ = build_module(sldpack.ArchSpec("convnet@1", 1, 2, (8, 8), True, {"depth": 2, "width": 8}),
                             sldpack.InitSpec(seed=3))
    seen: list[torch.Tensor] = []
    hook = module.get_submodule("bn1").register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    measure_bn_stats(module, src, batches=3, batch_size=20, rng=np.random.default_rng(0))
    hook.remove()
    assert len(seen) == 3
    want_mean = torch.stack([s.mean(dim=(0, 2, 3)) for s in seen]).mean(0)
    want_var = torch.stack([s.var(dim=(0, 2, 3), unbiased=True) for s in seen]).mean(0)
    bn1 = module.get_submodule("bn1")
    torch.testing.assert_close(bn1.running_mean, want_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn1.running_var, want_var, rtol=1e-5, atol=1e-6)
    assert bn1.momentum == 0.1  # restored
    assert not module.training
    for n, p in module.named_parameters():
        assert torch.equal(p, before[n]), f"{n} changed"
    del cfg


def test_bn_class_mix_balanced_draws_equal_class_counts_and_is_recorded() -> None:
    # an imbalanced source (9:1): the natural mix sees mostly class 0, the balanced one half of each
    x = np.zeros((200, 8, 8), np.uint8)
    y = np.array([0] * 180 + [1] * 20)
    x[y == 1] = 200
    src = ArraySource(x, y, class_names=("a", "b"))
    means = {}
    for mix in ("natural", "balanced"):
        module, _ = build_module(sldpack.ArchSpec("convnet@1", 1, 2, (8, 8), True, {"depth": 2, "width": 8}),
                                 sldpack.InitSpec(seed=3))
        seen: list[torch.Tensor] = []
        hook = module.register_forward_pre_hook(lambda m, a, seen=seen: seen.append(a[0].detach()))
        measure_bn_stats(module, src, batches=4, batch_size=40, rng=np.random.default_rng(0),
                         balanced=mix == "balanced")
        hook.remove()
        bright = torch.cat(seen).flatten(1).mean(1) > 0.5
        means[mix] = float(bright.float().mean())
    assert means["balanced"] == pytest.approx(0.5, abs=0.01)
    assert means["natural"] < 0.3
    res = distill(toy_source(), tiny_config(batchnorm=True, iterations=2, bn_class_mix="balanced"))
    assert res.manifest.distill is not None
    assert res.manifest.distill.options["theta_bn"]["class_mix"] == "balanced"
    assert "bn_class_mix" not in res.manifest.distill.options  # recorded once, under theta_bn
    with pytest.raises(UsageError, match="bn_class_mix"):
        tiny_config(bn_class_mix="even").validate()


def test_config_validation_and_data_errors() -> None:
    with pytest.raises(UsageError):
        tiny_config(mode="soft").validate()
    with pytest.raises(UsageError):
        tiny_config(steps=0).validate()
    with pytest.raises(UsageError, match="balanced"):
        distill(toy_source(), tiny_config(batch_real=1))
    one_class = ArraySource(np.zeros((4, 8, 8), np.uint8) + np.arange(4, dtype=np.uint8)[:, None, None],
                            np.zeros(4, np.int64), num_classes=2)
    with pytest.raises(DataError):
        distill(one_class, tiny_config(iterations=1))


def test_pack_from_run_dir_and_external_input(tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = distill(toy_source(), tiny_config(iterations=2), run_dir=run)
    out = tmp_path / "packed.sldp"
    pr = pack(run, out)
    # the fingerprint is recomputed, never copied from manifest.json: here it agrees with the recorded one
    assert pr.notes == ("replay fingerprint computed (1 thread(s))",)
    with sldpack.open(run / "distilled.sldp") as a, sldpack.open(out) as b:
        assert a.manifest.tensors == b.manifest.tensors
        assert a.manifest.replay == b.manifest.replay
    # an "external distiller": manifest.json without fingerprint/theta0 digests + tensors.safetensors
    ext = tmp_path / "ext"
    ext.mkdir()
    obj = json.loads((run / "final" / "manifest.json").read_text())
    obj.pop("replay")
    obj["init"].pop("theta0_sha256")
    obj.pop("provenance")
    obj.pop("roles")
    (ext / "manifest.json").write_text(json.dumps(obj))
    from sldpack.nn.network import save_safetensors

    with np.load(run / "final" / "tensors.npz") as z:
        save_safetensors(ext / "tensors.safetensors", {k: torch.from_numpy(z[k]) for k in z.files})
    pr2 = pack(ext, tmp_path / "ext.sldp", compression="zstd")
    assert pr2.manifest.replay is not None
    assert pr2.manifest.init.theta0_sha256 is not None
    assert res.manifest.replay is not None
    assert pr2.manifest.replay.theta_opt_sha256 == res.manifest.replay.theta_opt_sha256
    assert verify_replay(tmp_path / "ext.sldp").status == "exact"
    # inconsistent input is refused before anything is written
    with np.load(run / "final" / "tensors.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["lrs"] = arrays["lrs"][:3]
    np.savez(ext / "bad.npz", **arrays)
    with pytest.raises(UsageError, match="lrs"):
        pack(ext / "manifest.json", tmp_path / "bad.sldp", tensors=ext / "bad.npz")
    assert not (tmp_path / "bad.sldp").exists()
    # edited tensors (NaN image, infinite step size) and unknown architectures are refused, not packed
    # with a stale fingerprint
    for what, edit in (("'images'.*NaN or infinite", lambda a: a["images"].__setitem__((0, 0, 0, 0), np.nan)),
                       ("'lrs'.*NaN or infinite", lambda a: a["lrs"].__setitem__(1, np.inf))):
        with np.load(run / "final" / "tensors.npz") as z:
            arrays = {k: z[k].copy() for k in z.files}
        edit(arrays)
        np.savez(ext / "edited.npz", **arrays)
        with pytest.raises(DataError, match=what):
            pack(ext / "manifest.json", tmp_path / "edited.sldp", tensors=ext / "edited.npz")
        assert not (tmp_path / "edited.sldp").exists()
    # negative (and zero) step sizes are applied as stored (spec annex replay, section 2): packed, with a
    # fingerprint of their own replay
    with np.load(run / "final" / "tensors.npz") as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays["lrs"] = -np.abs(arrays["lrs"])
    arrays["lrs"][0] = 0.0
    np.savez(ext / "negative.npz", **arrays)
    pr_neg = pack(ext / "manifest.json", tmp_path / "negative.sldp", tensors=ext / "negative.npz")
    assert pr_neg.manifest.replay is not None and res.manifest.replay is not None
    assert pr_neg.manifest.replay.theta_opt_sha256 != res.manifest.replay.theta_opt_sha256
    assert verify_replay(tmp_path / "negative.sldp").status == "exact"
    obj["arch"]["id"] = "nosuch@1"
    (ext / "manifest.json").write_text(json.dumps(obj))
    with pytest.raises(UsageError, match="unknown architecture"):
        pack(ext, tmp_path / "edited.sldp")
    # --fingerprint never drops a recorded fingerprint instead of copying it unchecked
    pr3 = pack(run, tmp_path / "nofp.sldp", fingerprint="never")
    assert pr3.manifest.replay is None
    assert any("dropped" in n for n in pr3.notes)


def test_distilled_module_digest_matches_fingerprint() -> None:
    # under the reference thread count the distiller's own theta_opt is the replayed one, bit for bit
    res = distill(toy_source(), tiny_config(iterations=2, batchnorm=True))
    assert res.manifest.replay is not None
    assert res.manifest.replay.reference["threads"] == torch.get_num_threads() == 1
    assert not res.module.training
    assert theta_digest(canonical_state(res.module)) == res.manifest.replay.theta_opt_sha256


@pytest.mark.parametrize(("schedule", "batchnorm"), [("all", True), ("per-step", False), ("per-step", True)])
def test_unroll_modes_give_the_same_file(schedule: str, batchnorm: bool) -> None:
    # graph and recompute (with and without theta checkpointing) compute the same hypergradient in another
    # order: float32 rounding only. Measured: max |deviation| <= 3e-7 after 4 Adam steps (data O(1));
    # the bound 1e-5 leaves room for other BLAS builds. Same fingerprint tolerance class either way.
    src = toy_source()
    results = {}
    for mode, k in (("graph", 1), ("recompute", 1), ("recompute", 3)):
        cfg = tiny_config(batchnorm=batchnorm, schedule=schedule, iterations=4, select="last", unroll=mode,
                          unroll_checkpoint=k)
        results[(mode, k)] = distill(src, cfg)
    ref = results[("graph", 1)]
    x0 = distill(src, tiny_config(batchnorm=batchnorm, schedule=schedule, iterations=0)).tensors["images"].array
    assert np.abs(np.asarray(ref.tensors["images"].array) - np.asarray(x0)).max() > 1e-3, "nothing was learned"
    for key, res in results.items():
        assert res.tensors.keys() == ref.tensors.keys()
        for n, t in ref.tensors.items():
            dev = np.abs(np.asarray(res.tensors[n].array) - np.asarray(t.array)).max()
            assert dev <= 1e-5, f"{key} {n}: max deviation {dev:.3g}"
        # the unroll strategy is how, not what: the manifest's options are identical
        assert res.manifest.distill is not None and ref.manifest.distill is not None
        assert res.manifest.distill.options == ref.manifest.distill.options
        assert "unroll" not in res.manifest.distill.options
