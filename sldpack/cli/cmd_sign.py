"""``sldp keygen`` and ``sldp sign``: detached signatures over a ``.sldp`` file (annex SLDP-1-signing.md).

``sldp verify FILE --signature SIG --key PUB`` (in :mod:`sldpack.cli.cmd_container`) checks them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sldpack.cli.common import check_outputs
from sldpack.cli.exit_codes import EXIT_OK, exit_code_for
from sldpack.errors import SldpError

__all__ = ["keygen_cmd", "sign_cmd"]


@click.command("keygen")
@click.argument("private", type=click.Path(dir_okay=False))
@click.option("--public", "public", type=click.Path(dir_okay=False), default=None,
              help="Public key path [default: PRIVATE with suffix .pub].")
@click.option("--force", is_flag=True, help="Replace existing key files.")
def keygen_cmd(private: str, public: str | None, force: bool) -> None:
    """Create an ECDSA P-256 signing key pair: PRIVATE (PEM, mode 0600) and its public key (PEM).

    Keep PRIVATE secret and backed up; send the public key to whoever verifies your files, by a
    channel they trust (in person, a signed e-mail, your institution's key directory).
    """
    from sldpack.pipelines.signing import generate_keypair

    check_outputs([], {"PRIVATE": private, "--public": public})
    try:
        priv, pub, kid = generate_keypair(private, public, overwrite=force)
    except SldpError as exc:
        click.echo(f"sldp: error: {exc}", err=True)
        sys.exit(exit_code_for(exc))
    click.echo(f"private key {priv} (mode 0600: keep it secret)")
    click.echo(f"public key  {pub}")
    click.echo(f"key id      {kid}")
    sys.exit(EXIT_OK)


@click.command("sign")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--key", "key", required=True, type=click.Path(dir_okay=False),
              help="Private key (PEM ECDSA P-256, mode 0600), e.g. from `sldp keygen`.")
@click.option("--signature", "signature", type=click.Path(dir_okay=False), default=None,
              help="Signature output path [default: FILE.sig].")
def sign_cmd(file: str, key: str, signature: str | None) -> None:
    """Sign FILE's exact bytes; write a detached signature (an OpenSSF model-signing bundle).

    FILE must be a valid .sldp (every digest is checked first: a broken file is never signed). Offline:
    nothing is sent anywhere. The signature also verifies with `model_signing verify key`.
    """
    import sldpack
    from sldpack.pipelines.signing import key_id, load_private_key, sign_file

    check_outputs([file, key], {"--signature": signature if signature is not None else f"{file}.sig"})
    try:
        k = load_private_key(key)
        with sldpack.open(file) as f:
            f.verify()
            audit = f.manifest.provenance.audit
            bound = audit is not None and audit.binds(f.manifest.tensors)
        out = sign_file(file, key, signature)
    except SldpError as exc:
        click.echo(f"sldp: error: {exc}", err=True)
        sys.exit(exit_code_for(exc))
    # signing is allowed either way (the signer decides), but never silently over a missing or bad audit
    if audit is None:
        click.echo("sldp: warning: no privacy audit recorded in the file (sldp audit FILE --data TRAIN --record)",
                   err=True)
    elif not bound:
        click.echo("sldp: warning: the recorded privacy audit is STALE (the images changed since)", err=True)
    elif audit.verdict != "PASS":
        click.echo(f"sldp: warning: the recorded privacy audit says {audit.verdict}", err=True)
    if audit is not None and bound:
        if audit.membership is None:
            click.echo("sldp: note: the recorded audit measured image similarity only, not membership inference "
                       "(sldp audit FILE --data TRAIN --membership --record)", err=True)
        else:
            mem = audit.membership
            aucs = "; ".join(f"{a.attack} on {a.target}: AUC {a.auc:.3f} [{a.auc_low:.3f}, {a.auc_high:.3f}]"
                             for a in mem.attacks)
            click.echo(f"recorded membership inference: {mem.verdict} ({aucs})", err=True)
    click.echo(f"signed {file} with key id {key_id(k.public_key())}")
    click.echo(f"signature {out}")
    import shlex

    # quoted: a path with spaces pasted back into a shell must stay one argument
    click.echo("verify: " + shlex.join(["sldp", "verify", str(file), "--signature", str(out), "--key",
                                        str(Path(key).with_suffix(".pub"))]))
    sys.exit(EXIT_OK)
