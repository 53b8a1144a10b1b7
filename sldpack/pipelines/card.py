"""The model card of a ``.sldp``: render it (Markdown with Hugging Face YAML front matter), edit it in place.

The stored card (root key ``card``, spec 5.11, :class:`~sldpack.format.card.ModelCard`) holds what only a
person can say (intended use, limitations, licences, the sender's evaluation). Everything the manifest
already says — architecture, classes, input size and normalisation, patch geometry, the decision rule
(``decision``, or the default rule when the file has none), the training-data digest, the privacy audit — is
read from the manifest when the card is rendered, never copied into the card.

:func:`set_card` edits the card through the same atomic manifest-only re-pack as ``sldp audit --record``
(payload bytes unchanged, the new file read back and verified before it replaces the old one). It changes
the file's bytes, so a signature made before no longer verifies; :class:`CardEdit` says so.

Torch-free.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sldpack.errors import FormatError, UsageError
from sldpack.format.card import CARD_TEXT_FIELDS, ModelCard
from sldpack.format.manifest import Manifest

__all__ = ["RECORDED_METRICS", "CardEdit", "apply_edits", "card_summary", "decision_rule",
           "positive_class", "record_evaluation", "render_card", "set_card", "yaml_front_matter"]

_STRUCTURED = ("label_meanings", "input_range", "input_size", "dataset", "evaluation")


# --- what the manifest says -------------------------------------------------------------------------------

def _patch_options(manifest: Manifest) -> Mapping[str, Any] | None:
    pre = manifest.preprocessing
    if pre is None or "patch_size" not in pre.options:
        return None
    return pre.options


def positive_class(manifest: Manifest) -> str | None:
    """The class that makes an image positive: ``decision.positive``, else ``P`` for an I/N/P patch model,
    else the second class of a two-class model (label 1), else ``None``."""
    if manifest.decision is not None:
        return manifest.decision.positive
    names = tuple(manifest.labels.names) if manifest.labels is not None else ()
    if _patch_options(manifest) is not None or names == ("I", "N", "P"):
        return "P"
    return names[1] if len(names) == 2 else None


def decision_rule(manifest: Manifest) -> str:
    """The image-level decision rule in words: the file's ``decision`` or, without it, the default rule."""
    from sldpack.medical.detection import DEFAULT_DELTA

    if manifest.decision is not None:
        return manifest.decision.describe()
    opts = _patch_options(manifest)
    if opts is not None or (manifest.labels is not None and tuple(manifest.labels.names) == ("I", "N", "P")):
        return (f"eq9: P/(N+P) >= {DEFAULT_DELTA:g}, I ignored (the default rule: the file records no decision; "
                "seed paper Eq. 9)")
    pos = positive_class(manifest)
    if pos is None:
        return "argmax over the classes (the file records no decision rule)"
    return f"argmax: positive when the top class is {pos} (the default rule: the file records no decision)"


# --- editing --------------------------------------------------------------------------------------------

