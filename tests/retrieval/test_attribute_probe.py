"""The attribute probe: learned from the records that state a value, predicting a photo's values with their
probabilities, never a value too few records state."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mmkg.retrieval.attribute_probe import MIN_PROBABILITY, MIN_RECORDS, AttributeProbe

ENTITIES = ["colour:red", "colour:blue", "colour:teal", "kind:shoe", "kind:shirt", "brand:acme", "shoe"]
ATTRIBUTE = np.array([True, True, True, True, True, True, False])


def _collection(seed: int = 0) -> tuple[np.ndarray, sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """40 records with one image each: colour (red/blue) along one axis, kind (shoe/shirt) along another; two
    records state teal (too few to learn), every one the brand acme (one value: nothing to tell apart), the
    shoes mention `shoe` (a mention, not an attribute), and a last record has no image."""
    rng = np.random.default_rng(seed)
    n = 40
    colour = rng.integers(0, 2, n)
    kind = rng.integers(0, 2, n)
    vecs = rng.normal(0, 0.3, (n, 8)).astype(np.float32)
    vecs[:, 0] += np.where(colour == 0, 2.0, -2.0)
    vecs[:, 1] += np.where(kind == 0, 2.0, -2.0)
    links = []
    for r in range(n):
        links += [(r, 2 if r < MIN_RECORDS - 1 else int(colour[r])), (r, 3 + int(kind[r])), (r, 5)]
        links += [(r, 6)] if kind[r] == 0 else []
    links += [(n, 0), (n, 3)]
    rows, cols = zip(*links, strict=True)
    rec_entity = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n + 1, len(ENTITIES)))
    rec_image = sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), np.arange(n))), shape=(n + 1, n))
    return vecs, rec_image, rec_entity, np.stack([colour, kind], axis=1)


def test_the_probe_learns_each_attribute_key_from_the_records_that_state_it() -> None:
    vecs, rec_image, rec_entity, _ = _collection()
    probe = AttributeProbe.fit(vecs, rec_image, rec_entity, ENTITIES, ATTRIBUTE)
    assert probe is not None
    assert [key for key, _, _ in probe.heads] == ["colour", "kind"]  # brand has one value, `shoe` is no attribute
    assert {ENTITIES[c] for c in probe.columns} == {"colour:red", "colour:blue", "kind:shoe", "kind:shirt"}


def test_a_photo_is_linked_to_the_values_it_shows_with_their_probabilities() -> None:
    vecs, rec_image, rec_entity, _ = _collection()
    probe = AttributeProbe.fit(vecs, rec_image, rec_entity, ENTITIES, ATTRIBUTE)
    assert probe is not None
    red_shirt, blue_shoe = np.zeros((2, 8), np.float32)
    red_shirt[:2] = (2.0, -2.0)
    blue_shoe[:2] = (-2.0, 2.0)
    predicted = probe.predict(np.stack([red_shirt, blue_shoe]))
    best = [{ENTITIES[c]: p for c, p in row} for row in predicted]
    assert max(best[0], key=lambda e: best[0][e] if e.startswith("colour") else -1) == "colour:red"
    assert max(best[0], key=lambda e: best[0][e] if e.startswith("kind") else -1) == "kind:shirt"
    assert best[1]["colour:blue"] > 0.9 and best[1]["kind:shoe"] > 0.9
    for row in predicted:
        assert all(MIN_PROBABILITY <= p <= 1.0 for _, p in row)


def test_a_collection_stating_no_attribute_worth_learning_has_no_probe() -> None:
    vecs, rec_image, rec_entity, _ = _collection()
    only_brand = np.array([False, False, False, False, False, True, False])
    assert AttributeProbe.fit(vecs, rec_image, rec_entity, ENTITIES, only_brand) is None
    no_images = sp.csr_matrix(rec_image.shape, dtype=np.float32)
    assert AttributeProbe.fit(vecs[:0], no_images[:, :0], rec_entity, ENTITIES, ATTRIBUTE) is None


def test_a_record_stating_two_values_of_a_key_teaches_each() -> None:
    """A photo of a dog and a cat (COCO states both categories) counts half for each, so a photo like it gets
    both, rather than teaching nothing."""
    rng = np.random.default_rng(1)
    side = np.repeat([0, 1, 2], 20)  # dogs, cats, both
    vecs = rng.normal(0, 0.3, (60, 4)).astype(np.float32)
    vecs[:, 0] += np.choose(side, [2.0, -2.0, 0.0])
    links = [(r, 0) for r in range(60) if side[r] in (0, 2)] + [(r, 1) for r in range(60) if side[r] in (1, 2)]
    rows, cols = zip(*links, strict=True)
    rec_entity = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(60, 2))
    rec_image = sp.csr_matrix(np.eye(60, dtype=np.float32))
    probe = AttributeProbe.fit(vecs, rec_image, rec_entity, ["category:dog", "category:cat"], np.array([True, True]))
    assert probe is not None
    both = dict(probe.predict(np.zeros((1, 4), np.float32))[0])
    assert 0.3 < both[0] < 0.7 and 0.3 < both[1] < 0.7, both
