"""Secrets by value: every text labnote writes under `runs/` and `reports/` passes through `scrub`.

Environment variables are already filtered by name (`pipeline/provenance.py`); this catches secrets inside
values — a URL with credentials in `HF_ENDPOINT`, `token=…` in a job comment, a token pasted into the
experiment's `description` — and replaces them with `[redacted]`. Writers call it: `pipeline/atomic.py`
(configs, JSON records, job scripts, reports), `pipeline/jsonl.py` (JSON lines). `report.redact: [regex…]`
adds patterns for a run (`configure`, called when a config is loaded).

>>> scrub("https://user:pw@hub.example.org/x?token=abc123&n=1")
'https://[redacted]@hub.example.org/x?token=[redacted]&n=1'
>>> scrub("key hf_abcdefghijklmnopqrstuvwxyz0123 and AKIAABCDEFGHIJKLMNOP")
'key [redacted] and [redacted]'
>>> scrub("commit 0123456789abcdef0123456789abcdef01234567")  # a git commit is not a W&B key
'commit 0123456789abcdef0123456789abcdef01234567'
>>> scrub("WANDB_API_KEY=0123456789abcdef0123456789abcdef01234567")
'WANDB_API_KEY=[redacted]'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MARK = "[redacted]"
_STOP = r"""\s"'<>`\\,;&"""  # a secret value ends at whitespace, quotes, a separator

# (pattern, replacement, needles); group 1, where present, is kept (the part that says what the secret is).
# Every match of a pattern contains one of its needles (lower case): an ASCII text holding none of them is not
# searched with it. The regex scans cost ~1 µs per character each; the needle checks are plain substring searches,
# so a log of numbers (a 100K-line metrics.jsonl) is scrubbed in milliseconds, not minutes.
BUILTIN: list[tuple[re.Pattern, str, tuple[str, ...]]] = [
    # scheme://user:password@host (or a bare token as the user)
    (re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@" + _STOP + r"]+@"), r"\1" + MARK + "@", ("://",)),
    # query or shell values: token=…, key=…, api_key=…, password=…, secret=…, sig=…
    (
        re.compile(
            r"(?i)((?<![A-Za-z0-9])(?:[a-z0-9]+_)*(?:token|key|apikey|secret|password|passwd|pwd|sig|signature)"
            r"=[\"']?)(?!\[redacted\])[^" + _STOP + r"\]\[]+"
        ),
        r"\1" + MARK,
        ("=",),
    ),
    # YAML/JSON fields that can only hold a secret: api_key: …, "access_token": "…", password: …
    (
        re.compile(
            r"(?i)((?<![A-Za-z0-9])(?:api[_-]?key|access[_-]?token|auth[_-]?token|secret[_-]?key|client[_-]?secret"
            r"|password|passwd)[\"']?\s*:\s*[\"']?)(?!\[redacted\])[^" + _STOP + r"\]\[{}]+"
        ),
        r"\1" + MARK,
        ("apikey", "api_key", "api-key", "access", "auth", "secret", "passw"),
    ),
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), MARK, ("hf_",)),  # Hugging Face
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), MARK, ("github_pat_",)),  # GitHub fine-grained
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), MARK, ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),  # GitHub classic
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MARK, ("akia", "asia")),  # AWS access key id
    (re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"), MARK, ("sk-",)),  # OpenAI / Anthropic
    (re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"), MARK, ("hooks.slack.com",)),  # Slack webhook
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MARK, ("xox",)),  # Slack token
    # W&B API keys are 40 hex digits, as git commits are: only next to a W&B name.
    (re.compile(r"(?i)(wandb[A-Za-z0-9_]*[\"']?\s*[=: ]\s*[\"']?)[0-9a-f]{40}\b"), r"\1" + MARK, ("wandb",)),
    (re.compile(r"\blocal-[0-9a-f]{40}\b"), MARK, ("local-",)),  # W&B local server keys
]

_extra: list[re.Pattern] = []


def configure(patterns: Iterable[str]) -> None:
    """Add `report.redact` patterns (kept for the rest of the process; adding one twice is harmless)."""
    for pattern in patterns:
        compiled = re.compile(pattern)
        if compiled.pattern not in {p.pattern for p in _extra}:
            _extra.append(compiled)


def scrub(text: str) -> str:
    """`text` with every secret-looking value replaced by `[redacted]`."""
    if not text:
        return text
    # Outside ASCII, (?i) matches more than str.lower() maps (the long s, the Kelvin sign): every pattern runs.
    lowered = text.lower() if text.isascii() else None
    for pattern, repl, needles in BUILTIN:
        if lowered is None or any(needle in lowered for needle in needles):
            scrubbed = pattern.sub(repl, text)
            if scrubbed != text:
                text, lowered = scrubbed, scrubbed.lower() if lowered is not None else None
    for pattern in _extra:
        text = pattern.sub(MARK, text)
    return text
