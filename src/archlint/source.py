"""Static reading of a module class's ``forward`` source (no execution).

Used where structure alone cannot tell how a parameter is used: a 2-D ``weight`` may be
a projection (``F.linear(x, self.weight)``) or a lookup table. Behavioural probes on meta
tensors (issue #3) refine these answers; this is the cheap structural pass.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from functools import cache

from torch import nn

_PROJECTION_CALLS = {"linear", "matmul", "mm", "bmm", "einsum", "addmm", "baddbmm", "tensordot", "_grouped_mm",
                     "grouped_mm"}


@cache
def forward_tree(cls: type) -> ast.FunctionDef | None:
    """The parsed ``forward`` of ``cls`` (from the class that defines it), or None."""
    forward = getattr(cls, "forward", None)
    if forward is None or forward is nn.Module.forward:
        return None
    try:
        source = textwrap.dedent(inspect.getsource(forward))
        node = ast.parse(source).body[0]
    except (OSError, TypeError, SyntaxError, IndexError):
        return None
    return node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


@cache
def projected_attributes(cls: type) -> frozenset[str]:
    """Names ``p`` such that ``forward`` feeds ``self.p`` to a matmul-like op
    (``F.linear``, ``torch.matmul``, ``einsum``, ``@``, ...)."""
    tree = forward_tree(cls)
    if tree is None:
        return frozenset()
    found: set[str] = set()
    for node in ast.walk(tree):
        operands: list[ast.AST] = []
        if isinstance(node, ast.Call) and _call_name(node) in _PROJECTION_CALLS:
            operands = [*node.args, *(k.value for k in node.keywords)]
            if isinstance(node.func, ast.Attribute):
                operands.append(node.func.value)  # x.matmul(self.w) and self.w.matmul(x)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            operands = [node.left, node.right]
        for operand in operands:
            found |= _self_attributes(operand)
    return frozenset(found)


def _call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _self_attributes(node: ast.AST) -> set[str]:
    """``self.x`` references inside an operand (through ``.t()``, ``.to()``, indexing...)."""
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "self":
            out.add(sub.attr)
    return out


def overrides_forward(cls: type, base: type) -> bool:
    """True when ``cls`` (a subclass of ``base``) replaces ``base.forward``."""
    return getattr(cls, "forward", None) is not getattr(base, "forward", None)


@cache
def forward_computes_rms(cls: type) -> bool:
    """``forward`` divides by a root mean square (``rsqrt``, or ``pow(2)`` and ``mean``)
    without subtracting a mean -- once per class, however many modules share it."""
    tree = forward_tree(cls)
    if tree is None:
        return False
    text = ast.unparse(tree)
    return "rsqrt" in text or ("pow(2)" in text and "mean" in text and "- " not in text)
