"""Numeric checks on a tiny CPU copy of one leaf module -- never the model.

Some questions need values: is the offset really ``1 + w``, is a drop-in
``torch.nn.RMSNorm`` bit-exact. :func:`cpu_copy` materialises one module's own
parameters on the CPU (seeded random values, bounded to :data:`MAX_BYTES`), refusing
modules with buffers (their values live in the checkpoint or were computed at init and
are gone on meta) and anything larger than the bound.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .norms import NormSemantics

MAX_BYTES = 4 * 1024 * 1024
TOKENS = 3


def cpu_copy(module: nn.Module, *, seed: int = 0, max_bytes: int = MAX_BYTES) -> nn.Module | None:
    """A CPU copy of ``module`` with seeded random parameters, or None when it is not a
    small, buffer-free module."""
    if any(True for _ in module.buffers()):
        return None
    size = sum(p.numel() * max(p.element_size(), 4) for p in module.parameters())
    if size > max_bytes:
        return None
    clone = copy.deepcopy(module).to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in clone.parameters():
            p.copy_((torch.rand(p.shape, generator=generator) - 0.5).to(p.dtype))
    return clone.eval()


def sample_input(width: int, dtype: torch.dtype, *, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(1, TOKENS, width, generator=generator) * 3).to(dtype)


def rms_reference(x: torch.Tensor, weight: torch.Tensor | None, semantics: NormSemantics) -> torch.Tensor:
    """The RMS norm that ``semantics`` describes, written out."""
    compute = getattr(torch, semantics.compute_dtype)
    h = x.to(compute)
    eps = semantics.eps or 0.0
    if semantics.eps_inside_sqrt is False:
        h = h / (h.pow(2).mean(-1, keepdim=True).sqrt() + eps)
    else:
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    if weight is None:
        return h.to(x.dtype)
    if semantics.cast_before_scale:
        return (weight + semantics.offset) * h.to(x.dtype) if semantics.offset else weight * h.to(x.dtype)
    scale = weight.to(compute) + semantics.offset if semantics.offset else weight.to(compute)
    return (h * scale).to(x.dtype)


def confirm_rms(module: nn.Module, semantics: NormSemantics, width: int) -> dict[str, bool] | None:
    """Run a CPU copy of ``module`` and compare it bit for bit with the reference formula
    of ``semantics`` and with ``torch.nn.RMSNorm`` (same eps, same weight)."""
    clone = cpu_copy(module)
    if clone is None:
        return None
    dtype = getattr(torch, semantics.input_dtype)
    x = sample_input(width, dtype)
    weight = dict(clone.named_parameters()).get(semantics.weight) if semantics.weight else None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "cannot dispatch to fused implementation" on mixed dtypes
        out = clone(x)
        matches = torch.equal(out, rms_reference(x, weight, semantics))
        norm_dtype = weight.dtype if weight is not None else dtype
        torch_norm = nn.RMSNorm(width, eps=semantics.eps, elementwise_affine=weight is not None, dtype=norm_dtype)
        if weight is not None:
            if semantics.offset or weight.shape != torch_norm.weight.shape:
                return {"matches_reference": matches, "equivalent_to_torch": False}
            torch_norm.weight.copy_(weight)
        equivalent = torch.equal(out, torch_norm(x))
    return {"matches_reference": matches, "equivalent_to_torch": equivalent}
