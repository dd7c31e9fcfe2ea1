"""Checkpoint agreement from safetensors headers: transformers' loader as the oracle.

Entry points: :func:`checkpoint_source` (which checkpoint a target has) and
:func:`agreement` (read its headers, run the loader on meta tensors) returning a
:class:`CheckpointAgreement`.
"""

from .agreement import CheckpointAgreement, CheckpointSource, agreement, checkpoint_source, compare
from .headers import Checkpoint, CheckpointUnreadable, Headers, open_hub, open_local, read_hub, read_local

__all__ = ["Checkpoint", "CheckpointAgreement", "CheckpointSource", "CheckpointUnreadable", "Headers", "agreement",
           "checkpoint_source", "compare", "open_hub", "open_local", "read_hub", "read_local"]
