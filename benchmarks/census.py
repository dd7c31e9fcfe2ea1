"""Census: archlint on every model type the installed transformers can build.

Each model type (a key of transformers' ``CONFIG_MAPPING_NAMES``) is linted as a user would
lint it -- ``archlint TYPE --format json`` (the default config with its optional sub-configs
filled, every rule) -- in its own process under a wall-clock and an address-space limit, at
most two at a time and niced, because the machine is shared. The processes are forked from
a parent that has imported torch, transformers, PEFT and archlint once.

Each type's outcome is written to ``OUT/types/TYPE.json`` as soon as it finishes, so an
interrupted census continues where it stopped (types already done are skipped unless
``--redo``); ``--retry-failed`` re-runs the ones that timed out or crashed.

Then the records are summarised: per rule (the model types it fires on, its severities and
one example path each), per model type (its warning and error findings), the LoRA recipe
verdicts, and what does not build with the cause. ``OUT/census.md`` and ``OUT/census.json``
hold everything; ``--summary FILE`` writes the short committed summary.

    python benchmarks/census.py                      # the whole registry into benchmarks/out/
    python benchmarks/census.py --types llama,phimoe # a few types
    python benchmarks/census.py --summarize-only     # only rebuild the tables
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out"
DEFAULT_SUMMARY = HERE / "census_summary.md"
MAX_JOBS = 2  # the machine has two cores shared with other people
SEVERITIES = ("error", "warning", "info")


# -- running one model type ------------------------------------------------------------


def all_model_types() -> list[str]:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return sorted(CONFIG_MAPPING_NAMES)


def preload() -> None:
    """Import what every child needs once, in the parent: each forked child then starts
    with torch, transformers, PEFT and archlint already imported (seconds saved per type)."""
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import archlint.api
    import archlint.cli  # noqa: F401
    from archlint.rules import all_rules

    all_rules()


def start_child(model_type: str, tmp: Path, *, memory_bytes: int, niceness: int) -> int:
    """Fork one child that lints ``model_type`` with the real command line into ``tmp``."""
    report_file, stderr_file = tmp / "report.json", tmp / "stderr.txt"
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        os.setsid()  # its own process group, so a timeout kills whatever it started too
        os.nice(niceness)
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        fd = os.open(stderr_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        from archlint.cli import main

        args = [model_type, "--format", "json", "--output", str(report_file), "--fail-on", "never", "--no-color"]
        try:
            main.main(args=args, prog_name="archlint", standalone_mode=True)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - whatever escapes is written where the parent reads it
        import traceback

        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def finish_record(model_type: str, tmp: Path, *, seconds: float, status: int | None, usage, timed_out: bool,
                  timeout: float) -> dict:
    """The trimmed record of one finished (or killed) child."""
    record = {
        "model_type": model_type,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1) if usage else None,
        "exit_code": os.waitstatus_to_exitcode(status) if status is not None else None,
    }
    report_file, stderr_file = tmp / "report.json", tmp / "stderr.txt"
    tail = stderr_file.read_text(errors="replace").strip().splitlines()[-6:] if stderr_file.is_file() else []
    if timed_out:
        return {**record, "status": "timeout",
                "error": {"kind": "timeout", "message": f"no result within {timeout:.0f} s"}}
    if not report_file.is_file():
        return {**record, "status": _crash_kind(record["exit_code"], tail),
                "error": {"kind": "no-report", "message": " | ".join(tail)[-600:]}}
    report = json.loads(report_file.read_text())
    return {**record, **_trim(report["results"][0])}


def _crash_kind(exit_code: int | None, tail: list[str]) -> str:
    text = " ".join(tail)
    if "MemoryError" in text or "Cannot allocate memory" in text or exit_code == -signal.SIGKILL:
        return "memory"
    return "crash"


def _trim(result: dict) -> dict:
    """What the summary needs from one result: findings without their long path lists."""
    if result.get("error"):
        return {"status": "build-failed", "error": result["error"], "model": result.get("model")}
    findings = [
        {
            "code": f["code"], "severity": f["severity"], "confidence": f.get("confidence"),
            "message": f["message"][:400], "pattern": f.get("pattern"), "count": f.get("count"),
            "module_class": f.get("module_class"), "example": (f.get("paths") or [None])[0],
            "fix": (f.get("fix") or {}).get("title"),
        }
        for f in result.get("findings", [])
    ]
    plans = [
        {
            "source": p.get("source"), "verdict": p.get("verdict"), "checked": p.get("checked"),
            "error": _short_error(p.get("error")), "modules": len(p.get("modules") or []),
        }
        for p in result.get("plans") or []
    ]
    return {"status": "ok", "model": result.get("model"), "findings": findings, "plans": plans,
            "rule_errors": result.get("rule_errors") or []}


def _short_error(error):
    if not error:
        return None
    if isinstance(error, dict):
        return {k: (str(v)[:300] if isinstance(v, str) else v) for k, v in error.items()}
    return str(error)[:300]


# -- the census loop -------------------------------------------------------------------


def census(types: list[str], out: Path, *, jobs: int, timeout: float, memory_bytes: int, niceness: int,
           redo: bool, retry_failed: bool) -> None:
    folder = out / "types"
    folder.mkdir(parents=True, exist_ok=True)
    todo = [t for t in types if _needs_run(folder / f"{t}.json", redo, retry_failed)]
    print(f"census: {len(types)} model types, {len(types) - len(todo)} already done, {len(todo)} to run "
          f"({jobs} at a time, {timeout:.0f} s and {memory_bytes / 2**30:.1f} GiB each)", flush=True)
    if not todo:
        return
    preload()
    running: dict[int, tuple[str, Path, float]] = {}  # pid -> (model type, its folder, start)
    done = 0
    queue = list(todo)
    while queue or running:
        while queue and len(running) < jobs:
            model_type = queue.pop(0)
            tmp = Path(tempfile.mkdtemp(prefix=f"census-{model_type}-"))
            child = start_child(model_type, tmp, memory_bytes=memory_bytes, niceness=niceness)
            running[child] = (model_type, tmp, time.monotonic())
        pid, status, usage = os.wait4(-1, os.WNOHANG)
        timed_out = False
        if not pid:
            late = [p for p, (_, _, began) in running.items() if time.monotonic() - began > timeout]
            if not late:
                time.sleep(0.2)
                continue
            pid, timed_out = late[0], True
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _, status, usage = os.wait4(pid, 0)
        model_type, tmp, began = running.pop(pid)
        record = finish_record(model_type, tmp, seconds=time.monotonic() - began, status=status, usage=usage,
                               timed_out=timed_out, timeout=timeout)
        shutil.rmtree(tmp, ignore_errors=True)
        path = folder / f"{model_type}.json"
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(record, indent=1, sort_keys=True))
        partial.replace(path)  # a record is either whole or absent
        done += 1
        print(f"[{done}/{len(todo)}] {model_type}: {record['status']} in {record['seconds']:.1f} s", flush=True)


def _needs_run(path: Path, redo: bool, retry_failed: bool) -> bool:
    if redo or not path.is_file():
        return True
    try:
        status = json.loads(path.read_text()).get("status")
    except (OSError, json.JSONDecodeError):
        return True
    return retry_failed and status in ("timeout", "memory", "crash")


# -- the summary -----------------------------------------------------------------------


def load_records(out: Path, types: list[str] | None = None) -> list[dict]:
    records = []
    for path in sorted((out / "types").glob("*.json")):
        if types is None or path.stem in types:
            records.append(json.loads(path.read_text()))
    return records


def summarize(records: list[dict]) -> dict:
    """Per rule, per model type, per recipe, and the failures, as plain data."""
    by_rule: dict[str, dict] = defaultdict(lambda: {"types": {}, "severities": Counter(), "findings": 0})
    by_type: dict[str, list] = {}
    recipes: dict[str, Counter] = defaultdict(Counter)
    recipe_errors: dict[str, list] = defaultdict(list)
    failures: dict[str, list] = defaultdict(list)
    rule_errors: dict[str, list] = defaultdict(list)
    status = Counter(r["status"] for r in records)
    for record in records:
        model_type = record["model_type"]
        if record["status"] != "ok":
            failures[_cause(record)].append(model_type)
            continue
        for f in record["findings"]:
            rule = by_rule[f["code"]]
            rule["findings"] += 1
            rule["severities"][f["severity"]] += 1
            rule["types"].setdefault(model_type, f"{f['pattern'] or f['example']} ({f['severity']})")
        by_type[model_type] = [
            f"{f['severity']} {f['code']} {f['pattern']} ×{f['count']}"
            for f in record["findings"] if f["severity"] in ("error", "warning")
        ]
        for plan in record["plans"]:
            recipes[plan["source"]][plan["verdict"]] += 1
            if plan["verdict"] not in ("ok",):
                recipe_errors[plan["source"]].append((model_type, plan["verdict"], plan["error"]))
        for e in record["rule_errors"]:
            rule_errors[e["code"]].append((model_type, e["message"][:200]))
    return {
        "records": len(records), "status": dict(status),
        "by_rule": {code: {"types": v["types"], "severities": dict(v["severities"]), "findings": v["findings"]}
                    for code, v in sorted(by_rule.items())},
        "by_type": dict(sorted(by_type.items())),
        "recipes": {k: dict(v) for k, v in sorted(recipes.items())},
        "recipe_errors": dict(recipe_errors),
        "failures": dict(sorted(failures.items(), key=lambda kv: -len(kv[1]))),
        "rule_errors": dict(rule_errors),
    }


def _cause(record: dict) -> str:
    """A failure's cause with the model-specific parts (names, numbers) kept short."""
    error = record.get("error") or {}
    message = error.get("message", "")
    head, _, rest = message.partition(": ")
    cause = rest if head == record["model_type"] else message
    for marker in ("building the model failed: ", "building the model on meta failed: "):
        cause = cause.replace(marker, "")
    cause = re.sub(r"no model class for \w+", "no model class for its config class", cause)
    return f"{record['status']}/{error.get('kind', '?')}: {cause[:160]}"