def _parse_value(key: str, text: str) -> Any:
    """A structured field's value: JSON (``[0, 255]``, ``{"name": ...}``), or ``a,b`` for a pair."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if "," in text:
            try:
                return json.loads(f"[{text}]")
            except json.JSONDecodeError:
                pass
    raise UsageError(f"card field {key}: {text!r} is not a JSON value (e.g. {key}=[0,255] or "
                     f"{key}='{{\"name\": \"...\"}}')")


def apply_edits(card: ModelCard | None, items: Sequence[str]) -> ModelCard:
    """``card`` with ``KEY=VALUE`` edits applied and checked like a reader checks a file.

    Keys: the text fields (:data:`~sldpack.format.card.CARD_TEXT_FIELDS`: the value is the text as given),
    ``label_meanings.CLASS``, ``dataset.name|version|citation|url`` (text), ``input_range``, ``input_size``
    (``low,high`` / ``height,width`` or JSON), ``dataset`` and ``evaluation`` (JSON), ``evaluation+`` (one JSON
    result appended). ``KEY=`` (empty) removes the field.

    Raises:
        UsageError: an item without ``=``, an unknown key, or a value of the wrong type (naming the field).
    """
    obj: dict[str, Any] = card.to_obj() if card is not None else {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"card edit {item!r}: expected KEY=VALUE")
        head, _, sub = key.partition(".")
        if head in CARD_TEXT_FIELDS and not sub:
            _put(obj, head, value or None)
        elif head == "label_meanings" and sub:
            meanings = dict(obj.get("label_meanings", {}))
            _put(meanings, sub, value or None)
            _put(obj, head, meanings or None)
        elif head == "dataset" and sub in ("name", "version", "citation", "url"):
            ds = dict(obj.get("dataset", {}))
            _put(ds, sub, value or None)
            _put(obj, head, ds or None)
        elif key == "evaluation+":
            if not value:
                raise UsageError("card edit evaluation+=: give one result as JSON")
            obj["evaluation"] = [*obj.get("evaluation", []), _parse_value(key, value)]
        elif head in _STRUCTURED and not sub:
            _put(obj, head, _parse_value(head, value) if value else None)
        else:
            known = ", ".join((*CARD_TEXT_FIELDS, "label_meanings.CLASS", "dataset.name|version|citation|url",
                               "input_range", "input_size", "dataset", "evaluation", "evaluation+"))
            raise UsageError(f"card edit {item!r}: unknown field {key!r}; fields: {known}")
    try:
        return ModelCard.parse(obj)
    except FormatError as exc:
        raise UsageError(f"card value refused: {exc.field}: {exc.message} (expected {exc.expected}, got "
                         f"{exc.got})") from None


def _put(d: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        d.pop(key, None)
    else:
        d[key] = value


@dataclass(frozen=True)
class CardEdit:
    """What :func:`set_card` did.

    Attributes:
        card: the card now in the file.
        manifest_sha256_before, manifest_sha256_after: the header's manifest digest before and after.
        version: the file's version after the edit (a card makes it 1.1).
        signature: a detached signature found beside the file (``FILE.sig``) that no longer verifies, or ``None``.
    """

    card: ModelCard
    manifest_sha256_before: str
    manifest_sha256_after: str
    version: tuple[int, int]
    signature: Path | None


def _rewrite_card(path: str | os.PathLike[str], change: Callable[[Manifest], ModelCard]) -> CardEdit:
    """Replace the file's card by ``change(manifest)``: a manifest-only re-pack, atomic, verified first."""
    from sldpack.atomic import atomic_write_bytes
    from sldpack.format.container import assemble
    from sldpack.format.container import open as open_sldp
    from sldpack.format.container import read as read_sldp

    src = Path(path)
    with open_sldp(src) as f:
        f.verify()  # never re-pack (and bless) a file whose tensors do not match their digests
        manifest, header, off = f.manifest, f.header, f.payload_offset
    card = change(manifest)
    new = replace(manifest, card=card if card.to_obj() else None)
    with open(src, "rb") as fh:
        fh.seek(off)
        payload = fh.read(header.payload_length)
    data = assemble(new, payload, version=(header.version_major, header.version_minor))
    # the new bytes are a valid file (every reader check, the card's against labels.names included) before
    # anything is replaced
    check = read_sldp(data, verify=True)
    after, version = check.header.manifest_sha256, (check.header.version_major, check.header.version_minor)
    check.close()
    atomic_write_bytes(src, data)
    sig = src.with_name(src.name + ".sig")
    return CardEdit(card=card, manifest_sha256_before=header.manifest_sha256, manifest_sha256_after=after,
                    version=version, signature=sig if sig.is_file() else None)


def set_card(path: str | os.PathLike[str], items: Sequence[str]) -> CardEdit:
    """Apply ``KEY=VALUE`` edits (:func:`apply_edits`) to the file's card: a manifest-only re-pack, atomic.

    The file's digests are checked first (a broken file is never re-packed), the new bytes are read back and
    verified, then they replace the file. The payload is copied byte for byte.

    Raises:
        UsageError: a bad edit or no edit. FormatError/DigestError: the file is not valid.
    """
    if not items:
        raise UsageError("no card edit given: sldp card set FILE KEY=VALUE ...")
    return _rewrite_card(path, lambda m: apply_edits(m.card, items))


RECORDED_METRICS = ("hm", "auc", "sensitivity", "specificity")
"""What ``sldp eval --record`` writes into ``card.evaluation``."""


