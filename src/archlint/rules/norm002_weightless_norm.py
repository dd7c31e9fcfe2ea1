"""NORM002 weightless-norm."""

from __future__ import annotations

from ..findings import Confidence, Fix, Severity
from ..probe.norms import liger_arguments
from ..structure import is_norm
from .base import Example, Rule


class WeightlessNorm(Rule):
    """A normalisation layer with no scale parameter.

    What it does:
        Flags norm modules that own no parameters at all (`Gemma4RMSNorm` with
        `with_scale=False`, `nn.LayerNorm(elementwise_affine=False)`). The same probe
        as NORM001 confirms the module normalises its input (a parameterless module named
        "norm" that does not is left alone: torch's `_WeightNorm` parametrization
        normalises a weight, not activations) and gives the weightless kernel settings.

    Why is this bad:
        Kernel patchers and converters assume every norm has a `.weight`: a fused
        kernel swap reads a missing attribute or invents a ones vector, and exporters
        emit a weight the checkpoint does not have.

    Example:
        Gemma-4's `self_attn.v_norm` and the router's `norm`.

    Use instead:
        A weightless kernel for these modules (Liger's `elementwise_affine=False` path),
        or leave them unpatched.

    References:
        https://github.com/linkedin/Liger-Kernel/pull/1196
    """

    code = "NORM002"
    name = "weightless-norm"
    severity = Severity.WARNING
    tools = ("liger", "unsloth", "gguf", "mlx")

    VALID = (Example("fixtures/zoo/norms.py:TorchRmsNormModel"),
             Example("fixtures/zoo/norms.py:WeightNormConvModel",
                     note="torch's weight-norm parametrization normalises a weight, not activations"))
    INVALID = (
        Example("fixtures/zoo/norms.py:WeightlessNormModel", paths=("layers.0.v_norm", "layers.1.v_norm"),
                fix="weightless"),
    )

    def check(self, ctx):
        for group in ctx.graph.distinct(lambda i: i.is_leaf and not i.parameters and is_norm(i)):
            reading = ctx.probes.norm(group.representative.module)
            s = reading.semantics
            if s is None and not reading.error.startswith("the forward"):
                detail, confidence = "e.g. LigerRMSNorm(hidden_size, elementwise_affine=False)", Confidence.LOW
            elif s is None:
                continue  # it ran and normalised nothing: not a norm, whatever its name
            elif s.kind == "rms":
                detail, confidence = f"LigerRMSNorm(d, {liger_arguments(s)})", reading.confidence
            else:
                detail = "nn.LayerNorm(d, elementwise_affine=False), or leave it unpatched"
                confidence = reading.confidence
            yield self.finding(
                group.paths,
                f"{group.representative.class_name} normalises without a scale parameter; "
                "kernels that expect `.weight` break",
                module_class=group.representative.class_name,
                fix=Fix("Use a weightless kernel for these modules, or leave them unpatched", detail),
                details=reading.details(),
                confidence=confidence,
            )
