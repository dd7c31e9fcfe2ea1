"""A suggested LoRA fix is run through PEFT on the meta model before it is printed.

A rule proposes candidate configurations (an anchored regex, ``exclude_modules``,
``target_parameters``) with an optional expectation (e.g. "nothing in the vision
tower"). Each is evaluated like a user plan; only those PEFT accepts, that adapt
something, whose adapted model passes one fake training step (inject, forward, backward:
:mod:`.training_step`) and that meet the expectation are printed, each followed by what
it adapts.
A fix with no verified candidate is not printed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..findings import Fix, star_indices
from .oracle import Outcome, peft_available, peft_version
from .reimplementation import REIMPLEMENTED_VERSION

#: PEFT's outcome for a LoraConfig-shaped mapping, as one lint computes it (cached, timed).
OutcomeOf = Callable[[Mapping[str, Any]], Outcome]


@dataclass(frozen=True)
class Candidate:
    """One configuration to suggest: ``text`` is what the user pastes, ``config`` the
    LoraConfig keys it stands for, ``expect`` an extra check on PEFT's outcome that
    returns a reason to reject it (or None)."""

    text: str
    config: Mapping[str, Any]
    comment: str = ""
    expect: Callable[[Outcome], str | None] | None = field(default=None, compare=False)


def verified_fix(outcome_of: OutcomeOf, title: str, candidates: Sequence[Candidate]) -> Fix | None:
    """The fix with only the candidates that pass through PEFT, each annotated.
    ``outcome_of`` is the lint's own PEFT runner (``ctx.plans.outcome_of``)."""
    lines = []
    for candidate in candidates:
        outcome = verify(outcome_of, candidate)
        if outcome is None:
            continue
        comment = f"  # {candidate.comment}" if candidate.comment else ""
        lines.append(f"{candidate.text}{comment}\n    # {verifier()}: {adapts(outcome)}{trains(outcome)}")
    if not lines:
        return None
    return Fix(f"{title} (verified)", "\n".join(lines))


def verify(outcome_of: OutcomeOf, candidate: Candidate) -> Outcome | None:
    """PEFT's outcome for the candidate if it is accepted and meets its expectation."""
    outcome = outcome_of(candidate.config)
    if not outcome.ok or not (outcome.modules or outcome.parameters):
        return None
    if outcome.step_error is not None:
        return None  # PEFT injects it, but the adapted model does not train
    if candidate.expect is not None and candidate.expect(outcome) is not None:
        return None
    return outcome


def verifier() -> str:
    if peft_available():
        return f"verified with PEFT {peft_version()} on the meta model"
    return f"verified with archlint's reimplementation of PEFT {REIMPLEMENTED_VERSION} (PEFT not installed)"


def trains(outcome: Outcome) -> str:
    """``; one fake training step ran clean (inject, forward, backward)``, or nothing when none ran."""
    if not outcome.checked:
        return ""
    return f"; one fake training step ran clean ({', '.join(outcome.checked)})"


def adapts(outcome: Outcome, limit: int = 3) -> str:
    """``adapts 210 modules (model.language_model.layers.*.self_attn.q_proj ×35, …), 9,175,040 trainable at r=8``."""
    parts = []
    if outcome.modules:
        parts.append(f"adapts {len(outcome.modules)} modules ({_patterns(outcome.modules, limit)})")
    if outcome.parameters:
        parts.append(f"{len(outcome.parameters)} parameters ({_patterns(outcome.parameters, limit)})")
    parts.append(f"{outcome.trainable:,} trainable parameters")
    return ", ".join(parts)


def _patterns(paths: Sequence[str], limit: int) -> str:
    counts = Counter(star_indices(p) for p in paths)
    shown = [f"{p} ×{n}" if n > 1 else p for p, n in list(counts.items())[:limit]]
    more = len(counts) - limit
    return ", ".join(shown) + (f", … {more} more patterns" if more > 0 else "")


def nothing_under(prefixes: Sequence[str]) -> Callable[[Outcome], str | None]:
    """An expectation: no adapted module or parameter under any of ``prefixes``."""
    def check(outcome: Outcome) -> str | None:
        for p in [*outcome.modules, *outcome.parameters]:
            if any(p == x or p.startswith(x + ".") for x in prefixes):
                return f"adapts {p}"
        return None
    return check


def reaches_all(paths: Sequence[str]) -> Callable[[Outcome], str | None]:
    """An expectation: every one of ``paths`` (parameters or modules) is adapted."""
    def check(outcome: Outcome) -> str | None:
        missing = set(paths) - set(outcome.parameters) - set(outcome.modules)
        return f"misses {sorted(missing)[0]}" if missing else None
    return check


def exclusion_fix(outcome_of: OutcomeOf, evaluations: Sequence[Any], paths: Sequence[str], title: str) -> Fix | None:
    """Keep the modules at or under ``paths`` out of the adapters of the plans that adapt
    them: each such plan (the user's, or a recipe) with their leaf names added to
    ``exclude_modules``, verified like any fix. None when no evaluated plan adapts them
    (an exclusion would change nothing)."""
    candidates, seen = [], set()
    for evaluation in evaluations:
        outcome = evaluation.outcome
        hit = [p for p in [*outcome.modules, *(x.rpartition(".")[0] for x in outcome.parameters)] if _under(p, paths)]
        if not outcome.ok or not hit:
            continue
        names = sorted({p.rsplit(".", 1)[-1] for p in hit})
        plan = evaluation.plan.to_mapping()
        excluded = {**plan, "exclude_modules": sorted(set(plan.get("exclude_modules") or []) | set(names))}
        key = repr(sorted(excluded.items()))
        if key in seen:
            continue
        seen.add(key)
        target = plan.get("target_modules")
        shown = f'target_modules="{target}", ' if isinstance(target, str) else ""
        text = f"LoraConfig({shown}exclude_modules={names!r}, ...)".replace("'", '"')
        candidates.append(Candidate(text, excluded, f"as {evaluation.plan.source}, without them",
                                    expect=nothing_under(paths)))
    return verified_fix(outcome_of, title, candidates) if candidates else None


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r + ".") for r in roots)
