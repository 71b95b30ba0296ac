"""`mmkg train gnn --data DIR`: train the graph refiner on a Flickr-layout training collection.

The training images are split (seeded) into a *fit* part and a *tune* part, both from the training
folder. Each part is ingested under the no-leakage protocol (an image and each of its captions are
separate records). The refiner trains on neighbour-sampled mini-batches of the fit graph with

* a symmetric contrastive (InfoNCE) loss between refined images and refined captions of the batch, and
* link prediction: held-out MENTIONS/DEPICTS edges of the batch's seeds, removed from message
  passing, scored against random entities of the batch (binary cross-entropy);

the tune graph picks the best epoch and the fusion weights of the full pipeline. No dev or test
data is read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mmkg.encoders.base import Encoder
from mmkg.errors import UserInputError
from mmkg.gnn.data import GraphData, build_hetero
from mmkg.gnn.model import GnnConfig, GraphRefiner
from mmkg.gnn.pairs import PairGraph, encoder_holdout, ingest_pairs, read_pairs, split_train
from mmkg.gnn.refine import ENTITY, IMAGE, REV_DEPICTS, REV_MENTIONS, TEXT, RefinedGraph, TrainedGnn, gnn_dir
from mmkg.gnn.sampler import HeteroNeighborSampler
from mmkg.settings import Settings
from mmkg.workspace import Workspace

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "hidden": 256,
    "layers": 2,
    "conv": "sage",
    "dropout": 0.1,
    "epochs": 12,
    "batch_size": 256,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "fanouts": [12, 8],
    "lp_weight": 0.2,
    "lp_holdout": 0.3,
    "input_noise": 0.0,
    # input_noise: std of Gaussian noise per input dimension in training (0.02 is a 0.3 norm at dim 256)
    "entity_memory": False,
    "memory_min_degree": 3,
    "tune_fraction": 1 / 6,
    "seed": 0,
    "threads": 2,
    "reuse_graphs": True,
    "max_images": None,
    "tune_on_encoder_holdout": True,
}


def _graph_cache(settings: Settings, data_dir: Path, encoder: Encoder, p: dict[str, Any]) -> Path:
    key = hashlib.sha256(
        json.dumps([str(Path(data_dir).resolve()), encoder.fingerprint, p["tune_fraction"], p["seed"],
                    p["max_images"], p["tune_on_encoder_holdout"]]).encode()
    ).hexdigest()[:16]
    return Workspace(settings.home).cache_dir / "gnn-train" / key


def r1(img: np.ndarray, txt: np.ndarray, owner: np.ndarray) -> tuple[float, float]:
    """(t2i R@1, i2t R@1) in percent for unit vectors: a quick selection figure."""
    sims = txt @ img.T
    t2i = float(np.mean(sims.argmax(1) == owner) * 100)
    i2t = float(np.mean(owner[sims.argmax(0)] == np.arange(len(img))) * 100)
    return t2i, i2t


def _clip_loss(zi: torch.Tensor, zt: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    logits = scale.exp().clamp(max=100) * zi @ zt.T
    target = torch.arange(len(zi))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class Trainer:
    """One training run; `fit()` returns the best model on the tune graph."""

    def __init__(self, fit: PairGraph, tune: PairGraph | None, params: dict[str, Any]) -> None:
        self.p = {**DEFAULTS, **params}
        self.fit_pg, self.tune_pg = fit, tune
        self.graph: GraphData = build_hetero(fit.store, fit.vectors)
        self.tune_graph: GraphData | None = build_hetero(tune.store, tune.vectors) if tune else None
        torch.manual_seed(self.p["seed"])
        self.rng = np.random.default_rng(self.p["seed"])
        vocab: list[str] = []
        if self.p["entity_memory"]:
            deg = np.zeros(self.graph.num_nodes(ENTITY), dtype=np.int64)
            for et in (REV_MENTIONS, REV_DEPICTS):
                np.add.at(deg, self.graph.data[et].edge_index[0].numpy(), 1)
            vocab = [e for e, d in zip(self.graph.ids[ENTITY], deg, strict=True) if d >= self.p["memory_min_degree"]]
        cfg = GnnConfig(dim=self.graph.dim, hidden=self.p["hidden"], layers=self.p["layers"], conv=self.p["conv"],
                        dropout=self.p["dropout"], entity_vocab=vocab)
        self.model = GraphRefiner(cfg)
        self.lp_bias = torch.nn.Parameter(torch.tensor(-3.0))
        self.lp_scale = torch.nn.Parameter(torch.tensor(2.3))
        self.opt = torch.optim.AdamW(
            [*self.model.parameters(), self.lp_bias, self.lp_scale],
            lr=self.p["lr"],
            weight_decay=self.p["weight_decay"],
        )
        self.entity_rows = self.model.vocab_rows(self.graph.ids[ENTITY]) if vocab else None
        self.sampler = HeteroNeighborSampler(self.graph.data, self.p["fanouts"], seed=self.p["seed"])
        self.img_rows = np.asarray(self.graph.rows(IMAGE, fit.image_ids))
        self.txt_rows = np.asarray(self.graph.rows(TEXT, fit.text_ids))
        self.captions_of: list[list[int]] = [[] for _ in fit.image_ids]
        for t, o in enumerate(fit.owner):
            self.captions_of[int(o)].append(t)

    def _batch_loss(self, images: np.ndarray) -> tuple[torch.Tensor, float, float]:
        # Byte-identical photos are one Image node: keep one of them per batch (seeds must be distinct).
        _, first = np.unique(self.img_rows[images], return_index=True)
        images = images[np.sort(first)]
        texts = np.array([self.txt_rows[self.rng.choice(self.captions_of[i])] for i in images])
        img_rows = self.img_rows[images]
        batch = self.sampler.sample({IMAGE: img_rows, TEXT: texts})
        data = batch.data
        n = len(images)
        ei = dict(data.edge_index_dict)
        # Link prediction: hold out some of the seeds' entity edges from message passing.
        pos: list[tuple[str, torch.Tensor, torch.Tensor]] = []
        for et, nt in ((REV_MENTIONS, TEXT), (REV_DEPICTS, IMAGE)):
            e = ei.get(et)
            if e is None or e.shape[1] == 0:
                continue
            seed_edge = e[1] < n
            hold = seed_edge & (torch.rand(e.shape[1]) < self.p["lp_holdout"])
            if hold.any():
                pos.append((nt, e[1][hold], e[0][hold]))
                ei[et] = e[:, ~hold]
        x = dict(data.x_dict)
        if self.p["input_noise"] > 0:
            x = {k: F.normalize(v + self.p["input_noise"] * torch.randn_like(v), dim=-1) for k, v in x.items()}
        rows = self.entity_rows[batch.n_id[ENTITY]] if self.entity_rows is not None else None
        out = self.model(x, ei, rows, limits=batch.layer_limits(self.model.config.layers))
        loss_c = _clip_loss(out[IMAGE][:n], out[TEXT][:n], self.model.logit_scale)
        loss_lp = torch.zeros(())
        # Link prediction decoder: a seed's refined vector against the entity's input vector (its
        # encoder vector plus memory): the batch computes refined vectors for the seeds only.
        ent_x = F.normalize(self.model.with_memory(x, rows)[ENTITY], dim=-1) if ENTITY in x else None
        n_ent = ent_x.shape[0] if ent_x is not None else 0
        if pos and ent_x is not None and n_ent > 1:
            scores, labels = [], []
            scale = self.lp_scale.exp()
            for nt, node, ent in pos:
                zn, ze = out[nt][node], ent_x[ent]
                neg = ent_x[torch.randint(0, n_ent, (len(node),))]
                scores += [scale * (zn * ze).sum(-1) + self.lp_bias, scale * (zn * neg).sum(-1) + self.lp_bias]
                labels += [torch.ones(len(node)), torch.zeros(len(node))]
            loss_lp = F.binary_cross_entropy_with_logits(torch.cat(scores), torch.cat(labels))
        loss = loss_c + self.p["lp_weight"] * loss_lp
        return loss, loss_c.item(), loss_lp.item()

    def evaluate_tune(self) -> tuple[float, float]:
        assert self.tune_pg is not None and self.tune_graph is not None
        rg = RefinedGraph.compute(TrainedGnn(self.model, ""), self.tune_graph)
        img = rg.vector(IMAGE, self.tune_pg.image_ids)
        txt = rg.vector(TEXT, self.tune_pg.text_ids)
        return r1(img, txt, self.tune_pg.owner)

    def fit(self, progress: bool = True) -> tuple[GraphRefiner, list[dict[str, float]]]:
        history: list[dict[str, float]] = []
        best_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        best = -1.0
        if self.tune_pg is not None:
            self.model.eval()
            t2i, i2t = self.evaluate_tune()
            history.append({"epoch": 0, "tune_t2i_R@1": t2i, "tune_i2t_R@1": i2t})
            log.info("gnn before training %s", history[-1])
            best = t2i + i2t
        bs = self.p["batch_size"]
        for epoch in range(1, self.p["epochs"] + 1):
            t_epoch = time.perf_counter()
            self.model.train()
            order = self.rng.permutation(len(self.img_rows))
            losses = []
            bar = tqdm(range(0, len(order) - bs + 1 if len(order) >= bs else 1, bs), desc=f"gnn epoch {epoch}",
                       disable=not progress, leave=False)
            for start in bar:
                images = order[start : start + bs]
                loss, lc, llp = self._batch_loss(images)
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                losses.append((lc, llp))
            row: dict[str, float] = {
                "epoch": epoch,
                "loss_contrastive": float(np.mean([a for a, _ in losses])),
                "loss_link": float(np.mean([b for _, b in losses])),
            }
            if self.tune_pg is not None:
                self.model.eval()
                t2i, i2t = self.evaluate_tune()
                row.update({"tune_t2i_R@1": t2i, "tune_i2t_R@1": i2t})
                if t2i + i2t >= best:
                    best = t2i + i2t
                    best_state = {k: v.clone() for k, v in self.model.state_dict().items()}
                    row["best"] = 1.0
            else:
                best_state = {k: v.clone() for k, v in self.model.state_dict().items()}
            row["seconds"] = round(time.perf_counter() - t_epoch, 1)
            log.info("gnn epoch %s", row)
            history.append(row)
        self.model.load_state_dict(best_state)
        self.model.eval()
        return self.model, history


def train_gnn(
    data_dir: Path,
    settings: Settings,
    encoder: Encoder,
    progress: bool = True,
    **params: Any,
) -> dict[str, Any]:
    """Train the refiner on `data_dir` (Flickr layout), tune fusion on a split of it, save both.

    Saves to `Workspace(settings.home).models_dir / "gnn"` and returns a JSON-able summary.
    """
    from mmkg.retrieval.fusion import tune_fusion

    p = {**DEFAULTS, **params}
    unknown = set(p) - set(DEFAULTS)
    if unknown:
        raise UserInputError(f"unknown GNN training option(s): {', '.join(sorted(unknown))}")
    torch.set_num_threads(int(p["threads"]))
    started = time.perf_counter()
    name, records = read_pairs(Path(data_dir))
    if p["max_images"]:
        records = records[: int(p["max_images"])]
    holdout = encoder_holdout(encoder, records) if p["tune_on_encoder_holdout"] else None
    fit_records, tune_records = split_train(records, p["tune_fraction"], p["seed"], holdout)
    with tempfile.TemporaryDirectory(prefix="mmkg-gnn-") as tmp:
        # The ingested training graphs are kept in the workspace cache (keyed by data, split and
        # encoder), so training again (other hyperparameters) does not re-encode the collection.
        base = _graph_cache(settings, data_dir, encoder, p) if p["reuse_graphs"] else Path(tmp)
        fit = ingest_pairs(fit_records, name, base / "fit", settings, encoder, progress)
        tune = ingest_pairs(tune_records, name, base / "tune", settings, encoder, progress) if tune_records else None
        try:
            t_ingest = time.perf_counter() - started
            trainer = Trainer(fit, tune, p)
            model, history = trainer.fit(progress)
            trained = TrainedGnn(model=model, encoder=encoder.fingerprint)
            fusion: dict[str, Any] = {}
            if tune is not None:
                fusion = tune_fusion(trained, tune, progress=progress)
            trained.fusion = {k: float(v) for k, v in fusion.get("weights", {}).items()}
            summary = {
                "data": str(data_dir),
                "fit_images": len(fit.image_ids),
                "fit_captions": len(fit.text_ids),
                "tune_images": len(tune.image_ids) if tune else 0,
                "tune_split": "encoder holdout" if holdout is not None else f"random {p['tune_fraction']:.3f}",
                "graph_nodes": {nt: trainer.graph.num_nodes(nt) for nt in trainer.graph.ids},
                "params": {k: v for k, v in p.items() if k not in ("threads", "reuse_graphs")},
                "history": history,
                "fusion": fusion,
                "seconds_ingest": round(t_ingest, 1),
                "seconds": round(time.perf_counter() - started, 1),
            }
            trained.summary = summary
            folder = gnn_dir(settings)
            trained.save(folder)
            summary["saved"] = str(folder)
            return summary
        finally:
            fit.close()
            if tune is not None:
                tune.close()
