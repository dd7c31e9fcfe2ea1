"""The common LoRA recipes: evaluated when the user gives no plan, and named in findings
about what they reach. This is the one list of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .plan import ALL_LINEAR, Plan
from .targets import Targets, reaches

#: The seven projection names most LoRA recipes list.
QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")
STANDARD_NAMES = (*QKVO, "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Recipe:
    """One common recipe. ``targets`` is its ``target_modules``; None means PEFT's default
    for the model type (the recipe exists only for types PEFT has a default for)."""

    name: str  # the plan's source is ``recipe:<name>``
    label: str  # how reports call it
    targets: tuple[str, ...] | str | None

    def plan(self) -> Plan:
        return Plan(target_modules=self.targets, source=f"recipe:{self.name}")

    def named_targets(self, model_type: str | None) -> Targets:
        """The names (or regex) it targets on this model type; None for ``all-linear``,
        which selects by layer type rather than by name."""
        if self.targets is None:
            return peft_default_targets(model_type)
        return None if self.targets == ALL_LINEAR else self.targets


RECIPES = (
    Recipe("peft-default", "PEFT default", None),
    Recipe("qkvo", "q,k,v,o", QKVO),
    Recipe("seven", "seven standard names", STANDARD_NAMES),
    Recipe("all-linear", "all-linear", ALL_LINEAR),
)


def common_recipes(model_type: str | None) -> list[Plan]:
    """PEFT's default targets for the type (when PEFT has some), q/k/v/o, the seven
    standard names and ``all-linear``, each at PEFT's default ``r=8``."""
    return [r.plan() for r in _recipes_for(model_type)]


def label(plan: Plan) -> str:
    """``recipe:seven`` -> ``seven standard names``; a user plan is ``plan (<source>)``."""
    name = plan.source.removeprefix("recipe:")
    recipe = next((r for r in RECIPES if r.name == name), None)
    return recipe.label if recipe is not None and plan.source.startswith("recipe:") else f"plan ({plan.source})"


def broken_recipes(paths: Iterable[str], model_type: str | None) -> list[str]:
    """The labels of the recipes whose named targets reach any of ``paths``."""
    paths = list(paths)
    out = []
    for recipe in _recipes_for(model_type):
        targets = recipe.named_targets(model_type)
        if targets is not None and any(reaches(p, targets) for p in paths):
            out.append(recipe.label)
    return out


def broken_recipe_names(paths: Iterable[str], model_type: str | None) -> set[str]:
    """Every bare name listed by a recipe that reaches any of ``paths``."""
    paths = list(paths)
    out: set[str] = set()
    for recipe in _recipes_for(model_type):
        targets = recipe.named_targets(model_type)
        if targets is not None and not isinstance(targets, str) and any(reaches(p, targets) for p in paths):
            out.update(targets)
    return out


def recipe_names(model_type: str | None) -> set[str]:
    """Every bare name a recipe lists on this model type (a regex recipe lists none)."""
    out: set[str] = set()
    for recipe in _recipes_for(model_type):
        targets = recipe.named_targets(model_type)
        if targets is not None and not isinstance(targets, str):
            out.update(targets)
    return out


def peft_default_targets(model_type: str | None) -> tuple[str, ...] | str | None:
    """PEFT's own default ``target_modules`` for this model type, when PEFT is installed:
    a tuple of names, or a regex string (PEFT full-matches it)."""
    if not model_type:
        return None
    try:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as table
    except ImportError:
        return None
    names = table.get(model_type)
    if isinstance(names, str):
        return names
    return tuple(names) if names else None


def _recipes_for(model_type: str | None) -> list[Recipe]:
    return [r for r in RECIPES if r.targets is not None or peft_default_targets(model_type) is not None]
