"""A beton's on-disk facts: its manifest (`manifest`: the classes in label order, totals, write
options, integrity) and whether the file is whole and the one its manifest describes
(`integrity`, which reads ffcv's layout: the format's dtypes are exported too). Callers import
from here."""

from .integrity import (
    ALLOC_ENTRY,
    FIELD_DESC,
    FIELD_METADATA,
    FLOAT_FIELD,
    FORMAT_VERSION,
    HEADER,
    INT_FIELD,
    LABEL_FIELD,
    RGB_FIELD,
    Damaged,
    check_beton,
    integrity_of,
    read_labels,
    read_layout,
    record_integrity,
    sha256_of,
    verify_beton,
    verify_betons,
)
from .manifest import ClassEntry, Integrity, Manifest, manifest_path, read_manifest

__all__ = [
    "ALLOC_ENTRY",
    "FIELD_DESC",
    "FIELD_METADATA",
    "FLOAT_FIELD",
    "FORMAT_VERSION",
    "HEADER",
    "INT_FIELD",
    "LABEL_FIELD",
    "RGB_FIELD",
    "ClassEntry",
    "Damaged",
    "Integrity",
    "Manifest",
    "check_beton",
    "integrity_of",
    "manifest_path",
    "read_labels",
    "read_layout",
    "read_manifest",
    "record_integrity",
    "sha256_of",
    "verify_beton",
    "verify_betons",
]
