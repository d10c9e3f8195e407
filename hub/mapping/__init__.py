"""Declarative field mappings: remote record shapes <-> the hub's canonical fields.

A mapping file (TOML, see ``mappings/README.md``) lists ``[[field]]`` tables, each naming a
canonical field, a remote path and a chain of transforms. The push direction is derived
from the same file.
"""

from hub.mapping.check import check_mapping_file, load_mapping
from hub.mapping.model import Mapping
from hub.mapping.paths import MISSING, PathError, RemotePath
from hub.mapping.registry import (
    BuildContext,
    NoParams,
    Step,
    TransformError,
    TransformSpec,
    register_transform,
    registered_transforms,
    transform_names,
)
from hub.mapping.rules import FieldProblem, RecordMappingError

__all__ = [
    "MISSING",
    "BuildContext",
    "FieldProblem",
    "Mapping",
    "NoParams",
    "PathError",
    "RecordMappingError",
    "RemotePath",
    "Step",
    "TransformError",
    "TransformSpec",
    "check_mapping_file",
    "load_mapping",
    "register_transform",
    "registered_transforms",
    "transform_names",
]
