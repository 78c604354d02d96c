"""Report languages: gettext catalogs managed by Babel, and lazy messages built in Python.

English is the source language: every msgid is English, `pipeline/locale/<lang>/LC_MESSAGES/messages.po`
holds a language's translations (`make i18n` extracts, updates and checks them). The .po is compiled in
memory when a report is rendered (no binary .mo is committed).

Python builds labels and check findings before the language is known, as `Msg(msgid, **params)`:

    N_("{done:,d} of {planned:,d} configured steps ran", done=100, planned=1000)

A `Msg` is a `str` (its English text, so logs, tests and `in` work as before) that also keeps its msgid and
params; `translate(tr)` looks the msgid up in a language's catalog and formats it with the same params.
Numbers are params, formatted by the format spec in the placeholder, which must be the same in msgid and
translation (tests/test_i18n.py checks that): a number reads the same in every language. `N_` is the name
Babel's Python extractor looks for, so every `N_("…")` literal lands in the catalog.
"""

from __future__ import annotations

import functools
import gettext
import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"
DOMAIN = "messages"
SOURCE_LANGUAGE = "en"
LANGUAGES = ("en", "ja")


class Msg(str):
    """An English message that can be translated later: msgid with `{named}` placeholders + params."""

    def __new__(cls, msgid: str, **params):
        self = super().__new__(cls, _fill(msgid, params, None))
        self.msgid, self.params = msgid, params
        return self

    def __reduce__(self):  # copy/deepcopy/pickle (dataclasses.asdict deep-copies fields)
        return (_rebuild, (type(self), self.msgid, self.params))

    def translate(self, tr: gettext.NullTranslations | None) -> str:
        return _fill(tr.gettext(self.msgid) if tr else self.msgid, self.params, tr)

    @staticmethod
    def join(items, sep: str = "; ") -> Joined:
        return Joined(list(items), sep)


class Joined(Msg):
    """Messages joined with a separator, each translated on its own."""

    def __new__(cls, items: list, sep: str = "; "):
        self = str.__new__(cls, sep.join(str(i) for i in items))
        self.msgid, self.params, self.items, self.sep = None, {}, items, sep
        return self

    def __reduce__(self):
        return (Joined, (self.items, self.sep))

    def translate(self, tr) -> str:
        return self.sep.join(translate(i, tr) for i in self.items)


def _rebuild(cls, msgid, params):
    return cls(msgid, **params)


def _fill(text: str, params: dict, tr) -> str:
    if not params:
        return text
    return text.format(**{k: translate(v, tr) if isinstance(v, Msg) else v for k, v in params.items()})


def N_(msgid: str, **params) -> Msg:  # the gettext convention: Babel extracts N_("…")
    return Msg(msgid, **params)


def translate(value, tr) -> str:
    """A Msg in the catalog's language; anything else unchanged (as str)."""
    return value.translate(tr) if isinstance(value, Msg) else value


@functools.cache
def _catalog(lang: str, mtime_ns: int) -> Translations:
    po = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)  # fuzzy entries are not translations
    buf.seek(0)
    return Translations(fp=buf, domain=DOMAIN)


def translations(lang: str) -> gettext.NullTranslations:
    if lang == SOURCE_LANGUAGE:
        return NullTranslations()
    if lang not in LANGUAGES:
        raise ValueError(f"no catalog for report language {lang!r} (have {', '.join(LANGUAGES)})")
    po = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    return _catalog(lang, po.stat().st_mtime_ns)


def suffix(lang: str) -> str:
    """File-name suffix of a language's outputs: report.md / report.ja.md, loss.png / loss.ja.png."""
    return "" if lang == SOURCE_LANGUAGE else f".{lang}"


# Words Python code shows in reports (status of a run, severity of a finding, yes/no in tables).
STATUS = {
    "completed": N_("completed"),
    "partial": N_("partial"),
    "failed": N_("failed"),
    "running": N_("running"),
    "not started": N_("not started"),
    "unknown": N_("unknown length"),
    "failed_before_first_step": N_("failed before the first step"),
    "early_stopped": N_("early-stopped"),
    "ok": N_("ok"),
    "skipped": N_("skipped"),
    "missing": N_("missing"),
}
# The status line at the top of a report: an icon and the word (for "unknown", what is unknown).
HEADLINE = {
    "completed": N_("✅ completed"),
    "partial": N_("⚠️ partial"),
    "failed": N_("❌ failed"),
    "running": N_("⏳ running"),
    "not started": N_("⏸ not started"),
    "unknown": N_("❔ completeness unknown"),
    "failed_before_first_step": N_("❌ failed before the first step"),
    "early_stopped": N_("⏹ early-stopped"),
}
# An imported run's status line (the words of issue #13): how long the run was meant to be is the source's
# word, so "unknown" is its length, not whether it finished; "partial" says where it stopped (templates/macros.md.j2).
IMPORT_HEADLINE = {
    "completed": N_("✅ completed"),
    "unknown": N_("❔ unknown length"),
    "failed_before_first_step": N_("❌ failed before the first step"),
}
SEVERITY = {"error": N_("❌ error"), "warning": N_("⚠️ warning"), "info": N_("ℹ️ info")}
# TRANSLATORS: yes/no are booleans of resolved settings (compile, gradient checkpointing): on/off.
YES, NO = N_("yes"), N_("no")
