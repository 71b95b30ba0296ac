"""Entities from text (spaCy) and from attributes: normalised names, kinds, and hostile input."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mmkg.ingest.entities import Entity, attribute_entities, extract_entities, load_nlp

SAFE_NAME = r"^[^\W_](?:[\w' &.-]*[^\W_])?$"


def names(text: str, **kwargs: bool) -> list[str]:
    return [e.name for e in extract_entities([text], **kwargs)[0]]


def test_noun_chunks_lemmatised_with_head() -> None:
    found = extract_entities(["Two young children in red shirts are playing on a skateboard ."])[0]
    assert found == [
        Entity("young child", "concept"),
        Entity("child", "concept"),
        Entity("red shirt", "concept"),
        Entity("shirt", "concept"),
        Entity("skateboard", "concept"),
    ]


def test_named_entities_have_kinds() -> None:
    found = {
        e.name: e.kind for e in extract_entities(["Peter Parker visited New York City with the United Nations."])[0]
    }
    assert found == {"peter parker": "person", "new york city": "place", "united nations": "org"}
    assert names("Peter Parker visited New York City.", ner=False) == [
        "peter parker",
        "parker",
        "new york city",
        "city",
    ]


def test_determiners_pronouns_numbers_and_stopwords_dropped() -> None:
    assert names("The man and his three dogs saw many other people and something in 2019 .") == [
        "man",
        "dog",
        "people",
    ]


def test_plural_only_nouns_and_hyphens_kept() -> None:
    assert names("A man in jeans and sunglasses wearing a t-shirt") == ["man", "jeans", "sunglasses", "t-shirt"]


def test_a_hyphenated_word_the_tagger_split_stays_one_word() -> None:
    """The small model tags the hyphen of `x-ray` as a noun and chunked `chest x`, `-`, `ray`: a radiology query
    was explained as sharing *chest x* and *ray*, and `V-Neck T-Shirts` gave only *neck*."""
    assert names("pneumothorax on chest x-ray") == ["pneumothorax", "chest x-ray", "x-ray"]
    assert names("PA chest x-ray demonstrates a left pneumothorax.") == ["x-ray", "left pneumothorax", "pneumothorax"]
    assert names("Nike Men V-Neck T-Shirts") == ["man", "v-neck t-shirt", "t-shirt"]
    assert names("a man runs cross-country") == ["man", "cross-country"]


def test_title_case_product_names_are_parsed_as_nouns() -> None:
    assert names("Roadster Men Navy Blue T-shirt") == ["blue t-shirt", "t-shirt"]


def test_a_product_name_gives_facets_not_itself() -> None:
    """Issue 10: `men leather black belt` was an entity, and a pair of jeans was tagged as depicting it."""
    assert names("Fastrack Men Leather Black Belt") == ["black belt", "belt"]


@pytest.mark.parametrize(
    "text",
    [
        '"}) MATCH (n) DETACH DELETE n //',
        "'; DROP TABLE records; --",
        "一只狗在草地上奔跑",
        "Собака бежит по траве",
        "كلب يجري على العشب",
        "🐶🐶 🎉 !!! ??? ...",
        "\x00\x01\u200b\ufeff",
        "x" * 100_000,
        "a dog " * 20_000,
    ],
)
def test_hostile_text_gives_no_punctuation_garbage(text: str) -> None:
    import re

    found = extract_entities([text])[0]
    assert len(found) <= 64
    for entity in found:
        assert re.match(SAFE_NAME, entity.name), entity
        assert len(entity.name) <= 64


def test_scripts_without_a_segmenter_and_emoji_give_no_entities() -> None:
    assert extract_entities(["Собака бежит по траве", "ውሻ በሣር ላይ ይሮጣል", "สุนัขวิ่งบนหญ้า", "🐶🎉"]) == [[], [], [], []]
    assert names("🐶🐶 dog 🎉 party!!!") == ["dog party", "party"]


def test_chinese_nouns_become_entities() -> None:
    assert names("猫捉老鼠") == ["猫", "老鼠"]
    assert extract_entities(["一只狗在草地上奔跑"])[0] == [Entity("狗", "concept"), Entity("草地", "concept")]
    # Adjacent nouns are also kept as one compound; particles, verbs and measure words are dropped.
    assert names("两个穿着红色衣服的小孩在草地上玩耍") == ["红色", "衣服", "红色衣服", "小孩", "草地"]
    assert names("一个东西") == []  # too general to link anything


def test_mixed_script_text_gets_entities_from_both() -> None:
    assert names("a black dog 在雪地里") == ["black dog", "dog", "雪地"]


def test_cypher_text_yields_only_words() -> None:
    allowed = {"match detach delete", "detach delete", "delete", "match", "detach"}
    assert set(names('"}) MATCH (n) DETACH DELETE n //')) <= allowed


def test_one_list_per_text_in_order() -> None:
    texts = ["a black dog", "", "   ", "12345", "a black dog", "a red ball"]
    out = extract_entities(texts)
    assert len(out) == len(texts)
    assert out[0] == out[4] == [Entity("black dog", "concept"), Entity("dog", "concept")]
    assert out[1] == out[2] == out[3] == []
    assert out[5][0] == Entity("red ball", "concept")
    assert extract_entities([]) == []


def test_pipeline_loaded_once() -> None:
    assert load_nlp() is load_nlp()
    assert "senter" not in load_nlp().pipe_names


def test_attribute_entities() -> None:
    found = attribute_entities(
        [("baseColour", "Navy  Blue"), ("articleType", "Tshirts"), ("modality", "CT"), ("usage", ""), ("usage", " "),
         ("baseColour", "navy blue"), ("year", "2011")]
    )  # fmt: skip
    assert found == [
        Entity("baseColour:navy blue", "attribute"),
        Entity("articleType:tshirts", "attribute"),
        Entity("modality:ct", "attribute"),
        Entity("year:2011", "attribute"),
    ]


def test_throughput_on_flickr_captions(data: Path) -> None:
    """Not a benchmark (CPUs are shared), a floor: parsing must stay far from the slowest step."""
    lines = (data / "flickr8k" / "dev" / "captions.jsonl").read_text().splitlines()[:100]
    captions = [c for line in lines for c in json.loads(line)["captions"]]
    load_nlp()
    started = time.process_time()
    out = extract_entities(captions)
    rate = len(captions) / max(time.process_time() - started, 1e-6)
    assert sum(map(len, out)) > len(captions)
    assert rate > 50, f"{rate:.0f} captions per CPU-second"
