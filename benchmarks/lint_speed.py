"""Where a user waits for archlint, measured in one run.

* **floor** per model: ``import torch, transformers``, read the config, build the model on
  the meta device -- what any tool that looks at the model must pay, nothing else;
* **cold lint**: ``archlint CONFIG --format json --no-cache`` (every rule, the LoRA
  recipes through PEFT, the verified fixes, the training-step checks), with its worker on
  the second core (:mod:`archlint.fork`) and without it (``ARCHLINT_WORKER=0``): the CPU
  time of a process counts its worker's too;
* **cache hit**: the same command once its result is stored (a private cache directory),
  with ``python -X importtime`` evidence of what it imported;
* **several targets**: the three models in one process vs one process each;
* **depth**: a Llama of the 8B width at 8 and at 128 layers (repeated blocks are analysed
  once, so the cost should be nearly flat);
* **block traces + training-step checks** on Gemma-4 E2B: their CPU seconds inside uncached
  ``--debug`` runs without the worker (phases ``probe`` and ``steps``) against the rest of
  the same run's CPU time, i.e. what they add to the lint without them (the goal: at most 50%).

Every run is a fresh subprocess with ``HF_HUB_OFFLINE=1``; runs are interleaved (floor,
lint, floor, lint, ...) so machine noise hits all alike; medians are reported. Extra
``--debug`` runs per model give archlint's own stage split, in CPU seconds of the process
(:data:`DEBUG_DRIVER` points archlint's phase clock at ``time.process_time``), which a
busy machine disturbs far less than wall time.

    python benchmarks/lint_speed.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "fixtures" / "configs"
MODELS = ("google__gemma-4-E2B-it", "meta-llama__Llama-3.1-8B", "deepseek-ai__DeepSeek-V3")
DEPTH_BASE = "meta-llama__Llama-3.1-8B"
DEPTHS = (8, 128)
#: The phases of --debug; each is its own time (a fact a rule reads is charged to the fact's phase).
STAGES = ("resolve", "build", "graph", "structure", "quantization", "rules", "probe", "forward", "plans", "verify",
          "steps", "worker")
_DEBUG_LINE = re.compile(r"^archlint: debug: (?P<target>.*): (?P<times>\w+ [\d.]+s(?:, \w+ [\d.]+s)*)$")
_HEAVY = re.compile(r"\|\s+(torch|transformers|peft)(\.|$)")

FLOOR = """\
import sys
import torch
import transformers
from transformers import AutoConfig
from transformers.initialization import meta_device_safe_creation_ops

config = AutoConfig.from_pretrained(sys.argv[1])
cls = getattr(transformers, config.architectures[0])
with torch.device("meta"), meta_device_safe_creation_ops():
    model = cls._from_config(config, dtype=torch.bfloat16)
assert next(model.parameters()).device.type == "meta"
"""


#: ``archlint ARGS`` with the clock of its --debug phase timings reading the process's CPU
#: time instead of the wall clock (benchmark only; archlint itself reports wall time).
DEBUG_DRIVER = """\
import sys, time, types
import archlint.api, archlint.build, archlint.facts.base
from archlint.cli import main

for module in (archlint.api, archlint.build, archlint.facts.base):
    module.time = types.SimpleNamespace(perf_counter=time.process_time)
sys.argv = ["archlint", *sys.argv[1:]]
main()
"""
#: The model of the traces+steps measurement, and the phases that are those two checks.
TRACED_MODEL = "google__gemma-4-E2B-it"
TRACES_AND_STEPS = ("probe", "steps")


def archlint_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m archlint``."""
    script = Path(sys.executable).with_name("archlint")
    if script.is_file():
        return [str(script)]
    found = shutil.which("archlint")
    return [found] if found else [sys.executable, "-m", "archlint"]


