"""Lexical search: BM25 (the maintained `bm25s` library) over each record's texts and attribute values.

Tokens are lower-cased words, English-stemmed with PyStemmer (`shoes` meets `shoe`), a hyphenated compound
also closed up (`t-shirt` meets `tshirts`; a query's compound counts once, by the reading a record writes), and
Chinese runs segmented with jieba, so a query in either script matches the words a record states; a Chinese query
word that no record states counts through its English senses (retrieval/translate.py), and an English one also
through the related forms the collection states (`femur` - `femoral`, `golden` - the facet value `gold`,
`sneakers` - `shoe`: retrieval/word_forms.py); an irregular plural reads as its singular (`emboli` - `embolus`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence

import bm25s
import numpy as np
import Stemmer

from mmkg.ingest.entities import HAN
from mmkg.retrieval.translate import WORD, han_words, segment_han, translations
from mmkg.retrieval.word_forms import (
    COMPOUND,
    RELATED_WEIGHT,
    WORDS_AND_COMPOUNDS,
    closed_up,
    facet_words,
    joined_compounds,
    phrase_synonyms,
    related_forms,
    singular,
)

log = logging.getLogger(__name__)
logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG

STOPWORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "is", "it", "its", "of",
    "on", "or", "that", "the", "this", "to", "was", "were", "with",
})


@functools.cache
def _stemmer():  # type: ignore[no-untyped-def]
    return Stemmer.Stemmer("english")


def tokenize(text: str) -> list[str]:
    """Words of `text` as BM25 terms: stemmed English (a hyphenated compound also as one closed-up word),
    jieba-segmented Chinese, other scripts as words."""
    out: list[str] = []
    folded = text.casefold()
    for word in WORD.findall(folded):
        if HAN.search(word):
            out += segment_han(word)
        elif word not in STOPWORDS:
            out.append(singular(word))
    out += [w for w in joined_compounds(folded) if not HAN.search(w)]
    stemmer = _stemmer()
    return [t if HAN.search(t) else stemmer.stemWord(t) for t in out]


def _joinable(word: str) -> bool:
    """A word that may close up with its neighbour into one the collection states (`hand` `bag`)."""
    return word.isalpha() and not HAN.search(word) and word.casefold() not in STOPWORDS


def _words(text: str) -> list[tuple[str, bool]]:
    """The words of `text` (a hyphenated compound as one, stopwords left out), each with whether it may close up
    with the word before it: both joinable and only a space between (`men's` is no `mens`)."""
    out: list[tuple[str, bool]] = []
    prev_end = -1
    for m in WORDS_AND_COMPOUNDS.finditer(text):
        word = m.group()
        if word.casefold() in STOPWORDS:
            prev_end = -1
            continue
        spaced = prev_end >= 0 and text[prev_end : m.start()].isspace() and _joinable(word) and _joinable(out[-1][0])
        out.append((word, spaced))
        prev_end = m.end()
    return out


def _closed_pairs(text: str, known: set[str] | dict[str, int]) -> list[str]:
    """Two neighbouring words of `text` closed up into the one term they make, where the collection states that
    term (`Sweat Shirts` beside another product's `Sweatshirts`): a query for either meets both."""
    words = _words(text)
    closed = [_closed_term(a.casefold(), b.casefold()) for (a, _), (b, spaced) in zip(words, words[1:], strict=False)
              if spaced]
    return [c for c in closed if c and c in known]


@functools.lru_cache(maxsize=1 << 16)
def _closed_term(a: str, b: str) -> str:
    """The one term two words make closed up (`sweat` `shirts`: `sweatshirt`), or ``."""
    terms = tokenize(a + b)
    return terms[0] if len(terms) == 1 else ""


class Bm25Index:
    """BM25 scores of a query against every document (a record's words), by document row."""

    def __init__(self, documents: Sequence[str], facets: Iterable[str] = ()) -> None:
        """`facets`: the values the collection states as attributes (`Gold`, `Shoes`), which a query word reaches
        through a synonym or a broader word (`golden`, `sneakers`: `related`)."""
        self.size = len(documents)
        self._facets = {tuple(tokenize(f)) for f in facets}
        self._facet_terms = {t for f in self._facets for t in f}
        words = [tokenize(d) for d in documents]
        single = {t for doc in words for t in doc}
        tokens = [doc + _closed_pairs(d, single) or [""] for doc, d in zip(words, documents, strict=True)]
        self.model = bm25s.BM25()
        if self.size:
            self.model.index(tokens, show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        """(documents,) scores; all zero when no query term occurs in the collection."""
        if not self.size or not tokenize(query):
            return np.zeros(self.size, np.float32)
        vocab = self.model.vocab_dict
        known = lambda terms: [t for t in terms if t in vocab]  # noqa: E731
        units = self._units(query)
        out = self._terms_score(known([t for _, closed, apart in units if not closed for t in apart]))
        for _, closed, apart in units:  # a compound counts once, by the reading a record writes
            if closed:
                out += np.maximum(self._terms_score(known(closed)), self._terms_score(known(apart)))
        for senses in self.translations(query).values():  # a Chinese word the collection lacks: its English senses
            for sense, weight in senses:
                sense_terms = [t for t in tokenize(sense) if t in vocab]
                if sense_terms:
                    out += weight * np.asarray(self.model.get_scores(sense_terms), dtype=np.float32)
        for forms in self._weighted_related(query).values():
            for form, weight in forms.items():
                out += weight * np.asarray(self.model.get_scores(tokenize(form)), dtype=np.float32)
        return out

    def _units(self, query: str) -> list[tuple[str, list[str], list[str]]]:
        """The query's words as (text, closed, apart) terms: a word has no closed form; a compound is a hyphenated
        one (`t-shirt`) or two words that the collection writes as one (`hand bag`: the catalog's `Handbags`;
        read apart, it found bags of every other kind), and counts once, by the reading a record writes."""
        vocab = self.model.vocab_dict if self.size else {}
        words = _words(query)
        units: list[tuple[str, list[str], list[str]]] = []
        i = 0
        while i < len(words):
            word, (after, spaced) = words[i][0], words[i + 1] if i + 1 < len(words) else ("", False)
            closed = _closed_term(word.casefold(), after.casefold()) if spaced else ""
            if COMPOUND.fullmatch(word):
                apart = [t for part in WORD.findall(word) for t in tokenize(part)]
                units.append((word, tokenize(closed_up(word)), apart))
            elif closed and closed in vocab:
                units.append((f"{word} {after}", [closed], tokenize(word) + tokenize(after)))
                i += 1
            else:
                units.append((word, [], tokenize(word)))
            i += 1
        return units

    def _terms_score(self, terms: list[str]) -> np.ndarray:
        """BM25 of these known terms, summed (zeros for none)."""
        if not terms:
            return np.zeros(self.size, np.float32)
        return np.asarray(self.model.get_scores(terms), dtype=np.float32)

    def related(self, query: str) -> dict[str, list[str]]:
        """The query's English words -> their related forms (retrieval/word_forms.py) that the collection states
        and the query does not: the nouns and adjectives they pertain to, and, for a word that is no facet value,
        the facet values among its synonyms and broader words (`golden` -> `gold`, `sneakers` -> `shoe`); and a
        phrase that WordNet lists as one noun -> the words of its synonyms not met otherwise (`kidney stones`,
        *urinary calculus*, *renal calculus*: `urinary`, `calculus`, as `renal` is already `kidney`'s): MedPix's
        stone cases say `nephrolithiasis` and `calculi`, and the query found a horseshoe kidney first."""
        return {word: list(forms) for word, forms in self._weighted_related(query).items()}

    def _weighted_related(self, query: str) -> dict[str, dict[str, float]]:
        """`related`, each form with what it counts: a pertainym and a word of a phrase's synonym `RELATED_WEIGHT`,
        a facet word its own weight."""
        vocab = self.model.vocab_dict if self.size else {}
        own = set(tokenize(query))
        latin = [w for w in WORD.findall(query) if not HAN.search(w)]
        out: dict[str, dict[str, float]] = {}
        for word in dict.fromkeys(latin):
            forms: dict[str, float] = {}
            kin = facet_words(word, self._is_facet, self.states)
            for form, weight in [*((f, RELATED_WEIGHT) for f in related_forms(word)),
                                 *((f.value, f.weight) for f in kin)]:
                if (t := tokenize(form)) and t[0] in vocab and t[0] not in own:
                    forms[form] = max(weight, forms.get(form, 0.0))
            if forms:
                out[word] = forms
        taken = own | {t for forms in out.values() for f in forms for t in tokenize(f)}
        for n in (3, 2):
            for start in range(len(latin) - n + 1):
                phrase = latin[start : start + n]
                words = [w for synonym in phrase_synonyms(phrase) if all(t in vocab for t in tokenize(synonym))
                         for w in synonym.split() if (terms := set(tokenize(w))) and not terms & taken]
                if words:
                    out[" ".join(phrase)] = dict.fromkeys(words, RELATED_WEIGHT)
                    taken |= {t for w in words for t in tokenize(w)}
        return out

    def states(self, word: str) -> bool:
        """Whether some document states `word` (in any of its forms)."""
        vocab = self.model.vocab_dict if self.size else {}
        return bool(terms := tokenize(word)) and all(t in vocab for t in terms)

    def _is_facet(self, word: str) -> bool:
        """Whether the collection states `word` as a facet value, in any of its forms (`shoe`: Shoes)."""
        return tuple(tokenize(word)) in self._facets

    def translations(self, query: str) -> dict[str, list[tuple[str, float]]]:
        """The query's Chinese words that no document contains, with their English senses."""
        vocab = self.model.vocab_dict if self.size else {}
        parts = lambda word: [t for w in WORD.findall(word) for t in tokenize(w)]  # noqa: E731 (a compound's, apart)
        return translations(query, lambda word: all(t in vocab for t in parts(word)),
                            lambda word: bool(t := parts(word)) and set(t) <= self._facet_terms)

    def matched_terms(self, query: str, document: str) -> list[str]:
        """The query's words that `document` contains (for the explanation); a translated word shows the sense
        that matched, a word met through related forms shows those: `皮带 (leather belt)`, `femur (femoral)`."""
        have = set(tokenize(document))
        have.update(_closed_pairs(document, self.model.vocab_dict if self.size else {}))
        out: list[str] = []
        for text, closed, apart in self._units(query):
            if set(closed) & have or (closed and all(t in have for t in apart)):
                out.append(text)  # a compound, closed up or every part
            else:
                out += [w for w in WORD.findall(text) if set(tokenize(w)) & have]
        out = list(dict.fromkeys(out))
        for word, senses in self.translations(query).items():
            hit = next((s for s, _ in senses if any(t in have for t in tokenize(s))), None)
            if hit is not None:
                out.append(f"{word} ({hit})")
        for word, forms in self.related(query).items():
            hits = [f for f in forms if any(t in have for t in tokenize(f))]
            if word not in out and hits:
                out.append(f"{word} ({', '.join(hits)})")
        return out

    def unmatched_words(self, query: str) -> list[str]:
        """The query's words that no document contains, nor any English sense of them: hits can meet these only
        by meaning or look (`perfume` in a catalog that sells none). A lone Chinese character (`的`) is left out:
        it is rarely the word the query is about. A query without a word at all (`😀👟`, `???`) is named whole: its
        hits, found by meaning and look alone, would otherwise pass for matches."""
        if not WORD.search(query):
            return [query.strip()]
        vocab = self.model.vocab_dict if self.size else {}
        stated = lambda text: any(t in vocab for t in tokenize(text))  # noqa: E731
        senses = self.translations(query)
        related = self.related(query)
        in_compounds = {part for text, closed, _ in self._units(query) if set(closed) & set(vocab)
                        for part in WORD.findall(text)}  # `hand` of `hand bag`, stated as `handbag`
        words = [w for w in WORD.findall(query) if not HAN.search(w) and w.casefold() not in STOPWORDS]
        words += [w for w in han_words(query) if len(w) > 1]
        return [w for w in dict.fromkeys(words) if tokenize(w) and not stated(w) and w not in related
                and w not in in_compounds and not any(stated(s) for s, _ in senses.get(w, []))]
