"""Checkpoint agreement from safetensors headers: transformers' loader as the oracle.

Entry points: :func:`checkpoint_source` (which checkpoint a target has) and
:func:`agreement` (read its headers, run the loader on meta tensors) returning a
:class:`CheckpointAgreement`.
"""

from .agreement import CheckpointAgreement, CheckpointSource, agreement, checkpoint_source, compare
from .headers import CheckpointUnreadable, Headers, read_hub, read_local

__all__ = ["CheckpointAgreement", "CheckpointSource", "CheckpointUnreadable", "Headers", "agreement",
           "checkpoint_source", "compare", "read_hub", "read_local"]
