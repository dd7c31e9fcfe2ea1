"""NORM001 custom-rmsnorm."""

from __future__ import annotations

from torch import nn

from ..findings import Confidence, Fix, Severity
from ..structure import is_rms_norm
from .base import Example, Rule


class CustomRmsNorm(Rule):
    """An RMS-normalising module that is not `torch.nn.RMSNorm`.

    What it does:
        Flags RMS norms implemented by the model itself (`LlamaRMSNorm`,
        `Gemma3RMSNorm`, `Gemma4RMSNorm`), recognised by class name or by the `rsqrt`
        / `pow(2).mean` in their forward. The finding's `details` carry the norm's
        semantics (offset `1 + w`, compute dtype and cast order, eps placement,
        weight) once the behavioural probe has read them; until then the
        finding is info and says the semantics are unread.

    Why is this bad:
        Kernel patchers (Liger, Unsloth) and converters (GGUF, MLX) replace these norms
        assuming the Llama convention: scale by `w`, compute in fp32, cast back before
        scaling. Gemma-2/3 scale by `1 + w` and cast after; Gemma-4 scales by `w` but
        casts after. A swap with the wrong convention gives wrong outputs silently.

    Example:
        `Gemma3RMSNorm` computes `x * rsqrt(mean(x**2) + eps) * (1 + w)` in fp32.

    Use instead:
        The kernel settings that match this norm exactly (e.g. Liger's `offset` and
        `casting_mode`), or `torch.nn.RMSNorm` when it is an exact drop-in.

    References:
        GM-01, GM-02, G4-07; https://github.com/linkedin/Liger-Kernel/pull/1196
    """

    code = "NORM001"
    name = "custom-rmsnorm"
    severity = Severity.INFO
    confidence = Confidence.LOW
    tools = ("liger", "unsloth", "gguf", "mlx")

    VALID = (Example("fixtures/zoo/norms.py:TorchRmsNormModel", note="torch.nn.RMSNorm itself"),)
    INVALID = (
        Example("fixtures/zoo/norms.py:OffsetRmsNormModel", paths=("layers.0.norm", "layers.1.norm", "norm"),
                fix="casting_mode"),
    )

    def check(self, ctx):
        for group in ctx.graph.distinct(lambda i: is_rms_norm(i) and type(i.module) is not nn.RMSNorm):
            info = group.info
            weighted = bool(info.parameters)
            yield self.finding(
                group.paths,
                f"{info.class_name} is a model-specific RMSNorm; its convention (offset, cast order) "
                f"is what a kernel swap must match",
                module_class=info.class_name,
                fix=Fix(
                    "Check the convention before swapping in a fused kernel",
                    "Llama convention (scale by w, fp32, cast back before scaling): "
                    "LigerRMSNorm(offset=0.0, casting_mode='llama'); "
                    "Gemma (1 + w, cast after): offset=1.0, casting_mode='gemma'",
                ),
                details={"has_weight": weighted, "semantics": "unprobed"},
            )
