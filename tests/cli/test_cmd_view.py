"""``sldp view``: the local server (no browser needed here; tests/cli/test_view_browser.py drives one)."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from sldpack.cli.cmd_view import serve, web_root
from sldpack.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
FULL = ROOT / "spec" / "conformance" / "valid" / "full.sldp"


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, b"", ""


def test_serves_page_modules_and_the_one_file_on_localhost_only() -> None:
    server = serve(FULL)
    try:
        parts = urllib.parse.urlsplit(server.url)
        assert parts.hostname == "127.0.0.1" and parts.port not in (None, 0)
        assert urllib.parse.parse_qs(parts.query)["url"] == ["/file/full.sldp"]
        base = f"{parts.scheme}://{parts.netloc}"
        status, body, ctype = _get(server.url)
        assert status == 200 and b"SLDP viewer" in body and ctype.startswith("text/html")
        status, body, ctype = _get(base + "/js/src/index.js")
        assert status == 200 and b"openSldp" in body and ctype.startswith("text/javascript")
        assert _get(base + "/js/vendor/fzstd.mjs")[0] == 200
        status, body, _ = _get(base + "/file/full.sldp")
        assert (status, body) == (200, FULL.read_bytes())
        for path in ("/file/other.sldp", "/sldpack/__init__.py", "/viewer/../setup.py", "/js/package.json", "/"):
            assert _get(base + path)[0] == 404, path
    finally:
        server.close()


def test_signature_and_key_are_passed_to_the_page() -> None:
    sig = ROOT / "spec" / "conformance" / "signing"
    server = serve(sig / "signed.sldp", signature=sig / "signed.sldp.sig", key=sig / "signer.pub",
                   checkpoint_bytes=1234)
    try:
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(server.url).query)
        assert q == {"url": ["/file/signed.sldp"], "sig": ["/sig/signed.sldp.sig"], "key": ["/key/signer.pub"],
                     "checkpoint": ["1234"]}
        base = server.url.split("/viewer/")[0]
        assert _get(base + "/key/signer.pub")[1] == (sig / "signer.pub").read_bytes()
    finally:
        server.close()


def test_web_root_has_the_viewer_and_the_reader() -> None:
    root = web_root()
    assert (root / "viewer" / "index.html").is_file() and (root / "js" / "src" / "reader.js").is_file()


@pytest.mark.parametrize("args", [["missing.sldp"], [str(FULL), "--signature", str(FULL)]])
def test_bad_arguments_exit_2(args: list[str]) -> None:
    res = CliRunner().invoke(cli, ["view", "--no-browser", *args])
    assert res.exit_code == 2, res.output
    assert "sldp view: error:" in res.output
