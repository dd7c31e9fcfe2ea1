"""``--format html``: one self-contained page (inline CSS and JS, nothing fetched).

Per target: the header, the verdict of the user's LoRA plan or the recipes table, the
findings (worst first) with every fix in a copyable block, and the collapsed module tree
with each finding marked on the node where it sits, coloured by severity. A flagged node
lists the real module paths it stands for.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import Any

from ..findings import Finding, Severity
from ..report import Report, TargetResult
from .tree import marked_tree

SEVERITIES = [str(s) for s in sorted(Severity, reverse=True)]

CSS = """
:root { --error: #c62828; --warning: #b26a00; --info: #1565c0; --ok: #2e7d32; --line: #ddd; --soft: #f6f7f9; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d1f23; background: #fff; }
header.page { padding: 14px 24px; background: #20232a; color: #fff; }
header.page h1 { margin: 0; font-size: 20px; }
header.page .meta { color: #c7ccd6; font-size: 12px; }
main { padding: 8px 24px 40px; max-width: 1400px; }
code, pre, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12.5px; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; color: #fff; font-size: 12px; font-weight: 600; }
.badge.error { background: var(--error); } .badge.warning { background: var(--warning); } .badge.info { background: var(--info); }
.badge.ok { background: var(--ok); } .badge.breaks { background: var(--error); }
section.target { border: 1px solid var(--line); border-radius: 8px; margin: 18px 0; padding: 4px 16px 12px; }
section.target > h2 { font-size: 17px; margin: 10px 0 2px; word-break: break-all; }
.model { color: #444; margin-bottom: 8px; }
.why { color: #777; font-size: 12px; }
.columns { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 18px; }
@media (max-width: 1000px) { .columns { grid-template-columns: 1fr; } }
h3 { font-size: 14px; margin: 14px 0 6px; text-transform: uppercase; letter-spacing: .04em; color: #555; }
table.plan { border-collapse: collapse; width: 100%; }
table.plan td, table.plan th { border-bottom: 1px solid var(--line); padding: 3px 8px 3px 0; text-align: left; vertical-align: top; }
.finding { border-left: 4px solid var(--line); padding: 4px 10px; margin: 8px 0; background: var(--soft); border-radius: 0 6px 6px 0; }
.finding.error { border-left-color: var(--error); } .finding.warning { border-left-color: var(--warning); } .finding.info { border-left-color: var(--info); }
.finding .head { font-weight: 600; }
ul.patterns { margin: 2px 0 6px; padding-left: 18px; }
li.pattern { word-break: break-all; }
.message { margin-top: 4px; }
.fix { margin-top: 6px; }
.fix pre { background: #fff; border: 1px solid var(--line); border-radius: 4px; padding: 6px 8px; margin: 4px 0; white-space: pre-wrap; word-break: break-all; }
button.copy { font-size: 12px; padding: 1px 8px; cursor: pointer; border: 1px solid #999; border-radius: 4px; background: #fff; }
button.copy.done { background: var(--ok); color: #fff; border-color: var(--ok); }
.tree ul { list-style: none; margin: 0; padding-left: 16px; border-left: 1px dotted #ccc; }
.tree > ul { padding-left: 0; border: 0; }
.tree summary { cursor: pointer; }
.tree .leaf { padding-left: 14px; }
.tree .cls { color: #888; font-size: 12px; }
.tree .rep { color: #555; font-weight: 600; }
.tree .node.error > details > summary .name, .tree .node.error > .leaf .name { color: var(--error); font-weight: 600; }
.tree .node.warning > details > summary .name, .tree .node.warning > .leaf .name { color: var(--warning); font-weight: 600; }
.tree .node.info > details > summary .name, .tree .node.info > .leaf .name { color: var(--info); }
.tree .mark { font-size: 11px; margin-left: 4px; }
.tree details.paths summary { color: #666; font-size: 12px; }
.tree ul.paths { border: 0; padding-left: 12px; }
.tree li.path { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11.5px; color: #444; word-break: break-all; }
.toolbar { margin: 6px 0; }
.toolbar button { font-size: 12px; margin-right: 6px; }
.failed { color: var(--error); }
"""

JS = """
function copyText(text, button) {
  function done() { button.classList.add('done'); button.textContent = 'copied'; setTimeout(function () {
    button.classList.remove('done'); button.textContent = 'copy'; }, 1500); }
  if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(done, fallback); }
  else { fallback(); }
  function fallback() {
    var area = document.createElement('textarea'); area.value = text; document.body.appendChild(area);
    area.select(); try { document.execCommand('copy'); done(); } catch (e) {} document.body.removeChild(area);
  }
}
document.addEventListener('click', function (event) {
  var button = event.target.closest('button.copy');
  if (button) { copyText(document.getElementById(button.dataset.for).textContent, button); return; }
  var toggle = event.target.closest('button.expand');
  if (toggle) {
    var open = toggle.dataset.open === '1';
    toggle.closest('section').querySelectorAll('.tree details.node-details').forEach(function (d) { d.open = open; });
  }
});
"""


def render(report: Report, options) -> str:
    ids = _Ids()
    counts = report.counts()
    summary = " ".join(f'<span class="badge {s}">{counts[s]} {s}</span>' for s in SEVERITIES)
    versions = ", ".join(f"{escape(k)} {escape(v)}" for k, v in report.versions.items() if v)
    body = "".join(_target(result, ids) for result in report.results)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>archlint report: {escape(", ".join(r.target for r in report.results))}</title>
<style>{CSS}</style>
</head>
<body>
<header class="page">
  <h1>archlint report</h1>
  <div class="summary">{len(report.findings)} findings {summary} in {len(report.results)} target(s)
  <span class="meta">· a finding is one rule at one module pattern · archlint {escape(report.archlint_version)} · {versions}</span></div>
</header>
<main>
{body}
</main>
<script>{JS}</script>
</body>
</html>
"""


class _Ids:
    def __init__(self):
        self.n = 0

    def next(self) -> str:
        self.n += 1
        return f"fix-{self.n}"


def _target(result: TargetResult, ids: _Ids) -> str:
    if result.error:
        return (f'<section class="target failed-target"><h2>{escape(result.target)}</h2>'
                f'<p class="failed">not analysed ({escape(result.error.kind)}): {escape(result.error.message)}</p></section>\n')
    m = result.model
    why = f'<div class="why">why this class: {escape(m.class_reason)}</div>' if m.class_reason else ""
    by_code: dict[str, list[Finding]] = defaultdict(list)
    for f in result.findings:
        by_code[f.code].append(f)
    blocks = sorted(by_code.values(), key=lambda fs: (-max(f.severity for f in fs), fs[0].code))
    tree = _tree(result) if result.tree is not None else ""
    return f"""<section class="target" data-target="{escape(result.target)}">
<h2>{escape(result.target)}</h2>
<div class="model">{escape(m.class_name)}{f" ({escape(m.model_type)})" if m.model_type else ""} ·
{m.parameters:,} parameters · {m.modules:,} modules{"" if m.head else " · no task head (AutoModel)"}{why}</div>
{_plans(result)}
<div class="columns">
<div class="findings"><h3>Findings</h3>{"".join(_code_block(fs, ids) for fs in blocks) or "<p>no findings</p>"}
{"".join(f'<p class="failed">rule {escape(e["code"])} crashed: {escape(e["message"])}</p>' for e in result.rule_errors)}</div>
<div class="tree"><h3>Module tree</h3>
<div class="toolbar"><button class="expand" data-open="1">expand all</button><button class="expand" data-open="0">collapse all</button></div>
{tree}</div>
</div>
</section>
"""


def _plans(result: TargetResult) -> str:
    plans = result.plans
    if not plans:
        return ""
    recipes = all(p.source.startswith("recipe:") for p in plans)
    rows = []
    for p in plans:
        name = p.label if recipes else f"your plan ({p.source})"
        if p.ok:
            verdict = '<span class="badge ok">works</span>'
            what = f"{len(p.modules)} modules" + (f" + {len(p.parameters)} parameters" if p.parameters else "")
            what += f", {p.trainable:,} trainable at r={p.r}"
        else:
            verdict = '<span class="badge breaks">breaks</span>'
            what = _error_text(p.error)
        rows.append(f"<tr><td>{escape(name)}</td><td>{verdict}</td><td>{escape(what)}</td></tr>")
        for e in p.entries if not recipes else ():
            layers = f"{e.layers_reached}/{e.layers_total}" if e.layers_total else "—"
            rows.append(f'<tr class="entry"><td class="mono">&nbsp;&nbsp;{escape(e.entry)}</td><td>{e.matches} matches</td>'
                        f'<td>layers {layers} · {escape(", ".join(e.classes))}</td></tr>')
        rows.extend(f'<tr class="note"><td></td><td></td><td class="why">{escape(n)}</td></tr>' for n in p.notes)
    title = "LoRA recipes" if recipes else "Your LoRA plan"
    return f'<h3>{title} <span class="why">({escape(plans[0].engine_label)})</span></h3><table class="plan">{"".join(rows)}</table>'


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {' '.join(str(error.get('message', '')).split())}"[:400]
    return " ".join(str(error or "error").split())[:400]


def _code_block(findings: list[Finding], ids: _Ids) -> str:
    """One rule's findings: each message with its module patterns, then each distinct fix once."""
    worst = max(f.severity for f in findings)
    first = findings[0]
    total = sum(f.count for f in findings)
    by_message: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_message[f.message].append(f)
    messages = "".join(
        f'<div class="message">{escape(message)}</div><ul class="patterns">'
        + "".join(f'<li class="pattern mono {f.severity}">{escape(f.pattern or "(model)")} '
                  f'<span class="why">×{f.count} {escape(f.module_class)}</span></li>' for f in group)
        + "</ul>" for message, group in by_message.items())
    fixes = ""
    for fix in dict.fromkeys(f.fix for f in findings if f.fix):
        if fix.detail:
            fid = ids.next()
            fixes += (f'<div class="fix"><b>fix:</b> {escape(fix.title)} <button class="copy" data-for="{fid}">copy</button>'
                      f'<pre id="{fid}">{escape(fix.detail)}</pre></div>')
        else:
            fixes += f'<div class="fix"><b>fix:</b> {escape(fix.title)}</div>'
    unit = f"{len(findings)} findings at {total} modules" if len(findings) > 1 else f"{total} module(s)"
    return (f'<div class="finding {worst}" data-code="{first.code}">'
            f'<div class="head"><span class="badge {worst}">{worst}</span> {first.code} {escape(first.name)} '
            f'<span class="why">{unit} · confidence {first.confidence}</span></div>{messages}{fixes}</div>')


def _tree(result: TargetResult) -> str:
    root = marked_tree(result.tree, result.findings)
    return f"<ul>{_node(root, 0)}</ul>"


def _worst_below(node: dict[str, Any]) -> int:
    """The worst severity marked in this node's subtree (0: none)."""
    here = max((int(f.severity) for f in node["findings"]), default=0)
    return max([here, *(_worst_below(c) for c in node["children"])])


def _node(node: dict[str, Any], depth: int) -> str:
    found: list[Finding] = node["findings"]
    worst = str(max(f.severity for f in found)) if found else ""
    codes = sorted({f.code for f in found})
    by_code = defaultdict(list)
    for f in found:
        by_code[f.code].append(f)
    marks = "".join(f'<span class="badge mark {max(x.severity for x in by_code[c])}">{c}</span>' for c in codes)
    rep = f' <span class="rep">×{node["repeat"]}</span>' if node["repeat"] > 1 else ""
    label = f'<span class="name">{escape(node["name"])}</span>{rep} <span class="cls">{escape(node["class"])}</span>{marks}'
    paths = ""
    if found:
        flagged = sorted({p for f in found for p in f.paths} & set(node["paths"]))
        items = "".join(f'<li class="path" data-class="{escape(node["class"])}">{escape(p)}</li>' for p in flagged)
        paths = f'<details class="paths"><summary>{len(flagged)} module path(s)</summary><ul class="paths">{items}</ul></details>'
    attrs = f'class="node {worst}" data-codes="{" ".join(codes)}"'
    if not node["children"]:
        return f'<li {attrs}><div class="leaf">{label}{paths}</div></li>'
    is_open = " open" if depth < 2 or _worst_below(node) >= Severity.WARNING else ""
    children = "".join(_node(c, depth + 1) for c in node["children"])
    return (f'<li {attrs}><details class="node-details"{is_open}><summary>{label}</summary>{paths}'
            f"<ul>{children}</ul></details></li>")
