"""Lit heads trained with different seeds, alone and as a score-averaged ensemble, per captions language.

    .venv/bin/python benchmarks/lit_ensemble.py --models WS_A/models/lit WS_B/models/lit \
        --features WS_A --data ../shared/data/flickr8k/dev

A second set of heads, trained the same way with another seed (`mmkg train encoder --data DIR --seed 1
--home WS_B`), is the cheapest
way past the single model's variance: averaging the two models' image-text cosines equals one encoder whose
vectors are the members' vectors side by side (scaled by 1/sqrt(N)), so a search index could hold it as is.
This prints text->image and image->text recall for each model and for the ensemble, for every captions
file of the folder (English and Chinese on Flickr8k), with the metric code of `mmkg eval`. Frozen features
come from the `--features` workspace's cache (computed there on a miss).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmkg.encoders.lit import load_lit_heads, model_routing
from mmkg.evaluation.metrics import image_text_retrieval
from mmkg.settings import Settings
from mmkg.training.captions import BASE_CAPTIONS, extra_caption_files
from mmkg.training.lit_train import lit_similarities

KEYS = ("t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_R@1", "i2t_R@5", "i2t_R@10", "rsum")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=Path, nargs="+", required=True, help="lit model folders (models/lit)")
    ap.add_argument("--features", type=Path, required=True, help="a workspace whose feature cache to use")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/flickr8k/dev"))
    args = ap.parse_args()
    settings = Settings.load(home=args.features)
    models = [load_lit_heads(m) for m in args.models]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in (BASE_CAPTIONS, *extra_caption_files(args.data)):
        sims = []
        for heads, config in models:
            sim, text_image = lit_similarities(args.data, settings, heads, model_routing(config, heads), name, False)
            sims.append(sim)
        runs = {str(m): s for m, s in zip(args.models, sims, strict=True)} | {"ensemble": sum(sims) / len(sims)}
        out[name] = {label: {k: round(float(image_text_retrieval(s, text_image)[k]), 2) for k in KEYS}
                     for label, s in runs.items()}
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
