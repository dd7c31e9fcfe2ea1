"""Does archlint predict what ``get_peft_model`` does? On every model type, four recipes.

For every model type of the installed transformers that builds on meta (archlint's
model-type target, optional sub-configs filled in) and four recipes -- PEFT's default
targets for the type (when PEFT has them), the seven standard names, q/k/v/o,
``all-linear`` -- it compares, on a *fresh* meta model each time,

* ``get_peft_model(model, LoraConfig(r=8, target_modules=...), low_cpu_mem_usage=True)``:
  the truth (the flag only keeps the new adapter weights on meta);
* archlint's evaluation (:func:`archlint.lora.evaluate`, the installed PEFT run as the
  oracle on a copy of archlint's meta model, plus archlint's per-entry matching);
* archlint's reimplementation (:mod:`archlint.lora.reimplementation`, used without PEFT).

Agreement means the same verdict, the same exception type and message, the same set of
wrapped modules and parameters, and the same trainable parameter count. Each model runs
in a forked child (torch/transformers/peft are imported once by the parent) under a
wall-time limit and an RSS limit enforced by the parent.

    nice python benchmarks/peft_agreement.py [--jobs 2] [--timeout 300] [--max-rss-mb 6000]
                                             [--out results.jsonl] [TYPE ...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

RECIPES = {
    "peft-default": None,
    "seven": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qkvo": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "all-linear": "all-linear",
}
FIELDS = ("ok", "error_type", "error_message", "modules", "parameters", "trainable")


def _truth(model, target_modules) -> dict:
    from peft import LoraConfig, get_peft_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # low_cpu_mem_usage only creates the adapter weights on meta (PEFT's init_empty_weights):
            # the same matching and dispatch, without allocating and initialising real LoRA tensors.
            pm = get_peft_model(model, LoraConfig(r=8, target_modules=target_modules), low_cpu_mem_usage=True)
        except Exception as e:
            return {"ok": False, "error_type": type(e).__name__, "error_message": str(e),
                    "modules": [], "parameters": [], "trainable": 0}
    return {"ok": True, "error_type": None, "error_message": None,
            "modules": sorted(pm.base_model.targeted_module_names),
            "parameters": sorted(pm.base_model.targeted_parameter_names),
            "trainable": int(pm.get_nb_trainable_parameters()[0])}


def _outcome(o) -> dict:
    return {"ok": o.ok, "error_type": o.error_type, "error_message": o.error_message,
            "modules": sorted(o.modules), "parameters": sorted(o.parameters), "trainable": o.trainable}


def _diff(predicted: dict, truth: dict) -> list[str]:
    out = []
    for key in FIELDS:
        a, b = predicted[key], truth[key]
        if a == b:
            continue
        if isinstance(a, list):
            extra, missing = sorted(set(a) - set(b)), sorted(set(b) - set(a))
            out.append(f"{key}: +{len(extra)} {extra[:3]} -{len(missing)} {missing[:3]}")
        else:
            out.append(f"{key}: predicted {str(a)[:160]!r}, PEFT {str(b)[:160]!r}")
    return out


def run_type(model_type: str) -> dict:
    """In the child: build, then per recipe: evaluate, reimplement, and ask PEFT on a fresh model."""
    from archlint.build import build
    from archlint.lora import Plan, evaluate, reimplementation
    from archlint.lora.recipes import peft_default_targets
    from archlint.resolve import resolve

    clock = time.perf_counter()
    try:
        built = build(resolve(model_type))
    except Exception as e:
        return {"type": model_type, "built": False, "error": f"{type(e).__name__}: {str(e)[:200]}"}
    model = built.module
    default = peft_default_targets(getattr(getattr(model, "config", None), "model_type", None))
    out = {"type": model_type, "built": True, "class": built.class_name, "recipes": {}}
    for name, targets in RECIPES.items():
        if name == "peft-default" and default is None:
            continue
        plan = Plan.from_mapping({"target_modules": targets} if targets else {}, source=f"recipe:{name}")
        try:
            engine = _outcome(evaluate(model, plan).outcome)
            reimpl = _outcome(reimplementation.run(model, plan, default_targets=default))
            truth = _truth(build(resolve(model_type)).module, targets)
        except Exception as e:  # a crash in archlint itself is a disagreement, not a skipped case
            out["recipes"][name] = {"crash": f"{type(e).__name__}: {str(e)[:300]}"}
            continue
        out["recipes"][name] = {
            "truth": {k: (len(v) if isinstance(v, list) else v) for k, v in truth.items() if k != "error_message"},
            "engine": _diff(engine, truth),
            "reimplementation": _diff(reimpl, truth),
        }
    out["seconds"] = round(time.perf_counter() - clock, 2)
    return out


def _child(model_type: str, conn) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        result = run_type(model_type)
    except BaseException as e:  # noqa: BLE001 -- report anything, the parent must go on
        result = {"type": model_type, "built": False, "error": f"child crashed: {type(e).__name__}: {e}"}
    conn.send(json.dumps(result))
    conn.close()


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def sweep(types: list[str], jobs: int, timeout: float, max_rss_mb: float, out_path: Path) -> list[dict]:
    ctx = mp.get_context("fork")
    pending, running, results = list(types), {}, []
    with out_path.open("w") as out:
        while pending or running:
            while pending and len(running) < jobs:
                t = pending.pop(0)
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(t, child), daemon=True)
                proc.start()
                child.close()
                running[t] = (proc, parent, time.monotonic())
            time.sleep(0.2)
            for t, (proc, conn, started) in list(running.items()):
                result = None
                if conn.poll():
                    try:
                        result = json.loads(conn.recv())
                    except EOFError:
                        result = {"type": t, "built": False, "error": f"child died (exit {proc.exitcode})"}
                elif not proc.is_alive():
                    result = {"type": t, "built": False, "error": f"child died (exit {proc.exitcode})"}
                elif time.monotonic() - started > timeout:
                    proc.kill()
                    result = {"type": t, "built": False, "error": f"timeout after {timeout:.0f}s"}
                elif _rss_mb(proc.pid) > max_rss_mb:
                    proc.kill()
                    result = {"type": t, "built": False, "error": f"RSS above {max_rss_mb:.0f} MB"}
                if result is None:
                    continue
                proc.join(5)
                del running[t]
                results.append(result)
                out.write(json.dumps(result) + "\n")
                out.flush()
                done = len(results)
                print(f"[{done}/{len(types)}] {t}: " + _one_line(result), file=sys.stderr, flush=True)
    return results


def _one_line(result: dict) -> str:
    if not result.get("built"):
        return "not built (" + result.get("error", "")[:100] + ")"
    bad = [n for n, r in result["recipes"].items() if "crash" in r or r["engine"] or r["reimplementation"]]
    return f"{len(result['recipes'])} recipes, {len(bad)} disagreeing {bad} in {result.get('seconds')}s"


def _cause(result: dict) -> str:
    """``TargetError: gemma: building the model failed: ValueError: …`` -> ``building the model failed: ValueError``."""
    text = result.get("error", "")
    text = text.split(": ", 1)[1] if text.startswith("TargetError: ") else text
    text = text.split(": ", 1)[1] if text.startswith(result["type"] + ": ") else text
    head, _, rest = text.partition(": ")
    head = re.sub(r" for \w+$", "", head)
    return f"{head}: {rest.split(':', 1)[0]}" if rest else head


def summarize(results: list[dict]) -> str:
    built = [r for r in results if r.get("built")]
    lines = [f"model types: {len(results)}; built on meta: {len(built)}; not built: {len(results) - len(built)}"]
    for engine in ("engine", "reimplementation"):
        total = agree = 0
        bad = []
        for r in built:
            for name, rec in sorted(r["recipes"].items()):
                total += 1
                diff = [rec["crash"]] if "crash" in rec else rec[engine]
                if diff:
                    bad.append(f"  {r['type']} / {name}: " + "; ".join(diff))
                else:
                    agree += 1
        label = ("archlint (PEFT oracle on archlint's meta model)" if engine == "engine"
                 else "archlint reimplementation (no PEFT)")
        pct = 100.0 * agree / total if total else 0.0
        lines.append(f"{label}: {agree}/{total} model-type x recipe cases agree ({pct:.2f}%)")
        lines.extend(bad or ["  no disagreement"])
    verdicts = Counter()
    for r in built:
        for name, rec in r["recipes"].items():
            if "truth" in rec:
                verdicts[(name, "ok" if rec["truth"]["ok"] else rec["truth"]["error_type"])] += 1
    lines.append("PEFT verdicts: " + ", ".join(f"{n} {v}: {c}" for (n, v), c in sorted(verdicts.items())))
    reasons = Counter(_cause(r) for r in results if not r.get("built"))
    lines.append("not built, by cause: " + "; ".join(f"{k} {c}" for k, c in reasons.most_common(10)))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("types", nargs="*", help="model types (default: every CONFIG_MAPPING_NAMES key)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per model type")
    parser.add_argument("--max-rss-mb", type=float, default=6000.0)
    parser.add_argument("--out", type=Path, default=Path("peft_agreement.jsonl"))
    parser.add_argument("--summarize", type=Path, help="only summarize an earlier results file")
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize([json.loads(line) for line in args.summarize.open()]))
        return 0
    # Import once in the parent so that each forked child starts warm.
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    import archlint.lora.evaluate  # noqa: F401

    types = args.types or sorted(CONFIG_MAPPING_NAMES)
    clock = time.monotonic()
    results = sweep(types, args.jobs, args.timeout, args.max_rss_mb, args.out)
    print(f"transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}; "
          f"{len(types)} types in {(time.monotonic() - clock) / 60:.1f} min with {args.jobs} jobs")
    print(summarize(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
