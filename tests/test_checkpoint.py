"""Checkpoint agreement from safetensors headers, with transformers' loader as the oracle."""

from __future__ import annotations

import json
import shutil

from support import REPO

from archlint import lint
from archlint.checkpoint import read_local
from archlint.findings import Severity

CHECKPOINTS = REPO / "fixtures" / "checkpoints"


def _loading_info(folder):
    """What transformers reports when it really loads the checkpoint."""
    import transformers
    from transformers import AutoConfig

    cls = getattr(transformers, AutoConfig.from_pretrained(folder).architectures[0])
    _, info = cls.from_pretrained(folder, ignore_mismatched_sizes=True, output_loading_info=True)
    return info


def test_tiny_llama_saved_by_save_pretrained_is_quiet():
    result = lint(str(CHECKPOINTS / "tiny-llama")).results[0]
    assert result.error is None and not result.rule_errors
    assert result.checkpoint.unavailable is None
    assert (result.checkpoint.missing, result.checkpoint.unexpected, result.checkpoint.mismatched) == ([], [], [])
    loud = [(f.code, f.paths) for f in result.findings if f.severity >= Severity.WARNING]
    assert not loud, loud


def test_renamed_dropped_and_reshaped_keys_match_transformers_loading_info():
    folder = CHECKPOINTS / "tiny-llama-broken"
    truth = _loading_info(folder)
    assert truth["missing_keys"] and truth["unexpected_keys"] and truth["mismatched_keys"]  # the fixture is broken
    result = lint(str(folder), select=["CKPT"]).results[0]
    agreement = result.checkpoint
    assert agreement.missing == sorted(truth["missing_keys"])
    assert agreement.unexpected == sorted(truth["unexpected_keys"])
    assert agreement.mismatched == sorted((k, list(a), list(b)) for k, a, b in truth["mismatched_keys"])
    by_code = {f.code: f for f in result.findings}
    assert set(by_code) == {"CKPT001", "CKPT002"}
    assert by_code["CKPT001"].details["missing"] == sorted(truth["missing_keys"])
    assert by_code["CKPT001"].details["unexpected"] == sorted(truth["unexpected_keys"])
    mismatched = [[k, list(a), list(b)] for k, a, b in sorted(truth["mismatched_keys"])]
    assert by_code["CKPT001"].details["mismatched"] == mismatched
    assert "key_mapping" in by_code["CKPT001"].fix.detail
    assert by_code["CKPT002"].details["checkpoint"] == [32, 16]


def test_legacy_per_expert_qwen3_moe_is_fused_by_the_loader_and_quiet():
    folder = CHECKPOINTS / "tiny-qwen3-moe-legacy"
    stored = read_local(folder).tensors
    assert "model.layers.0.mlp.experts.3.up_proj.weight" in stored  # the per-expert layout
    assert "model.layers.0.mlp.experts.gate_up_proj" not in stored
    truth = _loading_info(folder)
    assert not (truth["missing_keys"] or truth["unexpected_keys"] or truth["mismatched_keys"])
    result = lint(str(folder), select=["CKPT"]).results[0]
    assert (result.checkpoint.missing, result.checkpoint.unexpected, result.checkpoint.mismatched) == ([], [], [])
    assert result.findings == []


def _without_one_expert(tmp_path):
    """The per-expert Qwen3-MoE with one expert of one layer dropped: the loader stacks one
    expert fewer, so the fused parameters get a shape the model does not have."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "moe-one-expert-short"
    shutil.copytree(CHECKPOINTS / "tiny-qwen3-moe-legacy", folder)
    tensors = load_file(folder / "model.safetensors")
    for part in ("gate_proj", "up_proj", "down_proj"):
        del tensors[f"model.layers.1.mlp.experts.2.{part}.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_loader_fed_in_batches_reports_what_from_pretrained_reports(tmp_path):
    """Keys reach the loader in batches that never split what it gathers into one parameter:
    with every group a batch of its own, the report is still from_pretrained's."""
    from archlint.build import build
    from archlint.checkpoint.agreement import loading_info
    from archlint.resolve import resolve

    short = _without_one_expert(tmp_path)
    for folder in (CHECKPOINTS / "tiny-llama-broken", CHECKPOINTS / "tiny-qwen3-moe-legacy", short):
        truth = _loading_info(folder)
        model = build(resolve(str(folder))).module
        for batch_keys in (1, 7, 10_000):
            info = loading_info(model, read_local(folder), batch_keys=batch_keys)
            assert info.missing_keys == truth["missing_keys"], (folder.name, batch_keys)
            assert info.unexpected_keys == truth["unexpected_keys"], (folder.name, batch_keys)
            assert info.mismatched_keys == truth["mismatched_keys"], (folder.name, batch_keys)
    assert _loading_info(short)["mismatched_keys"]  # the dropped expert shows