def run(cmd: list[str], cache: Path, *, worker: bool = True) -> tuple[Sample, str, str, int]:
    """Run ``cmd`` with ``cache`` as the user cache directory (``worker``: archlint may fork
    its worker): its wall and CPU time (``os.wait4``: that child, and the worker it reaped),
    stdout, stderr and exit code."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "XDG_CACHE_HOME": str(cache),
           "ARCHLINT_WORKER": "1" if worker else "0"}
    env.pop("ARCHLINT_CACHE_DIR", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed archlint has its bytecode compiled
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; tell Popen
        out.seek(0)
        err.seek(0)
        return Sample(wall, usage.ru_utime + usage.ru_stime), out.read(), err.read(), proc.returncode


@dataclass(frozen=True)
class Sample:
    wall: float  # seconds
    cpu: float  # user + system seconds of the child


def med(samples: list[Sample]) -> Sample:
    return Sample(statistics.median(s.wall for s in samples), statistics.median(s.cpu for s in samples))


def lint(targets: list[str], cache: Path, *extra: str, worker: bool = True) -> tuple[Sample, dict]:
    wall, out, err, code = run([*archlint_command(), *targets, "--format", "json", *extra], cache, worker=worker)
    if code not in (0, 1):
        sys.exit(f"archlint failed on {targets} (exit {code}):\n{err}")
    report = json.loads(out)
    for result in report["results"]:
        if result["error"] is not None:
            sys.exit(f"archlint could not build {result['target']}: {result['error']['message']}")
    return wall, report


def floor(config_dir: Path, cache: Path) -> Sample:
    wall, _, err, code = run([sys.executable, "-c", FLOOR, str(config_dir)], cache)
    if code != 0:
        sys.exit(f"the floor script failed on {config_dir}:\n{err}")
    return wall


def debug_timings(target: str, cache: Path, *, worker: bool = True) -> tuple[dict[str, float], Sample]:
    """archlint's own per-stage CPU seconds from one uncached ``--debug`` run, and that
    run's wall and CPU time. With the worker, a phase waiting for it costs this process
    little CPU, and ``worker`` is the worker's own CPU seconds."""
    sample, _, err, code = run([sys.executable, "-c", DEBUG_DRIVER, target, "--format", "json", "--debug",
                                "--no-cache"], cache, worker=worker)
    for line in err.splitlines():
        if m := _DEBUG_LINE.match(line.strip()):
            times = {k: float(v.rstrip("s")) for k, v in (part.split(" ") for part in m["times"].split(", "))}
            return times, sample
    sys.exit(f"no 'archlint: debug:' line for {target} (exit {code}):\n{err}")


def heavy_imports(target: str, cache: Path) -> list[str]:
    """Modules of torch, transformers or peft that ``python -X importtime -m archlint`` imported."""
    _, _, err, code = run([sys.executable, "-X", "importtime", "-m", "archlint", target, "--format", "json"], cache)
    if code not in (0, 1):
        sys.exit(f"archlint failed under -X importtime (exit {code})")
    return sorted({m.group(0).split("|")[-1].strip() for m in map(_HEAVY.search, err.splitlines()) if m})


