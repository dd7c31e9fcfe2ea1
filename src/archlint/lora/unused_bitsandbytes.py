"""PEFT without the bitsandbytes import it cannot need.

``import peft`` imports bitsandbytes whenever it is installed (``peft.helpers`` does, at the
top), and bitsandbytes wraps its CPU kernels in ``torch.compile`` at import, which loads
torch's inductor: about 0.9 s of CPU, a fifth of what building a model costs. PEFT's LoRA
code looks at bitsandbytes for one thing only: whether a layer it adapts *is* a
bitsandbytes layer (``isinstance(base, bnb.nn.Linear4bit)`` and the like, in its dispatchers
and its quantization-backend lookup). A bitsandbytes layer cannot exist in a process that
never imported bitsandbytes, so while it is not imported every one of those checks is
false, and PEFT's answer is the same whether it can see the package or not.

:func:`unused_bitsandbytes_hidden` hides the package from PEFT for the length of a PEFT
call when, and only when, nothing has imported it yet: ``sys.modules["bitsandbytes"]`` is
``None`` (Python's own marker for "not importable"), so PEFT's ``find_spec`` check answers
no and its optional imports take their fallback. Once anything has imported bitsandbytes
(transformers' bitsandbytes quantizer for ``--quantization bnb-4bit``, or the caller's own
code), nothing is hidden, and PEFT wraps the quantized layers as it always does.

Both libraries remember the answer of their availability checks (``lru_cache``), so those
caches are emptied when the window opens and when it closes: no answer given inside leaks
out, and none from outside is trusted inside. The window is process-wide state; archlint
lints one target at a time, and a thread of the caller's that imported bitsandbytes
during a PEFT call would see the ``ImportError`` any uninstalled package gives.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

PACKAGE = "bitsandbytes"

#: The modules whose cached availability checks mention the package, and the checks.
_CACHED_CHECKS = {
    "peft.import_utils": ("is_bnb_available", "is_bnb_4bit_available"),
    "transformers.utils.import_utils": ("is_bitsandbytes_available",),
}

_MISSING = object()


@contextmanager
def unused_bitsandbytes_hidden() -> Iterator[None]:
    """Hide bitsandbytes from the libraries inside the block if no module has imported it."""
    if sys.modules.get(PACKAGE, _MISSING) is not _MISSING:  # imported (nothing to save) or already hidden
        yield
        return
    _forget_availability()
    sys.modules[PACKAGE] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if PACKAGE in sys.modules and sys.modules[PACKAGE] is None:
            del sys.modules[PACKAGE]
        _forget_availability()


def _forget_availability() -> None:
    for module_name, names in _CACHED_CHECKS.items():
        module = sys.modules.get(module_name)
        for name in names:
            check = getattr(module, name, None)
            if hasattr(check, "cache_clear"):
                check.cache_clear()
