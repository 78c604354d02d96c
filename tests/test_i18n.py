"""Message catalogs, lazy messages, plot fonts, language lists and the HTML export."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from pipeline.config.schema import ReportConfig
from pipeline.report import plots
from pipeline.report.i18n import LOCALE_DIR, N_, Msg, translations

ROOT = Path(__file__).resolve().parents[1]
# Python messages use str.format placeholders ({name:spec}); template messages gettext's %(name)s.
PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)(?::([^}]*))?\}|%\(([A-Za-z_]\w*)\)([#0\- +]*\d*(?:\.\d+)?[sdfegx])|%%")


def extracted() -> set:
    with (ROOT / "babel.cfg").open(encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    ids = set()
    for _file, _line, msgid, _comments, context in extract_from_dir(ROOT, method_map, options_map, DEFAULT_KEYWORDS):
        ids.add((context, msgid))
    return ids


def catalog(lang: str = "ja"):
    with (LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=lang)


def placeholders(text: str) -> list:
    return sorted(m.group(0) for m in PLACEHOLDER.finditer(text))


def test_every_message_has_a_japanese_translation():
    ja = catalog()
    missing = []
    for context, msgid in extracted():
        key = msgid[0] if isinstance(msgid, tuple) else msgid
        entry = ja.get(key, context=context)
        strings = entry.string if entry is not None and isinstance(entry.string, tuple) else (entry and entry.string,)
        if entry is None or entry.fuzzy or not all(strings):
            missing.append(msgid)
    assert not missing, f"no Japanese entry (run `make i18n` and translate): {missing}"


def test_template_pot_is_up_to_date():
    with (LOCALE_DIR / "messages.pot").open("rb") as f:
        pot = {(m.context, m.id) for m in read_po(f) if m.id}
    assert pot == extracted(), "run `make i18n`"


def test_translations_keep_placeholders_and_format_specs():
    bad = []
    for m in catalog():
        if not m.id:
            continue
        ids = m.id if isinstance(m.id, tuple) else (m.id,)
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        for s in strings:
            if placeholders(s) != placeholders(ids[0]) and placeholders(s) != placeholders(ids[-1]):
                bad.append((m.id, s))
    assert not bad, bad


def test_placeholder_pattern_reads_both_styles():
    assert placeholders("{done} of {pct:.0f}% and %(n)s, %(x).2f, 5%%") == sorted(
        ["{done}", "{pct:.0f}", "%(n)s", "%(x).2f", "%%"]
    )


def test_lazy_message_is_english_until_translated():
    msg = N_("training stopped at step {step}", step=1200)
    assert msg == "training stopped at step 1200" and "1200" in msg
    assert msg.translate(translations("ja")) == "学習はステップ 1200 で停止"
    joined = Msg.join([N_("validation loss"), N_("training loss")], "; ")
    assert joined == "validation loss; training loss"
    assert joined.translate(translations("ja")) == "検証損失; 学習損失"
    nested = N_(
        "{what} went from {first:.4f} to {last:.4f} ({pct:+.1f}%); the model did not learn measurably",
        what=N_("training loss"),
        first=2.0,
        last=1.99,
        pct=-0.5,
    )
    assert "2.0000" in nested.translate(translations("ja")) and "学習損失" in nested.translate(translations("ja"))
    import copy
    import pickle

    assert copy.deepcopy(nested).translate(translations("ja")) == nested.translate(translations("ja"))
    assert pickle.loads(pickle.dumps(joined)) == joined


def test_report_language_accepts_one_or_a_list():
    assert ReportConfig().languages == ["en"]
    assert ReportConfig(language="ja").languages == ["ja"]
    assert ReportConfig(language=["en", "ja"]).languages == ["en", "ja"]
    with pytest.raises(ValueError):
        ReportConfig(language=["ja", "ja"])
    with pytest.raises(ValueError):
        ReportConfig(language="fr")


# --------------------------------------------------------------------------- plots
def test_japanese_plot_labels_use_a_cjk_font_when_there_is_one():
    plots.cjk_font.cache_clear()
    font = plots.cjk_font()
    if font is None:
        pytest.skip("no CJK font installed (apt-get install fonts-noto-cjk)")
    gettext, rc, note = plots.plot_language("ja")
    assert note is None and rc["font.sans-serif"][0] == font
    assert gettext("optimizer step") == "オプティマイザのステップ"


def test_without_a_cjk_font_plots_fall_back_to_english_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(plots, "cjk_font", lambda: None)
    plots._warn_no_font.cache_clear()
    with caplog.at_level("WARNING"):
        for _ in range(2):
            gettext, rc, note = plots.plot_language("ja")
    assert gettext("optimizer step") == "optimizer step" and rc == {}
    assert note is plots.NO_FONT_NOTE and "fonts-noto-cjk" in note.translate(translations("ja"))
    assert sum("no CJK font" in r.getMessage() for r in caplog.records) == 1
