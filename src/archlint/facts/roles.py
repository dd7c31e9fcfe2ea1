"""Roles from data flow: what each projection's output (and each slice of it) does --
q/k/v, router, GLU gate/up, output gate, SSM input -- read from one trace per distinct
block (:mod:`archlint.probe.roles`, :mod:`archlint.probe.role_map`). The one place roles
are decided; LORA005, LORA007, LORA010, GATE001-004 and ATTN004 ask it."""

from __future__ import annotations

from ..probe.role_map import RoleMap
from .base import Facts, fact


@fact(phase="probe")
def roles(facts: Facts) -> RoleMap:
    """Roles by module path (each block traced when first asked for, through the lint's probe cache)."""
    return RoleMap(facts.graph, facts.probes.probe)
