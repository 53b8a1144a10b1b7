"""``sldpack.cli.exit_codes``: every error class maps to its documented code."""

from __future__ import annotations

import errno

import pytest

from sldpack.cli.exit_codes import EXIT_CODES, exit_code_for
from sldpack.errors import (
    DataError,
    DigestError,
    FormatError,
    ReplayMismatchError,
    SignatureError,
    UsageError,
    VersionError,
)


@pytest.mark.parametrize(("err", "code"), [
    (DigestError("E_MANIFEST_DIGEST", "manifest digest", offset=None), 1),
    (ReplayMismatchError("theta_opt differs"), 1),
    (SignatureError("wrong-key", "made by another key", path="f.sig"), 1),
    (FormatError("E_MAGIC", "not an sldp file", offset=0), 2),
    (VersionError("E_VERSION_MAJOR", "major 9", offset=4), 2),
    (DataError("bad labels"), 2),
    (UsageError("bad option"), 2),
    (OSError(errno.ENOSPC, "No space left on device", "out.sldp"), 2),
    (KeyboardInterrupt(), 130),
    (RuntimeError("a bug"), 3),
])
def test_exit_code_for(err: BaseException, code: int) -> None:
    assert exit_code_for(err) == code
    assert code in EXIT_CODES


def test_signature_error_is_one_class_for_library_and_cli() -> None:
    from sldpack.pipelines.signing import SignatureError as FromSigning

    assert FromSigning is SignatureError
