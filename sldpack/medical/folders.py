"""Image folders with a ``name,label`` CSV: reading the CSV and resolving names to files.

Shared by the eager folder loader (:func:`sldpack.medical.loaders.load_folder`) and the lazy one
(:func:`sldpack.medical.store.open_folder_lazy`), so both resolve names by one rule.
"""

from __future__ import annotations

import csv
from pathlib import Path

from sldpack.errors import DataError
from sldpack.medical.images import IMAGE_EXTENSIONS

__all__ = ["find_by_name", "index_folder", "read_labels_csv"]


def read_labels_csv(path: Path) -> list[tuple[int, str, int]]:
    """Rows ``(line number, name, label)`` of a ``name,label`` CSV."""
    if not path.is_file():
        raise DataError(f"{path}: labels CSV not found (expected columns name,label)")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            if "name" not in fields or "label" not in fields:
                raise DataError(f"{path}: header must contain the columns name,label, got {reader.fieldnames}")
            name_key = reader.fieldnames[fields.index("name")]  # type: ignore[index]
            label_key = reader.fieldnames[fields.index("label")]  # type: ignore[index]
            rows: list[tuple[int, str, int]] = []
            for rec in reader:
                line = reader.line_num
                name = (rec.get(name_key) or "").strip()
                raw = (rec.get(label_key) or "").strip()
                if not name and not raw:
                    continue  # blank line
                if not name:
                    raise DataError(f"{path}: line {line}: empty name")
                try:
                    label = int(raw)
                except ValueError:
                    raise DataError(f"{path}: line {line}: label {raw!r} is not an integer") from None
                if label < 0:
                    raise DataError(f"{path}: line {line}: label {label} is negative")
                rows.append((line, name, label))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from exc
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from exc
    if not rows:
        raise DataError(f"{path}: no rows (expected a header name,label and one row per image)")
    return rows


def find_by_name(folder: Path, name: str, files: dict[str, list[Path]], what: str, ctx: str) -> Path:
    """Resolve ``name`` (a file name with extension, or a stem matching exactly one file) in ``folder``."""
    direct = folder / name
    if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
        # a full file name must exist as written: never substitute img.tif for a listed img.png
        if direct.is_file():
            return direct
        raise DataError(f"{ctx}: names {name!r} but {folder} has no {what} file with that name")
    if direct.is_file():
        raise DataError(f"{ctx}: {name!r} is not a supported image type ({', '.join(IMAGE_EXTENSIONS)})")
    cands = files.get(name, [])
    if not cands:
        raise DataError(f"{ctx}: names {name!r} but {folder} has no {what} file with that name")
    if len(cands) > 1:
        raise DataError(f"{ctx}: {name!r} is ambiguous in {folder}: {sorted(c.name for c in cands)}")
    return cands[0]


def index_folder(folder: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
            out.setdefault(f.stem, []).append(f)
    return out
