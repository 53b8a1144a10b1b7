"""sldpack: soft-label distilled data sets in small, portable, verifiable ``.sldp`` files.

The core (this package, minus :mod:`sldpack.nn`) never imports torch, so applications can embed the
reader with numpy alone.
"""

from __future__ import annotations

__version__ = "0.1.0"

from sldpack.errors import (
    DataError,
    DigestError,
    FormatError,
    ReplayMismatchError,
    SldpError,
    UsageError,
    VersionError,
)
from sldpack.format.container import Header, Layout, SldpFile, Tensor, encode, open, read, write
from sldpack.format.manifest import (
    ArchSpec,
    Calibration,
    CardDataset,
    CardEvaluation,
    DecisionRule,
    DistillSpec,
    InitSpec,
    LabelSpec,
    Manifest,
    ModelCard,
    PayloadInfo,
    Preprocessing,
    Provenance,
    ReplayFingerprint,
    TensorInfo,
)

__all__ = [
    "ArchSpec",
    "Calibration",
    "CardDataset",
    "CardEvaluation",
    "DataError",
    "DecisionRule",
    "DigestError",
    "DistillSpec",
    "FormatError",
    "Header",
    "InitSpec",
    "LabelSpec",
    "Layout",
    "Manifest",
    "ModelCard",
    "PayloadInfo",
    "Preprocessing",
    "Provenance",
    "ReplayFingerprint",
    "ReplayMismatchError",
    "SldpError",
    "SldpFile",
    "Tensor",
    "TensorInfo",
    "UsageError",
    "VersionError",
    "__version__",
    "encode",
    "open",
    "read",
    "write",
]
