"""Hypothesis strategies that build valid manifests and tensor sets, for round-trip and fuzz tests.

Downstream readers can reuse them: ``from sldpack.testing.strategies import sldp_files``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from sldpack.format.constants import DTYPE_FOR_NUMPY_NAME, role_for_name
from sldpack.format.container import Tensor, encode
from sldpack.format.manifest import ArchSpec, DistillSpec, InitSpec, LabelSpec, Manifest, Preprocessing, Provenance

__all__ = ["manifests", "sldp_files", "tensor_sets", "user_values"]

_names = st.one_of(st.sampled_from(["images", "labels", "lrs", "bn.f.1.running_var", "theta0.w"]),
                   st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF), min_size=1, max_size=12))
_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def user_values() -> st.SearchStrategy[Any]:
    """Any value canonical msgpack can carry (for the ``user`` section)."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), _finite,
                        st.text(max_size=20), st.binary(max_size=20))
    return st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                        max_leaves=12)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    """A manifest with random optional sections (tensor table and payload left to the writer)."""
    steps = draw(st.integers(1, 3))
    distill = draw(st.none() | st.just(DistillSpec(
        method=draw(st.sampled_from(["sldd", "dd"])), steps=steps, epochs=draw(st.integers(1, 3)),
        schedule=tuple(tuple(draw(st.lists(st.integers(0, 9), min_size=1, max_size=3))) for _ in range(steps)),
        label_transform=draw(st.sampled_from(["softmax", "identity"])))))
    labels = draw(st.none() | st.lists(_names, min_size=1, max_size=4, unique=True).map(
        lambda n: LabelSpec(tuple(n))))
    pre = draw(st.none() | st.builds(
        lambda m, s: Preprocessing(mean=(m,), std=(s,), image_size=(28, 28), channels=1),
        _finite, st.floats(1e-6, 1e6)))
    return Manifest(
        arch=ArchSpec(id=draw(st.sampled_from(["convnet@1", "resnet18@1"])), in_channels=draw(st.integers(1, 3)),
                      num_classes=draw(st.integers(1, 5)), image_size=(draw(st.integers(1, 64)), 28),
                      batchnorm=draw(st.booleans()), options=draw(st.dictionaries(st.text(max_size=6),
                                                                                   st.integers(0, 9), max_size=2))),
        init=InitSpec(seed=draw(st.integers(0, 2**64 - 1)), scheme="xavier_normal"),
        provenance=Provenance(tool="hypothesis", created="2026-11-27T00:00:00Z"),
        distill=distill, labels=labels, preprocessing=pre,
        user=draw(st.dictionaries(st.text(max_size=8), user_values(), max_size=3)),
    )


# value dtype of each storage dtype (BF16 values are drawn as float32 and rounded on storage)
_DTYPES: dict[str, Any] = {code: np.float32 if code == "BF16" else np.dtype(name)
                           for name, code in DTYPE_FOR_NUMPY_NAME.items()}


@st.composite
def tensor_sets(draw: st.DrawFn) -> dict[str, Tensor]:
    """1-5 tensors of random name, dtype and small shape (including empty and rank-0); roles follow names."""
    out: dict[str, Tensor] = {}
    for name in draw(st.lists(_names, min_size=1, max_size=5, unique=True)):
        dtype = draw(st.sampled_from(sorted(_DTYPES)))
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
        n = int(np.prod(shape, dtype=np.int64))
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        if dtype in ("I64", "I32", "U8"):
            info = np.iinfo(_DTYPES[dtype])
            arr = rng.integers(info.min, info.max, size=n, endpoint=True, dtype=_DTYPES[dtype]).reshape(shape)
        else:
            arr = (rng.standard_normal(n) * 10).astype(_DTYPES[dtype]).reshape(shape)
        out[name] = Tensor(role_for_name(name), arr, dtype)  # the name decides the role (spec 6.2)
    return out


@st.composite
def sldp_files(draw: st.DrawFn) -> bytes:
    """The bytes of a valid ``.sldp`` file."""
    return encode(draw(manifests()), draw(tensor_sets()),
                  compression=draw(st.sampled_from(["none", "zstd"])), level=1)
