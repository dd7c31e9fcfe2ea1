"""NORM003 layernorm-among-rmsnorms."""

from __future__ import annotations

from collections import defaultdict

from ..findings import Fix, Severity
from ..structure import is_layer_norm, is_norm, is_rms_norm, tower_label
from .base import Example, Rule


class LayerNormAmongRmsNorms(Rule):
    """A mean-centering LayerNorm in a sub-model whose other norms are RMS norms.

    What it does:
        Within each sub-model (tower), when RMS norms are the majority, flags the
        `nn.LayerNorm`-style modules (mean-centering, with a bias) among them. Each
        norm's kind is read from its probed forward (it subtracts the mean or calls
        `layer_norm`), falling back to its type and name when the probe fails.

    Why is this bad:
        RMSNorm patchers applied to the whole model, and converters that assume one
        norm type per model, compute the wrong function for these modules: PhiMoE's
        final norm is a LayerNorm although its config calls the epsilon `rms_norm_eps`.

    Example:
        `model.norm` of PhiMoE is an `nn.LayerNorm`; every decoder norm is an RMSNorm.

    Use instead:
        Keep these modules out of the RMSNorm patch (patch by class, not model-wide).

    References:
        Phi-3-vision: a CLIP vision tower (LayerNorm) beside a Phi-3 language model (RMSNorm)
    """

    code = "NORM003"
    name = "layernorm-among-rmsnorms"
    severity = Severity.WARNING
    tools = ("liger", "unsloth", "gguf", "mlx")

    VALID = (Example("fixtures/zoo/norms.py:TorchRmsNormModel"),)
    INVALID = (
        Example("fixtures/zoo/norms.py:MixedNormModel", paths=("decoder.final_norm",), fix="LayerNorm"),
    )

    def check(self, ctx):
        rms, layer = defaultdict(int), defaultdict(list)
        for group in ctx.graph.distinct(lambda i: i.is_leaf and is_norm(i)):
            kind = _kind(ctx, group.representative)
            for path in group.paths:
                info = ctx.graph.info(path)
                if kind == "rms":
                    rms[info.tower] += 1
                elif kind == "layer":
                    layer[info.tower].append(info)
        for tower, infos in layer.items():
            if rms[tower] <= len(infos):
                continue
            flagged = {i.path for i in infos}
            for group in ctx.graph.distinct(lambda i, flagged=flagged: i.path in flagged):
                yield self.finding(
                    group.paths,
                    f"{group.representative.class_name} (mean-centering, with bias) sits among {rms[tower]} RMS norms "
                    f"in {tower_label(tower)}; a model-wide RMSNorm patch would compute the wrong function",
                    module_class=group.representative.class_name,
                    fix=Fix("Patch norms by class, and leave this LayerNorm as it is",
                            f"exclude {', '.join(group.paths[:3])} from the RMSNorm kernel patch"),
                )


def _kind(ctx, info) -> str | None:
    """"rms" or "layer", read from the probe; the structural guess when the probe fails."""
    semantics = ctx.probes.norm(info.module).semantics
    if semantics is not None:
        return semantics.kind
    if is_rms_norm(info):
        return "rms"
    return "layer" if is_layer_norm(info) else None
