"""MedPix 2.0: `Descriptions.json` (one entry per image) + `Case_topic.json` (one per case): a Record per case.

A case holds all its images (`TAC` = CT, `MRI` lists, then any image whose description names the case
but no list does), each at `images/<image>.jpg`. Texts: each image's caption (tied to that image),
the case's diagnosis, title, history, findings, differential diagnosis and discussion, and the
topic's title and discussion; a text repeating an earlier one word for word is dropped, and so are
placeholders (`N/A`, `Noncontributory`, `see factoid`). Attributes, normalised so that cases share them:
`modality:ct|mr`, `protocol:t2 weighted`, `plane:axial`, `location:brain and neuro`,
`region:head`, `sex:female`, `diagnosis:...` (short names only), `topic:...`, `category:trauma`,
`acr:1.3`. Age and per-image details go to `meta`.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkg.errors import UserInputError
from mmkg.ingest.mapping import IMAGE_EXTENSIONS
from mmkg.ingest.records import Record, Skip, TextField
from mmkg.ingest.source import collection_name, usable_images

log = logging.getLogger(__name__)

DESCRIPTIONS = "Descriptions.json"
CASES = "Case_topic.json"
MAX_ATTRIBUTE_WORDS = 8
"""A diagnosis or topic longer than this is a sentence, not a name: it stays a text, not an entity."""

_PLACEHOLDERS = {
    "", "n/a", "na", "n/c", "none", "unknown", "unsure", "left blank", "noncontributory", "non-contributory",
    "see factoid", "please see factoid", "see discussion", "nos - not specified", "other view (see caption)",
}  # fmt: skip
_PLANES = {"transverse": "axial"}
_CASE_TEXTS = [  # diagnosis first: a title that only repeats it is dropped, the diagnosis kept
    ("Case Diagnosis", "diagnosis"),
    ("Title", "title"),
    ("History", "history"),
    ("Findings", "findings"),
    ("Differential Diagnosis", "differential"),
    ("Discussion", "discussion"),
]
_LIST_MARK = re.compile(r"^\s*(?:\(?\d{1,2}[.)]|[•\-*])\s*")
_LABEL = re.compile(r"^\s*(?:diagnosis|dx|discussion \(include references\))\s*:\s*", re.IGNORECASE)


@dataclass
class MedpixSource:
    root: Path
    name: str = ""
    _cases: list[Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.name = self.name or collection_name(self.root)

    @classmethod
    def open(cls, path: Path, name: str = "") -> MedpixSource:
        missing = [f for f in (DESCRIPTIONS, CASES) if not (path / f).is_file()]
        if missing:
            raise UserInputError(f"{path} lacks {' and '.join(missing)} (MedPix layout)")
        return cls(root=path, name=name)

    def __len__(self) -> int:
        return len(self._load_cases())

    def _load_cases(self) -> list[Any]:
        if self._cases is None:
            self._cases = _load_list(self.root / CASES)
        return self._cases

    def records(self) -> Iterator[Record | Skip]:
        descriptions = _load_list(self.root / DESCRIPTIONS)
        by_image: dict[str, dict[str, Any]] = {}
        by_case: dict[str, list[str]] = defaultdict(list)
        for n, desc in enumerate(descriptions):
            if not (isinstance(desc, dict) and _str(desc.get("image")) and _str(desc.get("U_id"))):
                yield Skip(f"{DESCRIPTIONS}[{n}]", "entry without an 'image' name and a 'U_id'")
                continue
            by_image[desc["image"].strip()] = desc
            by_case[desc["U_id"].strip()].append(desc["image"].strip())
        root = self.root.resolve()
        seen: set[str] = set()
        for n, case in enumerate(self._load_cases()):
            if not (isinstance(case, dict) and _str(case.get("U_id"))):
                yield Skip(f"{CASES}[{n}]", "entry without a 'U_id'")
                continue
            uid = case["U_id"].strip()
            if uid in seen:
                yield Skip(f"{CASES}[{n}]", f"case {uid} listed twice")
                continue
            seen.add(uid)
            listed = [i.strip() for key in ("TAC", "MRI") for i in _strings(case.get(key))]
            yield from self._case(root, uid, case, list(dict.fromkeys(listed + by_case.pop(uid, []))), by_image)
        for uid, images in by_case.items():  # descriptions of cases that Case_topic.json lacks
            yield from self._case(root, uid, {}, images, by_image)

    def _case(
        self, root: Path, uid: str, case: dict[str, Any], images: list[str], by_image: dict[str, dict[str, Any]]
    ) -> Iterator[Record | Skip]:
        item = f"case {uid}"
        paths, skips = usable_images(item, root, [_image_path(i) for i in images])
        yield from skips
        if not paths:
            return
        index = {p: n for n, p in enumerate(paths)}
        descs = [(index[p], by_image.get(i, {})) for i in images if (p := _resolved(root, i)) in index]
        body = _dict(case.get("Case"))
        topic = _dict(case.get("Topic"))

        texts: list[TextField] = []
        for n, desc in descs:
            caption = _text(_sub(desc).get("Caption"))
            if caption:
                texts.append(TextField("caption", caption, image=n))
        said: set[str] = set()  # title, diagnosis and differential are often the same words: keep the first
        case_texts = [(kind, body.get(key)) for key, kind in _CASE_TEXTS]
        case_texts += [("topic", topic.get("Title")), ("discussion", topic.get("Disease Discussion"))]
        for kind, raw in case_texts:
            value = _text(raw)
            if value and " ".join(value.casefold().split()) not in said:
                said.add(" ".join(value.casefold().split()))
                texts.append(TextField(kind, value))

        attributes: list[tuple[str, str]] = []
        for _, desc in descs:
            sub = _sub(desc)
            modality = image_modality(desc.get("Type"), sub.get("Modality"))
            attributes.append(("modality", modality))
            attributes.append(("protocol", _protocol(sub.get("Modality"))))
            plane = _value(sub.get("Plane"))
            attributes.append(("plane", _PLANES.get(plane, plane)))
        first = descs[0][1] if descs else {}
        attributes.append(("location", _value(first.get("Location"))))
        attributes.append(("region", _value(first.get("Location Category"))))
        attributes.append(("sex", _value(_sub(first).get("Sex"))))
        attributes += [("diagnosis", d) for d in diagnosis_names(body.get("Case Diagnosis"))]
        attributes += [("topic", d) for d in diagnosis_names(topic.get("Title"))[:1]]
        attributes.append(("category", _value(topic.get("Category"))))
        acr = _value(topic.get("ACR Code"))
        attributes.append(("acr", acr if re.fullmatch(r"\d+(\.\d+)*", acr) else ""))

        meta = {"age": age} if (age := _value(_sub(first).get("Age"))) else {}
        yield Record(
            id=uid,
            images=paths,
            texts=tuple(texts),
            attributes=tuple(dict.fromkeys((k, v) for k, v in attributes if v)),
            source=self.name,
            meta=meta,
        )


def diagnosis_names(value: Any) -> list[str]:
    """Short diagnosis names from a free-text field: one per listed item, first sentence only.

    `1) Fronto-nasal encephalocele\\n2) Colpocephaly` -> [fronto-nasal encephalocele, colpocephaly];
    a long sentence yields nothing (it is kept as text, just not as an entity).
    """
    text = _text(value)
    if not text:
        return []
    names: list[str] = []
    for line in re.split(r"\n+|\s(?=\d{1,2}[.)]\s)", text):
        line = _LIST_MARK.sub("", _LABEL.sub("", line))
        line = re.split(r"(?<=[a-z)])\.\s", line, maxsplit=1)[0].strip().rstrip(".;,").strip()
        if line and len(line.split()) <= MAX_ATTRIBUTE_WORDS and _value(line):
            names.append(" ".join(line.split()).lower())
    return list(dict.fromkeys(names))


def image_modality(kind: Any, modality: Any) -> str:
    """`ct` or `mr`: from the image's Type (always CT or MR here), else the prefix of its Modality."""
    for value in (kind, modality):
        word = re.match(r"\s*([A-Za-z]+)", value) if isinstance(value, str) else None
        if word:
            head = word.group(1).upper()
            if head.startswith("CT"):
                return "ct"
            if head.startswith("MR"):
                return "mr"
    return ""