def render_markdown(summary: dict, *, full: bool, versions: dict) -> str:
    lines = [
        "# archlint census",
        "",
        f"Generated by `benchmarks/census.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        f"{summary['records']} model types: "
        + ", ".join(f"{v} {k}" for k, v in sorted(summary["status"].items())) + ".",
        "",
        "## Findings per rule",
        "",
        "| rule | model types | findings | severities | example (first types) |",
        "|---|---:|---:|---|---|",
    ]
    for code, rule in summary["by_rule"].items():
        severities = ", ".join(f"{s} {rule['severities'][s]}" for s in SEVERITIES if s in rule["severities"])
        examples = "; ".join(f"{t}: `{p}`" for t, p in list(rule["types"].items())[:3])
        lines.append(f"| {code} | {len(rule['types'])} | {rule['findings']} | {severities} | {examples} |")
    lines += ["", "## LoRA recipes (verdicts over the types that built)", "",
              "| recipe | " + " | ".join(_verdicts(summary)) + " |", "|---|" + "---:|" * len(_verdicts(summary))]
    for source, counts in summary["recipes"].items():
        lines.append(f"| {source} | " + " | ".join(str(counts.get(v, 0)) for v in _verdicts(summary)) + " |")
    lines += ["", "## What does not build", ""]
    if not summary["failures"]:
        lines.append("Everything built.")
    for cause, types in summary["failures"].items():
        lines.append(f"- {len(types)} × {cause} — " + ", ".join(types[:12]) + (" …" if len(types) > 12 else ""))
    if summary["rule_errors"]:
        lines += ["", "## Rules that raised", ""]
        for code, items in summary["rule_errors"].items():
            lines.append(f"- {code} on {len(items)} types: " + "; ".join(f"{t}: {m}" for t, m in items[:4]))
    if full:
        lines += ["", "## Every rule, every model type it fires on", ""]
        for code, rule in summary["by_rule"].items():
            lines.append(f"### {code} ({len(rule['types'])} types)")
            lines.append("")
            lines += [f"- {t}: `{p}`" for t, p in rule["types"].items()]
            lines.append("")
        lines += ["## Warning and error findings per model type", ""]
        for model_type, items in summary["by_type"].items():
            if items:
                lines.append(f"- **{model_type}**: " + "; ".join(items))
        lines += ["", "## Recipes that do not come out ok", ""]
        for source, items in summary["recipe_errors"].items():
            lines.append(f"### {source}")
            lines.append("")
            lines += [f"- {t}: {v} {json.dumps(e)[:240]}" for t, v, e in items]
            lines.append("")
    return "\n".join(lines) + "\n"


