"""PEFT is asked without importing bitsandbytes when nothing else has imported it.

The claim (:mod:`archlint.lora.unused_bitsandbytes`): PEFT's answers do not depend on
whether it can see a bitsandbytes that no module imported, so hiding it saves the import and
changes no verdict. Each check runs in a fresh interpreter: whether bitsandbytes is imported
is process state, and this test process may long have imported it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from support import REPO, config

pytest.importorskip("bitsandbytes")
pytest.importorskip("peft")

LLAMA = config("meta-llama__Llama-3.1-8B")


def run_script(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


LINT_JSON = f"""
    import json, sys
    {{prelude}}
    import archlint
    data = archlint.lint({str(LLAMA)!r}).to_dict()
    data.pop("versions", None)
    print(json.dumps({{"report": data, "bitsandbytes_imported": sys.modules.get("bitsandbytes") is not None}}))
"""


@pytest.mark.slow
def test_a_lint_imports_no_bitsandbytes_and_reports_what_it_reports_with_it():
    hidden = json.loads(run_script(LINT_JSON.replace("{prelude}", "")))
    seen = json.loads(run_script(LINT_JSON.replace("{prelude}", "import bitsandbytes")))
    assert hidden["bitsandbytes_imported"] is False
    assert seen["bitsandbytes_imported"] is True
    assert hidden["report"]["results"][0]["plans"], "the recipes went through PEFT"
    assert hidden["report"] == seen["report"]


@pytest.mark.slow
def test_the_window_leaves_no_answer_behind():
    """Inside: not importable and every cached check says so; outside: the truth again, and
    PEFT wraps a bitsandbytes layer with its bitsandbytes LoRA class."""
    out = run_script("""
        import importlib.util, sys
        from archlint.lora.unused_bitsandbytes import unused_bitsandbytes_hidden

        with unused_bitsandbytes_hidden():  # PEFT imports bitsandbytes at the top when it can
            import peft
            import peft.import_utils as peft_utils
            import transformers.utils.import_utils as hf_utils
        assert "bitsandbytes" not in sys.modules
        assert peft_utils.is_bnb_available() and hf_utils.is_bitsandbytes_available()  # cached: True
        with unused_bitsandbytes_hidden():
            assert importlib.util.find_spec("bitsandbytes") is None
            assert not peft_utils.is_bnb_available() and not peft_utils.is_bnb_4bit_available()
            assert not hf_utils.is_bitsandbytes_available()
            try:
                import bitsandbytes  # noqa: F401
            except ImportError:
                pass
            else:
                raise AssertionError("bitsandbytes imported inside the window")
        assert "bitsandbytes" not in sys.modules
        assert peft_utils.is_bnb_available() and peft_utils.is_bnb_4bit_available()
        assert hf_utils.is_bitsandbytes_available()

        import bitsandbytes as bnb
        import torch
        from archlint.lora.oracle import run_peft
        from archlint.lora.plan import Plan

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = bnb.nn.Linear4bit(64, 64, bias=False)
                self.is_loaded_in_4bit = True  # what from_pretrained sets; PEFT dispatches on it

        kept = []
        with unused_bitsandbytes_hidden():  # imported now: nothing is hidden
            assert importlib.util.find_spec("bitsandbytes") is not None
        outcome = run_peft(Net(), Plan.from_mapping({"target_modules": ["proj"]}, source="test"), keep=kept)
        assert outcome.ok, outcome
        print(type(kept[0].base_model.model.proj).__module__)
    """)
    assert out.strip() == "peft.tuners.lora.bnb"
