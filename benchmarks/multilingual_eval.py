"""Text->image and image->text retrieval of the trained lit encoder on a Flickr-layout folder, per language.

Each captions file of the folder (``captions.jsonl``, ``captions.zh.jsonl``, ...) gives the queries;
the gallery is the folder's images. Captions are embedded as the encoder embeds them (routed by
script to MiniLM's or e5's head), from the feature cache of the workspace (computed on a miss), and
scored by `mmkg.evaluation.metrics.image_text_retrieval`, the metric code of `mmkg eval`.

    MMKG_HOME=<trained workspace> .venv/bin/python benchmarks/multilingual_eval.py --data ../shared/data/flickr8k/dev

``--routing latin=text+text_ml`` measures another routing with the same heads (``other=...`` too).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from mmkg.encoders.lit import TEXT, TEXT_ML, lit_model_dir, load_lit_heads, model_image_views, model_routing
from mmkg.settings import Settings
from mmkg.training.captions import BASE_CAPTIONS, extra_caption_files
from mmkg.training.lit_train import evaluate_lit_folder

KEYS = ("t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_R@1", "i2t_R@5", "i2t_R@10", "rsum", "n_texts", "n_images")


def parse_routing(specs: list[str], base: dict[str, list[str]]) -> dict[str, list[str]]:
    routing = {k: list(v) for k, v in base.items()}
    for spec in specs:
        script, _, heads = spec.partition("=")
        if script not in routing or not heads or any(h not in (TEXT, TEXT_ML) for h in heads.split("+")):
            raise SystemExit(f"bad --routing {spec!r}: latin=|other= text, text_ml or text+text_ml")
        routing[script] = heads.split("+")
    return routing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/flickr8k/dev"))
    ap.add_argument("--home", type=Path, default=Path(os.environ.get("MMKG_HOME", ".mmkg")))
    ap.add_argument("--captions", nargs="*", help="captions files of the folder (default: all)")
    ap.add_argument("--routing", nargs="*", default=[], help="e.g. latin=text+text_ml")
    args = ap.parse_args()
    settings = Settings.load(home=args.home)
    heads, config = load_lit_heads(lit_model_dir(settings))
    routing = parse_routing(args.routing, model_routing(config, heads))
    names = args.captions or [BASE_CAPTIONS, *extra_caption_files(args.data)]
    out: dict[str, object] = {"data": str(args.data), "model": config["weights"], "routing": routing,
                              "image_views": model_image_views(config)}
    for name in names:
        t = time.perf_counter()
        m = evaluate_lit_folder(args.data, settings, captions=name, routing=routing, progress=False)
        out[name] = {k: round(float(m[k]), 2) for k in KEYS} | {"seconds": round(time.perf_counter() - t, 1)}
    print(json.dumps(out, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