def _verdicts(summary: dict) -> list[str]:
    return sorted({v for counts in summary["recipes"].values() for v in counts})


def write_summaries(out: Path, summary_file: Path | None, types: list[str] | None) -> dict:
    from importlib.metadata import version

    versions = {name: version(name) for name in ("archlint", "torch", "transformers", "peft")}
    summary = summarize(load_records(out, types))
    (out / "census.json").write_text(json.dumps(summary, indent=1, default=list))
    (out / "census.md").write_text(render_markdown(summary, full=True, versions=versions))
    if summary_file is not None:
        summary_file.write_text(render_markdown(summary, full=False, versions=versions))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT,
                        help="folder for the per-type records and tables")
    parser.add_argument("--types", help="comma-separated model types (default: every type transformers knows)")
    parser.add_argument("--jobs", type=int, default=2, help=f"processes at a time (at most {MAX_JOBS})")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per model type")
    parser.add_argument("--memory-gb", type=float, default=8, help="address-space limit per model type")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the children")
    parser.add_argument("--redo", action="store_true", help="re-run types that already have a record")
    parser.add_argument("--retry-failed", action="store_true", help="re-run types that timed out or crashed")
    parser.add_argument("--summarize-only", action="store_true", help="only rebuild the tables from the records")
    parser.add_argument("--summary", type=Path, default=DEFAULT_SUMMARY, help="the short summary to commit")
    args = parser.parse_args(argv)
    if not 1 <= args.jobs <= MAX_JOBS:
        parser.error(f"--jobs must be between 1 and {MAX_JOBS}")
    types = args.types.split(",") if args.types else None
    if not args.summarize_only:
        census(types or all_model_types(), args.out, jobs=args.jobs, timeout=args.timeout,
               memory_bytes=int(args.memory_gb * 2**30), niceness=args.nice,
               redo=args.redo, retry_failed=args.retry_failed)
    summary = write_summaries(args.out, None if types else args.summary, types)
    print(f"census: {summary['records']} records: {summary['status']}; tables in {args.out / 'census.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