def record_evaluation(path: str | os.PathLike[str], ev: Any, *, class_names: Sequence[str], split: str,
                      dataset: str | None = None) -> CardEdit:
    """Write an evaluation's image-level results into the file's ``card.evaluation`` (``sldp eval --record``).

    One entry per :data:`RECORDED_METRICS` with its 95 % CI (Wilson for sensitivity/specificity, bootstrap
    over images for HM/AUC, as the acceptance record), the test images and the split rule. Entries with the
    same metric, split and data set are replaced, others kept.

    Raises:
        UsageError: the evaluation has no binary image-level labels (nothing to record).
    """
    from sldpack.format.card import CardEvaluation
    from sldpack.pipelines.acceptance import binary_metrics_with_ci, per_image_outcomes

    t, d, s = per_image_outcomes(ev, tuple(class_names))
    known = t >= 0
    if not known.any():
        raise UsageError("--record needs labelled images (0/1): the evaluation has no image-level metrics")
    m = binary_metrics_with_ci(t[known], d[known], None if s is None else s[known])
    new = []
    for key in RECORDED_METRICS:
        entry = m[key]
        if entry["value"] is None:
            continue
        ci = entry["ci95"]
        new.append(CardEvaluation(metric=key, value=float(entry["value"]), n=int(m["n"]), split=split,
                                  ci95=None if ci is None else (float(ci[0]), float(ci[1])), dataset=dataset))

    def change(manifest: Manifest) -> ModelCard:
        card = manifest.card or ModelCard()
        keep = tuple(e for e in card.evaluation
                     if not any((e.metric, e.split, e.dataset) == (n.metric, n.split, n.dataset) for n in new))
        return replace(card, evaluation=keep + tuple(new))

    return _rewrite_card(path, change)


# --- rendering ------------------------------------------------------------------------------------------

def _y(value: Any) -> str:
    """A YAML scalar or flow collection: JSON is valid YAML (1.2, and the subset PyYAML reads)."""
    return json.dumps(value, ensure_ascii=True)


_METRIC_NAMES = {"hm": "HM (harmonic mean of sensitivity and specificity)", "auc": "ROC AUC",
                 "sensitivity": "sensitivity", "specificity": "specificity", "accuracy": "accuracy"}


def yaml_front_matter(manifest: Manifest, *, model_name: str) -> str:
    """Hugging Face model-card metadata: ``license``, ``datasets``, ``tags``, ``library_name``, ``model-index``
    (one result per ``card.evaluation`` entry), between ``---`` lines."""
    card = manifest.card or ModelCard()
    lines = ["---"]
    if card.license:
        lines.append(f"license: {_y(card.license.lower())}")
    if card.dataset is not None:
        lines += ["datasets:", f"- {_y(card.dataset.name)}"]
    lines += ["library_name: \"sldpack\"", "tags:", "- \"medical-imaging\"", "- \"dataset-distillation\"",
              "- \"sldp\""]
    if card.modality:
        lines.append(f"- {_y(card.modality)}")
    if card.evaluation:
        lines += ["model-index:", f"- name: {_y(model_name)}", "  results:"]
        for e in card.evaluation:
            ds_name = e.dataset or (card.dataset.name if card.dataset is not None else "test set")
            label = _METRIC_NAMES.get(e.metric, e.metric)
            if e.ci95 is not None:
                label += f", 95% CI [{e.ci95[0]:.3f}, {e.ci95[1]:.3f}]"
            label += f", n={e.n}"  # the split rule is the dataset's "split"
            lines += [f"  - task: {_y({'type': 'image-classification'})}",
                      f"    dataset: {_y({'name': ds_name, 'type': ds_name, 'split': e.split})}",
                      "    metrics:",
                      f"    - {_y({'type': e.metric, 'value': e.value, 'name': label})}"]
    lines.append("---")
    return "\n".join(lines) + "\n"


def _or(value: str | None, missing: str = "not stated by the sender") -> str:
    return value if value else f"*{missing}*"


