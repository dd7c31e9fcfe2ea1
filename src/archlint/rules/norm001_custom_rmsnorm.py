"""NORM001 custom-rmsnorm."""

from __future__ import annotations

from torch import nn

from ..findings import Confidence, Fix, Severity
from ..probe.norms import liger_arguments, liger_settings
from ..structure import is_rms_norm
from .base import Example, Rule


class CustomRmsNorm(Rule):
    """An RMS-normalising module that is not `torch.nn.RMSNorm`, with its convention.

    What it does:
        Finds RMS norms implemented by the model itself (`LlamaRMSNorm`,
        `Gemma3RMSNorm`, `Gemma4RMSNorm`) and reads what each computes from its
        behaviour: its forward is recorded on meta tensors, and a tiny CPU copy of that
        one module is checked against the reference formula and against
        `torch.nn.RMSNorm`. `details` carry `offset` (0: scale by `w`, 1: by `1 + w`),
        `compute_dtype`, `cast_before_scale`, `eps`, `eps_inside_sqrt`, `has_weight`,
        `equivalent_to` (`"torch.nn.RMSNorm"` when the swap is bit-exact on the
        installed torch) and `liger` (the `LigerRMSNorm` `offset`/`casting_mode`
        that reproduce it: `"llama"` casts back before scaling, `"gemma"` scales in
        fp32 and casts after, `"none"` never upcasts). Exactly
        `nn.RMSNorm`, or the Llama convention kernel patchers assume, is info; any
        other convention is a warning.

    Why is this bad:
        Kernel patchers (Liger, Unsloth) and converters (GGUF, MLX) replace these norms
        assuming the Llama convention: scale by `w`, compute in fp32, cast back before
        scaling. Gemma-2/3 scale by `1 + w` and cast after; Gemma-4 and gpt-oss scale by
        `w` but multiply in fp32 and cast after. A swap with the wrong convention gives
        wrong outputs silently, and class names do not tell them apart.

    Example:
        `Gemma3RMSNorm` computes `(x * rsqrt(mean(x**2) + eps) * (1 + w)).to(dtype)` in fp32.

    Use instead:
        The kernel settings that match this norm exactly (Liger's `offset` and
        `casting_mode`), or `torch.nn.RMSNorm` when it is an exact drop-in.

    References:
        https://github.com/linkedin/Liger-Kernel/issues/74,
        https://github.com/linkedin/Liger-Kernel/pull/1196
    """

    code = "NORM001"
    name = "custom-rmsnorm"
    severity = Severity.INFO
    severity_note = "warning when the norm is neither exact nor the Llama convention"
    confidence = Confidence.MEDIUM
    tools = ("liger", "unsloth", "gguf", "mlx")

    VALID = (Example("fixtures/zoo/norms.py:TorchRmsNormModel", note="torch.nn.RMSNorm itself"),)
    INVALID = (
        Example("fixtures/zoo/norms.py:OffsetRmsNormModel", paths=("layers.0.norm", "layers.1.norm", "norm"),
                fix="offset=1.0, casting_mode='gemma'"),
        Example("fixtures/zoo/norms.py:LlamaStyleNormModel", paths=("layers.0.norm", "layers.1.norm"),
                fix="casting_mode='llama'", note="the Llama convention: info"),
        Example("fixtures/zoo/norms.py:TorchEquivalentNormModel", paths=("layers.0.norm", "layers.1.norm"),
                fix="torch.nn.RMSNorm", note="bit-exact with nn.RMSNorm: info"),
    )

    def check(self, ctx):
        for group in ctx.graph.distinct(lambda i: is_rms_norm(i) and type(i.module) is not nn.RMSNorm):
            info = group.representative
            reading = ctx.probes.norm(info.module)
            semantics = reading.semantics
            if semantics is not None and semantics.kind != "rms":
                continue  # it centres on the mean: a LayerNorm whatever its name says (NORM003)
            if semantics is None:
                yield self.finding(
                    group.paths,
                    f"{info.class_name} is a model-specific RMSNorm; its forward could not be probed, "
                    f"so its convention (offset, cast order) is unread",
                    module_class=info.class_name, confidence=Confidence.LOW,
                    fix=Fix("Check the convention before swapping in a fused kernel",
                            "Llama convention: LigerRMSNorm(offset=0.0, casting_mode='llama'); "
                            "Gemma-2/3 (1 + w, cast after): offset=1.0, casting_mode='gemma'"),
                    details={"has_weight": bool(info.parameters), **reading.details()},
                )
                continue
            yield self._finding(group, reading)

    def _finding(self, group, reading):
        info, s = group.representative, reading.semantics
        if reading.contradicted:
            return self.finding(
                group.paths,
                f"{info.class_name} normalises by the root mean square, but a CPU copy does not compute what its "
                f"trace reads ({describe(s)}); its convention is unread",
                module_class=info.class_name, severity=Severity.INFO, confidence=Confidence.LOW,
                fix=Fix("Check what it computes before swapping in a fused kernel",
                        "compare the module with LigerRMSNorm on a few inputs; leave it unpatched until they agree"),
                details={**reading.details(), "liger": None})
        if not s.plain:
            return self._gated_or_grouped(group, reading)
        liger = liger_arguments(s)
        exact = reading.equivalent_to is not None
        severity = Severity.INFO if exact or s.llama_convention else Severity.WARNING
        message = f"{info.class_name} computes {describe(s, _dtype(info.module))}"
        if exact:
            message += "; bit-exact with torch.nn.RMSNorm"
            fix = Fix("Drop-in torch.nn.RMSNorm is equivalent; a Liger kernel needs these settings",
                      f"torch.nn.RMSNorm(d, eps={s.eps}{'' if s.has_weight else ', elementwise_affine=False'})\n"
                      f"LigerRMSNorm(d, {liger})")
        elif s.llama_convention:
            message += " (the Llama convention kernel patchers assume)"
            fix = Fix("Kernel defaults match this norm", f"LigerRMSNorm(d, {liger})")
        else:
            message += "; a kernel assuming the Llama convention gives wrong outputs"
            fix = Fix("Patch it only with the settings that reproduce it, or leave it unpatched",
                      f"LigerRMSNorm(d, {liger})")
        details = {**reading.details(), "liger": liger_settings(s)}
        return self.finding(group.paths, message, module_class=info.class_name, fix=fix, details=details,
                            severity=severity, confidence=reading.confidence)

    def _gated_or_grouped(self, group, reading):
        info, s = group.representative, reading.semantics
        what = []
        if s.gate:
            where = "before the statistics" if s.gate_before_norm else "after the scale"
            what.append(f"gated: the stream is multiplied by {s.gate}(gate) {where}")
        if s.group_size:
            what.append(f"statistics per group of {s.group_size} channels")
        kind = "a gated RMS norm" if s.gate else "a grouped RMS norm"
        return self.finding(
            group.paths,
            f"{info.class_name} is {kind} ({'; '.join(what)}); a plain RMSNorm kernel computes a different function",
            module_class=info.class_name, severity=Severity.WARNING, confidence=reading.confidence,
            fix=Fix("Leave it unpatched, or use a kernel that implements the gate and groups",
                    "a gated-RMSNorm kernel (Mamba-2 / FLA style) with the same gate placement"
                    + (f" and group size {s.group_size}" if s.group_size else "")),
            details={**reading.details(), "liger": None})


