"""Issue 10, "nothing lost, no traceback": one table row per reproduced defect.

Each row runs ``sldp`` in-process through :func:`sldpack.cli.main.main` and checks the exit code, that
stderr names the problem in one line, that nothing printed a traceback, and that every file the fixtures
made (the inputs and earlier outputs) is byte-identical afterwards (SHA-256 of every file before/after).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pytest
from PIL import Image

import sldpack
from sldpack.cli.main import main

TINY = ["--arch-option", "depth=2", "--arch-option", "width=8", "--steps", "2", "-K", "8", "--device", "cpu",
        "--threads", "1", "--checkpoint-every", "1", "--bn-batches", "2", "-q"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``sldp ARGV``."""
    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _medmnist(path: Path, x: np.ndarray, y: np.ndarray, **extra: np.ndarray) -> Path:
    np.savez(path, train_images=x, train_labels=y, test_images=x[:10], test_labels=y[:10], **extra)
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, toy_images: tuple[np.ndarray, np.ndarray]) -> Path:
    """Inputs and earlier outputs every row must leave untouched."""
    d = tmp_path_factory.mktemp("env")
    x, y = toy_images
    _medmnist(d / "toy.npz", x, y)
    _medmnist(d / "channels_last.npz", x[..., None], y)
    _medmnist(d / "one_class.npz", x, np.zeros_like(y))
    xf = x.astype(np.float64) / 255.0
    xf[3, 2, 1] = np.nan
    xf[7, 0, 0] = np.inf
    _medmnist(d / "nan.npz", xf, y)
    _medmnist(d / "float255.npz", x.astype(np.float32), y)
    _medmnist(d / "int16.npz", x.astype(np.int16), y)
    np.savez(d / "no_labels.npz", train_images=x)
    np.savez(d / "tiny_real.npz", train_images=x[:, :2, :2], train_labels=y)
    three = y.copy()
    three[:5] = 2
    _medmnist(d / "three_classes.npz", x, three)
    (d / "text.npz").write_text("name,label\na,0\n")
    folder = d / "folder"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(x[i]).save(folder / f"img{i}.png")
    (folder / "labels.csv").write_text("name,label\n" + "".join(f"img{i}.png,{i % 2}\n" for i in range(4)))
    (d / "not_a_dir").write_text("a file")
    # earlier outputs: a distill run, a patch model from the demo
    code = main_quiet(["distill", "--data", str(d / "toy.npz"), "--iterations", "2", "--out", str(d / "run"),
                       *TINY])
    assert code == 0
    assert main_quiet(["demo", "--fast", "--out", str(d / "demo"), "-q", "--iterations", "2"]) == 0
    # issue 24: folders that belong to someone else; a file whose replay does not match its fingerprint
    (d / "userdir").mkdir()
    (d / "userdir" / "notes.txt").write_text("my notes")
    shutil.copytree(d / "run", d / "run_nock", ignore=shutil.ignore_patterns("checkpoint.pt", ".*"))
    (d / "user_demo").mkdir()
    (d / "user_demo" / "summary.json").write_text('{"mine": true}')
    (d / "user_demo" / "model.safetensors").write_bytes(b"my model")
    with sldpack.open(d / "run" / "distilled.sldp") as f:
        m, arrays = f.manifest, f.arrays()
    assert m.replay is not None
    bad_fp = dataclasses.replace(m.replay, theta_opt_sha256="0" * 64,
                                 probe_logits=tuple(v + 1.0 for v in m.replay.probe_logits))
    sldpack.write(d / "bad_fp.sldp", dataclasses.replace(m, replay=bad_fp),
                  {n: sldpack.Tensor(t.role, arrays[n]) for n, t in m.tensors.items()})
    # issue 24, 9: a validation split of one class
    np.savez(d / "one_class_val.npz", train_images=x, train_labels=y, val_images=x[:6],
             val_labels=np.zeros(6, np.int64), test_images=x[:10], test_labels=y[:10])
    gaps = d / "label_gaps"
    shutil.copytree(folder, gaps)
    (gaps / "labels.csv").write_text("name,label\n" + "".join(f"img{i}.png,{1000 * (i % 2)}\n" for i in range(6)))
    # issue 24, 7: malformed inputs that crashed
    big = d / "big_label"
    shutil.copytree(folder, big)
    (big / "labels.csv").write_text("name,label\n" + "".join(f"img{i}.png,{10**30 if i == 0 else i % 2}\n"
                                                            for i in range(6)))
    assert main_quiet(["data", "convert", str(folder), str(d / "neg_store"), "--unlabelled", "skip"]) == 0
    lab = np.load(d / "neg_store" / "labels.npy")
    lab[1] = -3
    np.save(d / "neg_store" / "labels.npy", lab)
    for name, fix in (("broken_json", lambda r: (r / "run.json").write_text("{broken")),
                      ("list_json", lambda r: (r / "run.json").write_text("[]")),
                      ("empty_ckpt", lambda r: (r / "checkpoint.pt").write_bytes(b"")),
                      ("garbage_ckpt", lambda r: (r / "checkpoint.pt").write_bytes(b"garbage\n"))):
        shutil.copytree(d / "run", d / name, ignore=shutil.ignore_patterns(".*"))
        fix(d / name)
    edited = d / "edited"
    for name, change in (("nan_lrs", "lrs"), ("inf_image", "images"), ("unknown_arch", "arch")):
        tgt = edited / name
        shutil.copytree(d / "run" / "final", tgt)
        with np.load(tgt / "tensors.npz") as z:
            arrays = {k: z[k].copy() for k in z.files}
        if change == "lrs":
            arrays["lrs"][0] = np.nan  # (a negative step size is packed: replay applies it as stored)
        elif change == "images":
            arrays["images"][0, 0, 0, 0] = np.inf
        else:
            m = json.loads((tgt / "manifest.json").read_text())
            m["arch"]["id"] = "nosuch@1"
            (tgt / "manifest.json").write_text(json.dumps(m))
        np.savez(tgt / "tensors.npz", **arrays)
    return d


