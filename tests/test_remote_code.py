"""Remote code precedence: a model_type transformers knows always builds its native class.

The repository's own code would write a marker file when imported; for a known model_type
the marker must never appear, with or without ``trust_remote_code``. For a type transformers
lacks, the flag lets a local folder's code run -- imported from that folder, never fetched
from the Hub (the fake Hub records every request).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from archlint import lint

TINY_LLAMA = {
    "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
    "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 128, "max_position_embeddings": 64,
}
MARKER_CODE = """
from pathlib import Path
Path({marker!r}).write_text("the repository's own code ran")
from transformers import LlamaConfig, LlamaForCausalLM
class EvilConfig(LlamaConfig):
    pass
class EvilForCausalLM(LlamaForCausalLM):
    pass
"""


def native_type_with_code(folder: Path, marker: Path) -> dict:
    config = {
        **TINY_LLAMA,
        "architectures": ["EvilForCausalLM"],  # not a transformers class: the code path would be tempting
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig",
                     "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"},
    }
    files = {
        "config.json": json.dumps(config),
        "configuration_evil.py": MARKER_CODE.format(marker=str(marker)),
        "modeling_evil.py": MARKER_CODE.format(marker=str(marker)),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return files


@pytest.mark.parametrize("trust", [False, True])
def test_known_model_type_in_a_folder_builds_natively(tmp_path, trust):
    marker = tmp_path / "REMOTE_CODE_RAN"
    native_type_with_code(tmp_path / "repo", marker)

    result = lint(str(tmp_path / "repo"), trust_remote_code=trust, select=["ATTN001"]).results[0]

    assert result.error is None, result.error
    assert result.model.class_name == "LlamaForCausalLM"
    assert not marker.exists(), "the repository's own code ran for a model_type transformers knows"


@pytest.mark.parametrize("trust", [False, True])
def test_known_model_type_on_the_hub_builds_natively(fake_hub, tmp_path, trust):
    marker = tmp_path / "REMOTE_CODE_RAN"
    files = native_type_with_code(tmp_path / "repo", marker)
    fake_hub.repos["acme/llama-with-code"] = {"main": {name: text.encode() for name, text in files.items()}}

    result = lint("acme/llama-with-code", trust_remote_code=trust, select=["ATTN001"]).results[0]

    assert result.error is None, result.error
    assert result.model.class_name == "LlamaForCausalLM"
    assert not marker.exists(), "the repository's own code ran for a model_type transformers knows"
    assert fake_hub.filenames == {"config.json"}, fake_hub.paths  # the code files were never fetched


def custom_folder(folder: Path, *, reference_repo: str = "") -> None:
    prefix = f"{reference_repo}--" if reference_repo else ""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "archlint_local_custom", "hidden_size": 16, "architectures": ["CustomModel"],
        "auto_map": {"AutoConfig": f"{prefix}configuration_custom.CustomConfig",
                     "AutoModel": f"{prefix}modeling_custom.CustomModel"},
    }))
    (folder / "configuration_custom.py").write_text(textwrap.dedent("""
        from transformers import PretrainedConfig

        class CustomConfig(PretrainedConfig):
            model_type = "archlint_local_custom"

            def __init__(self, hidden_size=16, **kwargs):
                self.hidden_size = hidden_size
                super().__init__(**kwargs)
    """))
    (folder / "modeling_custom.py").write_text(textwrap.dedent("""
        from torch import nn
        from transformers import PreTrainedModel

        from .configuration_custom import CustomConfig

        class CustomModel(PreTrainedModel):
            config_class = CustomConfig

            def __init__(self, config):
                super().__init__(config)
                self.proj = nn.Linear(config.hidden_size, 3 * config.hidden_size)
                self.post_init()
    """))


@pytest.mark.parametrize("reference_repo", ["", "someone-else/another-repo"])
def test_unknown_type_runs_the_folder_code_from_the_folder(fake_hub, tmp_path, reference_repo):
    custom_folder(tmp_path / "custom", reference_repo=reference_repo)

    result = lint(str(tmp_path / "custom"), trust_remote_code=True, select=["ATTN001"]).results[0]

    assert result.error is None, result.error
    assert result.model.class_name == "CustomModel"
    assert result.model.parameters == 16 * 48 + 48
    assert fake_hub.requests == [], fake_hub.paths  # nothing fetched, not even for "someone-else/another-repo"


def test_unknown_type_without_the_flag_is_refused(tmp_path):
    custom_folder(tmp_path / "custom")
    result = lint(str(tmp_path / "custom"), select=["ATTN001"]).results[0]
    assert result.error.kind == "remote-code"
    assert "--trust-remote-code" in result.error.message


def test_folder_code_missing_from_the_folder_is_not_fetched(fake_hub, tmp_path):
    custom_folder(tmp_path / "custom", reference_repo="someone-else/another-repo")
    (tmp_path / "custom" / "configuration_custom.py").unlink()

    result = lint(str(tmp_path / "custom"), trust_remote_code=True, select=["ATTN001"]).results[0]

    assert result.error.kind == "remote-code"
    assert "configuration_custom.py is not in" in result.error.message
    assert fake_hub.requests == []
