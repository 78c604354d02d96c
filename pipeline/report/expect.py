"""`expect:` — goals a researcher declares in the experiment, checked against the run's own numbers.

    expect:
      - eval.perplexity < 40
      - bench.peak_mem_gib[grad-ckpt] < bench.peak_mem_gib[no-ckpt]
      - train.tokens_per_s > 4.0e5
      - val_loss <= 0.97 * baseline.val_loss        # at least 3% below report.compare_to's

The language is small and never run as Python: each line is parsed with `ast` and only these nodes are
accepted — one or more comparisons (`<`, `<=`, `>`, `>=`, `==`, `!=`) of arithmetic (`+ - * /`, unary minus,
parentheses) over numbers and metric names. A metric name is one of `METRICS` (below), optionally prefixed
`baseline.` (the `report.compare_to` run's value), and, for per-variant or per-task metrics, a subscript:
`bench.step_ms[<variant>]`, `harness.<metric>[<task>]`. Anything else (calls, attributes of other things,
strings, names not in the table) is a one-line error when the experiment is resolved.

The report shows one row per comparison: the measured left side, the target (right side), and pass / fail /
not measured; a failed or unmeasured expectation is the `expectation_failed` finding.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass

# name -> (what it is, does it take a [subscript]); the values are read in `value` below
METRICS: dict[str, tuple[str, bool]] = {
    "eval.perplexity": ("held-out perplexity (eval/perplexity.json)", False),
    "eval.loss": ("held-out mean loss, nats/token", False),
    "eval.bits_per_byte": ("held-out bits per byte", False),
    "eval.bits_per_char": ("held-out bits per character", False),
    "eval.accuracy": ("held-out next-token accuracy", False),
    "train.loss": ("last logged training loss", False),
    "train.tokens_per_s": ("median tokens/s over the steady log intervals", False),
    "train.mfu": ("median MFU", False),
    "train.mem_peak_gib": ("largest logged peak memory, GiB", False),
    "train.time_s": ("training wall time, s", False),
    "val_loss": ("last validation loss", False),
    "val.best_loss": ("best validation loss", False),
    "val.best_perplexity": ("best validation perplexity", False),
    "bench.step_ms": ("a variant's median step time, ms (mean over repeats)", True),
    "bench.peak_mem_gib": ("a variant's peak memory, GiB", True),
    "bench.tokens_per_s": ("a variant's tokens/s", True),
    "harness": ("harness.<metric>[<task>]: an lm-eval score", True),
}
OPS: dict[type, Callable] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
SYMBOLS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


class ExpectError(ValueError):
    pass


@dataclass(frozen=True)
class Ref:
    """A metric reference: name (a METRICS key, or `harness.<metric>`), subscript, and whether it is the baseline's."""

    name: str
    key: str | None
    baseline: bool


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _ref(node, text: str) -> Ref:
    key = None
    if isinstance(node, ast.Subscript):
        key = ast.get_source_segment(text, node.slice)
        if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            key = node.slice.value
        node = node.value
    name = _dotted(node)
    if name is None:
        raise ExpectError(f"not a metric name: {ast.get_source_segment(text, node)!r}")
    baseline = name.startswith("baseline.")
    name = name.removeprefix("baseline.")
    known = name in METRICS or (name.startswith("harness.") and name.count(".") == 1)
    if not known:
        from difflib import get_close_matches

        near = get_close_matches(name, list(METRICS), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else f"; known: {', '.join(METRICS)}"
        raise ExpectError(f"unknown metric '{name}'{hint}")
    takes_key = name.startswith("harness.") or METRICS[name][1]
    if takes_key and not key:
        raise ExpectError(f"'{name}' needs a [variant] or [task] subscript")
    if key and not takes_key:
        raise ExpectError(f"'{name}' takes no subscript")
    return Ref(name, key, baseline)


def _check(node, text: str) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpectError(f"only numbers are allowed, got {node.value!r}")
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in ARITH:
            raise ExpectError("only + - * / are allowed")
        _check(node.left, text)
        _check(node.right, text)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        _check(node.operand, text)
    elif isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)):
        _ref(node, text)
    else:
        raise ExpectError(f"not allowed in an expectation: {ast.get_source_segment(text, node)!r}")