def render_card(manifest: Manifest, *, file_name: str, file_sha256: str | None = None) -> str:
    """The model card as Markdown: Hugging Face YAML front matter, then the card's text and what the manifest
    says (architecture, input, labels, decision rule, training data, audit), then how to check the file."""
    card = manifest.card or ModelCard()
    arch, pre, prov = manifest.arch, manifest.preprocessing, manifest.provenance
    name = card.name or f"{arch.id} distilled network ({file_name})"
    out = [yaml_front_matter(manifest, model_name=name), f"# {name}", ""]
    if card.summary:
        out += [card.summary, ""]
    details = [f"- **File**: `{file_name}`" + (f", SHA-256 `{file_sha256}`" if file_sha256 else ""),
               "- **Format**: SLDP (soft-label distilled package); the network is re-derived by replay "
               "(`sldp replay`), its weights are not stored",
               f"- **Architecture**: `{arch.id}`, {arch.in_channels} input channel(s), {arch.num_classes} outputs, "
               f"input {arch.image_size[0]}x{arch.image_size[1]} px, batch norm {'yes' if arch.batchnorm else 'no'}"
               + (f", options {dict(arch.options)}" if arch.options else ""),
               f"- **Made with**: {prov.tool}, {prov.created}"]
    out += ["## Model details", "", *details, "",
            "## Intended use", "", _or(card.intended_use), "",
            "## Limitations", "", _or(card.limitations), ""]
    inp = [f"- **Modality**: {_or(card.modality)}"]
    if card.input_size is not None:
        inp.append(f"- **Image size**: {card.input_size[0]}x{card.input_size[1]} px")
    if card.input_range is not None:
        inp.append(f"- **Pixel value range**: {card.input_range[0]:g} to {card.input_range[1]:g}")
    if pre is not None:
        inp.append(f"- **Normalisation**: x / 255, minus mean {list(pre.mean)}, divided by std {list(pre.std)}; "
                   f"network input {pre.channels}x{pre.image_size[0]}x{pre.image_size[1]}")
    opts = _patch_options(manifest)
    if opts is not None:
        inp.append(f"- **Patches**: {opts.get('patch_size')} px windows, stride {opts.get('patch_stride')}, "
                   f"shrunk to {opts.get('patch_out_size', opts.get('patch_size'))} px")
    out += ["## Input", "", *inp, ""]
    names = tuple(manifest.labels.names) if manifest.labels is not None else ()
    pos = positive_class(manifest)
    labels = [f"- `{n}`: {card.label_meanings.get(n, '*meaning not stated*')}" + (" (positive)" if n == pos else "")
              for n in names] or ["*the file names no classes*"]
    out += ["## Labels and decision", "", *labels, "", f"Decision rule: {decision_rule(manifest)}.", ""]
    data = ["- **Data set**: " + (_or(None) if card.dataset is None else card.dataset.name
                                   + (f", version {card.dataset.version}" if card.dataset.version else ""))]
    if card.dataset is not None and card.dataset.citation:
        data.append(f"- **Citation**: {card.dataset.citation}")
    if card.dataset is not None and card.dataset.url:
        data.append(f"- **URL**: {card.dataset.url}")
    data.append(f"- **Data licence**: {_or(card.data_license)}")
    if prov.training_data_sha256:
        data.append(f"- **Training-data digest** (spec 5.3.1): `{prov.training_data_sha256}`")
    if prov.audit is not None:
        bound = "bound to these images" if prov.audit.binds(manifest.tensors) else "STALE: the images changed since"
        data.append(f"- **Privacy audit**: {prov.audit.verdict} ({bound})")
    else:
        data.append("- **Privacy audit**: *none recorded*")
    out += ["## Training data", "", *data, ""]
    out += ["## Evaluation (the sender's)", ""]
    if card.evaluation:
        out += ["| metric | value | 95 % CI | test images | split | test set |", "|---|---|---|---|---|---|"]
        for e in card.evaluation:
            ci = "–" if e.ci95 is None else f"[{e.ci95[0]:.3f}, {e.ci95[1]:.3f}]"
            out.append(f"| {e.metric} | {e.value:.3f} | {ci} | {e.n} | {e.split} | "
                       f"{e.dataset or (card.dataset.name if card.dataset else '–')} |")
        out.append("")
    else:
        out += ["*No evaluation recorded.* Check the file on your own data before use: "
                "`sldp accept FILE --data LOCAL --key RECEIVER.key`.", ""]
    out += ["## Licence", "", _or(card.license), "", "## Contact", "", _or(card.contact), "",
            "## Using the file", "", "```sh",
            f"sldp verify {file_name} --signature {file_name}.sig --trusted-keys TRUSTED/   # who sent it, unchanged",
            f"sldp accept {file_name} --data LOCAL --key RECEIVER.key                   # your patients, signed",
            f"sldp export {file_name} --to onnx --out model.onnx                       # or torchscript, "
            "monai-bundle", "```", ""]
    return "\n".join(out)


def card_summary(manifest: Manifest) -> str | None:
    """One line for ``sldp inspect`` (``None`` when the file has no card)."""
    card = manifest.card
    if card is None:
        return None
    parts = [card.name or "unnamed"]
    if card.intended_use:
        use = card.intended_use if len(card.intended_use) <= 60 else card.intended_use[:57] + "..."
        parts.append(f"use: {use}")
    if card.license:
        parts.append(f"licence {card.license}")
    if card.dataset is not None:
        parts.append(f"data {card.dataset.name}")
    for e in card.evaluation[:2]:
        ci = "" if e.ci95 is None else f" [{e.ci95[0]:.2f}, {e.ci95[1]:.2f}]"
        parts.append(f"{e.metric} {e.value:.3f}{ci} (n {e.n})")
    if len(card.evaluation) > 2:
        parts.append(f"+{len(card.evaluation) - 2} more result(s)")
    return "; ".join(parts)


