"""``sldp inspect``, ``sldp verify`` and ``sldp conformance``: the torch-free container commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

import sldpack
from sldpack.cli.common import format_bytes
from sldpack.cli.exit_codes import EXIT_BAD_INPUT, EXIT_OK, EXIT_VERIFY_FAILED, exit_code_for
from sldpack.cli.options import COUNT, number
from sldpack.errors import FormatError, SldpError
from sldpack.format.conformance import ReaderOptions, jsonable, run_corpus, run_external

_R = TypeVar("_R")

__all__ = ["conformance_cmd", "inspect_cmd", "verify_cmd"]


def _summary_rows(f: sldpack.SldpFile) -> list[tuple[str, str]]:
    m = f.manifest
    rows = [
        ("file", f"{f.path}  ({f.file_size} bytes, {format_bytes(f.file_size)})"),
        ("format", f"SLDP {f.header.version_major}.{f.header.version_minor}"),
        ("architecture", f"{m.arch.id}  in_channels={m.arch.in_channels} classes={m.arch.num_classes} "
                         f"input={m.arch.image_size[0]}x{m.arch.image_size[1]} batchnorm={m.arch.batchnorm}"
                         + (f" options={dict(m.arch.options)}" if m.arch.options else "")),
        ("init", f"seed={m.init.seed} scheme={m.init.scheme} rng={m.init.rng}"
                 + (f" theta0 digests={len(m.init.theta0_sha256)}" if m.init.theta0_sha256 else "")),
    ]
    if m.distill is not None:
        d = m.distill
        rows.append(("distill", f"method={d.method} steps={d.steps} epochs={d.epochs} "
                                f"(T={d.steps * d.epochs}) labels={d.label_transform} loss={d.loss}"))
    if m.labels is not None:
        rows.append(("labels", ", ".join(m.labels.names)))
    if m.preprocessing is not None:
        p = m.preprocessing
        rows.append(("preprocessing", f"{p.channels}x{p.image_size[0]}x{p.image_size[1]} mean={list(p.mean)} "
                                      f"std={list(p.std)}"))
    if m.decision is not None:
        rows.append(("decision", m.decision.describe()))
    if m.card is not None:
        from sldpack.pipelines.card import card_summary

        rows.append(("model card", f"{card_summary(m)}  (sldp card FILE)"))
    rows.append(("replay fingerprint", "absent" if m.replay is None else
                 f"theta_opt sha256 {m.replay.theta_opt_sha256[:16]}..  tolerance={m.replay.tolerance:g}"))
    prov = m.provenance
    rows.append(("provenance", f"{prov.tool}, created {prov.created}"
                 + (f", data set {prov.dataset_sha256[:16]}.." if prov.dataset_sha256 else "")))
    rows.extend(_provenance_rows(m))
    assert m.payload is not None
    rows.append(("payload", f"{m.payload.compression}, {m.payload.stored_size} bytes stored, "
                            f"{m.payload.decoded_size} decoded"))
    if m.user:
        rows.append(("user metadata", ", ".join(sorted(m.user))))
    return rows


def _provenance_rows(m: sldpack.Manifest) -> list[tuple[str, str]]:
    """The optional provenance fields (spec 5.3), one row each when present."""
    prov, rows = m.provenance, []
    if prov.training_data_sha256:
        rows.append(("training data", f"sha256 {prov.training_data_sha256}"))
    if prov.sldpack_version:
        rows.append(("made with", f"sldpack {prov.sldpack_version}"
                     + (f", distill config of {len(prov.distill_config)} settings" if prov.distill_config else "")))
    if prov.command_line:
        rows.append(("command line", " ".join(prov.command_line)))
    if prov.audit is not None:
        a = prov.audit
        bound = ("bound to these images" if a.binds(m.tensors)
                 else "STALE: the images changed since the audit (images sha256 differs)")
        rows.append(("privacy audit", f"{a.verdict}, report sha256 {a.report_sha256[:16]}.., {bound}"
                     + (f", {a.created}" if a.created else "")))
        if a.membership is not None:
            mem = a.membership
            names = {"distilled": "distilled file", "trained": "normally trained network"}
            parts = [f"{x.attack} on {names.get(x.target, x.target)}: AUC {x.auc:.3f} [{x.auc_low:.3f}, "
                     f"{x.auc_high:.3f}]" for x in mem.attacks]
            rows.append(("membership inference", f"{mem.verdict} (FLAG when an AUC's lower bound on the distilled "
                         f"file > {mem.flag_auc:g}); " + "; ".join(parts)))
    return rows


def _inspect_json(f: sldpack.SldpFile, stored: bool = False) -> dict[str, Any]:
    lay = f.layout()
    return {
        "path": f.path,
        "file_size": f.file_size,
        "header": {"version_major": f.header.version_major, "version_minor": f.header.version_minor,
                   "manifest_length": f.header.manifest_length, "payload_length": f.header.payload_length,
                   "manifest_sha256": f.header.manifest_sha256},
        "manifest": jsonable(f.stored_manifest() if stored else f.manifest.to_obj()),
        "manifest_view": "stored" if stored else "typed (defaults filled in)",
        "audit_bound": None if f.manifest.provenance.audit is None
        else f.manifest.provenance.audit.binds(f.manifest.tensors),
        "layout": {"header_bytes": lay.header_bytes, "manifest_bytes": lay.manifest_bytes,
                   "payload_stored_bytes": lay.payload_stored_bytes,
                   "payload_decoded_bytes": lay.payload_decoded_bytes, "st_header_bytes": lay.st_header_bytes,
                   "tensor_bytes": dict(lay.tensor_bytes), "compression": lay.compression},
    }


def _fail(exc: SldpError, as_json: bool, path: str) -> NoReturn:
    if as_json:
        payload: dict[str, Any] = {"path": path, "ok": False}
        payload["error"] = exc.to_dict() if isinstance(exc, FormatError) else {"message": str(exc)}
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(f"sldp: error: {exc}", err=True)
    sys.exit(exit_code_for(exc))


@click.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--stored", is_flag=True,
              help="Show the manifest exactly as stored (decoded msgpack, no defaults filled in), as JSON.")
def inspect_cmd(file: str, as_json: bool, stored: bool) -> None:
    """Show FILE's header, manifest and tensor table without reading the tensor payload.

    With --stored the manifest is printed exactly as the file stores it (msgpack bin as {"$bin": hex});
    without it, the typed view shows optional fields with their defaults (e.g. empty options).
    """
    try:
        with sldpack.open(file) as f:
            if as_json:
                click.echo(json.dumps(_inspect_json(f, stored), indent=2, sort_keys=True, ensure_ascii=False))
                return
            if stored:
                click.echo(json.dumps(jsonable(f.stored_manifest()), indent=2, sort_keys=True, ensure_ascii=False))
                return
            width = max(len(k) for k, _ in _summary_rows(f))
            for key, value in _summary_rows(f):
                click.echo(f"{key:<{width}}  {value}")
            click.echo("")
            click.echo(f"{'tensor':<28} {'role':<12} {'dtype':<5} {'shape':<20} {'bytes':>12}  sha256")
            for name, t in f.manifest.tensors.items():
                shape = "x".join(str(d) for d in t.shape) or "scalar"
                click.echo(f"{name:<28} {t.role:<12} {t.dtype:<5} {shape:<20} {t.nbytes:>12}  {t.sha256[:16]}..")
    except SldpError as exc:
        _fail(exc, as_json, file)


@click.command("verify")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--replay", "do_replay", is_flag=True,
              help="Also re-derive theta_opt (needs torch) and compare it with the stored fingerprint.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--signature", type=click.Path(dir_okay=False), default=None,
              help="Detached signature of FILE (from `sldp sign`) [default with --key/--trusted-keys: FILE.sig].")
@click.option("--key", "public_key", type=click.Path(dir_okay=False), default=None,
              help="The signer's public key (PEM): the signature must be by this key.")
@click.option("--trusted-keys", type=click.Path(file_okay=False), default=None,
              help="A folder of trusted public keys (*.pub, *.pem): the signature must be by one of them.")
@click.option("--acceptance", type=click.Path(dir_okay=False), default=None,
              help="An acceptance record of FILE (`sldp accept`): with --acceptance, --key/--trusted-keys check "
                   "the receiver's signature of the record (and FILE's own signature only when --signature is "
                   "given).")
def verify_cmd(file: str, do_replay: bool, as_json: bool, signature: str | None, public_key: str | None,
               trusted_keys: str | None, acceptance: str | None) -> None:
    """Check FILE's structure and every digest; with --replay, also re-derive the trained network;
    with --key or --trusted-keys, first check FILE's signature (annex SLDP-1-signing.md).

    Exit code 0: all checks passed; 1: a digest, the signature (missing, bad, another or an untrusted
    key, a changed byte) or the replay fingerprint did not match; 2: the file or a key is malformed or
    unreadable.
    """
    result: dict[str, Any] = {"path": file, "ok": True, "checks": []}
    if acceptance is not None:
        _check_acceptance(file, acceptance, public_key, trusted_keys, as_json, result)
        if signature is not None:
            _check_signature(file, signature, public_key, trusted_keys, as_json, result)
    else:
        _check_signature(file, signature, public_key, trusted_keys, as_json, result)
    try:
        with sldpack.open(file) as f:
            result["checks"].append({"check": "header+manifest", "ok": True})
            f.verify()
            result["checks"].append({"check": f"{len(f.manifest.tensors)} tensor digests", "ok": True})
            audit = f.manifest.provenance.audit
            if audit is not None:  # a recorded audit must be about these images, or it misleads
                bound = audit.binds(f.manifest.tensors)
                result["checks"].append({"check": f"audit record ({audit.verdict}) bound to the images", "ok": bound})
                result["ok"] = result["ok"] and bound
        if do_replay:
            from sldpack.nn.verify import verify_replay  # torch only when asked for

            rep = verify_replay(file)
            result["replay"] = rep.to_dict()
            result["checks"].append({"check": "replay", "ok": rep.ok, "status": rep.status})
            if not rep.ok:
                result["ok"] = False
    except SldpError as exc:
        _fail(exc, as_json, file)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        for c in result["checks"]:
            extra = f" ({c['status']})" if "status" in c else ""
            click.echo(f"{'ok  ' if c['ok'] else 'FAIL'} {c['check']}{extra}")
        if "replay" in result:
            click.echo(result["replay"].get("summary", ""))
        click.echo(f"{file}: {'verified' if result['ok'] else 'VERIFICATION FAILED'}")
    sys.exit(EXIT_OK if result["ok"] else EXIT_VERIFY_FAILED)


def _one_key_source(public_key: str | None, trusted_keys: str | None, needs: str) -> None:
    """``--key`` or ``--trusted-keys``, exactly one (``needs`` says what asked for a key)."""
    if public_key is None and trusted_keys is None:
        raise click.UsageError(f"{needs}: --key PUB or --trusted-keys DIR")
    if public_key is not None and trusted_keys is not None:
        raise click.UsageError("--key and --trusted-keys contradict each other: give one")


def _verified(file: str, what: str, as_json: bool, check: Callable[[], _R]) -> _R:
    """Run one signature check of ``verify``: a ``SignatureError`` is a failed verification (exit 1, with
    ``what`` named), any other library error the usual failure."""
    from sldpack.pipelines.signing import SignatureError  # cryptography only when asked for

    try:
        return check()
    except SignatureError as exc:
        if as_json:
            click.echo(json.dumps({"path": file, "ok": False, "error": exc.to_dict()}, indent=2))
        else:
            click.echo(f"FAIL {what}: {exc}", err=True)
            click.echo(f"{file}: VERIFICATION FAILED", err=True)
        sys.exit(EXIT_VERIFY_FAILED)
    except SldpError as exc:
        _fail(exc, as_json, file)


def _check_signature(file: str, signature: str | None, public_key: str | None, trusted_keys: str | None,
                     as_json: bool, result: dict[str, Any]) -> None:
    """The signature step of ``verify`` (before the structure: authenticity first); exits on failure."""
    if public_key is None and trusted_keys is None:
        if signature is not None:
            raise click.UsageError("--signature needs the signer's key: --key PUB or --trusted-keys DIR")
        return
    _one_key_source(public_key, trusted_keys, "--signature needs the signer's key")
    from sldpack.pipelines.signing import verify_file

    rep = _verified(file, "signature", as_json,
                    lambda: verify_file(file, signature, public_key=public_key, trusted_keys=trusted_keys))
    result["signature"] = rep.to_dict()
    result["checks"].append({"check": f"signature (key id {rep.key_id[:16]}.., {rep.key_source})", "ok": True})


def _check_acceptance(file: str, acceptance: str, public_key: str | None, trusted_keys: str | None,
                      as_json: bool, result: dict[str, Any]) -> None:
    """The acceptance-record step of ``verify`` (``sldpack.pipelines.acceptance``); exits on failure."""
    _one_key_source(public_key, trusted_keys, "--acceptance needs the receiver's key")
    from sldpack.pipelines.acceptance import verify_acceptance

    rep = _verified(file, "acceptance record", as_json,
                    lambda: verify_acceptance(file, acceptance, public_key=public_key, trusted_keys=trusted_keys))
    result["acceptance"] = rep.to_dict()
    result["checks"].append({"check": f"acceptance record {acceptance} (key id {rep.key_id[:16]}.., "
                                      f"{rep.key_source}): {rep.summary()}", "ok": True})


@click.command("conformance")
@click.argument("corpus", type=click.Path(file_okay=False), required=False, default=None)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--reader", metavar="'CMD {file}'",
              help="Judge an external reader instead of this one: run CMD per case with {file} replaced by the "
                   "case's path; it prints one JSON verdict line (protocol: spec/conformance/README.md).")
@click.option("--timeout", type=number(0.1, 86400.0), default=10.0, show_default=True,
              help="Seconds per case for --reader; a reader still running has failed the case.")
@click.option("--jobs", type=COUNT, default=1, show_default=True,
              help="With --reader: cases run at the same time.")
@click.option("--codes-only", is_flag=True, help="With --reader: compare verdict and code, not the byte offset.")
@click.option("--select", "select", multiple=True, metavar="GLOB",
              help="With --reader: only the cases whose file matches GLOB (repeatable), e.g. 'invalid/zstd_*'.")
@click.option("--codes", metavar="E_A,E_B", default="",
              help="With --reader: only the invalid cases expecting one of these codes (plus every valid case), "
                   "for a reader that implements part of the spec.")
def conformance_cmd(corpus: str | None, as_json: bool, reader: str | None, timeout: float, jobs: int, codes_only: bool,
                    select: tuple[str, ...], codes: str) -> None:
    """Run a reader over a conformance CORPUS (a folder with index.json) and print a pass/fail table.

    Without --reader: this package's reader, exact code and offset required. Exit code 0: every case
    passed; 1: a case failed; 2: not a corpus, or a bad --reader command. Without CORPUS: spec/conformance
    of the current folder, else of the source tree this sldpack was installed from.
    """
    if corpus is None:
        import sldpack

        # from any folder, not only the repository root: the checkout this package runs from
        places = [Path("spec/conformance"), Path(sldpack.__file__).resolve().parents[1] / "spec" / "conformance"]
        found = next((p for p in places if (p / "index.json").is_file()), None)
        if found is None:
            click.echo("sldp: error: no conformance corpus found (looked in " + ", ".join(map(str, places)) +
                       "): pass its folder, e.g. sldp conformance PATH/TO/sldpack/spec/conformance", err=True)
            sys.exit(EXIT_BAD_INPUT)
        corpus = str(found)
    if not (Path(corpus) / "index.json").is_file():
        click.echo(f"sldp: error: {corpus}/index.json not found (is this a conformance corpus?)", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if reader is None and (codes_only or select or codes or jobs != 1):
        click.echo("sldp: error: --codes-only, --select, --codes and --jobs need --reader", err=True)
        sys.exit(EXIT_BAD_INPUT)
    try:
        if reader is None:
            results = run_corpus(Path(corpus))
        else:
            code_list = tuple(c.strip() for c in codes.split(",") if c.strip())
            results = run_external(Path(corpus), ReaderOptions(command=reader, timeout=timeout, codes_only=codes_only,
                                                               select=select, codes=code_list, jobs=jobs))
    except SldpError as exc:
        click.echo(f"sldp: error: {exc}", err=True)
        sys.exit(exit_code_for(exc))
    if not results:
        click.echo("sldp: error: --select/--codes selected no case", err=True)
        sys.exit(EXIT_BAD_INPUT)
    failed = [r for r in results if not r.passed]
    mode = {"reader": reader or "sldpack", "offsets": "ignored" if codes_only else "compared"}
    if as_json:
        click.echo(json.dumps({**mode, "passed": len(results) - len(failed), "failed": len(failed),
                               "cases": [r.to_dict() for r in results]}, indent=2))
    else:
        click.echo(f"{'result':<6} {'case':<44} {'expected':<26} got")
        for r in results:
            click.echo(f"{'pass' if r.passed else 'FAIL':<6} {r.file:<44} {r.expected:<26} {r.got}")
        click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed"
                   + (f" (reader: {reader}; offsets {mode['offsets']})" if reader else ""))
    sys.exit(EXIT_OK if not failed else EXIT_VERIFY_FAILED)