def main_quiet(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@contextlib.contextmanager
def held_lock(directory: Path) -> Iterator[None]:
    """Another process's run, as the lock file records it (pid/host), holding the OS lock."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".sldp.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps({"pid": 424242, "host": socket.gethostname(), "since": "now"}).encode())
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Row:
    item: str
    argv: Callable[[Path, Path], list[str]]  # (env, scratch) -> argv
    code: int
    says: tuple[str, ...]
    absent: str | None = None  # a path (relative to scratch) that must not exist afterwards
    lock: str | None = None  # hold the lock of this env-relative directory during the run


def _dicom_bad_vr() -> str | None:
    try:
        from pydicom.data import get_testdata_files
    except ImportError:
        return None
    hits = [f for f in get_testdata_files() if Path(f).name == "badVR.dcm"]
    return hits[0] if hits else None


ROWS = [
    # 1. an output that is one of the inputs
    Row("1 replay -o FILE", lambda e, s: ["replay", str(e / "run/distilled.sldp"), "-o", str(e / "run/distilled.sldp")],
        2, ("is an input of this command",)),
    Row("1 audit --sheet FILE", lambda e, s: ["audit", str(e / "run/distilled.sldp"), "--data", str(e / "toy.npz"),
                                              "--sheet", str(e / "run/distilled.sldp")], 2, ("--sheet",)),
    Row("1 eval --per-image FILE", lambda e, s: ["eval", str(e / "run/distilled.sldp"), "--data", str(e / "toy.npz"),
                                                 "--per-image", str(e / "run/distilled.sldp")], 2, ("--per-image",)),
    Row("1 pack DIR -o DIR/tensors.npz", lambda e, s: ["pack", str(e / "run/final"), "-o",
                                                       str(e / "run/final/tensors.npz")], 2, ("is an input",)),
    Row("1 train --save DATA", lambda e, s: ["train", "--data", str(e / "toy.npz"), "--save", str(e / "toy.npz")],
        2, ("--save",)),
    # 2. a run directory in use by another process
    Row("2 distill --out locked", lambda e, s: ["distill", "--data", str(e / "toy.npz"), "--out", str(s / "locked"),
                                                "--iterations", "2", *TINY], 2, ("in use by pid 424242",),
        lock="locked"),
    Row("2 demo --out locked", lambda e, s: ["demo", "--fast", "--out", str(s / "locked"), "-q"], 2,
        ("in use by pid 424242",), lock="locked"),
    # 3. demo rerun with other settings: refused before any picture is overwritten (env hashes)
    Row("3 demo other settings", lambda e, s: ["demo", "--fast", "--out", str(e / "demo"), "--width", "4", "-q"],
        2, ("other settings",)),
    # 4. pack never presents a stale fingerprint; edited tensors and unknown archs are refused
    Row("4 pack NaN lrs", lambda e, s: ["pack", str(e / "edited/nan_lrs"), "-o", str(s / "p.sldp")], 2,
        ("'lrs'", "NaN or infinite"), absent="p.sldp"),
    Row("4 pack Inf pixel", lambda e, s: ["pack", str(e / "edited/inf_image"), "-o", str(s / "p.sldp")], 2,
        ("NaN or infinite",), absent="p.sldp"),
    Row("4 pack unknown arch", lambda e, s: ["pack", str(e / "edited/unknown_arch"), "-o", str(s / "p.sldp")], 2,
        ("unknown architecture id",), absent="p.sldp"),
    # 5. single-class data; labels outside the file's label space
    Row("5 distill one class", lambda e, s: ["distill", "--data", str(e / "one_class.npz"), "--out", str(s / "r"),
                                             *TINY], 2, ("at least two classes",), absent="r"),
    Row("5 train one class", lambda e, s: ["train", "--data", str(e / "one_class.npz"), "--steps", "1", "-q"], 2,
        ("at least two classes",)),
    Row("5 eval labels outside", lambda e, s: ["eval", str(e / "run/distilled.sldp"), "--data",
                                               str(e / "three_classes.npz"), "--split", "train", "-q"], 2,
        ("outside the file's label space",)),
    # 6. labels.csv without rows for some images
    Row("6 folder unlisted images", lambda e, s: ["train", "--data", str(e / "folder"), "--steps", "1", "-q",
                                                  "--eval-split", "none"], 2, ("2 image file(s)", "--unlabelled skip")),
    # 7. OSError: one line naming the path and the cause, exit 2
    Row("7 OSError", lambda e, s: ["replay", str(e / "run/distilled.sldp"), "-o",
                                   str(e / "not_a_dir/m.safetensors")], 2, ("I/O error on", "not_a_dir")),
    # 8. numeric options validated the same way everywhere
    Row("8 replay --threads 0", lambda e, s: ["replay", str(e / "run/distilled.sldp"), "-o", str(s / "m.st"),
                                              "--threads", "0"], 2, ("--threads",), absent="m.st"),
    Row("8 train --threads 0", lambda e, s: ["train", "--data", str(e / "toy.npz"), "--threads", "0"], 2,
        ("--threads",)),
    Row("8 distill --steps 0", lambda e, s: ["distill", "--data", str(e / "toy.npz"), "--out", str(s / "r"),
                                             "--steps", "0"], 2, ("--steps",), absent="r"),
    Row("8 eval --chunk 0", lambda e, s: ["eval", str(e / "run/distilled.sldp"), "--data", str(e / "toy.npz"),
                                          "--chunk", "0"], 2, ("--chunk",)),
    Row("8 demo --train-fraction 1.5", lambda e, s: ["demo", "--fast", "--out", str(s / "d"),
                                                     "--train-fraction", "1.5"], 2, ("--train-fraction",),
        absent="d"),
    # 10. channels-last images are read as such (distill and train accept them)
    Row("10 distill channels-last", lambda e, s: ["distill", "--data", str(e / "channels_last.npz"), "--out",
                                                  str(s / "r"), "--iterations", "1", *TINY], 0, ()),
    Row("10 train channels-last", lambda e, s: ["train", "--data", str(e / "channels_last.npz"), "--steps", "1",
                                                "-q", "--arch-option", "depth=2", "--arch-option", "width=8"], 0, ()),
    # 11. non-finite data and options up front
    Row("11 NaN pixels", lambda e, s: ["distill", "--data", str(e / "nan.npz"), "--out", str(s / "r"), *TINY], 2,
        ("2 pixel(s) are NaN or infinite", "(3, 2, 1)"), absent="r"),
    Row("11 --lrs-lr nan", lambda e, s: ["distill", "--data", str(e / "toy.npz"), "--out", str(s / "r"),
                                         "--lrs-lr", "nan"], 2, ("--lrs-lr", "not a finite number"), absent="r"),
    # 12. missing key named; not an npz
    Row("12 missing labels key", lambda e, s: ["distill", "--data", str(e / "no_labels.npz"), "--out", str(s / "r")],
        2, ("train_labels",), absent="r"),
    Row("12 text file", lambda e, s: ["train", "--data", str(e / "text.npz")], 2, ("not an .npz",)),
    # 13. learning rates checked like --lr
    Row("13 --inner-lr 0", lambda e, s: ["distill", "--data", str(e / "toy.npz"), "--out", str(s / "r"),
                                         "--inner-lr", "0"], 2, ("--inner-lr",), absent="r"),
    Row("13 --inner-lr -0.1", lambda e, s: ["distill", "--data", str(e / "toy.npz"), "--out", str(s / "r"),
                                            "--inner-lr", "-0.1"], 2, ("--inner-lr",), absent="r"),
    Row("13 --label-lr -1", lambda e, s: ["distill", "--data", str(e / "toy.npz"), "--out", str(s / "r"),
                                          "--label-lr", "-1"], 2, ("--label-lr",), absent="r"),
    # 14. one image dtype rule in every command
    Row("14 distill int16", lambda e, s: ["distill", "--data", str(e / "int16.npz"), "--out", str(s / "r")], 2,
        ("dtype int16",), absent="r"),
    Row("14 train int16", lambda e, s: ["train", "--data", str(e / "int16.npz")], 2, ("dtype int16",)),
    Row("14 eval int16", lambda e, s: ["eval", str(e / "run/distilled.sldp"), "--data", str(e / "int16.npz")], 2,
        ("dtype int16",)),
    Row("14 audit int16", lambda e, s: ["audit", str(e / "run/distilled.sldp"), "--data", str(e / "int16.npz"),
                                        "--no-sheet"], 2, ("dtype int16",)),
    # 15. audit: no up-sampling; float data in 0..255 detected
    Row("15 audit 2x2 real", lambda e, s: ["audit", str(e / "run/distilled.sldp"), "--data",
                                           str(e / "tiny_real.npz"), "--no-sheet"], 2, ("does not up-sample",)),
    Row("15 audit float 0..255", lambda e, s: ["audit", str(e / "run/distilled.sldp"), "--data",
                                               str(e / "float255.npz"), "--no-sheet"], 2, ("0..255",)),
    # 16. a patch model's audit uses the file's patch geometry (and needs masks to cut them)
    Row("16 audit patch model without masks", lambda e, s: ["audit", str(e / "demo/demo.sldp"), "--data",
                                                            str(e / "toy.npz"), "--no-sheet"], 2,
        ("is a patch model", "organ masks")),
    # 17. messages
    Row("17 train --eval-split nosuch", lambda e, s: ["train", "--data", str(e / "toy.npz"), "--eval-split",
                                                      "nosuch"], 2, ("--eval-split 'nosuch'",)),
]
ROWS += [
    # issue 24, 1: a command writes only into an empty or new folder, or its own run (resume)
    Row("24.1 distill --out a user's folder", lambda e, s: ["distill", "--data", str(e / "toy.npz"), "--out",
                                                            str(e / "userdir"), *TINY], 2,
        ("is not empty", "notes.txt")),
    Row("24.1 distill --out a finished run without checkpoint",
        lambda e, s: ["distill", "--data", str(e / "toy.npz"), "--out", str(e / "run_nock"), *TINY], 2,
        ("holds an earlier run", "distilled.sldp")),
    Row("24.1 distill --out a run, no --resume", lambda e, s: ["distill", "--data", str(e / "toy.npz"), "--out",
                                                              str(e / "run"), *TINY], 2,
        ("already holds a run", "--resume")),
    Row("24.1 demo --out a user's folder", lambda e, s: ["demo", "--fast", "--out", str(e / "userdir"), "-q"], 2,
        ("did not write", "notes.txt")),
    Row("24.1 demo --out summary.json + model", lambda e, s: ["demo", "--fast", "--out", str(e / "user_demo"),
                                                             "-q"], 2, ("no demo run", "summary.json")),
    # issue 24, 4: a replay that fails the file's fingerprint leaves no checkpoint
    Row("24.4 replay failing its fingerprint", lambda e, s: ["replay", str(e / "bad_fp.sldp"), "-o",
                                                            str(s / "m.st")], 1, ("m.st not written",),
        absent="m.st"),
]
ROWS += [
    # issue 24, 7: malformed inputs that crashed (exit 3) are bad input, named
    Row("24.7 labels.csv label 10**30", lambda e, s: ["train", "--data", str(e / "big_label"), "-q", "--eval-split",
                                                      "none"], 2, ("labels.csv: line 2", "larger than 65535")),
    Row("24.7 store with a negative label", lambda e, s: ["data", "info", str(e / "neg_store")], 2,
        ("labels.npy: label -3 of image 1",)),
    Row("24.7 --resume run.json {broken", lambda e, s: ["distill", "--data", str(e / "toy.npz"), "--out",
                                                        str(e / "broken_json"), "--resume", "-q"], 2,
        ("run.json is not the run.json",)),
    Row("24.7 --resume run.json []", lambda e, s: ["distill", "--data", str(e / "toy.npz"), "--out",
                                                   str(e / "list_json"), "--resume", "-q"], 2,
        ("run.json is not the run.json", "no 'config' object")),
    Row("24.7 --resume empty checkpoint.pt", lambda e, s: ["distill", "--data", str(e / "toy.npz"), "--out",
                                                           str(e / "empty_ckpt"), "--resume", "-q"], 2,
        ("checkpoint.pt: an empty file",)),
    Row("24.7 --resume garbage checkpoint.pt", lambda e, s: ["distill", "--data", str(e / "toy.npz"), "--out",
                                                             str(e / "garbage_ckpt"), "--resume", "-q"], 2,
        ("checkpoint.pt: damaged or another kind of file",)),
]
ROWS += [
    Row("24 msg labels {0, 1000}", lambda e, s: ["distill", "--data", str(e / "label_gaps"), "--out", str(s / "r"),
                                                 *TINY], 2, ("labels {0, 1000} are not class indices 0..K-1",),
        absent="r"),
    # issue 24, 9: silent wrong results refused
    Row("24.9 train --resize on an npz", lambda e, s: ["train", "--data", str(e / "toy.npz"), "--resize", "16", "-q"],
        2, ("--resize resizes the images of a folder", "toy.npz is not a folder")),
    Row("24.9 --select val-hm, one-class held-out part",
        lambda e, s: ["distill", "--data", str(e / "one_class_val.npz"), "--out", str(s / "r"), "--select", "val-hm",
                      *TINY], 2, ("holds one class only",), absent="r"),
]
_bad_vr = _dicom_bad_vr()
if _bad_vr is not None:
    # 21. a malformed DICOM attribute is bad input, not a crash
    ROWS.append(Row("21 DICOM badVR", lambda e, s: ["eval", str(e / "run/distilled.sldp"), "--data", str(_bad_vr)],
                    2, ("badVR.dcm",)))


@pytest.mark.parametrize("row", ROWS, ids=[r.item for r in ROWS])
def test_bad_input(row: Row, env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = tree_hashes(env)
    argv = row.argv(env, tmp_path)
    if row.lock is not None:
        with held_lock(tmp_path / row.lock):
            code, out, err = run(argv, capsys)
    else:
        code, out, err = run(argv, capsys)
    assert code == row.code, (out, err)
    assert "Traceback" not in out + err
    if row.code != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, err  # one line naming the problem
        for text in row.says:
            assert text in lines[0], lines[0]
    if row.absent is not None:
        assert not (tmp_path / row.absent).exists()  # no half-made output, no empty run directory
    assert tree_hashes(env) == before  # inputs and earlier outputs byte-identical


def test_unlabelled_skip_counts_what_was_left_out(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(["train", "--data", str(env / "folder"), "--steps", "1", "--eval-split", "none",
                          "--unlabelled", "skip", "--arch-option", "depth=2", "--arch-option", "width=8"], capsys)
    assert code == 0, err
    assert "2 image(s) without a labels.csv row left out" in err


def test_audit_of_a_patch_model_uses_the_file_geometry(env: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # the demo distilled 16 px patches of a 64 px phantom (10 images, seed 0): the audit cuts exactly those
    code, out, err = run(["audit", str(env / "demo/demo.sldp"), "--phantom", "10", "--phantom-size", "64",
                          "--no-sheet", "--real-sample", "40"], capsys)
    assert code in (0, 1), err
    assert "patches as distilled (the file's geometry): 16 px windows, stride 8" in out
    assert "Traceback" not in out + err


def test_report_vs_a_larger_file_never_says_0x(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 10)
    code, out, err = run(["report", str(env / "run/distilled.sldp"), "--vs", str(small)], capsys)
    assert code == 0, err
    assert "x larger" in out
    assert "0x smaller" not in out


def test_one_full_checkpoint_definition(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 18. sldp report and sldp train --save give the same full-checkpoint bytes for the same network
    code, out, err = run(["train", "--data", str(env / "toy.npz"), "--steps", "1", "--arch-option", "depth=2",
                          "--arch-option", "width=8", "--save", str(tmp_path / "m.safetensors"), "--json",
                          "--eval-split", "none"], capsys)
    assert code == 0, err
    trained = json.loads(out)
    code, out, err = run(["report", str(env / "run/distilled.sldp"), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["checkpoint"]["bytes"] == trained["checkpoint_bytes"]
    assert trained["saved_bytes"] > trained["checkpoint_bytes"]  # the file adds its header, not counted


def test_interrupt_prints_the_resume_command_and_resume_does_not_repeat_log_lines(
        env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from sldpack.cli.common import ProgressPrinter

    def ctrl_c_at_3(self: ProgressPrinter, p: object) -> None:
        if getattr(p, "iteration", 0) == 3:
            raise KeyboardInterrupt

    out_dir = tmp_path / "r"
    args = ["distill", "--data", str(env / "toy.npz"), "--out", str(out_dir), *TINY]
    monkeypatch.setattr(ProgressPrinter, "from_distill", ctrl_c_at_3)
    code, _, err = run([*args, "--iterations", "5", "--checkpoint-every", "2"], capsys)
    assert code == 130
    assert "Traceback" not in err and "aborted" not in err
    assert f"--out {out_dir} --resume" in err
    monkeypatch.undo()
    code, _out, err = run(["distill", "--data", str(env / "toy.npz"), "--out", str(out_dir), "--resume", "-q"],
                         capsys)
    assert code == 0, err
    records = [json.loads(x) for x in (out_dir / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2, 3, 4, 5]


def test_internal_error_is_one_line_unless_asked(env: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import sldpack.pipelines.report as report

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(report, "byte_report", boom)
    monkeypatch.delenv("SLDP_TRACEBACK", raising=False)
    code, _, err = run(["report", str(env / "run/distilled.sldp")], capsys)
    assert code == 3
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "SLDP_TRACEBACK=1" in err
    monkeypatch.setenv("SLDP_TRACEBACK", "1")
    code, _out, err = run(["report", str(env / "run/distilled.sldp")], capsys)
    assert code == 3
    assert "Traceback" in err


def test_no_lock_file_is_left_after_success(env: Path) -> None:
    # issue 24, 1: the run directories of the distill run and the demo that built the fixture
    assert not (env / "run" / ".sldp.lock").exists()
    assert not (env / "demo" / ".sldp.lock").exists()


def test_a_run_stopped_before_its_first_checkpoint_starts_again_with_a_fresh_log(
        env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    out.mkdir()
    (out / "run.json").write_text("{}")
    (out / "log.jsonl").write_text('{"event": "start", "iteration": 0}\n{"iteration": 1, "loss": 9.0}\n')
    code, _out, err = run(["distill", "--data", str(env / "toy.npz"), "--out", str(out), "--iterations", "2",
                           *TINY], capsys)
    assert code == 0, err
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2]  # one run's lines, not two
    assert all(r.get("loss") != 9.0 for r in records)


def _commands() -> Iterator[tuple[str, click.Command]]:
    from sldpack.cli.main import cli

    ctx = click.Context(cli)

    def walk(cmd: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                yield from walk(sub, f"{path} {name}".strip())
        else:
            yield path, cmd

    yield from walk(cli, "")


HOSTILE = ("0", "-1", "nan", "inf", "-inf", "1e300", str(2**63))


def test_every_numeric_option_has_a_finite_range_checked_at_parse(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 24, 6: every numeric option of every command, fed 0, -1, NaN, +-Inf, 1e300 and 2**63, is refused
    while the command line is parsed (exit 2, one line naming the option) or lands inside the option's
    finite range: never a value no check bounds, so never an overflow or allocation later (exit 3)."""
    checked = 0
    for path, cmd in _commands():
        for param in cmd.params:
            if not isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                continue
            lo, hi = getattr(param.type, "min", None), getattr(param.type, "max", None)
            where = f"sldp {path} {param.opts[0]}"
            assert lo is not None and hi is not None, f"{where}: no finite range"
            assert math.isfinite(lo) and math.isfinite(hi), where
            for text in HOSTILE:
                ctx = click.Context(cmd)
                try:
                    value = param.type.convert(text, param, ctx)
                except click.BadParameter:
                    # the same value on the command line: exit 2 with one line naming the option
                    argv = [*path.split(), param.opts[0], *([text] * param.nargs)]
                    code, _out, err = run(argv, capsys)
                    assert code == 2, (argv, err)
                    assert param.opts[0] in err or (param.name or "") in err, (argv, err)
                    assert "Traceback" not in err
                else:
                    assert math.isfinite(value) and lo <= value <= hi, (where, text, value)
                checked += 1
    assert checked > 500  # every command's numeric options were walked (about a hundred of them)


@pytest.mark.parametrize(("argv", "says"), [
    (["distill", "--lr", "1e300"], "--lr"), (["train", "--lr", "1e300"], "--lr"),
    (["distill", "--label-init", "1e308"], "--label-init"), (["conformance", "--timeout", "nan"], "--timeout"),
    (["conformance", "--timeout", "inf"], "--timeout"), (["study", "--target-hm", "nan"], "--target-hm"),
    (["study", "--target-hm", "-inf"], "--target-hm"), (["study", "--target-hm", "5"], "--target-hm"),
    (["replay", "x.sldp", "-o", "y", "--threads", "100000"], "--threads"),
    (["distill", "--val-fraction", "nan"], "--val-fraction"),
])
def test_numeric_options_of_issue_24_are_refused_up_front(argv: list[str], says: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(argv, capsys)
    assert code == 2 and says in err, err
    assert "Traceback" not in err


def test_study_seeds_and_k_are_checked_before_any_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, says in ((["--seeds", "-1"], "--seeds"), (["-M", "0"], "-M")):
        code, _out, err = run(["study", "--phantom", "12", "--out", str(tmp_path / "s"), *argv], capsys)
        assert code == 2 and says in err and "[" in err, err
        assert not (tmp_path / "s").exists()


def _forged_npz(path: Path, shape: tuple[int, ...]) -> Path:
    """A MedMNIST-style .npz whose images header claims ``shape`` (uint8) over 100 stored bytes."""
    import io
    import zipfile

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False, "shape": shape})
    labels = io.BytesIO()
    np.lib.format.write_array(labels, np.arange(60) % 2)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("train_images.npy", head.getvalue() + b"\0" * 100)
        z.writestr("train_labels.npy", labels.getvalue())
    return path


