"""One hierarchy for every error sldpack raises.

``SldpError`` is the base. ``FormatError`` (also a ``ValueError``) carries a stable error code
from :data:`sldpack.format.constants.ERROR_CODES`, the absolute byte offset where the defect was found
(``None`` when it has no place, e.g. a whole-file digest), what was expected and what was found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sldpack.format.constants import ERROR_CODES

__all__ = [
    "DataError",
    "DigestError",
    "ExportMismatchError",
    "FormatError",
    "ReplayMismatchError",
    "SignatureError",
    "SldpError",
    "SldpNotice",
    "UsageError",
    "VersionError",
]


class SldpError(Exception):
    """Base class of every error sldpack raises on purpose."""


class FormatError(SldpError, ValueError):
    """A ``.sldp`` file (or a part of it) breaks the spec.

    Args:
        code: stable error code, a key of ``ERROR_CODES``.
        message: human explanation.
        offset: absolute byte offset of the defect in the file, or ``None``.
        expected: what the spec requires there (free text or value).
        got: what the file holds there.
        field: dotted manifest path (``arch.id``) when the defect is in a manifest field.
        path: the file's path, when reading from disk.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        offset: int | None = None,
        expected: Any = None,
        got: Any = None,
        field: str | None = None,
        path: str | None = None,
    ) -> None:
        if code not in ERROR_CODES:
            raise AssertionError(f"unknown error code {code!r}")  # a programming error, not input
        self.code = code
        self.message = message
        self.offset = offset
        self.expected = expected
        self.got = got
        self.field = field
        self.path = path
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.offset is not None:
            where.append(f"byte {self.offset}")
        if self.field is not None:
            where.append(f"field {self.field}")
        text = f"[{self.code}] {self.message}"
        if where:
            text += f" ({', '.join(where)})"
        if self.expected is not None or self.got is not None:
            text += f": expected {self.expected!s}, got {self.got!s}"
        return text

    def with_path(self, path: str) -> FormatError:
        """Return the same error annotated with the file path (readers add it once, at the top)."""
        if self.path is None:
            self.path = path
            self.args = (self._render(),)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable form used by ``--json`` outputs and the conformance runner."""
        return {
            "code": self.code,
            "message": self.message,
            "offset": self.offset,
            "field": self.field,
            "expected": None if self.expected is None else str(self.expected),
            "got": None if self.got is None else str(self.got),
        }


class VersionError(FormatError):
    """The file's major version is not supported by this reader."""


class DigestError(FormatError):
    """Bytes are well-formed but do not match their recorded SHA-256: verification failed."""


class ReplayMismatchError(SldpError):
    """Re-deriving theta_opt from the file did not reproduce its recorded fingerprint."""


class ExportMismatchError(ReplayMismatchError):
    """An exported network (ONNX, TorchScript, ...) reloaded by its own runtime does not give the replay's
    logits within tolerance: the export was deleted (exit code 1, like a failed replay check)."""


class SignatureError(SldpError):
    """A signature is missing, malformed, made by another or an untrusted key, or the file changed.

    ``sldp verify`` exits with 1 ("verification failed") on it. ``reason`` is one stable word:
    ``missing``, ``malformed``, ``wrong-key``, ``untrusted-key``, ``bad-signature``, ``statement`` or
    ``file-changed``; ``path`` is the file the reason is about (the signature, or the signed file).
    """

    def __init__(self, reason: str, message: str, *, path: str | None = None) -> None:
        self.reason = reason
        self.message = message
        self.path = path
        super().__init__(f"signature {reason}: {message}" + (f" ({path})" if path else ""))

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable form for ``--json`` outputs."""
        return {"code": "E_SIGNATURE", "reason": self.reason, "message": self.message, "path": self.path}


class DataError(SldpError, ValueError):
    """A training/evaluation data source (npz, image folder, DICOM, CSV) is unreadable or inconsistent."""


class SldpNotice(Warning):
    """Something was converted on the way in and the user should know (e.g. a colour DICOM read as
    grayscale). ``sldp`` prints it as one ``sldp: note:`` line."""


class UsageError(SldpError, ValueError):
    """Arguments contradict each other or name something that does not exist.

    The library names settings by their field or parameter name (a :class:`~sldpack.nn.config.DistillConfig`
    field such as ``inner_lr``, or a function parameter such as ``resume``), never by a command-line flag.
    An error about settings lists them in ``field`` and writes each as ``{name}`` in ``message``;
    ``str(err)`` shows the names, and a front end shows its own spelling with :meth:`render` (the ``sldp``
    command line prints ``--inner-lr``).

    Args:
        message: the explanation; ``{name}`` stands for the setting ``name`` of ``field``.
        field: the setting (or settings, the main one first) the error is about.
    """

    def __init__(self, message: str, *, field: str | tuple[str, ...] = ()) -> None:
        self.message = message
        self.fields: tuple[str, ...] = (field,) if isinstance(field, str) else tuple(field)
        super().__init__(self.render())

    @property
    def field(self) -> str | None:
        """The main setting the error is about (``None``: the error names no setting)."""
        return self.fields[0] if self.fields else None

    def render(self, spell: Callable[[str], str] = str) -> str:
        """The message with every ``{name}`` of ``fields`` written as ``spell(name)`` (default: the name)."""
        text = self.message
        for name in self.fields:
            text = text.replace("{" + name + "}", spell(name))
        return text
