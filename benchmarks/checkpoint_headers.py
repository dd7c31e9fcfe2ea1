"""Memory of checking a sharded checkpoint: no more than reading its headers.

Writes a realistic sharded safetensors checkpoint for a real config -- the tensor names
and shapes transformers itself saves (``revert_weight_conversion`` of the meta model's
state dict: Qwen3-30B-A3B's 18,867 per-expert tensors), spread over 160 shards with a
``model.safetensors.index.json`` -- as *sparse* files: each shard holds its real header
and is truncated to its full size (61 GB in all) without writing the tensor bytes.

Then, in fresh processes that each build the meta model first, it measures the peak RSS
(``VmHWM``) of

* ``hf_hub``:  reading the 160 headers with huggingface_hub's ``get_local_safetensors_metadata``
               (the library's own header reader, for comparison);
* ``headers``: reading the 160 headers (``archlint.checkpoint.read_local``);
* ``check``:   reading them and running transformers' loader on meta tensors
               (``archlint.checkpoint.agreement``), what ``archlint`` does for a folder:
               the headers stream shard by shard and the keys reach the loader in
               batches of whole loading groups;
* ``check_1``: the same with every key handed to the loader in one call (for comparison;
               its verdict must be the same);
* ``headers_warm``, ``check_warm``: ``headers`` and ``check`` measured after the process
               has already read and checked a one-layer, one-shard checkpoint of the same
               model (``warmup/``), with the peak reset in between (``/proc/self/clear_refs``):
               what one more checkpoint costs once the once-per-process costs are paid
               (shared-library code paged in by the loader's first run, transformers' table
               of every model type's weight conversions, built on first use), none of which
               depends on the checkpoint being checked.

Each stage runs ``--repeat`` times, each time in a fresh process; the table gives the
smallest, median and largest peak RSS added, and for the median run how much of the
resident memory at the end of the stage is anonymous (allocated) and how much is
file-backed (shared-library code paged in for the first time).

    python benchmarks/checkpoint_headers.py [--config DIR] [--shards 160] [--dir PATH] [--repeat 3]
                                            [--unquantized]

``--unquantized`` drops the config's ``quantization_config`` (DeepSeek-V3's FP8): the
checkpoint is then the bf16 release of the same model.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4}
WARMUP = "warmup"
STAGES = ("hf_hub", "headers", "check", "check_1", "headers_warm", "check_warm")


def write_checkpoint(config_dir: str, folder: Path, shards: int, *, unquantized: bool = False,
                     layers: int | None = None) -> dict:
    """The sparse sharded checkpoint (with ``layers`` layers: a smaller one for the warm-up);
    returns its totals."""
    from transformers.core_model_loading import revert_weight_conversion

    from archlint.build import build
    from archlint.resolve import resolve

    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads((Path(config_dir) / "config.json").read_text(encoding="utf-8"))
    if unquantized:
        config.pop("quantization_config", None)
    if layers is not None:
        config["num_hidden_layers"] = layers
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    model = build(resolve(str(folder))).module
    saved = revert_weight_conversion(model, model.state_dict())
    items = [(name, tuple(t.shape)) for name, t in saved.items()]
    per_shard = -(-len(items) // shards)
    weight_map, total = {}, 0
    for i in range(shards):
        chunk = items[i * per_shard:(i + 1) * per_shard]
        filename = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in chunk:
            size = DTYPE_BYTES["BF16"]
            for d in shape:
                size *= d
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
            offset += size
            weight_map[name] = filename
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(folder / filename, "wb") as fh:
            fh.write(struct.pack("<Q", len(raw)) + raw)
            fh.truncate(8 + len(raw) + offset)  # sparse: the tensor bytes are never written
        total += offset
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}), encoding="utf-8")
    if layers is None and "num_hidden_layers" in config:  # the warm-up checkpoint: one layer, one shard
        write_checkpoint(str(folder), folder / WARMUP, 1, unquantized=unquantized, layers=1)
    return {"tensors": len(items), "shards": shards, "total_size": total}


def measure(stage: str, folder: str) -> dict:
    """In this (fresh) process: build the meta model, then run ``stage``; peak RSS before and after."""
    from archlint.build import build
    from archlint.resolve import resolve

    model = build(resolve(folder)).module
    if stage.endswith("_warm"):
        stage = stage.removesuffix("_warm")
        _run(stage, build(resolve(str(Path(folder) / WARMUP))).module, str(Path(folder) / WARMUP))
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from what is resident now
    before = _hwm()
    resident_before = (_status("RssAnon"), _status("RssFile"))
    clock = time.perf_counter()
    out = _run(stage, model, folder)
    out.update(stage=stage, seconds=round(time.perf_counter() - clock, 2), hwm_built_mb=before, hwm_mb=_hwm(),
               anon_mb=round(_status("RssAnon") - resident_before[0], 2),
               file_mb=round(_status("RssFile") - resident_before[1], 2))
    return out


def _run(stage: str, model, folder: str) -> dict:
    from archlint.checkpoint import CheckpointSource, agreement, read_local

    if stage == "hf_hub":
        from huggingface_hub import get_local_safetensors_metadata

        metadata = get_local_safetensors_metadata(folder)
        return {"tensors": len(metadata.weight_map), "header_bytes": 0}
    if stage == "headers":
        headers = read_local(folder)
        return {"tensors": len(headers.tensors), "header_bytes": headers.header_bytes}
    if stage == "check_1":
        import importlib

        importlib.import_module("archlint.checkpoint.agreement").BATCH_KEYS = sys.maxsize
    result = agreement(model, CheckpointSource("local", folder))
    return {"tensors": result.tensors, "header_bytes": result.header_bytes, "missing": len(result.missing),
            "unexpected": len(result.unexpected), "mismatched": len(result.mismatched),
            "unavailable": result.unavailable}


def _hwm() -> float:
    """Peak resident set size of this process so far, MB (``VmHWM``)."""
    hwm = _status("VmHWM")
    if hwm:
        return round(hwm, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _status(field: str) -> float:
    """A memory field of ``/proc/self/status`` in MB (0 where there is none)."""
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else []:
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "fixtures" / "configs" / "Qwen__Qwen3-30B-A3B"))
    parser.add_argument("--shards", type=int, default=160)
    parser.add_argument("--dir", help="where to write the sparse checkpoint (default: a temporary directory)")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per stage (default 3)")
    parser.add_argument("--unquantized", action="store_true", help="drop the config's quantization_config")
    parser.add_argument("--measure", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.dir)))
        return
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="archlint-ckpt-"))
    try:
        totals = write_checkpoint(args.config, folder, args.shards, unquantized=args.unquantized)
        on_disk = sum(os.stat(p).st_blocks * 512 for p in folder.iterdir())
        print(f"checkpoint: {Path(args.config).name}{' (unquantized)' if args.unquantized else ''}, "
              f"{totals['tensors']:,} tensors in {totals['shards']} shards, "
              f"{totals['total_size'] / 1e9:.1f} GB of tensors (sparse: {on_disk / 1e6:.1f} MB on disk); "
              f"load average {os.getloadavg()[0]:.1f}")
        runs: dict[str, list[dict]] = {stage: [] for stage in STAGES}
        for _ in range(max(1, args.repeat)):
            for stage in STAGES:
                env = {**os.environ, "PYTHONWARNINGS": "ignore"}
                proc = subprocess.run([sys.executable, __file__, "--measure", stage, "--dir", str(folder)],
                                      capture_output=True, text=True, check=True, env=env)
                runs[stage].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"{'stage':<12} {'seconds':>8} {'peak RSS after build':>21}   {'peak RSS added: min':>19} "
              f"{'median':>7} {'max':>7}   {'at end: anon':>12} {'file':>6}")
        for stage, rows in runs.items():
            added = sorted(r["hwm_mb"] - r["hwm_built_mb"] for r in rows)
            median = sorted(rows, key=lambda r: r["hwm_mb"] - r["hwm_built_mb"])[len(rows) // 2]
            seconds = statistics.median(r["seconds"] for r in rows)
            print(f"{stage:<12} {seconds:>8.2f} {median['hwm_built_mb']:>18} MB   {added[0]:>16.1f} MB "
                  f"{added[len(added) // 2]:>7.1f} {added[-1]:>7.1f}   "
                  f"{median['anon_mb']:>9.1f} MB {median['file_mb']:>6.1f}")
        for stage in ("check", "check_1", "check_warm"):
            check = runs[stage][0]
            print(f"{stage}: {check['tensors']:,} tensors, {check['header_bytes'] / 1e6:.1f} MB of headers "
                  f"read; loader verdict: {check['missing']} missing, {check['unexpected']} unexpected, "
                  f"{check['mismatched']} mismatched{'; ' + check['unavailable'] if check['unavailable'] else ''}")
        print(f"load average after the runs: {os.getloadavg()[0]:.1f}")
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