def _protocol(modality: Any) -> str:
    """The part of `MR - T2 weighted` after the modality: `t2 weighted`; nothing for a bare `CT`."""
    value = _value(modality)
    rest = re.sub(r"^(ct|cta|mr|mri|mra|mrs)\b\s*-?\s*", "", value)
    return "" if rest == value and value in {"ct", "mr", "mri"} else rest


def _image_path(name: str) -> str:
    return name if name.lower().endswith(IMAGE_EXTENSIONS) else f"images/{name}.jpg"


def _resolved(root: Path, name: str) -> Path | None:
    try:
        return (root / _image_path(name)).resolve()
    except (OSError, ValueError):
        return None


def _load_list(path: Path) -> list[Any]:
    """Both files are needed to read any case, so a file that cannot be parsed is the user's error."""
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{path.name} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise UserInputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not isinstance(data, list):
        raise UserInputError(f"{path.name}: expected a JSON list")
    return data


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _sub(desc: dict[str, Any]) -> dict[str, Any]:
    return _dict(desc.get("Description"))


def _str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _strings(value: Any) -> list[str]:
    return [v for v in value if _str(v)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    """A text field's content, or "" for a placeholder such as `N/A` or `Please see factoid.`"""
    if not isinstance(value, str):
        return ""
    text = _LABEL.sub("", value.strip()).strip()
    return "" if text.casefold().rstrip(".") in _PLACEHOLDERS else text


def _value(value: Any) -> str:
    """An attribute value: lower case, single spaces; placeholders become ""."""
    if not isinstance(value, str):
        return ""
    text = " ".join(value.split()).casefold()
    return "" if text.rstrip(".") in _PLACEHOLDERS else text
