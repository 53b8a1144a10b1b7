"""The manifest: typed, frozen dataclasses with ``to_obj``/``from_obj``.

``from_obj`` narrows an untrusted, already-decoded msgpack value into these types and raises
:class:`~sldpack.errors.FormatError` (code ``E_SCHEMA``) naming the dotted field and its byte offset.
Unknown keys are ignored (a newer minor version may add them, spec section "Versioning").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sldpack.errors import FormatError
from sldpack.format.audit_schema import MembershipRecord
from sldpack.format.card import CardDataset, CardEvaluation, ModelCard
from sldpack.format.constants import (
    ALLOWED_DTYPES,
    ARCH_ID_PATTERN,
    AUDIT_VERDICTS,
    COMPRESSIONS,
    INIT_RNG,
    INIT_SCHEMES,
    LABEL_TRANSFORMS,
    MAX_PROBE_COUNT,
    MAX_RANK,
    MAX_SKETCH_VALUES,
    MAX_TENSOR_NAME_BYTES,
    MAX_TENSORS,
    ROLES,
    role_for_name,
)
from sldpack.format.decision import Calibration, DecisionRule
from sldpack.format.fields import Ctx as _Ctx
from sldpack.format.fields import choice as _choice
from sldpack.format.fields import float_field as _float
from sldpack.format.fields import floats as _floats
from sldpack.format.fields import get as _get
from sldpack.format.fields import hex_field as _hex
from sldpack.format.fields import int_field as _int
from sldpack.format.fields import ints as _ints
from sldpack.format.fields import map_field as _map
from sldpack.format.fields import type_name as _type_name
from sldpack.format.fields import utc_time as _utc_time

__all__ = [
    "ArchSpec",
    "AuditRecord",
    "Calibration",
    "CardDataset",
    "CardEvaluation",
    "DecisionRule",
    "DistillSpec",
    "InitSpec",
    "LabelSpec",
    "Manifest",
    "ModelCard",
    "PayloadInfo",
    "Preprocessing",
    "Provenance",
    "ReplayFingerprint",
    "TensorInfo",
]

# --- dataclasses --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArchSpec:
    """Which network replay builds: a versioned registry id and its construction parameters."""

    id: str
    in_channels: int
    num_classes: int
    image_size: tuple[int, int]
    batchnorm: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_obj(self) -> dict[str, Any]:
        return {"id": self.id, "in_channels": self.in_channels, "num_classes": self.num_classes,
                "image_size": list(self.image_size), "batchnorm": self.batchnorm,
                "options": dict(self.options)}

    @classmethod
    def from_obj(cls, ctx: _Ctx, obj: Mapping[str, Any], path: str = "arch") -> ArchSpec:
        aid = _get(ctx, obj, path, "id", str)
        if not re.fullmatch(ARCH_ID_PATTERN, aid):
            raise ctx.fail(f"{path}.id", "architecture id must look like name@version",
                           expected="name@version, e.g. convnet@1", got=aid[:80])
        size = _ints(ctx, _get(ctx, obj, path, "image_size", list), f"{path}.image_size", lo=1, hi=1 << 16)
        if len(size) != 2:
            raise ctx.fail(f"{path}.image_size", "image_size must be [height, width]", expected=2, got=len(size))
        return cls(
            id=aid,
            in_channels=_int(ctx, obj, path, "in_channels", lo=1, hi=1 << 16),
            num_classes=_int(ctx, obj, path, "num_classes", lo=1, hi=1 << 20),
            image_size=(size[0], size[1]),
            batchnorm=_get(ctx, obj, path, "batchnorm", bool, required=False, default=False),
            options=_map(ctx, obj, path, "options"),
        )


@dataclass(frozen=True)
class InitSpec:
    """How theta0 is drawn: seed, scheme and RNG (spec annex SLDP-1-init.md)."""

    seed: int
    scheme: str = "xavier_normal"
    rng: str = "philox4x32-10"
    theta0_sha256: Mapping[str, str] | None = None

    def to_obj(self) -> dict[str, Any]:
        d: dict[str, Any] = {"seed": self.seed, "scheme": self.scheme, "rng": self.rng}
        if self.theta0_sha256 is not None:
            d["theta0_sha256"] = dict(self.theta0_sha256)
        return d

    @classmethod
    def from_obj(cls, ctx: _Ctx, obj: Mapping[str, Any], path: str = "init") -> InitSpec:
        digests = None
        if "theta0_sha256" in obj:
            raw = _get(ctx, obj, path, "theta0_sha256", dict)
            digests = {k: _hex(ctx, raw, f"{path}.theta0_sha256", k) for k in raw}
        return cls(
            seed=_int(ctx, obj, path, "seed"),
            scheme=_choice(ctx, obj, path, "scheme", INIT_SCHEMES),
            rng=_choice(ctx, obj, path, "rng", (INIT_RNG,)),
            theta0_sha256=digests,
        )


@dataclass(frozen=True)
class DistillSpec:
    """How the distilled data are consumed by replay (spec section "Replay semantics").

    ``schedule[s]`` lists the image indices used at inner step ``s`` (0 <= s < steps); the full
    unroll is ``epochs`` passes over the ``steps`` steps, so there are ``steps * epochs`` learning rates.
    """

    method: str  # "sldd" (learned soft labels) or "dd" (fixed one-hot labels)
    steps: int
    epochs: int
    schedule: tuple[tuple[int, ...], ...]
    label_transform: str = "softmax"
    loss: str = "cross_entropy"
    inner_batchnorm: str = "batch_stats"
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_obj(self) -> dict[str, Any]:
        return {"method": self.method, "steps": self.steps, "epochs": self.epochs,
                "schedule": [list(s) for s in self.schedule], "label_transform": self.label_transform,
                "loss": self.loss, "inner_batchnorm": self.inner_batchnorm, "options": dict(self.options)}

    @classmethod
    def from_obj(cls, ctx: _Ctx, obj: Mapping[str, Any], path: str = "distill") -> DistillSpec:
        steps = _int(ctx, obj, path, "steps", lo=1, hi=1 << 16)
        epochs = _int(ctx, obj, path, "epochs", lo=1, hi=1 << 16)
        sched_raw = _get(ctx, obj, path, "schedule", list)
        if len(sched_raw) != steps:
            raise ctx.fail(f"{path}.schedule", "schedule needs one entry per step", expected=steps,
                           got=len(sched_raw))
        sched = tuple(_ints(ctx, s, f"{path}.schedule.{i}", hi=(1 << 31) - 1) for i, s in enumerate(sched_raw))
        for i, s in enumerate(sched):
            if not s:
                raise ctx.fail(f"{path}.schedule.{i}", "a step must use at least one image",
                               expected=">= 1 index", got=0)
        return cls(
            method=_choice(ctx, obj, path, "method", ("sldd", "dd")),
            steps=steps,
            epochs=epochs,
            schedule=sched,
            label_transform=_choice(ctx, obj, path, "label_transform", LABEL_TRANSFORMS),
            loss=_choice(ctx, obj, path, "loss", ("cross_entropy",)),
            inner_batchnorm=_choice(ctx, obj, path, "inner_batchnorm", ("batch_stats",)),
            options=_map(ctx, obj, path, "options"),
        )


@dataclass(frozen=True)
class LabelSpec:
    """The label space: class names in logit order (e.g. ``("I", "N", "P")``)."""

    names: tuple[str, ...]

    def to_obj(self) -> dict[str, Any]:
        return {"names": list(self.names)}

    @classmethod
    def from_obj(cls, ctx: _Ctx, obj: Mapping[str, Any], path: str = "labels") -> LabelSpec:
        names = _get(ctx, obj, path, "names", list)
        for i, n in enumerate(names):
            if not isinstance(n, str):
                raise ctx.fail(f"{path}.names.{i}", "class name must be a string", expected="str",
                               got=_type_name(type(n)))
        if len(set(names)) != len(names):  # reported at the array (spec 5.7), not at the repeated name
            raise ctx.fail(f"{path}.names", "class names must be distinct", expected="distinct", got=names)
        return cls(names=tuple(names))


@dataclass(frozen=True)
class Preprocessing:
    """What a consumer does to a real image before the network sees it: (x/255 - mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: tuple[int, int]
    channels: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_obj(self) -> dict[str, Any]:
        return {"mean": [float(m) for m in self.mean], "std": [float(s) for s in self.std],
                "image_size": list(self.image_size), "channels": self.channels, "options": dict(self.options)}

    @classmethod
    def from_obj(cls, ctx: _Ctx, obj: Mapping[str, Any], path: str = "preprocessing") -> Preprocessing:
        size = _ints(ctx, _get(ctx, obj, path, "image_size", list), f"{path}.image_size", lo=1, hi=1 << 16)
        if len(size) != 2:
            raise ctx.fail(f"{path}.image_size", "image_size must be [height, width]", expected=2, got=len(size))
        std = _floats(ctx, obj, path, "std")
        for i, s in enumerate(std):
            if s <= 0:
                raise ctx.fail(f"{path}.std.{i}", "std must be positive", expected="> 0", got=s)
        mean = _floats(ctx, obj, path, "mean")
        channels = _int(ctx, obj, path, "channels", lo=1, hi=1 << 16)
        for key, vals in (("mean", mean), ("std", std)):
            if len(vals) != channels:
                raise ctx.fail(f"{path}.{key}", f"{key} needs one value per channel", expected=channels,
                               got=len(vals))
        return cls(mean=mean, std=std, image_size=(size[0], size[1]), channels=channels,
                   options=_map(ctx, obj, path, "options"))


@dataclass(frozen=True)
class ReplayFingerprint:
    """What replay must reproduce (spec annex SLDP-1-replay.md, section 6).

    ``state_sketch``/``state_tolerance`` (optional in 1.0, written by sldpack): per canonical-state tensor,
    a short projection of its values and the largest accepted deviation of that projection, so that a
    replay on other hardware is judged tensor by tensor against a tolerance calibrated for that tensor.
    """

    theta_opt_sha256: str
    probe_seed: int
    probe_count: int
    probe_logits: tuple[float, ...]
    tolerance: float
    reference: Mapping[str, Any] = field(default_factory=dict)
    state_sketch: Mapping[str, tuple[float, ...]] | None = None
    state_tolerance: Mapping[str, float] | None = None

    def to_obj(self) -> dict[str, Any]:
        d: dict[str, Any] = {"theta_opt_sha256": self.theta_opt_sha256, "probe_seed": self.probe_seed,
                             "probe_count": self.probe_count,
                             "probe_logits": [float(v) for v in self.probe_logits],
                             "tolerance": float(self.tolerance), "reference": dict(self.reference)}
        if self.state_sketch is not None:
            d["state_sketch"] = {k: [float(x) for x in v] for k, v in self.state_sketch.items()}
        if self.state_tolerance is not None:
            d["state_tolerance"] = {k: float(v) for k, v in self.state_tolerance.items()}
        return d

    @classmethod
    def from_obj(cls, ctx: _Ctx, obj: Mapping[str, Any], path: str = "replay") -> ReplayFingerprint:
        tol = _float(ctx, obj, path, "tolerance")
        if tol < 0:
            raise ctx.fail(f"{path}.tolerance", "tolerance must not be negative", expected=">= 0", got=tol)
        sketch: dict[str, tuple[float, ...]] | None = None
        stol: dict[str, float] | None = None
        if "state_sketch" in obj or "state_tolerance" in obj:
            raw_s = _get(ctx, obj, path, "state_sketch", dict)
            raw_t = _get(ctx, obj, path, "state_tolerance", dict)
            sketch = {k: _floats(ctx, raw_s, f"{path}.state_sketch", k) for k in raw_s}
            for k, vals in sketch.items():
                if not 1 <= len(vals) <= MAX_SKETCH_VALUES:
                    raise ctx.fail(f"{path}.state_sketch.{k}", "a state sketch has 1..64 values per tensor",
                                   expected=f"1..{MAX_SKETCH_VALUES} values", got=len(vals))
            stol = {}
            for k in raw_t:
                v = _float(ctx, raw_t, f"{path}.state_tolerance", k)
                if v < 0:
                    raise ctx.fail(f"{path}.state_tolerance.{k}", "tolerance must not be negative",
                                   expected=">= 0", got=v)
                stol[k] = v
            if set(sketch) != set(stol):
                raise ctx.fail(f"{path}.state_tolerance", "state_tolerance must have the keys of state_sketch",
                               expected=len(sketch), got=len(stol))
        return cls(theta_opt_sha256=_hex(ctx, obj, path, "theta_opt_sha256"),
                   probe_seed=_int(ctx, obj, path, "probe_seed"),
                   probe_count=_int(ctx, obj, path, "probe_count", lo=1, hi=MAX_PROBE_COUNT),
                   probe_logits=_floats(ctx, obj, path, "probe_logits"),
                   tolerance=tol,
                   reference=_map(ctx, obj, path, "reference"),
                   state_sketch=sketch, state_tolerance=stol)


@dataclass(frozen=True)
class AuditRecord:
    """The privacy audit's result bound to the images it audited (``provenance.audit``, spec 5.3).

    ``images_sha256`` is the ``images`` tensor's digest when the audit ran: the record describes the
    file only while that digest is unchanged (:meth:`binds`).
    """

    verdict: str  # "PASS" or "FLAG"
    report_sha256: str  # SHA-256 of the audit's JSON report file, as written
    images_sha256: str
    tool: str = ""
    created: str = ""
    membership: MembershipRecord | None = None  # the membership-inference part, when it ran

    def binds(self, tensors: Mapping[str, TensorInfo]) -> bool:
        """True when the file's ``images`` tensor is the one that was audited."""
        t = tensors.get("images")
        return t is not None and t.sha256 == self.images_sha256

    def to_obj(self) -> dict[str, Any]:
        d: dict[str, Any] = {"verdict": self.verdict, "report_sha256": self.report_sha256,
                             "images_sha256": self.images_sha256}
        if self.tool:
            d["tool"] = self.tool
        if self.created:
            d["created"] = self.created
        if self.membership is not None:
            d["membership"] = self.membership.to_obj()
        return d

    @classmethod
    def from_obj(cls, ctx: _Ctx, obj: Mapping[str, Any], path: str = "provenance.audit") -> AuditRecord:
        verdict = _choice(ctx, obj, path, "verdict", AUDIT_VERDICTS)
        membership = None
        if "membership" in obj:
            membership = MembershipRecord.from_obj(ctx, _get(ctx, obj, path, "membership", dict),
                                                   f"{path}.membership")
            if membership.verdict == "FLAG" and verdict != "FLAG":
                raise ctx.fail(f"{path}.verdict", "the audit passes while its membership part flags",
                               expected="FLAG", got=verdict)
        return cls(verdict=verdict,
                   report_sha256=_hex(ctx, obj, path, "report_sha256"),
                   images_sha256=_hex(ctx, obj, path, "images_sha256"),
                   tool=_get(ctx, obj, path, "tool", str, required=False, default=""),
                   created=_get(ctx, obj, path, "created", str, required=False, default=""),
                   membership=membership)


@dataclass(frozen=True)
class Provenance:
    """Who made the file, when, and from what data (the data set's fingerprint, never the data).

    The optional fields after ``extra`` (spec 5.3) are written only when set, so files without them
    keep their exact bytes.
    """

    tool: str
    created: str  # RFC 3339, UTC, e.g. 2026-11-27T01:20:00Z
    dataset_sha256: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    training_data_sha256: str | None = None  # spec 5.3.1: images + labels + masks as read
    sldpack_version: str | None = None
    distill_config: Mapping[str, Any] | None = None
    command_line: tuple[str, ...] | None = None
    audit: AuditRecord | None = None

    def to_obj(self) -> dict[str, Any]:
        d: dict[str, Any] = {"tool": self.tool, "created": self.created, "extra": dict(self.extra)}
        if self.dataset_sha256 is not None:
            d["dataset_sha256"] = self.dataset_sha256
        if self.training_data_sha256 is not None:
            d["training_data_sha256"] = self.training_data_sha256
        if self.sldpack_version is not None:
            d["sldpack_version"] = self.sldpack_version
        if self.distill_config is not None:
            d["distill_config"] = dict(self.distill_config)
        if self.command_line is not None:
            d["command_line"] = list(self.command_line)
        if self.audit is not None:
            d["audit"] = self.audit.to_obj()
        return d

    @classmethod
    def from_obj(cls, ctx: _Ctx, obj: Mapping[str, Any], path: str = "provenance") -> Provenance:
        ds = _hex(ctx, obj, path, "dataset_sha256") if "dataset_sha256" in obj else None
        tds = _hex(ctx, obj, path, "training_data_sha256") if "training_data_sha256" in obj else None
        cmd = None
        if "command_line" in obj:
            raw = _get(ctx, obj, path, "command_line", list)
            for i, a in enumerate(raw):
                if not isinstance(a, str):
                    raise ctx.fail(f"{path}.command_line.{i}", "command-line arguments must be strings",
                                   expected="str", got=_type_name(type(a)))
            cmd = tuple(raw)
        audit = None
        if "audit" in obj:
            audit = AuditRecord.from_obj(ctx, _get(ctx, obj, path, "audit", dict), f"{path}.audit")
            if "created" in obj["audit"]:
                _utc_time(ctx, f"{path}.audit.created", audit.created)
        tool = _get(ctx, obj, path, "tool", str)
        created = _utc_time(ctx, f"{path}.created", _get(ctx, obj, path, "created", str))
        return cls(tool=tool, created=created,
                   dataset_sha256=ds, extra=_map(ctx, obj, path, "extra"), training_data_sha256=tds,
                   sldpack_version=_get(ctx, obj, path, "sldpack_version", str, required=False),
                   distill_config=_map(ctx, obj, path, "distill_config") if "distill_config" in obj else None,
                   command_line=cmd, audit=audit)


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in the manifest's tensor table."""

    role: str
    dtype: str
    shape: tuple[int, ...]
    sha256: str

    @property
    def nbytes(self) -> int:
        from sldpack.format.constants import DTYPE_ITEMSIZE

        n = DTYPE_ITEMSIZE[self.dtype]
        for d in self.shape:
            n *= d
        return n

    def to_obj(self) -> dict[str, Any]:
        return {"role": self.role, "dtype": self.dtype, "shape": list(self.shape), "sha256": self.sha256}

    @classmethod
    def from_obj(cls, ctx: _Ctx, obj: Mapping[str, Any], path: str) -> TensorInfo:
        dtype = _get(ctx, obj, path, "dtype", str)
        if dtype not in ALLOWED_DTYPES:
            raise ctx.fail(f"{path}.dtype", "dtype not allowed", expected=" | ".join(sorted(ALLOWED_DTYPES)),
                           got=dtype, code="E_DTYPE")
        shape_raw = _get(ctx, obj, path, "shape", list)
        if len(shape_raw) > MAX_RANK:
            raise FormatError("E_LIMIT", "tensor rank exceeds the limit", offset=ctx.base + ctx.offsets.get(
                f"{path}.shape", 0), expected=f"<= {MAX_RANK}", got=len(shape_raw), field=f"{path}.shape")
        shape = _ints(ctx, shape_raw, f"{path}.shape", hi=(1 << 53) - 1)
        return cls(role=_choice(ctx, obj, path, "role", ROLES), dtype=dtype, shape=shape,
                   sha256=_hex(ctx, obj, path, "sha256"))


@dataclass(frozen=True)
class PayloadInfo:
    """How the tensor payload is stored: compression, sizes, and (zstd only) the stored bytes' SHA-256.

    An uncompressed payload needs no digest of its own: it must be the canonical safetensors encoding of
    the (digest-protected) tensor table, and every tensor's bytes carry a SHA-256. A zstd frame can encode
    the same content in many ways (and decoders ignore some of its bits), so its stored bytes are digested.
    """

    compression: str
    stored_size: int
    decoded_size: int
    stored_sha256: str | None = None

    def to_obj(self) -> dict[str, Any]:
        d: dict[str, Any] = {"compression": self.compression, "stored_size": self.stored_size,
                             "decoded_size": self.decoded_size}
        if self.stored_sha256 is not None:
            d["stored_sha256"] = self.stored_sha256
        return d

    @classmethod
    def from_obj(cls, ctx: _Ctx, obj: Mapping[str, Any], path: str = "payload") -> PayloadInfo:
        compression = _choice(ctx, obj, path, "compression", COMPRESSIONS)
        digest = None
        if compression == "zstd":
            digest = _hex(ctx, obj, path, "stored_sha256")
        elif "stored_sha256" in obj:
            raise ctx.fail(f"{path}.stored_sha256", "stored_sha256 is only for a compressed payload",
                           expected="absent with compression none", got="present")
        return cls(compression=compression, stored_size=_int(ctx, obj, path, "stored_size"),
                   decoded_size=_int(ctx, obj, path, "decoded_size"), stored_sha256=digest)


@dataclass(frozen=True)
class Manifest:
    """Everything about a ``.sldp`` file except the tensor bytes.

    Build one without ``tensors``/``payload`` and hand it to :func:`sldpack.write`; the writer fills
    those two from the tensors it stores. A manifest read from a file always has both.
    """

    arch: ArchSpec
    init: InitSpec
    provenance: Provenance
    distill: DistillSpec | None = None
    labels: LabelSpec | None = None
    preprocessing: Preprocessing | None = None
    replay: ReplayFingerprint | None = None
    user: Mapping[str, Any] = field(default_factory=dict)
    tensors: Mapping[str, TensorInfo] = field(default_factory=dict)
    payload: PayloadInfo | None = None
    decision: DecisionRule | None = None  # since 1.1 (spec 5.10); the writer then writes version 1.1
    card: ModelCard | None = None  # since 1.1 (spec 5.11)

    def to_obj(self) -> dict[str, Any]:
        """Plain dict/list/str/int/float/bool/None form, ready for canonical msgpack."""
        d: dict[str, Any] = {
            "arch": self.arch.to_obj(),
            "init": self.init.to_obj(),
            "provenance": self.provenance.to_obj(),
            "user": dict(self.user),
            "tensors": {k: v.to_obj() for k, v in self.tensors.items()},
        }
        if self.payload is not None:
            d["payload"] = self.payload.to_obj()
        for key in ("distill", "labels", "preprocessing", "replay", "decision", "card"):
            part = getattr(self, key)
            if part is not None:
                d[key] = part.to_obj()
        return d

    @classmethod
    def from_obj(cls, obj: Any, *, offsets: Mapping[str, int] | None = None, base: int = 0,
                 key_offsets: Mapping[str, int] | None = None) -> Manifest:
        """Narrow a decoded manifest map into a ``Manifest``.

        Args:
            obj: the decoded msgpack value.
            offsets: dotted path -> offset of that value inside the manifest bytes (from the decoder).
            base: absolute file offset of the manifest's first byte.
            key_offsets: dotted path -> offset of the map key of that path (errors about a key point there).

        Raises:
            FormatError: ``E_SCHEMA`` (or ``E_DTYPE``/``E_LIMIT``/``E_NAME``) naming field and offset.
        """
        ctx = _Ctx(offsets or {}, base, key_offsets)
        if not isinstance(obj, dict):
            raise ctx.fail("", "the manifest must be a map", expected="map", got=_type_name(type(obj)))
        tensors_raw = _get(ctx, obj, "", "tensors", dict)
        if len(tensors_raw) > MAX_TENSORS:
            raise FormatError("E_LIMIT", "too many tensors", offset=base + ctx.offsets.get("tensors", 0),
                              expected=f"<= {MAX_TENSORS}", got=len(tensors_raw), field="tensors")
        tensors = {}
        for name in tensors_raw:
            # a name error is about the map key: it points at the key (offsets convention, spec section 11)
            check_tensor_name(name, offset=base + ctx.key_offsets.get(f"tensors.{name}",
                                                                     ctx.offsets.get(f"tensors.{name}", 0)))
            info = TensorInfo.from_obj(ctx, _get(ctx, tensors_raw, "tensors", name, dict), f"tensors.{name}")
            if info.role != role_for_name(name):
                raise ctx.fail(f"tensors.{name}.role", "tensor name and role disagree (spec 6.2)",
                               expected=role_for_name(name), got=info.role)
            tensors[name] = info
        opt: dict[str, Any] = {}
        for key, klass in (("distill", DistillSpec), ("labels", LabelSpec),
                           ("preprocessing", Preprocessing), ("replay", ReplayFingerprint),
                           ("decision", DecisionRule), ("card", ModelCard)):
            if key in obj:
                opt[key] = klass.from_obj(ctx, _get(ctx, obj, "", key, dict), key)
        out = cls(
            arch=ArchSpec.from_obj(ctx, _get(ctx, obj, "", "arch", dict)),
            init=InitSpec.from_obj(ctx, _get(ctx, obj, "", "init", dict)),
            provenance=Provenance.from_obj(ctx, _get(ctx, obj, "", "provenance", dict)),
            user=_map(ctx, obj, "", "user"),
            tensors=tensors,
            payload=PayloadInfo.from_obj(ctx, _get(ctx, obj, "", "payload", dict)),
            **opt,
        )
        # rules across sections, checked after every section on its own (spec section 12, step 4)
        rp = out.replay
        if rp is not None and len(rp.probe_logits) != rp.probe_count * out.arch.num_classes:
            raise ctx.fail("replay.probe_logits", "probe_logits needs probe_count x arch.num_classes values",
                           expected=rp.probe_count * out.arch.num_classes, got=len(rp.probe_logits))
        dc = out.decision
        if dc is not None and out.labels is not None:
            for key, name in (("positive", dc.positive), ("negative", dc.negative)):
                if name is not None and name not in out.labels.names:
                    raise ctx.fail(f"decision.{key}", "the decision names a class the file does not have",
                                   expected=" | ".join(out.labels.names), got=name)
            for i, name in enumerate(dc.ignored):
                if name not in out.labels.names:
                    raise ctx.fail(f"decision.ignored.{i}", "the decision names a class the file does not have",
                                   expected=" | ".join(out.labels.names), got=name)
        if out.card is not None and out.labels is not None:
            for name in out.card.label_meanings:
                if name not in out.labels.names:
                    # the defect is the map key (offsets convention, spec section 11): point at the key
                    where = f"card.label_meanings.{name}"
                    off = ctx.key_offsets.get(where, ctx.offsets.get(where, 0))
                    raise FormatError("E_SCHEMA", "the card explains a class the file does not have",
                                      offset=base + off, expected=" | ".join(out.labels.names), got=name, field=where)
        return out


def check_tensor_name(name: str, *, offset: int | None = None) -> None:
    """Reject names the spec forbids (all ``E_NAME``): empty, over 256 bytes, or a control character U+0000-U+001F."""
    raw = name.encode("utf-8", "surrogatepass")
    if not raw or len(raw) > MAX_TENSOR_NAME_BYTES or any(ord(c) < 0x20 for c in name):
        raise FormatError("E_NAME", "tensor name is empty, too long or has control characters", offset=offset,
                          expected=f"1..{MAX_TENSOR_NAME_BYTES} UTF-8 bytes, no control characters",
                          got=repr(name[:80]))