def test_stored_dtype_other_than_the_config_is_ckpt003():
    result = lint(str(CHECKPOINTS / "tiny-llama-bf16"), select=["CKPT"]).results[0]
    assert [f.code for f in result.findings] == ["CKPT003"]
    assert result.checkpoint.stored_dtypes.keys() == {"BF16"}


def test_header_reader_reads_nothing_past_the_header(tmp_path, monkeypatch):
    """The local reader opens each file and reads exactly 8 + N bytes."""
    import builtins

    folder = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINTS / "tiny-llama", folder)
    reads = []
    real_open = builtins.open

    class Counting:
        def __init__(self, fh):
            self.fh = fh

        def read(self, n=-1):
            data = self.fh.read(n)
            reads.append(len(data))
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def counting_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return Counting(fh) if str(path).endswith(".safetensors") and "b" in mode else fh

    monkeypatch.setattr(builtins, "open", counting_open)
    headers = read_local(folder)
    size = (folder / "model.safetensors").stat().st_size
    assert sum(reads) == headers.header_bytes < size


def test_broken_header_is_reported_not_raised(tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(CHECKPOINTS / "tiny-llama", folder)
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    result = lint(str(folder), select=["CKPT"]).results[0]
    assert result.error is None and not result.rule_errors
    assert "not JSON" in result.checkpoint.unavailable
    assert result.findings == []


# -- the Hub, over range requests only ----------------------------------------------

SHARDED = "acme/tiny-llama-sharded"


def _sharded_repo(tmp_path) -> dict[str, bytes]:
    from transformers import AutoConfig, LlamaForCausalLM

    cfg = AutoConfig.from_pretrained(CHECKPOINTS / "tiny-llama")
    model = LlamaForCausalLM(cfg)
    out = tmp_path / "sharded"
    model.save_pretrained(out, max_shard_size="40KB")
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert sum(name.endswith(".safetensors") for name in files) >= 3
    return files


def test_hub_checkpoint_is_read_with_header_ranges_only(fake_hub, tmp_path):
    files = _sharded_repo(tmp_path)
    fake_hub.hub.repos[SHARDED] = {"main": files}
    result = lint(SHARDED, select=["CKPT"], check_checkpoint=True).results[0]
    assert result.error is None, result.error
    agreement = result.checkpoint
    assert agreement.unavailable is None, agreement.unavailable
    assert (agreement.missing, agreement.unexpected, agreement.mismatched) == ([], [], [])
    shards = sorted(n for n in files if n.endswith(".safetensors"))
    assert agreement.files == len(shards)

    header_end = {name: 8 + int.from_bytes(files[name][:8], "little") - 1 for name in shards}
    shard_requests = [r for r in fake_hub.requests if r.filename in header_end]
    assert shard_requests and {r.filename for r in shard_requests} == set(shards)
    for r in shard_requests:
        if r.method == "HEAD":
            assert r.sent == 0
            continue
        assert r.status == 206 and r.range is not None, r  # never a whole-file GET
        start, end = r.range
        assert end <= header_end[r.filename], (r.filename, r.range, header_end[r.filename])
        assert r.sent == end - start + 1
    assert sum(r.sent for r in shard_requests) == agreement.header_bytes


def test_hub_checkpoint_is_opt_in(fake_hub, tmp_path):
    fake_hub.hub.repos[SHARDED] = {"main": _sharded_repo(tmp_path)}
    result = lint(SHARDED, select=["CKPT"]).results[0]
    assert result.checkpoint is None
    assert not [r for r in fake_hub.requests if (r.filename or "").endswith(".safetensors")]


def test_hub_repo_without_safetensors_says_so(fake_hub):
    from hub_server import LLAMA

    result = lint(LLAMA, select=["CKPT"], check_checkpoint=True).results[0]
    assert result.error is None
    assert result.checkpoint.unavailable  # the served "weights" are not safetensors
    assert json.dumps(result.to_dict())


def test_ckpt001_key_mapping_fix_is_what_from_pretrained_needs():
    """The fix's key_mapping, passed to from_pretrained, loads the renamed key."""
    import re

    import transformers

    folder = CHECKPOINTS / "tiny-llama-broken"
    [finding] = [f for f in lint(str(folder), select=["CKPT001"]).results[0].findings]
    mapping_line = next(line for line in finding.fix.detail.splitlines() if "key_mapping=" in line)
    pattern, replacement = re.search(r'r"(.+?)": "(.+?)"', mapping_line).groups()
    _, info = transformers.LlamaForCausalLM.from_pretrained(
        folder, key_mapping={pattern: replacement}, ignore_mismatched_sizes=True, output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["model.layers.1.mlp.down_proj.weight"]  # the dropped tensor only
    assert not info["unexpected_keys"]


def test_cli_json_carries_the_loading_info():
    from click.testing import CliRunner

    from archlint.cli import main

    out = CliRunner().invoke(main, [str(CHECKPOINTS / "tiny-llama-broken"), "--select", "CKPT", "--format", "json",
                                    "--fail-on", "never"])
    assert out.exit_code == 0, out.output
    checkpoint = json.loads(out.output)["results"][0]["checkpoint"]  # schema-checked by conftest
    assert checkpoint["mismatched"] == [["model.layers.1.self_attn.o_proj.weight", [32, 16], [32, 32]]]
    assert checkpoint["unexpected"] == ["model.layers.0.self_attn.q_proj.linear.weight"]


# -- the loader writes into the model itself; headers stream shard by shard ------------------


def test_the_check_leaves_the_model_as_it_was():
    """The loader replaces parameters, flags them and ties weights on the model it loads
    into; archlint lets it write into the meta model itself and restores it."""
    from archlint.build import build
    from archlint.checkpoint import open_local
    from archlint.checkpoint.agreement import loading_info
    from archlint.resolve import resolve

    for folder in (CHECKPOINTS / "tiny-llama-broken", CHECKPOINTS / "tiny-qwen3-moe-legacy"):
        model = build(resolve(str(folder))).module
        before = {name: (p, dict(vars(p))) for name, p in model.named_parameters(remove_duplicate=False)}
        buffers = {name: b for name, b in model.named_buffers(remove_duplicate=False)}
        attributes = {name: dict(vars(m)) for name, m in model.named_modules()}
        info = loading_info(model, open_local(folder))
        assert info.missing_keys == _loading_info(folder)["missing_keys"]
        after = {name: (p, dict(vars(p))) for name, p in model.named_parameters(remove_duplicate=False)}
        assert after.keys() == before.keys()
        assert all(after[n][0] is before[n][0] and after[n][1] == before[n][1] for n in before), folder.name
        assert {name: b for name, b in model.named_buffers(remove_duplicate=False)}.keys() == buffers.keys()
        assert all(model.get_buffer(n) is b for n, b in buffers.items())
        assert {name: dict(vars(m)) for name, m in model.named_modules()} == attributes


def _sharded_per_expert(tmp_path, name, shard_of, index_of=None):
    """The per-expert Qwen3-MoE split into shards by ``shard_of(key) -> int`` (1-based), with
    an index that places each key by ``index_of`` (default: where it is)."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(CHECKPOINTS / "tiny-qwen3-moe-legacy" / "config.json", folder / "config.json")
    tensors = load_file(CHECKPOINTS / "tiny-qwen3-moe-legacy" / "model.safetensors")
    shards: dict[int, dict] = {}
    for key, value in tensors.items():
        shards.setdefault(shard_of(key), {})[key] = value
    count = max(shards)
    files = {i: f"model-{i:05d}-of-{count:05d}.safetensors" for i in shards}
    for i, part in shards.items():
        save_file(part, folder / files[i], metadata={"format": "pt"})
    place = index_of or shard_of
    index = {"metadata": {}, "weight_map": {key: files[place(key)] for key in tensors}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def _expert_number(key):
    parts = key.split(".")
    return int(parts[parts.index("experts") + 1]) if "experts" in parts else -1


def test_streamed_shards_with_experts_split_across_them_report_what_from_pretrained_reports(tmp_path):
    """Each layer's experts spread over three shards: a stacked parameter is complete only
    when the last of them has been read, and goes to the loader then."""
    from archlint.build import build
    from archlint.checkpoint import open_local
    from archlint.checkpoint.agreement import loading_info
    from archlint.resolve import resolve

    folder = _sharded_per_expert(tmp_path, "split", lambda key: 1 + max(0, _expert_number(key)) % 3)
    truth = _loading_info(folder)
    assert not (truth["missing_keys"] or truth["unexpected_keys"] or truth["mismatched_keys"])
    model = build(resolve(str(folder))).module
    for batch_keys in (1, 5, 10_000):
        info = loading_info(model, open_local(folder), batch_keys=batch_keys)
        assert (info.missing_keys, info.unexpected_keys, info.mismatched_keys) == (set(), set(), set()), batch_keys


def test_an_index_that_misplaces_keys_is_read_again_without_it(tmp_path, monkeypatch):
    """The index claims every key is in the first shard; the headers put expert 3 in the
    second. The early release of a layer's groups is then wrong, which the check notices
    (a key arrives for a group already loaded) and it reads the shards again, all groups
    held to the end: still from_pretrained's report."""
    import sys

    from archlint.build import build
    from archlint.checkpoint import open_local
    from archlint.resolve import resolve

    module = sys.modules["archlint.checkpoint.agreement"]
    folder = _sharded_per_expert(tmp_path, "misplaced", lambda key: 2 if _expert_number(key) == 3 else 1,
                                 index_of=lambda key: 1)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.norm.weight"] = "model-00002-of-00002.safetensors"  # so that both shards are read
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    runs = []
    real = module._loading_info
    monkeypatch.setattr(module, "_loading_info", lambda *a, **k: runs.append(k["planned"]) or real(*a, **k))
    truth = _loading_info(folder)
    model = build(resolve(str(folder))).module
    info = module.loading_info(model, open_local(folder))
    assert runs == [True, False]
    assert info.missing_keys == truth["missing_keys"]
    assert info.unexpected_keys == truth["unexpected_keys"]
    assert info.mismatched_keys == truth["mismatched_keys"]


def _entries_or_error(path):
    from archlint.checkpoint import CheckpointUnreadable
    from archlint.checkpoint.headers import index_entries

    try:
        return list(index_entries(path))
    except CheckpointUnreadable:
        return "unreadable"


def _json_entries_or_error(text):
    try:
        weight_map = json.loads(text)["weight_map"]
        assert isinstance(weight_map, dict) and all(isinstance(v, str) for v in weight_map.values())
    except (ValueError, KeyError, TypeError, AssertionError):
        return "unreadable"
    return list(weight_map.items())


def test_the_index_is_read_entry_by_entry_as_json_reads_it(tmp_path):
    """The weight_map is read from the index's text without building the dict; the entries
    are json's, in json's order, and whatever json cannot read as an index is unreadable."""
    import random

    rng = random.Random(0)
    texts = []
    for _ in range(200):
        weight_map = {("a\\\"é." if rng.random() < 0.1 else "") + f"model.layers.{rng.randint(0, 9)}.w{j}":
                      f"model-{rng.randint(1, 3):05d}.safetensors" for j in range(rng.randint(0, 5))}
        metadata = rng.choice([{"total_size": 5, "x": [1, {"y": "}"}]}, 5, "s}", [], {}, None, True, -1.5e3,
                               {"k": "weight_map"}, [[], [{}]]])
        members = [("metadata", metadata), ("weight_map", weight_map)]
        rng.shuffle(members)
        texts.append(json.dumps(dict(members), indent=rng.choice([None, 2]), ensure_ascii=rng.random() < 0.5))
    texts += ["[]", '{"weight_map": []}', '{"weight_map": {"a": 1}}', "{}", '{"metadata": {}} x', "",
              '{"weight_map": {"a": "b",}}', '{"weight_map": {"a": "b"}', '{"metadata": , "weight_map": {}}',
              '{"metadata": {"a" "b"}, "weight_map": {}}', '{"weight_map": {"a": "b"}, }', ' {"weight_map": {}} ']
    for i, text in enumerate(texts):
        path = tmp_path / f"{i}.json"
        path.write_text(text, encoding="utf-8")
        assert _entries_or_error(path) == _json_entries_or_error(text), text