def test_every_claimed_size_is_bounded_before_allocation(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24, 5: sizes claimed by a file header or an option are checked against the memory budget (or
    the bytes the file holds) first: exit 2 naming what claims the size, with the estimate; nothing is
    allocated (the budget is 100 MB here, so every case would otherwise take seconds and gigabytes)."""
    monkeypatch.setenv("SLDP_MEMORY_BUDGET", "1e8")
    forged = _forged_npz(tmp_path / "forged.npz", (60, 20000, 20000))
    huge = _forged_npz(tmp_path / "huge.npz", (100000, 10000, 10000))
    overflow = _forged_npz(tmp_path / "overflow.npz", (2**62, 2**62, 16))
    honest = tmp_path / "honest.npz"  # 200 MB of zeros, a few hundred KB compressed
    np.savez_compressed(honest, train_images=np.zeros((200, 1000, 1000), np.uint8), train_labels=np.arange(200) % 2)
    cases = [
        (["train", "--data", str(forged), "-q"], ("'train_images'", "claims shape (60, 20000, 20000)")),
        (["data", "convert", str(forged), str(tmp_path / "st"), "--split", "train"], ("claims shape",)),
        (["train", "--data", str(huge), "-q"], ("claims shape (100000, 10000, 10000)",)),
        (["train", "--data", str(overflow), "-q"], ("claims shape",)),
        (["train", "--data", str(honest), "-q"], ("'train_images'", "needs about 200.0 MB", "100.0 MB available")),
        (["data", "convert", str(env / "folder"), str(tmp_path / "st"), "--size", "100000", "--unlabelled", "skip"],
         ("--size 100000", "needs about")),
        (["data", "convert", str(env / "toy.npz"), str(tmp_path / "st"), "--split", "train", "--size", "32"],
         ("--size resizes the images of a folder",)),
        (["train", "--phantom", "100000000", "-q"], ("phantom of 100000000 images", "needs about")),
        (["train", "--phantom", "10", "--phantom-size", "100000", "-q"], ("100000x100000 px", "needs about")),
        (["distill", "--data", str(env / "toy.npz"), "-M", "1000000000", "--out", str(tmp_path / "r"), "-q"],
         ("--images-per-class 1000000000", "needs about")),
        (["distill", "--data", str(env / "toy.npz"), "-K", "1000000000", "--out", str(tmp_path / "r"), "-q"],
         ("--batch-real 1000000000", "needs about")),
        (["train", "--data", str(env / "toy.npz"), "--batch-size", "1000000000", "-q"],
         ("batch of 1000000000 images", "--batch-size", "needs about")),
        (["replay", str(env / "run/distilled.sldp"), "-o", str(tmp_path / "m.st"), "--threads", "100000"],
         ("--threads",)),
    ]
    for argv, says in cases:
        code, out, err = run(argv, capsys)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1, (argv, out, err)
        for text in says:
            assert text in lines[0], (argv, lines[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forged.npz", "honest.npz", "huge.npz", "overflow.npz"]


def test_auto_selection_with_a_one_class_held_out_part_falls_back_to_best_and_says_why(
        env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # issue 24, 9: val-HM on one class is 0 for every iterate; the file held iteration 25 of 600 silently
    out = tmp_path / "r"
    args = [a for a in TINY if a != "-q"]
    code, _out, err = run(["distill", "--data", str(env / "one_class_val.npz"), "--out", str(out),
                           "--iterations", "2", *args], capsys)
    assert code == 0, err
    assert "selection: best" in err and "holds one class only (label 0)" in err
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["rule"] for r in records if r.get("event") == "select"] == ["best"]


def test_verify_replay_names_every_failing_check(env: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 24, 10: a failure that comes from a state-sketch tensor is reported as that tensor (name,
    deviation, tolerance), in the text and in --json, not as the probe logits."""
    with sldpack.open(env / "run" / "distilled.sldp") as f:
        m, arrays = f.manifest, f.arrays()
    assert m.replay is not None and m.replay.state_sketch is not None
    sketch = dict(m.replay.state_sketch)
    sketch["conv1.weight"] = tuple(v + 1.0 for v in sketch["conv1.weight"])
    bad = dataclasses.replace(m.replay, theta_opt_sha256="0" * 64, state_sketch=sketch)
    path = tmp_path / "bad_sketch.sldp"
    sldpack.write(path, dataclasses.replace(m, replay=bad), {n: sldpack.Tensor(t.role, arrays[n])
                                                             for n, t in m.tensors.items()})
    code, out, _err = run(["verify", str(path), "--replay"], capsys)
    assert code == 1
    assert "state tensor conv1.weight deviates by 1 > tolerance" in out and "probe logit" not in out, out
    code, out, _err = run(["verify", str(path), "--replay", "--json"], capsys)
    assert code == 1
    failures = json.loads(out)["replay"]["failures"]
    assert [(f["check"], f["tensor"]) for f in failures] == [("state_sketch", "conv1.weight")]
    assert failures[0]["deviation"] == pytest.approx(1.0, abs=1e-3)
    assert failures[0]["tolerance"] == pytest.approx(m.replay.state_tolerance["conv1.weight"])  # type: ignore[index]
    # probe logits off by 1 (env's bad_fp.sldp): named as the probe logits, with deviation and tolerance
    code, out, _err = run(["verify", str(env / "bad_fp.sldp"), "--replay", "--json"], capsys)
    assert code == 1
    failures = json.loads(out)["replay"]["failures"]
    assert failures[0]["check"] == "probe_logits" and failures[0]["tolerance"] == m.replay.tolerance


def test_unclear_messages_of_issue_24_name_the_cause(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24, the unclear-messages list: each case exits 2 (or 0) with a line that says what is wrong."""
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    dangling = tmp_path / "dangling.npz"
    os.symlink(tmp_path / "gone.npz", dangling)
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    empty_csv = tmp_path / "empty_csv"
    shutil.copytree(env / "folder", empty_csv)
    (empty_csv / "labels.csv").write_text("")
    for argv, says in (
            (["train", "--data", str(loop), "-q"], "symbolic link loop"),
            (["train", "--data", str(dangling), "-q"], "which does not exist"),
            (["train", "--data", str(fifo), "-q"], "a FIFO (named pipe)"),
            (["data", "convert", str(loop), str(tmp_path / "st")], "symbolic link loop"),
            (["data", "convert", str(fifo), str(tmp_path / "st"), "--split", "train"], "a FIFO (named pipe)"),
            (["train", "--data", str(empty_csv), "-q"], "labels.csv: empty file"),
            (["data", "convert", str(env / "toy.npz"), str(tmp_path / "st")], "choose its split (--split)")):
        code, _out, err = run(argv, capsys)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (argv, err)
    # report --vs of a file of the same size: not "1x smaller"
    same = tmp_path / "same.bin"
    same.write_bytes((env / "run" / "distilled.sldp").read_bytes())
    code, out, err = run(["report", str(env / "run" / "distilled.sldp"), "--vs", str(same)], capsys)
    assert code == 0 and "(the same size)" in out and "1x smaller" not in out, out + err
    # sign: the verify command it prints survives a shell (paths with spaces quoted)
    key = tmp_path / "my key.key"
    assert run(["keygen", str(key)], capsys)[0] == 0
    signed = tmp_path / "my file.sldp"
    signed.write_bytes((env / "run" / "distilled.sldp").read_bytes())
    code, out, err = run(["sign", str(signed), "--key", str(key)], capsys)
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("verify: "))
    import shlex

    words = shlex.split(line.removeprefix("verify: "))
    assert words[:3] == ["sldp", "verify", str(signed)] and words[-1] == str(key.with_suffix(".pub"))
    # study: Ctrl-C prints the command that resumes it
    import sldpack.pipelines.study_scheduler as scheduler

    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(scheduler, "run_study", interrupted)
    code, _out, err = run(["study", "--phantom", "12", "--out", str(tmp_path / "s")], capsys)
    assert code == 130 and "Resume with:" in err and f"--out {tmp_path / 's'}" in err, err


def test_a_killed_data_convert_leaves_no_temporary_for_the_rerun(env: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 24 (messages list): the temporary folder of a conversion killed by SIGKILL is removed by the next
    conversion to the same path (it carries the dead writer's host and pid, like atomic.py's files)."""
    import subprocess
    import sys

    from sldpack.atomic import temporary_path

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    left = temporary_path(tmp_path / "st")
    left = left.with_name(left.name.replace(f".{os.getpid()}.", f".{int(dead.stdout)}."))
    left.mkdir()
    (left / "images.npy").write_bytes(b"\0" * 1000)
    code, _out, err = run(["data", "convert", str(env / "toy.npz"), str(tmp_path / "st"), "--split", "train"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st"]


def test_conformance_without_a_folder_works_from_anywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 24 (messages list): `sldp conformance` found its corpus only from the repository root
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["conformance"], capsys)
    assert code == 0, err
    assert " passed, 0 failed" in out
