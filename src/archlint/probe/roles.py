"""Roles from data flow: what each projection's output (and each slice of it) *does*.

One block's forward (an attention, an MLP or MoE block, a mixer) is recorded once on
meta tensors (:mod:`.run`); this module reads that trace and gives every projection
output -- or every part of it after ``split``/``chunk``/``unbind``/slices -- a role from
the ops that consume it, never from its name, its width or how many parts it has:

* ``q``, ``k``, ``v``: the operand it reaches of the attention core -- positions 0, 1, 2
  of SDPA, or of an eager ``matmul -> softmax -> matmul`` (the first product's operands
  are q and k, the second's other operand is v); ``kv`` when one tensor reaches both K and V;
* ``router``: it is scored into a top-k / argmax / sort selection; ``indexer`` when that
  selection masks the attention scores (sparse attention choosing its keys);
* ``glu_gate`` and ``glu_up``: the activated and the plain side of ``act(a) * b``, both
  projections of the same input;
* ``output_gate``: passed through sigmoid/tanh/silu and multiplied into the output of
  another branch (the attention core, a scan, a deeper projection);
* ``ssm_input``: it reaches a causal depthwise convolution or a scan
  (``cumsum``, a triangular solve) -- a Mamba / linear-attention mixer's input;
* ``latent``: it feeds another projection (MLA's compressed KV, an MLP's hidden layer);
* ``output``: it leaves the block.

A part whose consumers say none of these gets ``unknown`` with the ops that were seen.
Parts are followed until the next projection, so a role is the part's own use, not that of
something computed from it. The same trace also yields whole-block facts: the routers'
extra steps and how they select (top-k, or a table lookup by token id -- hash routing),
and what the attention does that a stock kernel would not (temperature on the queries,
scaled values, a top-k-selected sparse mask).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .gates import ACTIVATIONS, PROJECTIONS, projection_ops
from .trace import SPLIT_OPS, VIEW_OPS, Op, Operand, Trace


class Role(StrEnum):
    QUERY = "q"
    KEY = "k"
    VALUE = "v"
    KEY_VALUE = "kv"
    ROUTER = "router"
    INDEXER = "indexer"
    GLU_GATE = "glu_gate"
    GLU_UP = "glu_up"
    OUTPUT_GATE = "output_gate"
    SSM_INPUT = "ssm_input"
    LATENT = "latent"
    OUTPUT = "output"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


#: What a reader prints for a role.
ROLE_WORDS = {
    Role.QUERY: "the query", Role.KEY: "the key", Role.VALUE: "the value",
    Role.KEY_VALUE: "one tensor used as key and value",
    Role.ROUTER: "router scores", Role.INDEXER: "indexer scores choosing the attended keys",
    Role.GLU_GATE: "the GLU gate", Role.GLU_UP: "the GLU up half",
    Role.OUTPUT_GATE: "an output gate", Role.SSM_INPUT: "scan/convolution input",
    Role.LATENT: "a latent fed to another projection",
    Role.OUTPUT: "the block output", Role.UNKNOWN: "an unread role",
}

SELECTIONS = frozenset({"topk", "argmax", "sort", "argsort", "kthvalue"})
SCANS = frozenset({"cumsum", "cumprod", "linalg_solve_triangular", "_linalg_solve_triangular", "logcumsumexp"})
SOFTMAXES = frozenset({"_softmax", "softmax", "_safe_softmax"})
_GATE_ACTIVATIONS = frozenset({"sigmoid", "tanh", "silu"})
#: ops that mix positions or reduce: what comes out of them is another branch, not a GLU side
_MIXING = frozenset({"bmm", "matmul", "mm", "einsum", "_scaled_dot_product_efficient_attention",
                     "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
                     "scaled_dot_product_attention", "sum", "mean"})
#: ops between the attention-score product and the softmax (scale, mask, soft-cap, cast)
_SCORE_PATH = VIEW_OPS | {"_to_copy", "add", "add_", "mul", "mul_", "div", "div_", "masked_fill", "masked_fill_",
                          "where", "tanh", "sub", "expand", "_unsafe_view"}


@dataclass(frozen=True)
class PartRole:
    """The role of one projection output (``part`` "" = used whole) and the ops that show it."""

    #: the module path under the block ("self_attn.q_proj"), or a stacked parameter ("experts.gate_up_proj")
    projection: str
    part: str  # "" (whole), "0", "1" (outputs of one split), or "slice 0:256" (a slice op)
    role: Role
    evidence: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"projection": self.projection, "part": self.part, "role": self.role.value,
                "evidence": list(self.evidence)}


@dataclass(frozen=True)
class AttentionCore:
    kind: str  # "sdpa" | "eager"
    q: Operand
    k: Operand
    v: Operand
    ops: tuple[int, ...]  # the op(s) of the core (SDPA, or score matmul, softmax, value matmul)
    scores: Operand | None = None  # the softmax input (eager)

    @property
    def output(self) -> int:
        return self.ops[-1]


@dataclass(frozen=True)
class RouterRead:
    """One router found in the block: its projection and what it does beyond Linear +
    softmax/top-k; ``selection`` is "top-k", "argmax", "sort", or "hash" (a table lookup
    by token id)."""

    projection: str
    selection: str
    extras: tuple[str, ...]


@dataclass
class BlockRoles:
    """Every projection part's role in one block, plus what the block's trace shows about
    its routers and attention."""

    parts: list[PartRole] = field(default_factory=list)
    attention: list[AttentionCore] = field(default_factory=list)
    routers: list[RouterRead] = field(default_factory=list)
    attention_changes: list[str] = field(default_factory=list)
    #: (gate projection, activation, gated branch)
    output_gates: list[tuple[str, str, str]] = field(default_factory=list)

    def of(self, projection: str) -> list[PartRole]:
        return [p for p in self.parts if p.projection == projection]

    def roles_of(self, projection: str) -> set[Role]:
        return {p.role for p in self.of(projection)}

    def to_dict(self) -> dict:
        return {"parts": [p.to_dict() for p in self.parts],
                "routers": [{"projection": r.projection, "selection": r.selection, "extras": list(r.extras)}
                            for r in self.routers],
                "attention_changes": list(self.attention_changes),
                "output_gates": [list(g) for g in self.output_gates]}


def module_of(weight: str) -> str:
    """The projection's module path under the block: ``q_proj.weight`` -> ``q_proj``; a
    stacked parameter (``experts.gate_up_proj``) names itself."""
    return weight.removesuffix(".weight")


def read_roles(trace: Trace) -> BlockRoles:
    """The roles of every projection part in ``trace``."""
    reader = _Reader(trace)
    return reader.read()


class _Reader:
    def __init__(self, trace: Trace):
        self.trace = trace
        self.projections = projection_ops(trace)
        self.cores = _attention_cores(trace, self.projections)
        self._consumers: dict[tuple[int, str], list[Op]] = {}
        for op in trace.ops:
            for t in op.tensors:
                if t.kind == "op":
                    bucket = self._consumers.setdefault((t.op, t.name), [])
                    if not bucket or bucket[-1] is not op:
                        bucket.append(op)

    # -- graph walks -------------------------------------------------------------------

    def users(self, index: int, name: str | None = None) -> list[Op]:
        """Ops reading output ``name`` of op ``index`` (every output when None)."""
        if name is not None:
            return self._consumers.get((index, name), [])
        out: list[Op] = []
        for (i, _), ops in self._consumers.items():
            if i == index:
                out.extend(ops)
        return sorted(set(out), key=lambda o: o.index)

    def reach(self, index: int, name: str | None, *, stop_at_projections: bool = True) -> list[Op]:
        """Every op computed from output ``name`` of op ``index``, in order; a projection
        is reached but not gone through (its output is another part's business)."""
        seen: dict[int, Op] = {}
        frontier = list(self.users(index, name))
        while frontier:
            op = frontier.pop()
            if op.index in seen:
                continue
            seen[op.index] = op
            if stop_at_projections and op.index in self.projections:
                continue
            frontier.extend(self.users(op.index))
        return [seen[i] for i in sorted(seen)]

    # -- parts -------------------------------------------------------------------------

    def parts(self, projection: int) -> list[tuple[int, str | None, str]]:
        """(op, output name, label) of each part of a projection's output: the outputs of a
        split that cuts it (after views, casts and a bias add), or the projection whole."""
        current = projection
        for _ in range(12):
            users = self.users(current)
            cuts = [u for u in users if u.name in SPLIT_OPS or u.name == "index"]
            others = [u for u in users if u not in cuts]
            if cuts and not any(self._uses_whole(u) for u in others):
                out = []
                for cut in cuts:
                    if cut.name == "index":
                        out.append((cut.index, None, f"index {len(out)}"))
                    elif cut.name in ("slice", "select", "narrow"):
                        bounds = [a.value for a in cut.args[1:] if a.kind == "scalar"]
                        out.append((cut.index, None, "slice " + ":".join(str(b) for b in bounds[1:3])))
                    else:
                        names = sorted({t.name for o in self.users(cut.index) for t in o.tensors
                                        if t.kind == "op" and t.op == cut.index}, key=lambda n: int(n or 0))
                        out.extend((cut.index, n, n or "0") for n in names)
                return out
            carry = [u for u in others if u.name in VIEW_OPS or u.name == "_to_copy" or self._bias_add(u)]
            if len(carry) != 1 or len(others) != 1:
                break
            current = carry[0].index
        return [(projection, None, "")]

    def _uses_whole(self, op: Op) -> bool:
        return op.name not in VIEW_OPS and op.name != "_to_copy" and not self._bias_add(op)

    def _bias_add(self, op: Op) -> bool:
        """An add of a parameter (or of the rows of a stacked one an expert index picks)."""
        return op.name in ("add", "add_") and len(op.tensors) == 2 and any(
            self.trace.origin(t, through=VIEW_OPS | {"index", "_to_copy"}).kind == "param" for t in op.tensors)

    # -- roles -------------------------------------------------------------------------

    def read(self) -> BlockRoles:
        roles = BlockRoles(attention=list(self.cores))
        pending: list[tuple[str, str, int, str | None, list[Op]]] = []
        for index, projection in sorted(self.projections.items()):
            for op, name, label in self.parts(index):
                pending.append((module_of(projection.weight), label, op, name, self.reach(op, name)))
        glu = self._glu_pairs(pending)
        hashed = self._hash_scored()
        for projection, label, op, name, reached in pending:
            role, evidence = self._role(op, name, reached, glu.get((op, name)))
            if role not in (Role.QUERY, Role.KEY, Role.VALUE, Role.KEY_VALUE) and projection in hashed:
                role, evidence = Role.ROUTER, (hashed[projection],)
            roles.parts.append(PartRole(projection, label, role, evidence))
        roles.routers = self._routers(roles)
        roles.attention_changes = self._attention_changes()
        roles.output_gates = self._output_gates(roles, pending)
        return roles

    def _role(self, op: int, name: str | None, reached: list[Op],
              glu: tuple[Role, str] | None) -> tuple[Role, tuple[str, ...]]:
        indices = {o.index for o in reached} | {op}
        hits = []
        for core in self.cores:
            for position, operand in (("q", core.q), ("k", core.k), ("v", core.v)):
                if self._from_part(operand, op, name, indices):
                    hits.append((position, core))
        positions = {p for p, _ in hits}
        if positions:
            core = hits[0][1]
            evidence = (f"{core.kind} attention operand {'/'.join(sorted(positions))} (op {core.ops[0]})",)
            if {"k", "v"} <= positions:
                return Role.KEY_VALUE, evidence
            if len(positions) == 1:
                return Role(positions.pop()), evidence
            return Role.UNKNOWN, evidence + ("reaches several attention operands",)
        selection = next((o for o in reached
                          if o.name in SELECTIONS or (o.name == "max" and o.overload == "dim")), None)
        if selection is not None and not any(o.index in self.projections for o in reached if o.index < selection.index):
            masked = self._masks_attention(selection.index)
            across = self._across_positions(reached, selection.index)
            if masked is None and across is not None:
                return Role.INDEXER, (f"scored against other positions (op {across}) into {selection.name} "
                                      f"(op {selection.index}): a selection of tokens, not of experts",)
            if masked is not None:
                return Role.INDEXER, (f"scored into {selection.name} (op {selection.index}), which masks the attention "
                                      f"scores (op {masked})",)
            return Role.ROUTER, (f"scored into {selection.name} (op {selection.index})",)
        scan = next((o for o in reached if o.name in SCANS or _causal_depthwise_conv(o)), None)
        if scan is not None:
            what = "causal depthwise convolution" if scan.name == "convolution" else scan.name
            return Role.SSM_INPUT, (f"{what} (op {scan.index})",)
        if glu is not None:
            return glu[0], (glu[1],)
        gate = self._gates_other_branch(op, name, reached)
        if gate is not None:
            return Role.OUTPUT_GATE, (gate,)
        nxt = next((o for o in reached if o.index in self.projections), None)
        if nxt is not None:
            return Role.LATENT, (
                f"feeds projection `{module_of(self.projections[nxt.index].weight)}` (op {nxt.index})",)
        if not reached or reached[-1].index == len(self.trace.ops) - 1 or not self.users(reached[-1].index):
            return Role.OUTPUT, ("reaches the block output",)
        return Role.UNKNOWN, ("consumed by " + ", ".join(dict.fromkeys(o.name for o in reached[:6])),)

    def _across_positions(self, reached: list[Op], selection: int) -> int | None:
        """A product of two activations (neither operand a weight: q·kᵀ) on the way to the
        selection: its scores rank positions, as an indexer's do."""
        for op in reached:
            if op.index >= selection:
                break
            if (op.name in ("bmm", "matmul", "einsum", "mm") and op.index not in self.projections
                    and len(op.tensors) >= 2):
                if all(self.trace.origin(t, through=VIEW_OPS | {"_to_copy", "index"}).kind not in ("param", "buffer")
                       for t in op.tensors[:2]):
                    return op.index
        return None

    def _masks_attention(self, selection: int) -> int | None:
        downstream = {o.index for o in self.reach(selection, None, stop_at_projections=False)}
        for core in self.cores:
            hit = next((i for i in core.ops if i in downstream), None)
            if hit is not None:
                return hit
        return None

    def _from_part(self, operand: Operand, op: int, name: str | None, indices: set[int]) -> bool:
        if operand.kind != "op":
            return False
        if operand.op == op:
            return name is None or operand.name == name
        return operand.op in indices

    def _glu_pairs(self, pending) -> dict[tuple[int, str | None], tuple[Role, str]]:
        """``act(a) * b`` where a and b are parts of projections of the same input and the
        activated side reaches no selection (router weights times expert outputs is not a GLU)."""
        sources = {}
        for _, _label, op, name, reached in pending:
            sources[(op, name)] = reached
        out = {}
        for mul in self.trace.ops:
            if mul.name not in ("mul", "mul_") or len(mul.tensors) != 2:
                continue
            sides = [self._side(t, sources) for t in mul.tensors]
            if any(s is None for s in sides) or sides[0][0] == sides[1][0]:
                continue
            (a, act_a), (b, act_b) = sides
            if bool(act_a) == bool(act_b):
                continue
            gate, up, act = (a, b, act_a) if act_a else (b, a, act_b)
            if not self._same_input(gate, up):
                continue
            if any(o.name in SELECTIONS for o in sources[gate]):
                continue
            out[gate] = (Role.GLU_GATE, f"{act}(·) side of the product (op {mul.index})")
            out[up] = (Role.GLU_UP, f"plain side of {act}(gate) · up (op {mul.index})")
        return out

    def _side(self, operand: Operand, sources) -> tuple[tuple[int, str | None], str | None] | None:
        """The part ``operand`` comes from through element-wise ops only, and the
        activation met on the way."""
        act = None
        current = operand
        for _ in range(16):
            if current.kind != "op":
                return None
            for key in ((current.op, current.name), (current.op, None)):
                if key in sources:
                    return key, act
            op = self.trace.ops[current.op]
            if (op.index in self.projections or op.name in SOFTMAXES or op.name in SELECTIONS or op.name in _MIXING
                    or op.name in SCANS or _causal_depthwise_conv(op)):
                return None  # a GLU's sides are element-wise functions of the two projections
            if op.name in ACTIVATIONS or op.name == "gelu":
                act = act or _activation_name(op)
            elif op.name in ("mul", "mul_") and len(op.tensors) == 2:
                # x * sigmoid(alpha * x): the swish written out
                if any(self.trace.ops[t.op].name == "sigmoid" for t in op.tensors if t.kind == "op"):
                    act = act or "silu"
            carriers = [t for t in op.tensors if t.kind == "op"]
            if not carriers:
                return None
            current = (carriers[0] if op.name not in ("mul", "mul_") or len(carriers) == 1
                       else self._non_activation(carriers))
        return None

    def _non_activation(self, carriers: list[Operand]) -> Operand:
        for t in carriers:
            if self.trace.ops[t.op].name not in ACTIVATIONS:
                return t
        return carriers[0]

    def _same_input(self, a: tuple[int, str | None], b: tuple[int, str | None]) -> bool:
        pa, pb = self._projection_of(a[0]), self._projection_of(b[0])
        if pa is None or pb is None:
            return False
        if pa == pb:
            return True
        return self._data_origin(pa) == self._data_origin(pb)

    def _projection_of(self, index: int) -> int | None:
        current = index
        for _ in range(12):
            if current in self.projections:
                return current
            op = self.trace.ops[current]
            carriers = [t for t in op.tensors if t.kind == "op"]
            if not carriers:
                return None
            current = carriers[0].op
        return None

    def _data_origin(self, projection: int) -> Operand | None:
        op = self.trace.ops[projection]
        weight = self.projections[projection].weight
        for t in op.tensors:
            origin = self.trace.origin(t, through=VIEW_OPS | {"_to_copy"})
            if origin.kind == "param" and origin.name == weight:
                continue
            return origin
        return None

    def _gates_other_branch(self, part: int, name: str | None, reached: list[Op]) -> str | None:
        """sigmoid/tanh/silu of this part, multiplied into a value this part does not feed.

        A value computed from the part itself (x * sigmoid(1.702 x), 0.5 x (1 + tanh(...)))
        makes the product an activation function of the part, not a gate on another branch."""
        act = next((o for o in reached if o.name in _GATE_ACTIVATIONS), None)
        if act is None:
            return None
        from_part = {o.index for o in reached}
        for op in reached:
            if op.index <= act.index or op.name not in ("mul", "mul_") or len(op.tensors) != 2:
                continue
            other = [t for t in op.tensors if not self._from_part(t, part, name, from_part)]
            if len(other) != 1:
                continue
            if self._glu_partner(part, other[0]):
                return None  # act(a(x)) * b(x): a GLU (GATE001's), not a gate on a branch
            branch = self._branch_name(other[0])
            return f"{act.name}(·) multiplied into {branch} (op {op.index})"
        return None

    def _glu_partner(self, part: int, operand: Operand) -> bool:
        """``operand`` is, up to views and casts, the output of another projection that reads
        the same input as the projection ``part`` comes from -- or, when ``part`` is a slice
        of a fused projection, computed from that projection alone (its other slice,
        activated or capped: a fused gate/up), with no attention in between."""
        other = self.trace.origin(operand, through=VIEW_OPS | {"_to_copy"})
        mine = part if part in self.projections else next(
            (u.index for t in self.trace.ops[part].tensors[:1] for u in self.trace.upstream(t)
             if u.index in self.projections), None)
        if mine is None or other.kind != "op":
            return False
        if other.op in self.projections:
            return mine != other.op and self._data_input(mine) == self._data_input(other.op)
        if part in self.projections:
            return False
        return self._only_from(operand, part)

    def _only_from(self, operand: Operand, split: int) -> bool:
        """Walking back from ``operand``, every path that meets a projection, an attention
        core or a scan meets op ``split`` first (and one does meet it): the other factor is
        this fused projection's other slice, not a branch computed from it."""
        attention = {i for core in self.cores for i in core.ops}
        frontier, seen, met = [operand], set(), False
        while frontier:
            nxt = []
            for o in frontier:
                if o.kind != "op" or o.op in seen:
                    continue
                seen.add(o.op)
                if o.op == split:
                    met = True
                    continue
                op = self.trace.ops[o.op]
                if o.op in self.projections or o.op in attention or op.name in SCANS or _causal_depthwise_conv(op):
                    return False
                nxt.extend(self.trace.ops[o.op].tensors)
            frontier = nxt
        return met

    def _data_input(self, index: int):
        """What a projection op projects: its one operand that is not a weight or bias."""
        for t in self.trace.ops[index].tensors:
            origin = self.trace.origin(t, through=VIEW_OPS | {"_to_copy"})
            if origin.kind != "param":
                return (origin.kind, origin.op if origin.kind == "op" else origin.name)
        return None

    @staticmethod
    def _from_part(operand: Operand, part: int, name: str | None, from_part: set[int]) -> bool:
        if operand.kind != "op":
            return False
        return operand.op in from_part or (operand.op == part and (name is None or operand.name == name))

    def _branch_name(self, operand: Operand) -> str:
        upstream = self.trace.upstream(operand)
        for op in upstream:
            if any(op.index in core.ops for core in self.cores):
                return "the attention output"
            if op.name in SCANS or _causal_depthwise_conv(op):
                return "the scan output"
            if op.index in self.projections:
                return f"the output of `{module_of(self.projections[op.index].weight)}`"
        return "another branch"

    # -- routers ---------------------------------------------------------------------

    def _routers(self, roles: BlockRoles) -> list[RouterRead]:
        out = []
        routed = {p.projection for p in roles.parts if p.role is Role.ROUTER} - set(self._hash_scored())
        for index, projection in sorted(self.projections.items()):
            name = module_of(projection.weight)
            if name in routed:
                out.append(RouterRead(name, *self._router_extras(index)))
        for table, projection in self._hash_tables():
            out.append(RouterRead(projection, "hash",
                                  (f"selects experts by a table lookup by token id (`{table}`), not by its scores",)))
        return out

    def _router_extras(self, projection: int) -> tuple[str, tuple[str, ...]]:
        ops = self.trace.ops
        reached = self.reach(projection, None)
        selection = next(o for o in reached if o.name in SELECTIONS or (o.name == "max" and o.overload == "dim"))
        # where the routing indices pick rows of expert weights or biases, the experts' own ops
        # begin (a per-expert scale, one number per expert, is still the router's)
        experts = set()
        for o in reached:
            if (o.name in ("index", "gather", "index_select", "embedding") and o.args
                    and o.args[0].kind in ("param", "buffer") and len(o.args[0].shape) >= 2):
                experts |= {o.index} | {x.index for x in self.reach(o.index, None)}
        reached = [o for o in reached if o.index not in experts]
        extras: list[str] = []
        before = [o for o in self.trace.upstream(ops[projection].tensors[0])] if ops[projection].tensors else []
        if any(o.name == "rsqrt" or (o.name == "pow" and o.scalars[:1] == [-0.5]) for o in before):
            extras.append("normalises its input")
        weight = self.projections[projection].weight
        own = {weight, weight.rsplit(".", 1)[0] + ".bias" if "." in weight else "bias"}
        own |= {p.weight for p in self.projections.values()}  # the experts' weights are theirs, not the router's
        between = [o for o in reached if o.index <= selection.index]
        used = []
        for o in [*before, *(o for o in reached if o.index not in self.projections)]:
            for t in o.tensors:
                if t.kind in ("param", "buffer") and t.name not in own and (t.kind, t.name) not in used:
                    used.append((t.kind, t.name))
        extras += [f"uses {kind} `{name}`" for kind, name in used]  # named under the traced block
        if any(o.name == "sigmoid" for o in reached):
            extras.append("sigmoid scores")
        if any(o.name in ("add", "add_") and len(o.tensors) == 2 and any(t.kind == "input" for t in o.tensors)
               for o in between):
            extras.append("adds a bias passed in by the caller to its scores")
        topks = [o for o in reached if o.name == "topk"]
        if len(topks) > 1:
            extras.append(f"{len(topks)} top-k selections (group-limited routing)")
        if selection.name in ("max", "argmax"):
            extras.append("selects experts by max/argmax rather than top-k")
        elif selection.name != "topk":
            extras.append(f"selects experts by {selection.name} rather than top-k")
        constants = sorted({o.scalars[0] for o in reached if o.name in ("mul", "mul_") and o.scalars
                            and isinstance(o.scalars[0], float) and o.scalars[0] != 1.0 and len(o.tensors) == 1})
        if constants:
            extras.append("scales by " + ", ".join(f"{c:g}" for c in constants))
        if any(o.name in ("uniform_", "rand", "randn", "normal_", "bernoulli_", "rand_like", "randn_like",
                          "exponential_")
               for o in ops):
            extras.append("random jitter")
        if any(o.name in ("scatter", "scatter_", "masked_fill", "masked_fill_") for o in between):
            extras.append("masks experts")
        return ("top-k" if selection.name == "topk" else selection.name), tuple(extras)

    def _hash_lookups(self) -> list[tuple[Op, str]]:
        """Integer indices read from a buffer table by token ids (``table[input_ids]``), or
        token ids taken modulo a count: selection by hash. (op, what it looks up in)"""
        found = []
        for op in self.trace.ops:
            if (op.name == "index" and op.args and op.args[0].kind == "buffer"
                    and not op.args[0].dtype.startswith(("float", "bfloat"))):
                keys = [t for t in op.args[1:] if t.is_tensor]
                if any(k == "input" and n != "0" for t in keys for k, n in self.trace.roots(t) | _self_root(t)):
                    found.append((op, op.args[0].name))
            elif op.name in ("remainder", "fmod") and op.tensors and any(
                    k == "input" and n != "0" for k, n in self.trace.roots(op.tensors[0]) | _self_root(op.tensors[0])):
                found.append((op, "token id modulo a count"))
        return found

    def _hash_tables(self) -> list[tuple[str, str]]:
        """(table, projection) for each hash selection: the projection whose scores are
        gathered at the experts the table chose ("" when none is)."""
        out = []
        for lookup, table in self._hash_lookups():
            scored = ""
            for op in self.reach(lookup.index, None, stop_at_projections=True):
                if op.name in ("gather", "index", "take_along_dim"):
                    for t in op.tensors:
                        projection = next((self.projections[u.index] for u in self.trace.upstream(t)
                                           if u.index in self.projections), None)
                        if projection is not None and not any(u.index == lookup.index for u in self.trace.upstream(t)):
                            scored = module_of(projection.weight)
                            break
                if scored:
                    break
            out.append((table, scored))
        return list(dict.fromkeys(out))

    def _hash_scored(self) -> dict[str, str]:
        return {projection: f"its scores are gathered at the experts a token-id table (`{table}`) selects"
                for table, projection in self._hash_tables() if projection}

    # -- attention ---------------------------------------------------------------------

    def _attention_changes(self) -> list[str]:
        """What the attention computes beyond softmax(q·kᵀ·scale + mask)·v with rotary and
        norms on q/k: queries scaled by a tensor computed from positions (temperature
        tuning), values scaled before the core, scores masked by a top-k selection."""
        out = []
        for core in self.cores:
            for side, operand in (("queries", core.q), ("values", core.v)):
                change = self._scaled(side, operand)
                if change:
                    out.append(change)
            mask_src = self._score_mask_selection(core)
            if mask_src is not None:
                out.append(f"the scores are masked by a top-k selection (op {mask_src}): "
                           "sparse attention chosen by an indexer")
        return list(dict.fromkeys(out))

    def _scaled(self, side: str, operand: Operand) -> str | None:
        for op in self.trace.upstream(operand):
            if op.name not in ("mul", "mul_", "div", "div_") or op.index in self.projections:
                continue
            factors = [t for t in op.tensors if ("input", "0") not in self.trace.roots(t) | _self_root(t)]
            if side == "queries" and len(op.tensors) == 2 and factors:
                roots = self.trace.roots(factors[0]) | _self_root(factors[0])
                if not any(k in ("param", "buffer") for k, _ in roots) and not _is_rotary(self.trace, factors[0]):
                    return (f"queries are multiplied by a tensor computed from positions (op {op.index}): "
                            "attention temperature tuning")
            if side == "values":
                normed = any(u.name == "rsqrt" for u in self.trace.upstream(operand))
                constant = next((s for s in op.scalars if isinstance(s, (int, float)) and s != 1), None)
                direct = next((t for t in factors if t.kind in ("param", "buffer")), None)
                if constant is not None and not normed:
                    return f"values are scaled by {constant:g} before the attention (op {op.index})"
                if direct is not None and not normed:
                    return f"values are scaled by `{direct.name}` before the attention (op {op.index})"
        return None

    def _score_mask_selection(self, core: AttentionCore) -> int | None:
        targets = [core.scores] if core.scores is not None else [t for t in self.trace.ops[core.ops[0]].tensors[3:]]
        for target in targets:
            if target is None:
                continue
            for op in self.trace.upstream(target):
                if op.name == "topk":
                    return op.index
        return None

    def _output_gates(self, roles: BlockRoles, pending) -> list[tuple[str, str, str]]:
        out = []
        for part in roles.parts:
            if part.role is Role.OUTPUT_GATE:
                text = part.evidence[0]
                activation = text.split("(", 1)[0]
                branch = text.split("multiplied into ", 1)[1].rsplit(" (op", 1)[0]
                out.append((part.projection, activation, branch))
        return out


def _self_root(operand: Operand) -> frozenset:
    return frozenset({(operand.kind, operand.name)}) if operand.kind in ("param", "buffer", "input") else frozenset()


def _activation_name(op: Op) -> str:
    if op.name == "gelu":
        return "gelu_tanh" if op.kwarg("approximate", "none") == "tanh" else "gelu"
    return op.name


def _causal_depthwise_conv(op: Op) -> bool:
    """A 1-D convolution with one group per channel and left padding: Mamba's causal conv."""
    if op.name not in ("convolution", "conv1d", "_convolution"):
        return False
    scalars = [a.value for a in op.args if a.kind == "scalar"]
    groups = scalars[-1] if scalars and isinstance(scalars[-1], int) else 1
    return isinstance(groups, int) and groups > 1 and len(op.out_shape) == 3


def _is_rotary(trace: Trace, operand: Operand) -> bool:
    """cos/sin tables are synthesised inputs (``position_embeddings``); anything else
    computed from positions is not rotary."""
    roots = trace.roots(operand) | _self_root(operand)
    return any(k == "input" and n.startswith("position_embeddings") for k, n in roots)


def _attention_cores(trace: Trace, projections) -> list[AttentionCore]:
    cores = []
    for op in trace.ops:
        if op.name.lstrip("_").startswith("scaled_dot_product") and len(op.tensors) >= 3:
            q, k, v = op.tensors[:3]
            cores.append(AttentionCore("sdpa", q, k, v, (op.index,)))
    softmaxes = [op for op in trace.ops if op.name in SOFTMAXES]
    for soft in softmaxes:
        if not soft.tensors:
            continue
        scores = soft.tensors[0]
        product = _walk_back(trace, scores, _SCORE_PATH, stop=frozenset({"bmm", "matmul", "mm", "einsum"}))
        if product is None or product.index in projections or len(product.tensors) < 2:
            continue
        value_mm = _walk_forward(trace, soft.index, VIEW_OPS | {"_to_copy", "native_dropout", "dropout"},
                                 frozenset({"bmm", "matmul", "mm", "einsum"}))
        if value_mm is None or value_mm.index in projections:
            continue
        others = [t for t in value_mm.tensors if not any(u.index == soft.index for u in trace.upstream(t))]
        if len(others) != 1:
            continue
        cores.append(AttentionCore("eager", product.tensors[0], product.tensors[1], others[0],
                                   (product.index, soft.index, value_mm.index), scores=scores))
    return cores


def _walk_back(trace: Trace, operand: Operand, through: frozenset, stop: frozenset) -> Op | None:
    current = operand
    for _ in range(24):
        if current.kind != "op":
            return None
        op = trace.ops[current.op]
        if op.name in stop:
            return op
        if op.name not in through:
            return None
        carriers = [t for t in op.tensors
                    if t.kind == "op" and trace.ops[t.op].name not in ("where", "tril", "triu", "ones")]
        if not carriers:
            return None
        # the score path carries the largest tensor; masks and scales are smaller or constant
        current = max(carriers, key=lambda t: (len(t.shape), _numel(t.shape)))
    return None


def _walk_forward(trace: Trace, index: int, through: frozenset, stop: frozenset) -> Op | None:
    """The first op named in ``stop`` reached from op ``index`` through ``through`` ops
    (breadth-first: a dead-end cast beside the real path does not hide it)."""
    frontier, seen = [index], set()
    for _ in range(12):
        nxt = []
        for current in frontier:
            for user in trace.consumers(current):
                if user.name in stop:
                    return user
                if user.name in through and user.index not in seen:
                    seen.add(user.index)
                    nxt.append(user.index)
        if not nxt:
            return None
        frontier = nxt
    return None


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


__all__ = [
    "PROJECTIONS",
    "ROLE_WORDS",
    "AttentionCore",
    "BlockRoles",
    "PartRole",
    "Role",
    "RouterRead",
    "module_of",
    "read_roles",
]
