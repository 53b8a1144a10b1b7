"""The architecture zoo: every id builds and runs, names/shapes/counts are the spec's, errors are clear."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from torch.func import functional_call  # noqa: E402

from sldpack.errors import UsageError  # noqa: E402
from sldpack.format.manifest import ArchSpec  # noqa: E402
from sldpack.nn import zoo  # noqa: E402
from sldpack.nn.archs._common import Op, out_size  # noqa: E402

ANNEX = Path(__file__).resolve().parents[2] / "spec" / "SLDP-1-architectures.md"
IDS = ["convnet@1", "lenet@1", "alexnet@1", "vgg16@1", "vgg19@1", "resnet18@1", "resnet34@1", "googlenet@1"]
GRAY3: dict[str, Any] = {"in_channels": 1, "num_classes": 3}


def test_registry_holds_exactly_the_spec_ids() -> None:
    assert list(zoo.ARCHITECTURES) == IDS
    for arch_id, info in zoo.ARCHITECTURES.items():
        assert info.id == arch_id
        assert info.description and "\n" not in info.description
        assert info.min_image_size == zoo.min_image_size(arch_id)
    assert dict(zoo.ARCHITECTURES["convnet@1"].default_options) == {"depth": 3, "width": 128}
    assert zoo.min_image_size("convnet@1") == (8, 8)  # three 2x2 pools
    assert zoo.min_image_size("convnet@1", {"depth": 5}) == (32, 32)


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("arch_id", IDS)
def test_builds_runs_and_matches_param_shapes(arch_id: str, batchnorm: bool) -> None:
    side = max(16, zoo.ARCHITECTURES[arch_id].min_image_size[0])
    kw: dict[str, Any] = {**GRAY3, "image_size": (side, side), "batchnorm": batchnorm}
    m = zoo.build(arch_id, **kw)
    assert m.training
    # the shape functions (meta device) describe exactly the real module, in order
    assert zoo.param_shapes(arch_id, **kw) == [(n, tuple(p.shape)) for n, p in m.named_parameters()]
    assert zoo.buffer_shapes(arch_id, **kw) == [(n, tuple(b.shape)) for n, b in m.named_buffers()]
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in m.parameters())
    assert all(not p.any() for p in m.parameters())  # deterministic zero fill, not PyTorch's random init
    bns = [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    assert bool(bns) == batchnorm
    for bn in bns:
        assert bn.track_running_stats and bn.affine and bn.momentum == 0.1 and bn.eps == 1e-5
        assert not bn.running_mean.any() and bool((bn.running_var == 1).all()) and int(bn.num_batches_tracked) == 0
    if not batchnorm:
        assert not list(m.buffers())
    if zoo.param_count(arch_id, **kw) < 20_000_000:
        # small enough to give random weights cheaply: the logits must depend on the input
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    x = torch.randn(2, 1, side, side, generator=torch.Generator().manual_seed(1))
    y = m(x)
    assert y.shape == (2, 3) and y.dtype == torch.float32
    assert bool(torch.isfinite(y).all())
    if zoo.param_count(arch_id, **kw) < 20_000_000:
        assert not torch.equal(y[0], y[1])


@pytest.mark.parametrize(("arch_id", "size", "expected"), [
    ("alexnet@1", (227, 227), 57_000_643),
    ("alexnet@1", (224, 224), 57_000_643),
    ("vgg16@1", (227, 227), 134_271_683),
    ("vgg16@1", (224, 224), 134_271_683),
    ("vgg19@1", (227, 227), 139_581_379),
    ("vgg19@1", (224, 224), 139_581_379),
])
def test_seed_paper_table6_counts(arch_id: str, size: tuple[int, int], expected: int) -> None:
    assert zoo.param_count(arch_id, **GRAY3, image_size=size) == expected


def test_googlenet_with_bn_matches_the_seed_paper() -> None:
    assert zoo.param_count("googlenet@1", **GRAY3, image_size=(227, 227), batchnorm=True) == 5_984_915


def test_resnet_gap_to_the_seed_paper_is_the_documented_constant() -> None:
    # ours = torchvision's definition; the paper's figures are both exactly 5,184 higher (see the annex)
    r18 = zoo.param_count("resnet18@1", **GRAY3, image_size=(227, 227), batchnorm=True)
    r34 = zoo.param_count("resnet34@1", **GRAY3, image_size=(227, 227), batchnorm=True)
    assert (r18, r34) == (11_171_779, 21_279_939)
    assert (11_176_963 - r18, 21_285_123 - r34) == (5_184, 5_184)


@pytest.mark.parametrize(("arch_id", "batchnorm", "expected"), [
    # torchvision's published counts (3 channels, 1000 classes): same definitions, same numbers
    ("alexnet@1", False, 61_100_840),
    ("vgg16@1", False, 138_357_544),
    ("vgg19@1", False, 143_667_240),
    ("vgg16@1", True, 138_365_992),
    ("vgg19@1", True, 143_678_248),
    ("resnet18@1", True, 11_689_512),
    ("resnet34@1", True, 21_797_672),
])
def test_torchvision_reference_counts(arch_id: str, batchnorm: bool, expected: int) -> None:
    assert zoo.param_count(arch_id, in_channels=3, num_classes=1000, image_size=(224, 224),
                           batchnorm=batchnorm) == expected


def test_canonical_names() -> None:
    kw: dict[str, Any] = {**GRAY3, "image_size": (64, 64)}
    r = dict(zoo.param_shapes("resnet18@1", **kw, batchnorm=True))
    assert list(r)[:6] == ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight",
                           "layer1.0.bn1.weight", "layer1.0.bn1.bias"]
    assert r["layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert r["layer2.0.downsample.1.weight"] == (128,)
    assert list(r)[-2:] == ["fc.weight", "fc.bias"]
    r_nobn = dict(zoo.param_shapes("resnet18@1", **kw))
    assert r_nobn["conv1.bias"] == (64,) and r_nobn["layer2.0.downsample.0.bias"] == (128,)
    bufs = [n for n, _ in zoo.buffer_shapes("resnet18@1", **kw, batchnorm=True)]
    assert bufs[:3] == ["bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"]
    g = dict(zoo.param_shapes("googlenet@1", **kw, batchnorm=True))
    assert g["inception3a.branch3.1.conv.weight"] == (32, 16, 5, 5)  # the paper's 5x5
    assert g["inception3a.branch4.1.conv.bias"] == (32,)
    assert g["inception5b.branch1.bn.weight"] == (384,)
    v = [n for n, _ in zoo.param_shapes("vgg16@1", **kw)]
    assert v[:4] == ["conv1_1.weight", "conv1_1.bias", "conv1_2.weight", "conv1_2.bias"]
    assert v[-6:] == ["fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias", "fc8.weight", "fc8.bias"]
    a = [n for n, _ in zoo.param_shapes("alexnet@1", **kw, batchnorm=True)]
    assert a[:4] == ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias"]
    c = zoo.param_shapes("convnet@1", **GRAY3, image_size=(28, 28), batchnorm=True)
    assert [n for n, _ in c][:4] == ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias"]
    assert c[-2] == ("fc.weight", (3, 128 * 3 * 3))  # 28 -> 14 -> 7 -> 3
    le = dict(zoo.param_shapes("lenet@1", **GRAY3, image_size=(28, 28)))
    assert le["fc1.weight"] == (120, 16 * 5 * 5)  # the classic 400 features on MNIST-sized input


def test_checkpoint_bytes_is_state_dict_tensor_bytes() -> None:
    kw: dict[str, Any] = {**GRAY3, "image_size": (28, 28), "batchnorm": True, "options": {"width": 16}}
    m = zoo.build("convnet@1", **kw)
    assert zoo.checkpoint_bytes("convnet@1", **kw) == sum(
        t.numel() * t.element_size() for t in m.state_dict().values())
    # resnet18: fp32 params + fp32 running mean/var over 4,800 BN channels + 20 int64 counters
    n = zoo.param_count("resnet18@1", **GRAY3, image_size=(224, 224), batchnorm=True)
    assert zoo.checkpoint_bytes("resnet18@1", **GRAY3, image_size=(224, 224), batchnorm=True) == \
        4 * n + 4 * 2 * 4_800 + 8 * 20


def test_out_size_matches_pytorch() -> None:
    # the per-axis size arithmetic of every conv/pool kind the zoo uses, against PyTorch itself
    F = torch.nn.functional
    cases = [Op(k, s, p) for k in (1, 2, 3, 5, 7, 11) for s in (1, 2, 4) for p in range(k // 2 + 1)]
    cases += [Op(k, s, p, True) for k in (2, 3) for s in (1, 2) for p in range(k // 2 + 1)]
    for op in cases:
        for n in range(1, 16):
            x = torch.zeros(1, 1, n, 1)
            want = out_size(n, op)
            try:
                if op.ceil:
                    got = F.max_pool2d(x, (op.kernel, 1), (op.stride, 1), (op.padding, 0), ceil_mode=True).shape[2]
                else:
                    got = F.max_pool2d(x, (op.kernel, 1), (op.stride, 1), (op.padding, 0)).shape[2]
            except RuntimeError:
                got = 0
            assert max(want, 0) == got, (op, n)
            conv = F.conv2d(x, torch.zeros(1, 1, op.kernel, 1), stride=(op.stride, 1), padding=(op.padding, 0)) \
                if not op.ceil and n + 2 * op.padding >= op.kernel else None
            if conv is not None:
                assert conv.shape[2] == want, (op, n)
            elif not op.ceil:
                assert want < 1


@pytest.mark.parametrize("arch_id", ["alexnet@1", "vgg16@1", "vgg19@1", "resnet18@1", "resnet34@1", "googlenet@1"])
def test_min_image_size_is_tight(arch_id: str) -> None:
    # adaptive pooling makes these accept any size that survives the conv/pool chain
    lo = zoo.min_image_size(arch_id)[0]
    big = arch_id.startswith("vgg")  # 0.5 GB of fc weights: check shapes on "meta" instead
    dev = "meta" if big else "cpu"
    m = zoo.build(arch_id, **GRAY3, image_size=(lo, lo), device=dev).eval()
    with torch.no_grad():
        assert m(torch.zeros(2, 1, lo, lo + 1, device=dev)).shape == (2, 3)
        if lo > 1:
            with pytest.raises(RuntimeError):  # PyTorch agrees that one pixel less is too small
                m(torch.zeros(2, 1, lo - 1, lo + 1, device=dev))
            with pytest.raises(UsageError, match=f"at least {lo}x{lo}"):
                zoo.build(arch_id, **GRAY3, image_size=(lo - 1, lo + 1), device="meta")


@pytest.mark.parametrize(("arch_id", "options"), [("lenet@1", {}), ("convnet@1", {}), ("convnet@1", {"depth": 4})])
def test_flatten_size_follows_input_size(arch_id: str, options: dict[str, int]) -> None:
    lo = zoo.min_image_size(arch_id, options)[0]
    for h, w in [(lo, lo), (lo + 1, lo + 5), (28, 28), (32, 32), (37, 50)]:
        m = zoo.build(arch_id, **GRAY3, image_size=(h, w), options=options, device="meta")
        assert m(torch.empty(2, 1, h, w, device="meta")).shape == (2, 3)  # Linear would reject a wrong size
    with pytest.raises(UsageError, match="at least"):
        zoo.build(arch_id, **GRAY3, image_size=(lo - 1, 64), options=options)


def test_usage_errors() -> None:
    kw: dict[str, Any] = {**GRAY3, "image_size": (32, 32)}
    with pytest.raises(UsageError, match=r"unknown architecture id 'resnet50@1'.*known ids: convnet@1"):
        zoo.build("resnet50@1", **kw)
    with pytest.raises(UsageError, match=r"this sldpack knows convnet@1; a newer version"):
        zoo.build("convnet@2", **kw)
    with pytest.raises(UsageError, match="does not accept option"):
        zoo.build("convnet@1", **kw, options={"norm": 1})
    with pytest.raises(UsageError, match="accepted: none"):
        zoo.param_shapes("lenet@1", **kw, options={"depth": 3})
    for bad in (True, 2.0, "3", 0, 17):
        with pytest.raises(UsageError, match="option 'depth'"):
            zoo.build("convnet@1", **kw, options={"depth": bad})
    with pytest.raises(UsageError, match="in_channels"):
        zoo.build("convnet@1", in_channels=0, num_classes=3, image_size=(32, 32))
    with pytest.raises(UsageError, match="num_classes"):
        zoo.build("convnet@1", in_channels=1, num_classes=True, image_size=(32, 32))
    with pytest.raises(UsageError, match="image_size"):
        zoo.build("convnet@1", in_channels=1, num_classes=3, image_size=(32,))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="batchnorm"):
        zoo.build("convnet@1", **kw, batchnorm=1)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="needs an input of at least 63x63"):
        zoo.build("alexnet@1", **GRAY3, image_size=(62, 227))
    with pytest.raises(UsageError, match="at least 32x32"):
        zoo.build("convnet@1", **GRAY3, image_size=(28, 28), options={"depth": 5})
    with pytest.raises(UsageError, match="image height must be an integer"):
        zoo.build("convnet@1", in_channels=1, num_classes=3, image_size=(32.0, 32))  # type: ignore[arg-type]
    assert zoo.resolve_options("convnet@1", {"width": 8}) == {"depth": 3, "width": 8}
    # numpy integers (e.g. from a data set's shape) are accepted and normalised
    np = pytest.importorskip("numpy")
    assert zoo.param_shapes("lenet@1", in_channels=np.int64(1), num_classes=np.int32(3),
                            image_size=np.array([28, 28])) == zoo.param_shapes("lenet@1", **GRAY3,
                                                                                image_size=(28, 28))


def test_build_from_spec_and_meta_device() -> None:
    spec = ArchSpec(id="convnet@1", in_channels=3, num_classes=10, image_size=(32, 32), batchnorm=True,
                    options={"depth": 2, "width": 8})
    m = zoo.build_from_spec(spec)
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert dict(zoo.param_shapes("convnet@1", in_channels=3, num_classes=10, image_size=(32, 32),
                                 batchnorm=True, options={"depth": 2, "width": 8}))["fc.weight"] == (10, 8 * 8 * 8)
    meta = zoo.build("vgg19@1", **GRAY3, image_size=(227, 227), device="meta")
    assert all(p.is_meta for p in meta.parameters())
    assert sum(p.numel() for p in meta.parameters()) == 139_581_379


def test_float32_whatever_the_default_dtype() -> None:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        m = zoo.build("lenet@1", **GRAY3, image_size=(28, 28), batchnorm=True)
    finally:
        torch.set_default_dtype(old)
    assert {p.dtype for p in m.parameters()} == {torch.float32}


def _random_(m: Any, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


@pytest.mark.parametrize(("arch_id", "size", "options"), [
    ("convnet@1", 28, {"width": 16}), ("lenet@1", 28, {}), ("resnet18@1", 16, {}), ("googlenet@1", 16, {}),
])
def test_functional_call_matches_module(arch_id: str, size: int, options: dict[str, int]) -> None:
    m = zoo.build(arch_id, **GRAY3, image_size=(size, size), batchnorm=True, options=options)
    _random_(m, 0)
    x = torch.randn(4, 1, size, size, generator=torch.Generator().manual_seed(1))
    params = {n: p.detach().clone().requires_grad_(True) for n, p in m.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in m.named_buffers()}
    y_fc = functional_call(m, (params, buffers), (x,))
    y_m = m(x)  # same weights, same (train-mode) batch statistics
    assert torch.equal(y_fc, y_m)
    grads = torch.autograd.grad(y_fc.logsumexp(1).sum(), list(params.values()))
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    # functional_call updated the running stats it was given, not the module's
    assert all(torch.equal(buffers[n], b) for n, b in m.named_buffers())


def test_convnet_unrolled_step_differentiates_to_the_images() -> None:
    # the distiller's pattern: theta1 = theta0 - lr * grad(loss(theta0, x_syn)); d loss(theta1, x_real) / d x_syn
    m = zoo.build("convnet@1", **GRAY3, image_size=(28, 28), batchnorm=True, options={"width": 8, "depth": 2})
    _random_(m, 2)
    theta0 = {n: p.detach().clone().requires_grad_(True) for n, p in m.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in m.named_buffers()}
    gen = torch.Generator().manual_seed(3)
    x_syn = torch.randn(6, 1, 28, 28, generator=gen).requires_grad_(True)
    y_syn = torch.tensor([0, 1, 2, 0, 1, 2])
    x_real, y_real = torch.randn(5, 1, 28, 28, generator=gen), torch.tensor([2, 1, 0, 0, 1])
    loss0 = torch.nn.functional.cross_entropy(functional_call(m, (theta0, buffers), (x_syn,)), y_syn)
    g = torch.autograd.grad(loss0, list(theta0.values()), create_graph=True)
    theta1 = {n: p - 0.01 * gi for (n, p), gi in zip(theta0.items(), g, strict=True)}
    loss1 = torch.nn.functional.cross_entropy(functional_call(m, (theta1, buffers), (x_real,)), y_real)
    (gx,) = torch.autograd.grad(loss1, [x_syn])
    assert gx.shape == x_syn.shape and bool(torch.isfinite(gx).all()) and float(gx.abs().sum()) > 0


def _annex_rows() -> list[list[str]]:
    text = ANNEX.read_text(encoding="utf-8")
    start = text.index("<!-- zoo-table:begin -->")
    end = text.index("<!-- zoo-table:end -->")
    rows = []
    for line in text[start:end].splitlines():
        if line.startswith("| `"):
            rows.append([c.strip().strip("`") for c in line.strip().strip("|").split("|")])
    return rows


def test_annex_count_table_matches_code() -> None:
    # the annex's table is generated by `python -m sldpack.nn.zoo table`; this keeps them equal
    rows = _annex_rows()
    assert [(r[0], r[1]) for r in rows] == [(i, bn) for i in IDS for bn in ("false", "true")]
    kw: dict[str, Any] = {**GRAY3, "image_size": (227, 227)}
    for arch_id, bn_s, params, bufs, ntensors, nbytes, digest in rows:
        bn = bn_s == "true"
        ps = zoo.param_shapes(arch_id, **kw, batchnorm=bn)
        bs = zoo.buffer_shapes(arch_id, **kw, batchnorm=bn)
        assert int(params.replace(",", "")) == zoo.param_count(arch_id, **kw, batchnorm=bn)
        assert int(bufs.replace(",", "")) == sum(math.prod(s) for _, s in bs)
        assert int(ntensors) == len(ps) + len(bs)
        assert int(nbytes.replace(",", "")) == zoo.checkpoint_bytes(arch_id, **kw, batchnorm=bn)
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
        assert digest == zoo.tensor_list_sha256(arch_id, **kw, batchnorm=bn)


def test_tensor_list_digest_is_the_documented_text() -> None:
    import hashlib

    kw: dict[str, Any] = {**GRAY3, "image_size": (28, 28), "batchnorm": True, "options": {"depth": 1, "width": 2}}
    text = ("param\tconv1.weight\tF32\t2,1,3,3\nparam\tconv1.bias\tF32\t2\nparam\tbn1.weight\tF32\t2\n"
            "param\tbn1.bias\tF32\t2\nparam\tfc.weight\tF32\t3,392\nparam\tfc.bias\tF32\t3\n"
            "buffer\tbn1.running_mean\tF32\t2\nbuffer\tbn1.running_var\tF32\t2\n"
            "buffer\tbn1.num_batches_tracked\tI64\t\n")
    assert zoo.tensor_list_sha256("convnet@1", **kw) == hashlib.sha256(text.encode()).hexdigest()
    # the annex prints this example and its digest
    assert hashlib.sha256(text.encode()).hexdigest() in ANNEX.read_text(encoding="utf-8")
    assert "".join(f"    {line}\n" for line in text.splitlines()) in ANNEX.read_text(encoding="utf-8")


def _resnet_count(blocks: tuple[int, ...], *, cin: int = 1, k1: int = 7, conv1_bias: bool = False,
                  conv_bias: bool = False, bn: bool = True, bn_stats: bool = False, nbt: bool = False,
                  shortcut_bias: bool = False, ncls: int = 3, fc_in: int = 512) -> int:
    """ResNet parameter arithmetic, written independently of the zoo, with knobs for paper variants."""
    n = 64 * cin * k1 * k1 + (64 if conv1_bias or conv_bias else 0)
    bn_ch, conv_ch, inp = [64], [], 64
    for stage, (w, nb) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
        for b in range(nb):
            n += inp * w * 9 + w * w * 9
            conv_ch += [w, w]
            bn_ch += [w, w]
            if stage > 0 and b == 0:
                n += inp * w + (w if shortcut_bias or conv_bias else 0)
                bn_ch.append(w)
            inp = w
    n += sum(conv_ch) if conv_bias else 0
    if bn:
        n += 2 * sum(bn_ch) + (2 * sum(bn_ch) if bn_stats else 0) + (len(bn_ch) if nbt else 0)
    return n + fc_in * ncls + ncls


def test_resnet_gap_is_not_a_simple_variant() -> None:
    # the arithmetic agrees with the zoo at the baseline ...
    for blocks, arch_id in (((2, 2, 2, 2), "resnet18@1"), ((3, 4, 6, 3), "resnet34@1")):
        assert _resnet_count(blocks) == zoo.param_count(arch_id, **GRAY3, image_size=(227, 227), batchnorm=True)
        assert _resnet_count(blocks, bn=False, conv_bias=True) == zoo.param_count(
            arch_id, **GRAY3, image_size=(227, 227))
    # ... and no combination of the usual variants gives both of the paper's figures (annex section 11)
    import itertools

    hits = []
    for cin, k1, c1b, cb, bn, st, nbt, scb, ncls, fc_in in itertools.product(
            (1, 2, 3), (3, 5, 7, 9, 11), *[(False, True)] * 6, (2, 3, 4, 10, 1000), (512, 2048, 4608, 8192)):
        kw: dict[str, Any] = {"cin": cin, "k1": k1, "conv1_bias": c1b, "conv_bias": cb, "bn": bn,
                              "bn_stats": st, "nbt": nbt, "shortcut_bias": scb, "ncls": ncls, "fc_in": fc_in}
        if _resnet_count((2, 2, 2, 2), **kw) == 11_176_963 and _resnet_count((3, 4, 6, 3), **kw) == 21_285_123:
            hits.append(kw)
    assert hits == []


def test_every_tensor_has_an_init_kind() -> None:
    # SLDP-1-init.md section 8 assigns a kind by leaf name and rank; the zoo uses nothing else
    for arch_id in IDS:
        kw: dict[str, Any] = {**GRAY3, "image_size": (227, 227), "batchnorm": True}
        for name, shape in zoo.param_shapes(arch_id, **kw):
            leaf = name.rsplit(".", 1)[-1]
            assert (leaf == "weight" and len(shape) in (1, 2, 4)) or (leaf == "bias" and len(shape) == 1), name
        assert {n.rsplit(".", 1)[-1] for n, _ in zoo.buffer_shapes(arch_id, **kw)} == {
            "running_mean", "running_var", "num_batches_tracked"}
