"""Facts: the typed, lazily computed properties of one lint that rules read.

The pipeline runs one way: resolve -> build -> graph -> **facts** -> rules -> report ->
render. A rule's ``check(ctx)`` receives a :class:`Facts` and reads its inputs
(``ctx.graph``, ``ctx.built``, ``ctx.config``, ``ctx.plan``) and its facts by attribute:

* :mod:`.structure`   -- repeated blocks, linear wrappers, stacked experts, attention modules
* :mod:`.probes`      -- probe readings per module: norms, GLUs
* :mod:`.roles`       -- what each projection does (q/k/v, router, GLU, output gate, SSM input),
                         read from one trace per block: routers, output gates, attention changes
* :mod:`.plans`       -- the plan evaluations (the user's plan, or the common recipes; PEFT
                         the oracle) and the PEFT runs that verify suggested fixes
* :mod:`.peft_roles`  -- why PEFT cannot wrap a module a plan reaches (router, norm, ...)
* :mod:`.training`    -- the fake-tensor training forward TRAIN001 judges

Each fact is computed in exactly one function, once per lint, on first access, and its
time is charged to a phase of ``--debug`` by the one clock in :class:`Facts`.

Adding a fact is a one-file change: create ``facts/<topic>.py`` with ::

    from .base import Facts, fact

    @fact(phase="structure")          # the --debug phase its time goes to
    def tied_heads(facts: Facts) -> list[str]:
        \"\"\"What the fact is, in one sentence.\"\"\"
        return [...]                  # read facts.graph / facts.built / other facts

and rules read ``ctx.tied_heads``. Every module of this package is imported when the
package is, which registers its facts. A fact that is a per-module question (a probe
reading) is a fact returning an object with methods that cache per module and time
their work with ``facts.timed(phase)``.
"""

import importlib
import pkgutil

from .base import Facts, fact

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Facts", "fact"]
