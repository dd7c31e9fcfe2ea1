"""How much archlint costs over the bare ``import torch, transformers`` floor.

Measures, as the median of N runs each, the wall time and peak RSS of

* the import floor: ``python -c "import torch, transformers"``
* ``archlint <config> --format json`` on three real configs (small multimodal, 8B, 671B)

Every run is a fresh subprocess with ``HF_HUB_OFFLINE=1``; its peak RSS comes from
``os.wait4``, which returns the child's own rusage. Runs are interleaved (floor, A, B,
C, floor, A, ...) so that machine noise hits all of them alike. One extra ``--debug``
run per model reports archlint's own resolve/build/graph/rules split, the part of
"rules" spent in behavioural probes (``probe``: per-module meta forwards and tiny CPU
checks; ``forward``: the fake-tensor training forward of TRAIN001 — issue #3), the parts
spent evaluating LoRA plans through PEFT (``plans``: the common recipes or the user's
plan; ``verify``: the suggested fixes), and probe + forward as a share of the model's
median lint wall time.

    python benchmarks/lint_speed.py [--runs 5]
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
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "fixtures" / "configs"
MODELS = ("google__gemma-4-E2B-it", "meta-llama__Llama-3.1-8B", "deepseek-ai__DeepSeek-V3")
FLOOR = "import torch, transformers"
#: The phases of --debug; each is its own time (a fact a rule reads is charged to the fact's phase).
STAGES = ("resolve", "build", "graph", "structure", "rules", "probe", "forward", "plans", "verify")
_DEBUG_LINE = re.compile(r"^archlint: debug: (?P<target>.*): (?P<times>\w+ [\d.]+s(?:, \w+ [\d.]+s)*)$")


def archlint_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m archlint``."""
    script = Path(sys.executable).with_name("archlint")
    if script.is_file():
        return [str(script)]
    found = shutil.which("archlint")
    return [found] if found else [sys.executable, "-m", "archlint"]


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}


def measure(cmd: list[str], *, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) -> tuple[float, float, int]:
    """Run ``cmd``; return (wall seconds, peak RSS in MiB, exit code) of that child alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=stdout, stderr=stderr)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; tell Popen
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss_mib = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return wall, rss_mib, proc.returncode


def lint_once(model: str) -> tuple[float, float]:
    """One timed ``archlint CONFIG --format json``; checks that the target really built."""
    config = str(CONFIGS / model)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        wall, rss, code = measure([*archlint_command(), config, "--format", "json"], stdout=out, stderr=err)
        out.seek(0)
        err.seek(0)
        if code not in (0, 1):
            sys.exit(f"archlint failed on {model} (exit {code}):\n{err.read()}")
        result = json.load(out)["results"][0]
        if result["error"] is not None:
            sys.exit(f"archlint could not build {model}: {result['error']['message']}")
    return wall, rss


def debug_timings(model: str) -> dict[str, float]:
    """archlint's own per-stage seconds from one ``--debug`` run."""
    proc = subprocess.run(
        [*archlint_command(), str(CONFIGS / model), "--format", "json", "--debug"],
        cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    for line in proc.stderr.splitlines():
        if m := _DEBUG_LINE.match(line.strip()):
            return {k: float(v.rstrip("s")) for k, v in (part.split(" ") for part in m["times"].split(", "))}
    sys.exit(f"no 'archlint: debug:' line for {model} (exit {proc.returncode}):\n{proc.stderr}")


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command; the median is reported (default 5)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    for model in MODELS:
        if not (CONFIGS / model / "config.json").is_file():
            parser.error(f"missing fixture {CONFIGS / model / 'config.json'}")

    names = ("import floor", *MODELS)
    samples: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for i in range(args.runs):
        # Interleaved: floor, A, B, C, floor, A, B, C, ...
        wall, rss, code = measure([sys.executable, "-c", FLOOR])
        if code != 0:
            sys.exit(f"`python -c {FLOOR!r}` failed with exit {code}")
        samples["import floor"].append((wall, rss))
        for model in MODELS:
            samples[model].append(lint_once(model))
        print(f"run {i + 1}/{args.runs} done", file=sys.stderr, flush=True)

    medians = {n: (statistics.median(w for w, _ in s), statistics.median(r for _, r in s)) for n, s in samples.items()}
    floor_wall, floor_rss = medians["import floor"]

    print(f"archlint lint speed: median of {args.runs} run(s) each, interleaved, HF_HUB_OFFLINE=1")
    print(f"python {platform.python_version()}, torch {package_version('torch')}, "
          f"transformers {package_version('transformers')}, archlint {package_version('archlint')}, "
          f"{platform.machine()} x{os.cpu_count()}")
    print()
    header = f"{'model':<28} {'wall median (s)':>15} {'x floor':>8} {'peak RSS (MiB)':>15} {'x floor RSS':>12}"
    print(header)
    print("-" * len(header))
    for name in names:
        wall, rss = medians[name]
        print(f"{name:<28} {wall:>15.2f} {wall / floor_wall:>8.2f} {rss:>15.0f} {rss / floor_rss:>12.2f}")

    print()
    print("archlint --debug stage timings (one extra run per model, seconds)")
    header = f"{'model':<28}" + "".join(f"{s:>9}" for s in STAGES) + f"{'probes/wall':>12}"
    print(header)
    print("-" * len(header))
    for model in MODELS:
        times = debug_timings(model)
        share = (times.get("probe", 0.0) + times.get("forward", 0.0)) / medians[model][0]
        print(f"{model:<28}" + "".join(f"{times.get(s, float('nan')):>9.3f}" for s in STAGES) + f"{share:>11.1%}")


if __name__ == "__main__":
    main()
