"""A lit ensemble's members alone and together, per captions language.

    MMKG_HOME=<trained workspace> .venv/bin/python benchmarks/lit_ensemble.py --data ../shared/data/flickr8k/dev

`mmkg train encoder` trains `LitTrainConfig.members` sets of heads (seeds 0, 1, ...) and saves them as one
`LitEnsemble`, whose vectors are the members' side by side (scaled by 1/sqrt(N)): one cosine is the mean of
the members' cosines. This prints text->image and image->text recall of each member alone and of the
ensemble the encoder uses, for every captions file of the folder (English and Chinese on Flickr8k), with the
metric code of `mmkg eval`, so the gain of the ensemble and the spread between seeds show in one run.
Frozen features come from the workspace's cache (computed there on a miss).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from mmkg.encoders.lit import LitEnsemble, LitModel, lit_model_dir, load_lit_heads, model_image_views, model_routing
from mmkg.evaluation.metrics import image_text_retrieval
from mmkg.settings import Settings
from mmkg.training.captions import BASE_CAPTIONS, extra_caption_files
from mmkg.training.lit_train import lit_similarities

KEYS = ("t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_R@1", "i2t_R@5", "i2t_R@10", "rsum")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/flickr8k/dev"))
    ap.add_argument("--home", type=Path, default=Path(os.environ.get("MMKG_HOME", ".mmkg")))
    args = ap.parse_args()
    settings = Settings.load(home=args.home)
    model, config = load_lit_heads(lit_model_dir(settings))
    routing = model_routing(config, model)
    views = model_image_views(config)
    runs: dict[str, LitModel] = {"ensemble": model}
    if isinstance(model, LitEnsemble):
        seed = int(config["training"]["hyperparams"]["seed"])
        runs = {f"seed {seed + i}": m for i, m in enumerate(model.member_heads)} | runs
    out: dict[str, object] = {"data": str(args.data), "model": config["weights"]}
    for name in (BASE_CAPTIONS, *extra_caption_files(args.data)):
        scores = {}
        for label, heads in runs.items():
            sim, text_image = lit_similarities(args.data, settings, heads, routing, views, name, False)
            scores[label] = {k: round(float(image_text_retrieval(sim, text_image)[k]), 2) for k in KEYS}
        out[name] = scores
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
