"""Layer 7: versioned model artifacts with checksums, release gate, activate and roll back.

>>> reg = ModelRegistry("var/models")                                  # doctest: +SKIP
>>> outcome = train_version(Dataset.from_store(store), reg)            # doctest: +SKIP
>>> reg.rollback()                                                     # doctest: +SKIP
"""

from shelfwise.registry.gate import GateDecision
from shelfwise.registry.training import TrainingConfig, TrainingOutcome, release, train_version
from shelfwise.registry.versions import (
    Candidate,
    CorruptArtifactError,
    GateRefusedError,
    LoadedVersion,
    ModelRegistry,
    Pointer,
    RegistryError,
    StoreMismatchError,
    UnknownVersionError,
    VersionInfo,
    check_store,
)

__all__ = [
    "Candidate",
    "CorruptArtifactError",
    "GateDecision",
    "GateRefusedError",
    "LoadedVersion",
    "ModelRegistry",
    "Pointer",
    "RegistryError",
    "StoreMismatchError",
    "TrainingConfig",
    "TrainingOutcome",
    "UnknownVersionError",
    "VersionInfo",
    "check_store",
    "release",
    "train_version",
]
