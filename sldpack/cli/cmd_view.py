"""``sldp view FILE``: the browser viewer (``viewer/`` over the JavaScript reader ``js/``) on 127.0.0.1.

The page reads and checks the file itself (sldp-js, spec/SLDP-1.md section 12); this command only serves
three things to the local machine: the page, the reader's modules, and the one file (plus, when given,
its signature and public key). It binds 127.0.0.1 on an ephemeral port, prints the URL, opens a browser
unless ``--no-browser``, and serves until Ctrl-C. Torch-free; standard library only.

Where the page comes from: an installed wheel carries ``viewer/`` and ``js/`` as ``sldpack/_web/``
(copied by ``setup.py``'s build step); an editable install or a checkout serves them from the repository
root. :func:`web_root` decides.
"""

from __future__ import annotations

import contextlib
import http.server
import mimetypes
import os
import shutil
import sys
import threading
import urllib.parse
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from sldpack.cli.exit_codes import EXIT_BAD_INPUT, EXIT_INTERRUPTED

__all__ = ["ViewServer", "serve", "view_cmd", "web_root"]

_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_SERVED_DIRS = ("viewer", "js/src", "js/vendor")  # nothing else of the web root is served


def web_root() -> Path:
    """The folder holding ``viewer/`` and ``js/``: the installed copy, else the repository checkout.

    Raises:
        click.ClickException: neither has the viewer (a broken install).
    """
    pkg = Path(__file__).resolve().parents[1]
    for root in (pkg / "_web", pkg.parent):
        if (root / "viewer" / "index.html").is_file() and (root / "js" / "src" / "index.js").is_file():
            return root
    raise click.ClickException(f"the viewer's files are missing (looked in {pkg / '_web'} and {pkg.parent}); "
                               "reinstall sldpack")


@dataclass
class ViewServer:
    """A running viewer server: ``url`` opens the page on the file; :meth:`close` stops it."""

    httpd: http.server.ThreadingHTTPServer
    url: str
    thread: threading.Thread = field(repr=False)

    def close(self) -> None:
        """Stop serving and release the port."""
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(file: str | os.PathLike[str], *, signature: str | os.PathLike[str] | None = None,
          key: str | os.PathLike[str] | None = None, checkpoint_bytes: int | None = None,
          host: str = "127.0.0.1", port: int = 0) -> ViewServer:
    """Serve the viewer and ``file`` (and its signature and key) on ``host``:``port`` in a background thread.

    Args:
        file: the ``.sldp`` file to show.
        signature: its detached signature (``.sig``), optional.
        key: the signer's public key (PEM), optional.
        checkpoint_bytes: the full checkpoint's size, for the compression rate (``sldp report`` computes it).
        host: the interface; the default keeps everything on this machine.
        port: 0 for an ephemeral port.

    Returns:
        The :class:`ViewServer`; its ``url`` opens the page on the file.
    """
    root = web_root()
    files: dict[str, Path] = {}
    for kind, p in (("file", file), ("sig", signature), ("key", key)):
        if p is not None:
            files[f"/{kind}/{urllib.parse.quote(Path(p).name)}"] = Path(p)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # a local viewer: no access log on the terminal

        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            if path in files:
                self._send(files[path], "application/octet-stream")
                return
            target = (root / path.lstrip("/")).resolve()
            allowed = any(target.is_relative_to((root / d).resolve()) for d in _SERVED_DIRS)
            if allowed and target.is_file():
                ctype = _CONTENT_TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0]
                self._send(target, ctype or "application/octet-stream")
            else:
                self.send_error(404, "not served")

        def _send(self, p: Path, ctype: str) -> None:
            try:
                fh = p.open("rb")
            except OSError as exc:
                self.send_error(404, f"cannot read {p.name}: {exc.strerror or exc}")
                return
            with fh:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(os.fstat(fh.fileno()).st_size))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the page went away
                    shutil.copyfileobj(fh, self.wfile, 1 << 20)

    httpd = http.server.ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    base = f"http://{host}:{httpd.server_address[1]}"
    query = {kind: name for name, kind in ((n, n.split("/")[1]) for n in files)}
    params = {"url": query["file"]}
    if "sig" in query and "key" in query:
        params.update(sig=query["sig"], key=query["key"])
    if checkpoint_bytes:
        params["checkpoint"] = str(checkpoint_bytes)
    url = f"{base}/viewer/index.html?{urllib.parse.urlencode(params)}"
    thread = threading.Thread(target=httpd.serve_forever, name="sldp-view", daemon=True)
    thread.start()
    return ViewServer(httpd=httpd, url=url, thread=thread)


@click.command("view")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--signature", type=click.Path(dir_okay=False), default=None,
              help="A detached signature of FILE (.sig): the page checks it with --key.")
@click.option("--key", type=click.Path(dir_okay=False), default=None, help="The signer's public key (PEM).")
@click.option("--checkpoint-bytes", type=click.IntRange(min=1, max=2**63 - 1), default=None,
              help="Size of the full checkpoint, for the compression rate (sldp report prints it).")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--no-browser", is_flag=True, help="Print the URL only; do not open a browser.")
def view_cmd(file: str, signature: str | None, key: str | None, checkpoint_bytes: int | None, port: int,
             no_browser: bool) -> None:
    """Show FILE in the browser viewer: verdict of every digest, manifest, images with their soft labels,
    learned step sizes, bytes per role (and the signature with --signature and --key).

    Serves the page and FILE on 127.0.0.1 only (nothing is uploaded anywhere; the page reads the file with
    the JavaScript reader) until Ctrl-C. Exit code 2 when FILE (or --signature/--key) cannot be read.
    """
    for what, p in (("FILE", file), ("--signature", signature), ("--key", key)):
        if p is not None and not os.access(p, os.R_OK):
            click.echo(f"sldp view: error: {what} {p}: not found or not readable", err=True)
            sys.exit(EXIT_BAD_INPUT)
    if (signature is None) != (key is None):
        click.echo("sldp view: error: --signature and --key go together", err=True)
        sys.exit(EXIT_BAD_INPUT)
    try:
        server = serve(file, signature=signature, key=key, checkpoint_bytes=checkpoint_bytes, port=port)
    except OSError as exc:
        click.echo(f"sldp view: error: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(f"sldp view: serving {file} at {server.url}", err=False)
    click.echo("sldp view: press Ctrl-C to stop", err=True)
    sys.stdout.flush()
    if not no_browser:
        webbrowser.open(server.url)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.close()
        click.echo("sldp view: stopped", err=True)
        sys.exit(EXIT_INTERRUPTED)
