"""Write ``philox_kat.json`` and ``vectors.json`` of the init annex (spec/SLDP-1-init.md).

Run from the repository root: ``python spec/conformance/init/make_vectors.py``. The committed JSON
files are the reference; ``tests/init/test_schemes.py`` and ``tests/nn/test_init_torch.py`` compare
both implementations against them and never regenerate them, so re-running this script and seeing a
diff means the implementation changed the format: that needs a new spec version, not a new file.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
# the vectors must come from the numpy reference, never from a faster path they are meant to check
os.environ["SLDP_INIT_BACKEND"] = "numpy"

from sldpack.init import derive_stream, generate, init_parameters, stream_words  # noqa: E402
from sldpack.init.philox import DOMAIN_TAG, Scratch, philox4x32_10  # noqa: E402
from sldpack.init.schemes import (  # noqa: E402
    BUFFER_KINDS,
    _uniform_rows,
    normal_rows,
    param_kind,
    plan_values,
    tensor_sha256,
)

# Random123 (D. E. Shaw Research) kat_vectors, the three philox4x32 R=10 rows:
# counter x4, key x2 -> expected output x4.
KAT = [
    (["00000000"] * 4, ["00000000"] * 2, ["6627e8d5", "e169c58d", "bc57ac4c", "9b00dbd8"]),
    (["ffffffff"] * 4, ["ffffffff"] * 2, ["408f276d", "41c83b0e", "a20bc7c6", "6d5451fd"]),
    (
        ["243f6a88", "85a308d3", "13198a2e", "03707344"],
        ["a4093822", "299f31d0"],
        ["d16cfe09", "94fdcceb", "5001e420", "24126ea1"],
    ),
]

TENSORS: list[dict[str, Any]] = [
    {"seed": 0, "name": "conv1.weight", "shape": [4, 1, 3, 3], "scheme": "xavier_normal"},
    {"seed": 1, "name": "features.0.weight", "shape": [2, 3, 3, 3], "scheme": "xavier_normal"},
    {"seed": 1, "name": "features.0.weight", "shape": [2, 3, 3, 3], "scheme": "xavier_uniform"},
    {"seed": 1, "name": "features.0.weight", "shape": [2, 3, 3, 3], "scheme": "kaiming_uniform"},
    {"seed": 1, "name": "features.0.weight", "shape": [2, 3, 3, 3], "scheme": "kaiming_normal"},
    {"seed": 2**64 - 1, "name": "fc.weight", "shape": [3, 5], "scheme": "xavier_normal"},
    {"seed": 12345678901234567890, "name": "layer1.0.conv1.weight", "shape": [3, 2, 1, 1],
     "scheme": "kaiming_uniform"},
    {"seed": 7, "name": "bl\u00f6ck.\u03c0.weight", "shape": [2, 3], "scheme": "kaiming_normal"},
    {"seed": 7, "name": "classifier.6.weight", "shape": [5, 3], "scheme": "xavier_uniform"},
    {"seed": 3, "name": "x.weight", "shape": [2, 3], "scheme": "zeros"},
    {"seed": 3, "name": "x.weight", "shape": [2, 3], "scheme": "ones"},
    {"seed": 3, "name": "x.weight", "shape": [2, 3], "scheme": "constant", "constant": 0.1},
    {"seed": 3, "name": "x.weight", "shape": [0, 3], "scheme": "xavier_normal"},
    # larger: digest only (crosses the reference's 65536-value chunk boundary)
    {"seed": 99, "name": "features.10.weight", "shape": [100, 700], "scheme": "xavier_normal",
     "digest_only": True},
    {"seed": 99, "name": "features.10.weight", "shape": [100, 700], "scheme": "kaiming_uniform",
     "digest_only": True},
]

MODEL_PARAMS = [
    ("features.0.weight", (4, 1, 3, 3)),
    ("features.0.bias", (4,)),
    ("features.1.weight", (4,)),
    ("features.1.bias", (4,)),
    ("classifier.weight", (3, 16)),
    ("classifier.bias", (3,)),
    ("features.1.running_mean", (4,)),
    ("features.1.running_var", (4,)),
    ("features.1.num_batches_tracked", ()),
]

# (radius word, angle word): octant boundaries, both ends of the radius word, a few ordinary pairs
NORMAL_PAIRS = [
    (0x00000000, 0x00000000), (0xFFFFFFFF, 0x00000000), (0xFFFFFFFE, 0x20000000),
    (0x7FFFFFFF, 0x40000000), (0x12345678, 0x60000000), (0x80000000, 0x80000000),
    (0xDEADBEEF, 0xA0000000), (0x00000001, 0xC0000000), (0xCAFEBABE, 0xE0000000),
    (0x9E3779B9, 0x1FFFFFFF), (0x0BADF00D, 0x20000001), (0x55555555, 0xFFFFFFFF),
    (0xAAAAAAAA, 0x3C6EF372), (0x3243F6A8, 0x885A308D), (0xB5470917, 0x9E3779B9),
]
UNIFORM_WORDS = [0x00000000, 0x000000FF, 0x00000100, 0x7FFFFFFF, 0x80000000, 0x800000FF, 0xFFFFFFFF,
                 0x12345678, 0xDEADBEEF]


def f32hex(a: Any) -> list[str]:
    return [f"{int(w):08x}" for w in np.ascontiguousarray(a, dtype="<f4").reshape(-1).view("<u4")]


def f64hex(x: float) -> str:
    return f"{struct.unpack('<Q', struct.pack('<d', x))[0]:016x}"


def main() -> None:
    kat: dict[str, Any] = {
        "algorithm": "philox4x32-10",
        "source": "Random123 kat_vectors (philox4x32 R=10)",
        "word_order": "counter[0..3], key[0..1], output[0..3] as in Random123's arrays; hex u32",
        "rows": [{"counter": c, "key": k, "expected": e} for c, k, e in KAT],
    }
    for row in kat["rows"]:
        got = philox4x32_10([int(x, 16) for x in row["counter"]], [int(x, 16) for x in row["key"]])
        assert [f"{int(x):08x}" for x in got] == row["expected"], row

    streams = []
    for seed, name in [(0, "conv1.weight"), (2**64 - 1, "fc.weight"), (7, "bl\u00f6ck.\u03c0.weight"),
                       (42, "sldp.replay.probe")]:
        st = derive_stream(seed, name)
        streams.append({
            "seed": seed, "name": name,
            "sha256_message_hex": (DOMAIN_TAG + seed.to_bytes(8, "little") + name.encode()).hex(),
            "key": [f"{st.key0:08x}", f"{st.key1:08x}"],
            "ctr2": f"{st.ctr2:08x}", "ctr3": f"{st.ctr3:08x}",
            "words_0_to_11": [f"{int(w):08x}" for w in stream_words(seed, name, 0, 12)],
            "block_4294967296": [f"{int(w):08x}" for w in stream_words(seed, name, 4 << 32, 4)],
        })

    uni = []
    for bound in (math.sqrt(3.0) * math.sqrt(2.0 / 60.0), 1.0, 0.01):
        b32 = float(np.float32(bound))
        v = _uniform_rows(np.array([UNIFORM_WORDS], dtype=np.uint64), b32, np.empty((1, len(UNIFORM_WORDS))))
        uni += [{"word": f"{w:08x}", "bound_f32": f32hex(np.float32(b32))[0], "value": h}
                for w, h in zip(UNIFORM_WORDS, f32hex(v.astype(np.float32)), strict=True)]

    nrm = []
    r = np.array([[p[0] for p in NORMAL_PAIRS]] * 2, dtype=np.uint64)  # the kernel works on 2 rows
    t = np.array([[p[1] for p in NORMAL_PAIRS]] * 2, dtype=np.uint64)
    zc, zs = normal_rows(r.copy(), t.copy(), 1.0, Scratch(len(NORMAL_PAIRS)))
    for i, (rw, tw) in enumerate(NORMAL_PAIRS):
        nrm.append({"radius_word": f"{rw:08x}", "angle_word": f"{tw:08x}", "sigma": 1.0,
                    "z_cos_f64": f64hex(float(zc[0, i])), "z_sin_f64": f64hex(float(zs[0, i])),
                    "z_cos_f32": f32hex(np.float32(zc[0, i]))[0], "z_sin_f32": f32hex(np.float32(zs[0, i]))[0]})

    tensors = []
    for spec in TENSORS:
        kw = {"constant": spec["constant"]} if "constant" in spec else {}
        arr = generate(spec["seed"], spec["name"], tuple(spec["shape"]), spec["scheme"], **kw)
        plan = plan_values(spec["seed"], spec["name"], tuple(spec["shape"]), spec["scheme"], **kw)
        entry = {k: v for k, v in spec.items() if k != "digest_only"}
        entry["transform"] = plan.transform
        entry["scale_f64"] = f64hex(plan.scale)
        entry["values_f32"] = None if spec.get("digest_only") else f32hex(arr)
        entry["sha256"] = tensor_sha256(arr)
        tensors.append(entry)

    theta = init_parameters(42, "xavier_normal", MODEL_PARAMS)
    model = {
        "seed": 42, "scheme": "xavier_normal",
        "params": [[n, list(s)] for n, s in MODEL_PARAMS],
        "kinds": {n: param_kind(n, s) for n, s in MODEL_PARAMS},
        "theta0_sha256": {n: tensor_sha256(a) for n, a in theta.items() if param_kind(n, a.shape)
                          not in BUFFER_KINDS},
        "buffers": {n: a.reshape(-1).tolist() for n, a in theta.items() if param_kind(n, a.shape)
                    in BUFFER_KINDS},
    }

    vectors = {
        "format": "sldp-init-vectors/1",
        "annex": "spec/SLDP-1-init.md",
        "notes": "hex u32 words; float32 as the hex of their IEEE-754 bits; float64 likewise (16 hex "
                 "digits); values_f32 in C (row-major) order; sha256 over the float32 little-endian bytes",
        "domain_tag_hex": DOMAIN_TAG.hex(),
        "streams": streams,
        "uniform_transform": uni,
        "normal_transform": nrm,
        "tensors": tensors,
        "models": [model],
    }
    (HERE / "philox_kat.json").write_text(json.dumps(kat, indent=1, ensure_ascii=False) + "\n", "utf-8")
    (HERE / "vectors.json").write_text(json.dumps(vectors, indent=1, ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote {HERE / 'philox_kat.json'} and {HERE / 'vectors.json'}")


if __name__ == "__main__":
    main()
