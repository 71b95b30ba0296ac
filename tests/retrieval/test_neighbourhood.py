"""Similarity neighbourhoods: kNN lists, hubness and echoes against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

from mmkg.retrieval.fusion import FusionParams, Signals, combine
from mmkg.retrieval.neighbourhood import ECHO_M, ECHO_TEMPERATURE, HUB_K, Neighbourhoods, knn


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vecs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"Image": _unit(rng.normal(size=(60, 16))), "Text": _unit(rng.normal(size=(90, 16)))}


@pytest.mark.parametrize("exact_max", [1000, 10])
def test_knn_matches_brute_force_and_skips_self(vecs: dict[str, np.ndarray], exact_max: int) -> None:
    img = vecs["Image"]
    sims, rows = knn(img, img, 5, exact_max=exact_max, same=True)
    full = img @ img.T
    np.fill_diagonal(full, -np.inf)
    ref_rows = np.argsort(-full, axis=1)[:, :5]
    assert not (rows == np.arange(len(img))[:, None]).any()
    # HNSW (exact_max=10) is approximate, but on 60 points it finds the true neighbours.
    assert (rows == ref_rows).mean() > 0.98
    np.testing.assert_allclose(sims, np.take_along_axis(full, rows, 1), rtol=1e-5, atol=1e-5)


def test_hub_is_the_mean_similarity_to_the_nearest_items_of_the_other_kind(vecs: dict[str, np.ndarray]) -> None:
    nb = Neighbourhoods.compute(vecs)
    cross = vecs["Image"] @ vecs["Text"].T
    ref = -np.sort(-cross, axis=1)[:, :HUB_K].mean(axis=1)
    np.testing.assert_allclose(nb.hub[("Image", "Text")], ref, rtol=1e-5, atol=1e-5)


def test_echo_listens_to_the_nearest_neighbours_and_never_to_the_query_itself(vecs: dict[str, np.ndarray]) -> None:
    nb = Neighbourhoods.compute(vecs)
    img, txt = vecs["Image"], vecs["Text"]
    targets = np.arange(len(img))
    twin = 7  # the query is text 7 of the collection
    q = txt[twin][None]
    got = nb.echo("Image", "Text", targets, q, txt, twins=np.array([twin]))[0]
    cross = img @ txt.T
    for j, t in enumerate(targets):
        order = [u for u in np.argsort(-cross[t]) if u != twin][:ECHO_M]
        w = np.exp((cross[t, order] - cross[t, order].max()) / ECHO_TEMPERATURE)
        ref = float((w / w.sum()) @ (txt[order] @ q[0]))
        assert got[j] == pytest.approx(ref, abs=1e-4)
    # Without the twin rule the query hears itself wherever it is a near neighbour.
    loud = nb.echo("Image", "Text", targets, q, txt)[0]
    assert (loud >= got - 1e-6).mean() > 0.9


def test_round_trip_through_arrays(vecs: dict[str, np.ndarray]) -> None:
    nb = Neighbourhoods.compute(vecs)
    back = Neighbourhoods.from_arrays(nb.to_arrays())
    for key in nb.hub:
        np.testing.assert_array_equal(back.hub[key], nb.hub[key])
        np.testing.assert_array_equal(back.rows[key], nb.rows[key])


def test_combine_weighs_each_signal_and_pushes_non_candidates_last() -> None:
    refined = np.array([[0.5, 0.4, 0.3]], np.float32)
    signals = Signals(
        refined=refined,
        encoder=np.zeros_like(refined),
        hub=np.array([0.4, 0.0, 0.0], np.float32),
        echo_query=np.array([[0.0, 0.2, 0.0]], np.float32),
        echo_target=np.zeros_like(refined),
    )
    seeds = np.array([[True, True, False]])
    walk = np.zeros_like(refined)
    plain = combine(signals, walk, seeds, FusionParams(w_graph=0.0))
    assert plain[0].argmax() == 0 and plain[0, 2] < -100
    tuned = combine(signals, walk, seeds, FusionParams(w_graph=0.0, w_hub=0.5, w_echo_query=1.0))
    np.testing.assert_allclose(tuned[0, :2], [0.5 - 0.2, 0.4 + 0.2], atol=1e-6)
    assert tuned[0].argmax() == 1
