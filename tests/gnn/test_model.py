"""The residual refiner: identity at start, stays close after training, refines unseen nodes inductively."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmkg.gnn.data import build_hetero
from mmkg.gnn.model import GnnConfig, GraphRefiner
from mmkg.gnn.pairs import PairGraph
from mmkg.gnn.refine import RefinedGraph, TrainedGnn
from mmkg.gnn.train import Trainer
from mmkg.graph.schema import Edge, Label, Node, Rel
from mmkg.settings import Settings


def _pairs(world, tmp_path) -> PairGraph:
    return PairGraph(Settings(home=tmp_path), world.store, world.vectors, world.images, world.texts,
                     np.asarray(world.owner), [f"caption {i}" for i in range(len(world.texts))])


def test_untrained_model_is_the_identity(world):
    g = build_hetero(world.store, world.vectors)
    model = GraphRefiner(GnnConfig(dim=16, hidden=32)).eval()
    out = model(g.data.x_dict, g.data.edge_index_dict)
    for nt in ("Image", "Text", "Entity"):
        assert out[nt].shape == g.data[nt].x.shape
        assert torch.allclose(out[nt], g.data[nt].x, atol=1e-5)


def test_training_lowers_the_loss_and_stays_close_to_the_encoder(world, tmp_path):
    pg = _pairs(world, tmp_path)
    trainer = Trainer(pg, pg, {"hidden": 32, "epochs": 15, "batch_size": 8, "fanouts": [4, 3], "lr": 3e-3})
    first = float(trainer._batch_loss(np.arange(8))[0])
    model, history = trainer.fit(progress=False)
    assert history[-1]["loss_contrastive"] < first
    assert "tune_t2i_R@1" in history[-1]
    g = build_hetero(world.store, world.vectors)
    out = model(g.data.x_dict, g.data.edge_index_dict)
    for nt in ("Image", "Text"):
        cos = (out[nt] * g.data[nt].x).sum(-1)
        assert float(cos.mean()) > 0.7, nt  # residual: refined vectors stay near the encoder's


def test_a_batch_holding_one_photo_twice_trains(world, tmp_path):
    """Two training records with byte-identical photos share one Image node; a batch that draws both
    keeps one (the sampler needs distinct seeds) instead of failing mid-training."""
    n = len(world.images)
    pg = PairGraph(Settings(home=tmp_path), world.store, world.vectors, [*world.images, world.images[0]],
                   [*world.texts, world.texts[0]], np.asarray([*world.owner, n]), [])
    trainer = Trainer(pg, None, {"hidden": 32, "batch_size": n + 1, "fanouts": [4, 3]})
    loss, _, _ = trainer._batch_loss(np.arange(n + 1))
    assert torch.isfinite(loss)


@pytest.mark.parametrize("layers", [1, 2])
def test_inductive_refinement_of_an_unseen_node(world, layers):
    torch.manual_seed(0)
    model = GraphRefiner(GnnConfig(dim=16, hidden=32, layers=layers, dropout=0.0))
    for lin in model.out.values():
        torch.nn.init.normal_(lin.weight, std=0.3)
    model.eval()
    trained = TrainedGnn(model, "test")
    before = RefinedGraph.from_store(trained, world.store, world.vectors)
    x_new = world.vectors.texts.get([world.texts[0]])[0]
    ents = ["ent:dog", "ent:ball"]
    inductive = before.refine_queries(x_new[None], "text", [ents])[0]
    # Now really add the node (text with only MENTIONS edges) and refine the whole graph.
    world.vectors.texts.add(["txt:new"], x_new[None])
    world.store.upsert_nodes([Node("txt:new", Label.TEXT, {"text": "a dog with a ball"})])
    world.store.upsert_edges([Edge("txt:new", e, Rel.MENTIONS) for e in ents])
    after = RefinedGraph.from_store(trained, world.store, world.vectors)
    in_graph = after.vector("Text", ["txt:new"])[0]
    assert abs(np.linalg.norm(inductive) - 1) < 1e-5
    if layers == 1:  # one layer sees only the entities' input features: exactly the same
        np.testing.assert_allclose(inductive, in_graph, atol=1e-5)
    else:  # two layers: the entities' states moved a little once the node joined them
        assert float(inductive @ in_graph) > 0.98
    # and it differs from the plain encoder vector: the graph did something
    assert float(inductive @ x_new) < 0.9999


def test_save_and_load_round_trip(world, tmp_path):
    model = GraphRefiner(GnnConfig(dim=16, hidden=32))
    for lin in model.out.values():
        torch.nn.init.normal_(lin.weight, std=0.3)
    trained = TrainedGnn(model.eval(), "enc-x", fusion={"text.w_graph": 0.1})
    trained.save(tmp_path / "gnn")
    loaded = TrainedGnn.load(tmp_path / "gnn")
    assert loaded.encoder == "enc-x" and loaded.fusion == {"text.w_graph": 0.1}
    assert loaded.fingerprint == trained.fingerprint
    g = build_hetero(world.store, world.vectors)
    a = model(g.data.x_dict, g.data.edge_index_dict)["Image"]
    b = loaded.model(g.data.x_dict, g.data.edge_index_dict)["Image"]
    assert torch.allclose(a, b)


def test_fast_sage_path_matches_pyg_sageconv():
    from torch_geometric.nn import SAGEConv

    from mmkg.gnn.model import _sage

    torch.manual_seed(0)
    conv = SAGEConv((8, 8), 5, aggr="mean")
    xs, xd = torch.randn(6, 8), torch.randn(4, 8)
    ei = torch.tensor([[0, 1, 2, 5, 5], [0, 0, 1, 1, 3]])
    assert torch.allclose(_sage(conv, xs, xd, ei), conv((xs, xd), ei), atol=1e-6)
    empty = torch.empty((2, 0), dtype=torch.long)
    assert torch.allclose(_sage(conv, xs, xd, empty), conv((xs, xd), empty), atol=1e-6)


def test_entity_memory_is_learned_and_applies_by_name(world, tmp_path):
    pg = _pairs(world, tmp_path)
    trainer = Trainer(pg, None, {"hidden": 32, "epochs": 5, "batch_size": 8, "fanouts": [4, 3], "lr": 3e-3,
                                 "entity_memory": True, "memory_min_degree": 2})
    model, _ = trainer.fit(progress=False)
    assert model.memory is not None and "ent:dog" in model.vocab
    assert float(model.memory.weight.abs().sum()) > 0  # trained away from its zero start
    rows = model.vocab_rows(["ent:dog", "ent:unknown"])
    assert rows[0] >= 0 and rows[1] == -1
    # saved and loaded with its vocabulary
    TrainedGnn(model, "e").save(tmp_path / "m")
    loaded = TrainedGnn.load(tmp_path / "m")
    assert loaded.model.vocab == model.vocab
    g = build_hetero(world.store, world.vectors)
    a = RefinedGraph.compute(TrainedGnn(model, "e"), g).refined["Text"]
    b = RefinedGraph.compute(loaded, g).refined["Text"]
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_trimmed_layers_give_the_seeds_the_same_outputs(world):
    from mmkg.gnn.sampler import HeteroNeighborSampler

    g = build_hetero(world.store, world.vectors)
    torch.manual_seed(0)
    model = GraphRefiner(GnnConfig(dim=16, hidden=32, dropout=0.0))
    for lin in model.out.values():
        torch.nn.init.normal_(lin.weight, std=0.3)
    model.eval()
    batch = HeteroNeighborSampler(g.data, [50, 50]).sample({"Image": [0, 3], "Text": [1]})
    full = model(batch.data.x_dict, batch.data.edge_index_dict)
    trimmed = model(batch.data.x_dict, batch.data.edge_index_dict, limits=batch.layer_limits(2))
    assert trimmed["Image"].shape[0] == 2 and trimmed["Text"].shape[0] == 1
    assert torch.allclose(trimmed["Image"], full["Image"][:2], atol=1e-5)
    assert torch.allclose(trimmed["Text"], full["Text"][:1], atol=1e-5)


@pytest.mark.parametrize("kind", ["text", "image"])
def test_numpy_query_refiner_matches_the_torch_model(world, kind):
    from mmkg.gnn.query_refiner import QueryRefiner
    from mmkg.gnn.refine import ENTITY, IMAGE, REV_DEPICTS, REV_MENTIONS, TEXT, refine_attached_queries

    torch.manual_seed(0)
    model = GraphRefiner(GnnConfig(dim=16, hidden=32)).eval()
    for lin in model.out.values():
        torch.nn.init.normal_(lin.weight, std=0.3)  # a non-trivial head (it starts at zero)
    g = build_hetero(world.store, world.vectors)
    with torch.no_grad():
        states, _ = model.states(g.data.x_dict, g.data.edge_index_dict)
    nt, rel = (TEXT, REV_MENTIONS) if kind == "text" else (IMAGE, REV_DEPICTS)
    fast = QueryRefiner.compile(model, nt, rel)
    assert fast is not None
    states_np = [{k: v.numpy() for k, v in layer.items()} for layer in states[:-1]]
    epos = g.index[ENTITY]
    rng = np.random.default_rng(0)
    for ents in ([], ["ent:dog"], ["ent:dog", "ent:ball", "ent:nope"]):
        x = rng.normal(size=16).astype(np.float32)
        x /= np.linalg.norm(x)
        want = refine_attached_queries(model, states[:-1], epos, x[None], kind, [ents])[0]
        got = fast.refine(x, [epos[e] for e in ents if e in epos], states_np, ENTITY)
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert QueryRefiner.compile(GraphRefiner(GnnConfig(dim=16, hidden=32, conv="gat")), nt, rel) is None
