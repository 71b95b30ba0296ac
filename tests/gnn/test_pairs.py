"""Training splits: the GNN tunes on the images the encoder's heads did not train on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmkg.encoders.lit_train import _holdout_split
from mmkg.gnn.pairs import encoder_holdout, split_records, split_train
from mmkg.ingest.records import Record, TextField


class _Enc:
    def __init__(self, n: int, holdout: int) -> None:
        self.config = {"training": {"data": "x", "images": n, "holdout_images": holdout,
                                    "hyperparams": {"seed": 0, "holdout": holdout}}}


def _records(n: int) -> list[Record]:
    return [Record(f"images/{i}.jpg", (Path(f"/d/images/{i}.jpg"),), (TextField("caption", f"c {i}"),))
            for i in range(n)]


def test_encoder_holdout_matches_the_lit_trainer():
    recs = _records(50)
    rows = encoder_holdout(_Enc(50, 10), recs)  # type: ignore[arg-type]
    _, ho = _holdout_split([r.images[0].name for r in recs], 10, 0)
    assert rows == sorted(ho.tolist())
    fit, tune = split_train(recs, 0.2, 0, rows)
    assert len(tune) == 10 and len(fit) == 40 and not {r.id for r in fit} & {r.id for r in tune}
    assert encoder_holdout(_Enc(49, 10), recs) is None  # another image selection: no claim
    assert encoder_holdout(object(), recs) is None  # type: ignore[arg-type]


def test_random_split_and_protocol_records():
    recs = _records(12)
    fit, tune = split_train(recs, 0.25, seed=3)
    assert len(tune) == 3 and len(fit) == 9
    images, captions, owner = split_records(recs)
    assert len(images) == 12 and len(captions) == 12 and owner == list(range(12))
    assert all(not c.images for c in captions) and all(not i.texts for i in images)
    assert np.all(np.diff(owner) >= 0)
