"""The viewer in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by
selenium loads the page that ``sldp view`` serves and checks what it shows against ``sldp inspect --json``
and the conformance index: a valid demo file, an invalid corpus file (manifest defect, digest defect), zstd
files (valid, and a bomb), a signed file, and a 64 MiB file whose load time is printed. The browser's
console must hold no error. Screenshots go to pytest's tmp_path (printed).

Skips with the reason when chromium, chromedriver or selenium is absent; ``.ci/run`` installs them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sldpack
from sldpack.cli.cmd_view import serve

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "spec" / "conformance"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra has it)")
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="chromium and chromedriver are not installed (apt-get install chromium "
                                       "chromium-driver; .ci/run does)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,1800"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_script_timeout(120)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("viewer-screenshots")
    print(f"\nviewer screenshots: {d}")
    return d


def _inspect(path: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "sldpack.cli.main", "inspect", "--json", str(path)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def _expected(name: str) -> dict[str, Any]:
    cases = json.loads((CORPUS / "index.json").read_text(encoding="utf-8"))["cases"]
    return next(c for c in cases if c["file"] == name)


def _show(driver: Any, url: str, shots: Path, shot: str, timeout: float = 120.0) -> float:
    """Load ``url``, wait until the page says it is done, save a screenshot; the seconds it took."""
    driver.get_log("browser")  # drop what earlier pages logged
    t0 = time.perf_counter()
    driver.get(url)
    while driver.execute_script("return document.body.dataset.state") != "done":
        assert time.perf_counter() - t0 < timeout, f"viewer still loading after {timeout} s"
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1200, min(max(height, 800), 6000))
    driver.save_screenshot(str(shots / f"{shot}.png"))
    driver.set_window_size(1200, 1800)
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors  # no uncaught exception, no failed request
    assert driver.find_elements("id", "internal-error") == []
    return seconds


def _text(driver: Any, css: str) -> str:
    return str(driver.find_element("css selector", css).text)


def _field(driver: Any, name: str) -> str:
    return _text(driver, f'[data-field="{name}"]')


def _demo(path: Path, images: int = 8, size: int = 16, compression: str = "none") -> Path:
    rng = np.random.default_rng(0)
    steps, epochs = 3, 2
    manifest = sldpack.Manifest(
        arch=sldpack.ArchSpec("convnet@1", in_channels=1, num_classes=3, image_size=(size, size),
                              batchnorm=True, options={"depth": 2, "width": 8}),
        init=sldpack.InitSpec(seed=12345, scheme="kaiming_uniform"),
        provenance=sldpack.Provenance(tool="viewer test", created="2026-12-03T00:00:00Z",
                                      command_line=("sldp", "distill", "--demo")),
        distill=sldpack.DistillSpec(method="sldd", steps=steps, epochs=epochs,
                                    schedule=tuple(tuple(range(i, images, steps)) for i in range(steps))),
        labels=sldpack.LabelSpec(names=("I", "N", "P")),
        preprocessing=sldpack.Preprocessing(mean=(0.5,), std=(0.25,), image_size=(size, size), channels=1),
        user={"model_card": "phantom demo, not for clinical use"},
    )
    tensors = {
        "images": sldpack.Tensor("images", rng.normal(0, 1, (images, 1, size, size)).astype(np.float32)),
        "labels": sldpack.Tensor("labels", rng.normal(0, 2, (images, 3)).astype(np.float32)),
        "lrs": sldpack.Tensor("lrs", np.linspace(0.01, 0.002, steps * epochs).astype(np.float32)),
        "bn.features.1.running_mean": sldpack.Tensor("bn_stats", np.zeros(8, np.float32)),
    }
    # zstd level 3: level 19 would spend a minute compressing 64 MiB of noise
    sldpack.write(path, manifest, tensors, compression=compression, level=3)
    return path


def test_demo_file_shows_what_inspect_shows(browser: Any, shots: Path, tmp_path: Path) -> None:
    demo = _demo(tmp_path / "demo.sldp")
    info = _inspect(demo)
    # end to end: the command itself serves the page
    proc = subprocess.Popen([sys.executable, "-m", "sldpack.cli.main", "view", "--no-browser", str(demo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:\d+/\S+", line)
        assert m, line
        seconds = _show(browser, m.group(0), shots, "demo")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"\nviewer load time, demo file ({info['file_size']} bytes): {seconds * 1000:.0f} ms wall, "
          f"{browser.execute_script('return document.body.dataset.loadMs')} ms in page")
    man = info["manifest"]
    assert _text(browser, "#verdict") == "VALID"
    assert _field(browser, "header.version") == f"{info['header']['version_major']}.{info['header']['version_minor']}"
    assert _field(browser, "header.manifest_sha256") == info["header"]["manifest_sha256"]
    assert _field(browser, "arch.id") == man["arch"]["id"]
    assert _field(browser, "init.seed") == str(man["init"]["seed"])
    assert _field(browser, "init.scheme") == man["init"]["scheme"]
    assert _field(browser, "distill.steps") == str(man["distill"]["steps"])
    assert _field(browser, "distill.epochs") == str(man["distill"]["epochs"])
    assert _field(browser, "provenance.tool") == man["provenance"]["tool"]
    assert _field(browser, "labels.names") == ", ".join(man["labels"]["names"])
    assert "yes" in _field(browser, "bn.mode") and "1 stored BN" in _field(browser, "bn.mode")
    assert _field(browser, "user.model_card") == man["user"]["model_card"]
    assert _field(browser, "provenance.audit") == "not recorded"
    rows = browser.find_elements("css selector", "#digests tr[data-digest]")
    assert {r.get_attribute("data-digest") for r in rows} == {"manifest_sha256", *man["tensors"]}
    assert {r.get_attribute("data-ok") for r in rows} == {"true"}
    canvases = browser.find_elements("css selector", "#montage canvas")
    assert len(canvases) == man["tensors"]["images"]["shape"][0]
    assert all("soft label: I " in (c.get_attribute("aria-label") or "") for c in canvases)
    assert len(browser.find_elements("css selector", "#lrs-table tbody tr")) == man["tensors"]["lrs"]["shape"][0]
    cells = browser.find_elements("css selector", "#bytes td[data-bytes]")
    stored = [int(td.get_attribute("data-bytes")) for td in cells]
    assert sum(stored) == info["file_size"]
    roles = {tr.get_attribute("data-part"): int(tr.find_element("css selector", "td[data-bytes]").get_attribute(
        "data-bytes")) for tr in browser.find_elements("css selector", "#bytes tr[data-part]")}
    assert roles["images"] == info["layout"]["tensor_bytes"]["images"]
    assert roles["index"] == info["layout"]["st_header_bytes"]
    assert roles["manifest"] == info["layout"]["manifest_bytes"]
    # keyboard: the file picker is reached with Tab from the top of the page
    from selenium.webdriver.common.keys import Keys

    browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
    body = browser.find_element("tag name", "body")
    reached = []
    for _ in range(6):
        body.send_keys(Keys.TAB) if not reached else browser.switch_to.active_element.send_keys(Keys.TAB)
        reached.append(browser.switch_to.active_element.get_attribute("id"))
        if reached[-1] == "file-input":
            break
    assert "file-input" in reached, reached


def test_invalid_manifest_shows_the_code_and_offset_inspect_reports(browser: Any, shots: Path) -> None:
    path = CORPUS / "invalid" / "schema_seed_negative.sldp"
    err = _inspect(path)["error"]
    server = serve(path)
    try:
        _show(browser, server.url, shots, "invalid-manifest")
    finally:
        server.close()
    assert _text(browser, "#verdict") == "INVALID"
    assert (_text(browser, "#error-code"), int(_text(browser, "#error-offset"))) == (err["code"], err["offset"])


@pytest.mark.parametrize("name", ["invalid/tensor_digest_mismatch.sldp", "invalid/zstd_bomb.sldp",
                                  "invalid/lr_nan.sldp"])
def test_payload_defects_show_the_index_code_and_offset(browser: Any, shots: Path, name: str) -> None:
    case = _expected(name)
    server = serve(CORPUS / name)
    try:
        _show(browser, server.url, shots, Path(name).stem)
    finally:
        server.close()
    assert _text(browser, "#verdict") == "INVALID"
    assert (_text(browser, "#error-code"), int(_text(browser, "#error-offset"))) == (case["code"], case["offset"])
    if name == "invalid/tensor_digest_mismatch.sldp":  # labels damaged: images shown, their soft labels not
        assert "soft labels not shown" in _text(browser, "#montage-note")
        assert browser.find_elements("css selector", "#montage .bars") == []
    bad = browser.find_elements("css selector", "#digests [data-error]")
    assert bad, "the digest table names no failing digest"
    assert (bad[0].get_attribute("data-error"), int(bad[0].get_attribute("data-offset"))) == (
        case["code"], case["offset"])


def test_zstd_file_is_valid_with_its_stored_digest(browser: Any, shots: Path) -> None:
    path = CORPUS / "valid" / "full_zstd.sldp"
    info = _inspect(path)
    server = serve(path)
    try:
        _show(browser, server.url, shots, "full-zstd")
    finally:
        server.close()
    assert _text(browser, "#verdict") == "VALID"
    assert _field(browser, "payload.compression") == "zstd" == info["layout"]["compression"]
    row = browser.find_element("css selector", '#digests tr[data-digest="payload.stored_sha256"]')
    assert row.get_attribute("data-ok") == "true"
    assert _field(browser, "arch.id") == info["manifest"]["arch"]["id"]
    parts = {tr.get_attribute("data-part") for tr in browser.find_elements("css selector", "#bytes tr[data-part]")}
    assert "compressed payload" in parts


@pytest.mark.parametrize(("file", "expect"), [("signed.sldp", "SIGNED"), ("tampered.sldp", "file-changed")])
def test_signature_status(browser: Any, shots: Path, file: str, expect: str) -> None:
    root = CORPUS / "signing"
    server = serve(root / file, signature=root / "signed.sldp.sig", key=root / "signer.pub")
    try:
        _show(browser, server.url, shots, f"signature-{Path(file).stem}")
    finally:
        server.close()
    status = browser.find_element("id", "signature-status")
    if expect == "SIGNED":
        assert "SIGNED" in status.text and "NOT VERIFIED" not in status.text
    else:
        assert status.get_attribute("data-reason") == expect


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_64_mib_file_loads_and_its_time_is_printed(browser: Any, shots: Path, tmp_path: Path,
                                                   compression: str) -> None:
    path = tmp_path / "big.sldp"
    _demo(path, images=4096, size=64, compression=compression)  # 4096 x 64 x 64 float32 = 64 MiB of images
    decoded = 4096 * 64 * 64 * 4
    server = serve(path)
    try:
        seconds = _show(browser, server.url, shots, f"big-64mib-{compression}", timeout=170)
    finally:
        server.close()
    stall = float(browser.execute_script("return document.body.dataset.maxStallMs"))
    print(f"\nviewer load time, 64 MiB of images, {compression} ({path.stat().st_size / 2**20:.1f} MiB file): "
          f"{seconds * 1000:.0f} ms wall, {browser.execute_script('return document.body.dataset.loadMs')} ms in "
          f"page (download excluded); longest main-thread stall {stall:.0f} ms")
    assert path.stat().st_size >= decoded * 0.8
    assert _text(browser, "#verdict") == "VALID"
    assert len(browser.find_elements("css selector", "#montage canvas")) == 48  # drawn; the rest counted
    # the page stays responsive: reads are chunked, hashing is asynchronous and decompression pauses every
    # MiB of input (a generous bound: CI machines are slow and shared; a frozen tab stalls for the whole load)
    assert stall < 5000
