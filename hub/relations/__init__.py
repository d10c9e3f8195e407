"""Relations between golden records: reference fields, their resolution and translation."""

from hub.relations.model import (
    REFERENCE_FIELDS,
    Reference,
    ReferenceField,
    is_reference,
    normalize_key,
    reference_field,
)

__all__ = [
    "REFERENCE_FIELDS",
    "Reference",
    "ReferenceField",
    "is_reference",
    "normalize_key",
    "reference_field",
]
