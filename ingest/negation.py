"""The findings a text says are absent: `no free air`, `without fracture`, `negative for malignancy`.

A case note that rules a finding out is not a case of it, yet its words matched the finding's query and its
mention linked it to the finding's entity: on MedPix, `free air` put three cases that say there is none
(`There is no evidence of free air`) second to fourth, each explained as sharing *free air* with the query.
So the words in a negation's scope are neither indexed for BM25 nor linked as mentions; the text itself, and
its vector, are kept as written.

The rule is NegEx's (Chapman et al., J Biomed Inform 2001): a trigger phrase opens a scope over the next
`MAX_SCOPE_WORDS` words, closed early by punctuation or a termination word (`but`, `which`, `is`, `in`);
pseudo-triggers (`no change`, `not only`) negate nothing. Only prose is read: a Title Case name
(`Nike Men No Show Socks`) is a product's name, not a statement.
"""

from __future__ import annotations

import re

MAX_SCOPE_WORDS = 4
"""The words a trigger can reach: `no evidence of free air`. NegEx's five let captions over-reach (`a dog with no
leash runs on the grass` lost *grass*)."""
TRIGGERS = tuple(tuple(p.split()) for p in (
    "no", "not", "without", "negative for", "absence of", "absent", "free of", "rule out", "ruled out",
    "rules out", "denies", "denied", "never",
))
PSEUDO_TRIGGERS = tuple(tuple(p.split()) for p in (
    "no change", "no interval change", "no significant change", "no increase", "no longer", "not only",
    "not necessarily", "not certain", "without difficulty", "no further",
))
TERMINATORS = frozenset({
    "but", "however", "although", "though", "except", "apart", "aside", "which", "who", "whereas", "yet",
    "still", "because", "nevertheless", "instead", "is", "are", "was", "were", "in", "on", "at", "within",
})
"""Words that close a scope: NegEx's, and a verb or a place after the negated finding (`no free air in the
abdomen`: the abdomen was seen)."""
_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")
_TRIGGER_START = re.compile(r"\b(?:" + "|".join(sorted({p[0] for p in TRIGGERS})) + r")\b", re.IGNORECASE)
"""Any trigger's first word: a text or clause without one is passed over at once (MedPix's 3 MB of case text:
0.5 s, against 2.6 s when every word was tried against every phrase)."""
_CLAUSE = re.compile(r"[^.;:!?,()\[\]\n]+")


def is_title(text: str) -> bool:
    """A Title Case name (three or more words, nearly all capitalised, short), not a sentence."""
    words = [w for w in text.split() if w[:1].isalpha()]
    return len(words) >= 3 and sum(w[0].isupper() for w in words) >= 0.8 * len(words) and len(text) < 300


def negated_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character ranges of `text` that a negation rules out (module docstring)."""
    if not text or not _TRIGGER_START.search(text) or is_title(text):
        return []
    out: list[tuple[int, int]] = []
    for clause in _CLAUSE.finditer(text):
        if not _TRIGGER_START.search(clause.group()):
            continue
        words = [(m.start() + clause.start(), m.end() + clause.start(), m.group().casefold())
                 for m in _WORD.finditer(clause.group())]
        names = [w for _, _, w in words]
        i = 0
        while i < len(words):
            if n := _match(names, i, PSEUDO_TRIGGERS):
                i += n
                continue
            if not (n := _match(names, i, TRIGGERS)):
                i += 1
                continue
            start = end = i + n
            while end < min(len(words), start + MAX_SCOPE_WORDS) and names[end] not in TERMINATORS:
                end += 1
            if end > start:
                out.append((words[start][0], words[end - 1][1]))
            i = end
    return out


def affirmed(text: str) -> str:
    """`text` with what it negates blanked out (offsets kept): the words it states as present."""
    for start, end in negated_spans(text):
        text = text[:start] + " " * (end - start) + text[end:]
    return text


def _match(words: list[str], at: int, phrases: tuple[tuple[str, ...], ...]) -> int:
    """The length of the longest phrase that starts at word `at` (0 if none)."""
    return max((len(p) for p in phrases if p[0] == words[at] and tuple(words[at : at + len(p)]) == p), default=0)
