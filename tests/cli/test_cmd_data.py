"""``sldp data convert`` / ``sldp data info``: a store that opens, and one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from sldpack.cli.main import main
from sldpack.medical import make_phantom
from sldpack.medical.store import open_store


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return (0 if code is None else int(str(code))), out.out, out.err


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = make_phantom(6, size=48, seed=1).to_image_set()
    root = tmp_path / "imgs"
    (root / "masks").mkdir(parents=True)
    rows = ["name,label"]
    for i in range(len(data)):
        Image.fromarray(data.images[i]).save(root / f"a{i}.png")
        Image.fromarray(data.masks[i] * 255).save(root / "masks" / f"a{i}.png")  # type: ignore[index]
        rows.append(f"a{i},{int(data.labels[i])}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_convert_and_info(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["data", "convert", str(folder), str(tmp_path / "st"), "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["count"] == 6 and doc["height"] == 48 and doc["masks"] is True
    assert open_store(tmp_path / "st").names == tuple(f"a{i}.png" for i in range(6))
    code, out, err = _run(["data", "info", str(tmp_path / "st")], capsys)
    assert code == 0 and "6 images of 48x48 px, with masks" in out and f"{6 * 48 * 48 * 2:,} bytes" in out
    code, out, _ = _run(["data", "convert", str(folder), str(tmp_path / "st2"), "--size", "24"], capsys)
    assert code == 0 and "6 images of 24x24 px" in out


@pytest.mark.parametrize("case", ["missing", "not_npz", "bad_npz", "exists", "size", "split", "info", "bad_csv",
                                  "bad_image"])
def test_bad_input_is_one_line_exit_2(case: str, folder: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    argv = {
        "missing": ["data", "convert", str(tmp_path / "nope"), out],
        "not_npz": ["data", "convert", str(folder / "labels.csv"), out],
        "bad_npz": ["data", "convert", str(tmp_path / "bad.npz"), out],
        "exists": ["data", "convert", str(folder), str(folder)],
        "size": ["data", "convert", str(folder), out, "--size", "0"],
        "split": ["data", "convert", str(folder), out, "--split", "train"],
        "info": ["data", "info", str(folder)],
        "bad_csv": ["data", "convert", str(folder), out],
        "bad_image": ["data", "convert", str(folder), out],
    }[case]
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    if case == "bad_csv":
        (folder / "labels.csv").write_text("name,label\na0,zero\n")
    if case == "bad_image":
        (folder / "a3.png").write_bytes(b"\x89PNG broken")
    code, _, err = _run(argv, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no half-written temp folder
    if case == "bad_image":
        assert "a3.png" in err