def parse(text: str) -> ast.Compare:
    """The comparison tree of one expectation; ExpectError (one line) for anything outside the language."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpectError(f"not a comparison ({exc.msg})") from None
    body = tree.body
    if not isinstance(body, ast.Compare):
        raise ExpectError("must compare two sides with <, <=, >, >=, == or !=")
    for op in body.ops:
        if type(op) not in OPS:
            raise ExpectError("only <, <=, >, >=, == and != compare")
    for side in [body.left, *body.comparators]:
        _check(side, text.strip())
    return body


def refs(text: str) -> list[Ref]:
    src = text.strip()
    body = parse(src)
    out = []
    for node in ast.walk(body):
        if isinstance(node, (ast.Subscript, ast.Attribute, ast.Name)) and not _inside_ref(node, body):
            out.append(_ref(node, src))
    return out


def _inside_ref(node, body) -> bool:
    for parent in ast.walk(body):
        if isinstance(parent, (ast.Subscript, ast.Attribute)):
            children = [parent.value] + ([parent.slice] if isinstance(parent, ast.Subscript) else [])
            if any(node is c or any(node is d for d in ast.walk(c)) for c in children):
                return True
    return False


def validate(lines: list[str], has_baseline: bool) -> None:
    """At resolve time: every line parses and names known metrics; `baseline.` needs report.compare_to."""
    for i, line in enumerate(lines):
        try:
            found = refs(line)
        except ExpectError as exc:
            raise ValueError(f"expect[{i}]: {exc} in {line.strip()!r}") from None
        if any(r.baseline for r in found) and not has_baseline:
            raise ValueError(f"expect[{i}]: 'baseline.' needs report.compare_to, in {line.strip()!r}")


@dataclass
class Outcome:
    text: str  # the comparison, as written
    measured: float | None  # its left side
    target: float | None  # its right side
    passed: bool | None  # None: a side could not be measured


def evaluate(line: str, value: Callable[[Ref], float | None]) -> list[Outcome]:
    """One Outcome per comparison of the line (`a < b < c` is two)."""
    src = line.strip()
    body = parse(src)

    def calc(node):
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.UnaryOp):
            inner = calc(node.operand)
            return None if inner is None else -inner
        if isinstance(node, ast.BinOp):
            a, b = calc(node.left), calc(node.right)
            if a is None or b is None or (isinstance(node.op, ast.Div) and b == 0):
                return None
            return ARITH[type(node.op)](a, b)
        v = value(_ref(node, src))
        return None if v is None or not math.isfinite(v) else float(v)

    sides = [body.left, *body.comparators]
    out = []
    for op, left, right in zip(body.ops, sides, sides[1:]):
        a, b = calc(left), calc(right)
        text = f"{ast.get_source_segment(src, left)} {SYMBOLS[type(op)]} {ast.get_source_segment(src, right)}"
        out.append(Outcome(text, a, b, None if a is None or b is None else bool(OPS[type(op)](a, b))))
    return out


def value_of(run, ref: Ref) -> float | None:
    """A metric of a loaded run (pipeline/report/loader.py)."""
    from pipeline.report import tables

    def num(v):
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    name, key, ppl = ref.name, ref.key, run.perplexity
    if name.startswith("eval."):
        return num(getattr(ppl, name.removeprefix("eval."), None))
    if name == "train.loss":
        values = run.metrics["loss"].dropna() if len(run.metrics) else []
        return float(values.iloc[-1]) if len(values) else None
    if name == "train.tokens_per_s":
        return tables.throughput(run).get("median")
    if name == "train.mfu":
        return tables.median_of(run, "mfu")
    if name == "train.mem_peak_gib":
        values = run.metrics["mem_peak_gib"].dropna() if len(run.metrics) else []
        return float(values.max()) if len(values) else None
    if name == "train.time_s":
        return tables.train_time(run).get("total_s")
    val = run.validation.dropna(subset=["val_loss"]) if len(run.validation) else run.validation
    if name == "val_loss":
        return float(val["val_loss"].iloc[-1]) if len(val) else None
    if name == "val.best_loss":
        return float(val["val_loss"].min()) if len(val) else None
    if name == "val.best_perplexity":
        return float(val["val_perplexity"].min()) if len(val) else None
    if name.startswith("bench."):
        v = run.bench.variants.get(key) or {}
        if v.get("status") != "ok":
            return None
        field = {"step_ms": "step_time_median_s", "peak_mem_gib": "mem_peak_allocated_gib"}.get(
            name.removeprefix("bench."), "tokens_per_s"
        )
        x = num(v.get(field))
        return x * 1e3 if x is not None and field == "step_time_median_s" else x
    if name.startswith("harness."):
        frame = run.harness
        if not len(frame):
            return None
        sel = frame[(frame["task"] == key) & (frame["metric"] == name.removeprefix("harness."))]
        return float(sel["value"].iloc[0]) if len(sel) else None
    return None


def check(run, baseline, lines: list[str]) -> list[Outcome]:
    def value(ref: Ref):
        target = baseline if ref.baseline else run
        return None if target is None else value_of(target, ref)

    return [o for line in lines for o in evaluate(line, value)]