def _dtype(module) -> str | None:
    """The dtype the model holds this norm's weight in (None without parameters)."""
    param = next(module.parameters(), None)
    return str(param.dtype).removeprefix("torch.") if param is not None else None


def describe(s, model_dtype: str | None = None) -> str:
    """The norm's formula and cast order. The probe runs it on ``s.input_dtype`` input (where
    cast order shows); a model held in another dtype (float32) is described in its own terms."""
    if model_dtype and model_dtype != s.input_dtype and s.casting_mode != "none":
        in_model = f"; in this {model_dtype} model the casts are no-ops until it runs in {s.input_dtype}"
        s_input = "the input dtype"
    else:
        in_model, s_input = "", s.input_dtype
    return _describe(s, s_input) + in_model


def _describe(s, input_dtype: str) -> str:
    if not s.has_weight:
        scale = "x̂ (no weight)"
    else:
        scale = "x̂ · (1 + w)" if s.offset == 1 else f"x̂ · ({s.offset:g} + w)" if s.offset else "x̂ · w"
    if s.casting_mode == "none":
        order = f"entirely in {input_dtype}"
    elif not s.has_weight:
        order = f"in {s.compute_dtype}, cast back at the end"
    elif s.cast_before_scale:
        order = f"statistics in {s.compute_dtype}, cast back to {input_dtype} before scaling"
    else:
        order = f"in {s.compute_dtype} including the scale, cast to {input_dtype} after"
    eps = "" if s.eps_inside_sqrt in (True, None) else ", eps added outside the square root"
    return f"{scale}, {order}{eps}"
