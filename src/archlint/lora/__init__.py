"""LoRA as PEFT does it: plans, what their entries reach, PEFT as the oracle, the recipes.

One job per module; importing the package loads only :mod:`.plan` (no torch, no PEFT):

* :mod:`.plan`             -- :class:`Plan`, a validated LoRA configuration (flags, mapping,
                              ``adapter_config.json``), and the one merge of a file with flags
* :mod:`.targets`          -- what a ``target_modules`` entry reaches, by PEFT's rules
* :mod:`.recipes`          -- the common recipes, evaluated when no plan is given
* :mod:`.layers`           -- the module types PEFT's LoRA wraps
* :mod:`.oracle`           -- the installed PEFT run on a copy of the meta model
* :mod:`.reimplementation` -- the same answers without PEFT (documented, tested equal)
* :mod:`.evaluate`         -- one plan's evaluation (verdict, entries, layer coverage)
* :mod:`.verify`           -- a suggested fix is run through PEFT before it is printed
* :mod:`.training_step`    -- one fake-tensor training step of the adapted model (inject,
                              forward with a loss, backward to the LoRA parameters)
"""

from .plan import Plan

__all__ = ["Plan"]
