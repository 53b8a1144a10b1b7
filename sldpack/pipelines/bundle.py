"""``sldp export --to monai-bundle``: a MONAI bundle (the MONAI Bundle specification's folder layout).

::

    BUNDLE/
      configs/metadata.json    the bundle metadata, filled from the model card and the manifest
      configs/inference.json   builds the network, loads models/model.pt, applies the file's preprocessing
                               and decision (patch models: every window + Eq. 9; others: argmax)
      models/model.pt          theta_opt + theta_bn as a torch state dict
      docs/README.md           the model card (sldp card FILE)
      LICENSE                  the licences the card states

``inference.json`` names the zoo architecture and ``sldpack.nn.bundle_runtime``, so running the bundle
needs sldpack installed (the architectures are specified by the SLDP annex, not shipped as code). Run it
with ``python -m monai.bundle run --config_file BUNDLE/configs/inference.json --bundle_root BUNDLE
--input_image IMAGE.png`` (prints the decision), or load it with ``monai.bundle.ConfigParser``.

The bundle is checked before it is reported: it is loaded back with ``ConfigParser``, the network it builds
runs on the probe inputs (compared with the replay by the caller) and its decision component is built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sldpack.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

    from sldpack.format.manifest import Manifest

__all__ = ["BUNDLE_VERSION", "METADATA_SCHEMA", "inference_config", "metadata", "write_bundle"]

METADATA_SCHEMA = ("https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
                   "meta_schema_20240725.json")
"""The MONAI bundle metadata schema ``configs/metadata.json`` names."""
BUNDLE_VERSION = "0.1.0"
"""Version of a freshly exported bundle (``metadata.json`` ``version``)."""


def _decision_args(manifest: Manifest) -> dict[str, Any]:
    """The :class:`~sldpack.nn.bundle_runtime.ImageDecision` arguments the file implies."""
    from sldpack.medical.detection import DEFAULT_DELTA
    from sldpack.pipelines.card import positive_class
    from sldpack.pipelines.patch_source import patch_task_from_manifest

    pre = manifest.preprocessing
    if pre is None:
        raise UsageError("the file records no preprocessing (mean/std): a bundle could not feed it images")
    names = list(manifest.labels.names) if manifest.labels is not None else [str(i) for i in
                                                                             range(manifest.arch.num_classes)]
    args: dict[str, Any] = {"mean": float(pre.mean[0]), "std": float(pre.std[0]), "class_names": names}
    task = patch_task_from_manifest(manifest)
    dec = manifest.decision
    if task is not None:
        positive = dec.positive if dec is not None else "P"
        negative = dec.negative if dec is not None and dec.negative is not None else "N"
        delta = dec.delta if dec is not None and dec.delta is not None else DEFAULT_DELTA
        return {**args, "rule": "eq9", "positive": positive, "negative": negative, "delta": float(delta),
                "patch_size": int(task.size), "stride": int(task.stride), "out_size": int(task.input_size)}
    pos = positive_class(manifest)
    if pos is None:
        raise UsageError(f"the file's {len(names)} classes ({'/'.join(names)}) have no positive class: record a "
                         "decision rule (root key decision) before exporting a bundle")
    return {**args, "rule": "argmax", "positive": pos, "input_size": [int(v) for v in pre.image_size]}


def inference_config(manifest: Manifest) -> dict[str, Any]:
    """``configs/inference.json``: the network from the zoo + ``models/model.pt``, and the decision component."""
    arch = manifest.arch
    return {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "network_def": {"_target_": "sldpack.nn.zoo.build", "arch_id": arch.id, "in_channels": arch.in_channels,
                        "num_classes": arch.num_classes, "image_size": list(arch.image_size),
                        "batchnorm": arch.batchnorm, "options": dict(arch.options)},
        # _target_ (not a $ expression): MONAI's locate() imports the sldpack module itself
        "network": {"_target_": "sldpack.nn.bundle_runtime.load_network", "network": "@network_def",
                    "weights": "$@bundle_root + '/models/model.pt'", "device": "@device"},
        "decision": {"_target_": "sldpack.nn.bundle_runtime.ImageDecision", "network": "@network",
                     **_decision_args(manifest)},
        "input_image": "",
        "image": {"_target_": "sldpack.medical.images.read_image_file", "path": "@input_image"},
        "run": ["$print(@decision(@image))"],
    }


def metadata(manifest: Manifest, *, source_name: str) -> dict[str, Any]:
    """``configs/metadata.json`` in the MONAI bundle metadata schema, from the card and the manifest."""
    import monai
    import torch

    from sldpack import __version__
    from sldpack.format.card import ModelCard
    from sldpack.pipelines.card import decision_rule

    card = manifest.card or ModelCard()
    arch, pre = manifest.arch, manifest.preprocessing
    assert pre is not None
    dec = _decision_args(manifest)
    names = dec["class_names"]
    patch = dec["rule"] == "eq9"
    size: list[Any] = list(card.input_size) if card.input_size is not None else (
        ["*", "*"] if patch else list(pre.image_size))
    value_range = list(card.input_range) if card.input_range is not None else [0, 255]
    evaluation = {e.metric: {"value": e.value, "ci95": list(e.ci95) if e.ci95 else None, "n": e.n,
                             "split": e.split} for e in card.evaluation}
    ds = card.dataset
    return {
        "schema": METADATA_SCHEMA,
        "version": BUNDLE_VERSION,
        "changelog": {BUNDLE_VERSION: f"exported from {source_name} by sldpack {__version__} (sldp export)"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"sldpack": __version__},
        "name": card.name or f"{arch.id} ({source_name})",
        "task": card.summary or ("image-level detection from patch classification (Eq. 9)" if patch
                                 else "image classification"),
        "description": card.summary or f"Network re-derived from the distilled data file {source_name}.",
        "authors": card.contact or "not stated",
        "copyright": card.license or "not stated",
        "data_source": ds.name + (f" {ds.version}" if ds.version else "") if ds is not None else "not stated",
        "data_type": card.modality or "not stated",
        "intended_use": card.intended_use or "not stated by the sender",
        "limitations": card.limitations or "not stated by the sender",
        "references": [ds.citation] if ds is not None and ds.citation else [],
        "decision_rule": decision_rule(manifest),
        "label_meanings": dict(card.label_meanings),
        "eval_metrics": evaluation,
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "magnitude", "modality": card.modality or "not stated",
                "num_channels": arch.in_channels, "spatial_shape": size, "dtype": "uint8",
                "value_range": value_range, "is_patch_data": False,
                "channel_def": {"0": "image"}}},
            "outputs": {"pred": {
                "type": "object", "format": "decision", "num_channels": 1, "spatial_shape": [1],
                "dtype": "int", "value_range": [0, 1], "is_onehot": False,
                "channel_def": {"0": f"1 when {dec['positive']} (positive) by the decision rule"},
                "network_outputs": {str(i): n for i, n in enumerate(names)},
                "network_input": {"num_channels": arch.in_channels, "spatial_shape": list(arch.image_size),
                                  "is_patch_data": patch, "normalisation": {"scale": 255.0,
                                                                            "mean": list(pre.mean),
                                                                            "std": list(pre.std)}}}},
        },
    }


def _license_text(manifest: Manifest) -> str:
    card = manifest.card
    lines = ["Licences stated by the sender in the file's model card (sldp card FILE):", ""]
    lines.append(f"This model (the .sldp file and the network derived from it): "
                 f"{card.license if card is not None and card.license else 'not stated'}")
    lines.append(f"Training data: {card.data_license if card is not None and card.data_license else 'not stated'}")
    return "\n".join(lines) + "\n"


def write_bundle(module: nn.Module, manifest: Manifest, folder: Path, probes: np.ndarray, *, source_name: str,
                 license_text: str | None = None) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Write the bundle into ``folder`` (new), load it back with MONAI and run its network on ``probes``.

    Returns:
        ``(logits of the bundle's network on probes, the files written, notes)``.

    Raises:
        UsageError: the ``monai`` extra is missing, the file has no preprocessing or positive class.
    """
    try:
        from monai.bundle.config_parser import ConfigParser
    except ImportError as exc:
        raise UsageError(f"a MONAI bundle needs monai (pip install 'sldpack[monai]'): {exc}") from None
    import torch

    from sldpack.format.provenance import file_sha256
    from sldpack.nn.export import module_logits
    from sldpack.pipelines.card import render_card

    infer = inference_config(manifest)
    meta = metadata(manifest, source_name=source_name)
    files = {
        "configs/inference.json": json.dumps(infer, indent=2) + "\n",
        "configs/metadata.json": json.dumps(meta, indent=2) + "\n",
        "docs/README.md": render_card(manifest, file_name=source_name),
        "LICENSE": license_text if license_text is not None else _license_text(manifest),
    }
    for rel, text in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    (folder / "models").mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().to("cpu") for k, v in module.state_dict().items()}, str(folder / "models/model.pt"))
    # the check: MONAI reads the config, builds the network from it and loads the weights; the decision
    # component is built too (its arguments are checked by its constructor)
    parser = ConfigParser()
    parser.read_config(str(folder / "configs/inference.json"))
    parser.read_meta(str(folder / "configs/metadata.json"))
    parser["bundle_root"] = str(folder)
    net = parser.get_parsed_content("network")
    parser.get_parsed_content("decision")
    logits = module_logits(net, probes)
    notes = ("run: python -m monai.bundle run --config_file BUNDLE/configs/inference.json --bundle_root BUNDLE "
             "--input_image IMAGE.png (needs sldpack, and fire for monai.bundle run)",
             f"models/model.pt sha256 {file_sha256(folder / 'models/model.pt')}")
    names = tuple(sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()))
    return logits, names, notes