def depth_configs(directory: Path) -> dict[int, Path]:
    base = json.loads((CONFIGS / DEPTH_BASE / "config.json").read_text())
    out = {}
    for layers in DEPTHS:
        folder = directory / f"llama-8b-width-{layers}-layers"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({**base, "num_hidden_layers": layers}, indent=2))
        out[layers] = folder
    return out


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement; the median is reported (default 3)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="archlint-speed-"))
    try:
        report(args.runs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(runs: int, work: Path) -> None:
    empty = work / "no-cache"  # --no-cache runs never write; a directory of their own all the same
    warm = work / "warm-cache"
    configs = {m: CONFIGS / m for m in MODELS}
    depth = depth_configs(work)
    floors: dict[str, list[Sample]] = {m: [] for m in MODELS}
    colds: dict[str, list[Sample]] = {m: [] for m in MODELS}
    serial: dict[str, list[Sample]] = {m: [] for m in MODELS}  # cold lints without the worker
    hits: dict[str, list[Sample]] = {m: [] for m in MODELS}
    together: list[Sample] = []
    deep: dict[int, list[Sample]] = {n: [] for n in DEPTHS}
    cold_json: dict[str, str] = {}
    for model, folder in configs.items():  # store each result once: the hits below read it
        _, stored = lint([str(folder)], warm)
        cold_json[model] = json.dumps(stored, sort_keys=True)
    for i in range(runs):
        for model, folder in configs.items():
            floors[model].append(floor(folder, empty))
            colds[model].append(lint([str(folder)], empty, "--no-cache")[0])
            serial[model].append(lint([str(folder)], empty, "--no-cache", worker=False)[0])
            sample, hit = lint([str(folder)], warm)
            if json.dumps(hit, sort_keys=True) != cold_json[model]:
                sys.exit(f"the cached report of {model} differs from the stored one")
            hits[model].append(sample)
        together.append(lint([str(f) for f in configs.values()], empty, "--no-cache")[0])
        for layers, folder in depth.items():
            deep[layers].append(lint([str(folder)], empty, "--no-cache")[0])
        print(f"run {i + 1}/{runs} done", file=sys.stderr, flush=True)

    print(f"archlint lint speed: median of {runs} run(s) each, interleaved, HF_HUB_OFFLINE=1")
    print(f"python {platform.python_version()}, torch {package_version('torch')}, "
          f"transformers {package_version('transformers')}, peft {package_version('peft')}, "
          f"archlint {package_version('archlint')}, {platform.machine()} x{os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print("wall: elapsed seconds; cpu: user+system seconds of the process (steadier on a busy machine)")
    print()
    header = (f"{'model':<26} {'floor wall':>10} {'cpu':>6} {'cold lint wall':>14} {'cpu':>6} "
              f"{'x floor wall':>12} {'cpu':>6} {'no worker wall':>14} {'cpu':>6} {'x floor wall':>12} {'cpu':>6} "
              f"{'cache hit wall':>14} {'cpu':>6}")
    print(header)
    print("-" * len(header))
    for model in MODELS:
        f, c, s, h = med(floors[model]), med(colds[model]), med(serial[model]), med(hits[model])
        print(f"{model:<26} {f.wall:>10.2f} {f.cpu:>6.2f} {c.wall:>14.2f} {c.cpu:>6.2f} "
              f"{c.wall / f.wall:>12.2f} {c.cpu / f.cpu:>6.2f} {s.wall:>14.2f} {s.cpu:>6.2f} "
              f"{s.wall / f.wall:>12.2f} {s.cpu / f.cpu:>6.2f} {h.wall:>14.3f} {h.cpu:>6.3f}"
              f"{'  NOT served from the cache' if h.cpu > f.cpu / 2 else ''}")

    print()
    heavy = heavy_imports(str(configs[MODELS[1]]), warm)
    print(f"cache hit under python -X importtime: torch/transformers/peft modules imported: "
          f"{len(heavy)}{' (' + ', '.join(heavy[:5]) + ')' if heavy else ''}")

    print()
    separate = [med(colds[m]) for m in MODELS]
    one = med(together)
    wall, cpu = sum(s.wall for s in separate), sum(s.cpu for s in separate)
    print(f"three models, one process each: {wall:.2f} s wall, {cpu:.2f} s cpu; in one process: "
          f"{one.wall:.2f} s wall, {one.cpu:.2f} s cpu ({one.wall / wall:.2f}x wall, {one.cpu / cpu:.2f}x cpu)")

    print()
    shallow, tall = (med(deep[n]) for n in DEPTHS)
    stages = {n: debug_timings(str(folder), empty)[0] for n, folder in depth.items()}
    inside = {n: sum(v for k, v in t.items() if k in STAGES) for n, t in stages.items()}
    print(f"depth, Llama-3.1-8B width: {DEPTHS[0]} layers {shallow.wall:.2f} s wall / {shallow.cpu:.2f} s cpu, "
          f"{DEPTHS[1]} layers {tall.wall:.2f} s wall / {tall.cpu:.2f} s cpu: "
          f"{tall.wall / shallow.wall:.2f}x wall, {tall.cpu / shallow.cpu:.2f}x cpu")
    print(f"  archlint's own phases (all --debug phases, cpu): {inside[DEPTHS[0]]:.2f} s vs "
          f"{inside[DEPTHS[1]]:.2f} s: {inside[DEPTHS[1]] / inside[DEPTHS[0]]:.2f}x")

    debug_runs = {m: [debug_timings(str(configs[m]), empty) for _ in range(runs if m == TRACED_MODEL else 1)]
                  for m in MODELS}
    print()
    traced = [debug_timings(str(configs[TRACED_MODEL]), empty, worker=False) for _ in range(runs)]
    checks = statistics.median(sum(t.get(s, 0.0) for s in TRACES_AND_STEPS) for t, _ in traced)
    lint_cpu = statistics.median(sample.cpu for _, sample in traced)
    forward = statistics.median(t.get("forward", 0.0) for t, _ in traced)
    print(f"block traces + training-step checks, {TRACED_MODEL} ({len(traced)} uncached --debug run(s) without "
          f"the worker, cpu seconds of the same process):")
    print(f"  traces (probe) {statistics.median(t.get('probe', 0.0) for t, _ in traced):.2f} s + "
          f"training steps {statistics.median(t.get('steps', 0.0) for t, _ in traced):.2f} s = {checks:.2f} s "
          f"of a {lint_cpu:.2f} s lint: they add {checks / (lint_cpu - checks):.0%} to the lint without them "
          f"(goal: at most 50%)")
    print(f"  counting the shrunk copy and TRAIN001's own forward too (phase forward, {forward:.2f} s): "
          f"{(checks + forward) / (lint_cpu - checks - forward):.0%}")

    print()
    print("archlint --debug stage timings (uncached runs with the worker, cpu seconds of each phase, median;")
    print("a phase that waits for the worker costs little cpu here; worker: the worker's own cpu seconds)")
    header = f"{'model':<28}" + "".join(f"{s:>{max(9, len(s) + 1)}}" for s in STAGES)
    print(header)
    print("-" * len(header))
    for model in MODELS:
        times = {s: statistics.median(t.get(s, float("nan")) for t, _ in debug_runs[model]) for s in STAGES}
        print(f"{model:<28}" + "".join(f"{times[s]:>{max(9, len(s) + 1)}.3f}" for s in STAGES))
    for layers in DEPTHS:
        row = "".join(f"{stages[layers].get(s, float('nan')):>{max(9, len(s) + 1)}.3f}" for s in STAGES)
        print(f"{f'llama-8b-width {layers} layers':<28}" + row)


if __name__ == "__main__":
    main()
