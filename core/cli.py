"""`mmkg`: the command line. A user's mistake becomes one clear line and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmkg.collection import open_collection
from mmkg.errors import BadImageError, MmkgError, UserInputError
from mmkg.graph import neo4j_server
from mmkg.graph.factory import open_store
from mmkg.ingest.detect import open_source
from mmkg.ingest.images import load_image
from mmkg.ingest.pipeline import Ingestor, resolve_record_ids
from mmkg.retrieval.search import UNLIKE_NOTE, Query, unmatched_note
from mmkg.service.search import Searcher
from mmkg.settings import Settings
from mmkg.ui import launch

log = logging.getLogger("mmkg")

EXIT_USER_ERROR = 2
EXIT_INTERNAL = 1


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load(
        home=getattr(args, "home", None),
        store=getattr(args, "store", None),
        encoder=getattr(args, "encoder", None),
        log_level=getattr(args, "log_level", None),
        ingest_engine=getattr(args, "engine", None),
        ray_address=getattr(args, "ray_address", None),
        ingest_workers=getattr(args, "workers", None),
    )


# --- commands ------------------------------------------------------------------------------


def cmd_train_encoder(args: argparse.Namespace) -> int:
    from mmkg.encoders.lit import CONFIG_NAME, lit_model_dir  # torch: only the commands that need it load it
    from mmkg.training.lit_train import train_lit

    settings = _settings(args)
    if settings.encoder != "lit":
        raise UserInputError("only the lit encoder is trained here (clip loads pretrained weights)")
    data = _existing_dir(args.data)
    if args.if_missing and (lit_model_dir(settings) / CONFIG_NAME).exists():
        print(f"lit heads already trained in {lit_model_dir(settings)} (drop --if-missing to retrain)")
        return 0
    summary = train_lit(data, settings, seed=args.seed, members=args.members)
    if args.json:
        _print_json(summary)
    else:
        print(f"trained lit heads on {data}: {json.dumps(summary, ensure_ascii=False)}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    settings = _settings(args)
    source = open_source(Path(args.path), args.format, Path(args.mapping) if args.mapping else None)
    with open_collection(settings) as col:
        ingestor = Ingestor(settings, col.store, col.vectors, col.encoder)
        report = ingestor.run(
            source.records(), source.name, total=_len_or_none(source), progress=not args.quiet, sync=args.sync
        )
    out = report.to_json()
    if args.json:
        _print_json(out)
    else:
        print(
            f"ingested {report.ingested} records from {source.name} ({report.updated} updated, "
            f"{report.already_present} already present, {len(report.deleted)} deleted, "
            f"{len(report.skipped)} skipped) in {report.seconds:.1f}s"
        )
        for skip in report.skipped[:20]:
            print(f"  skipped {skip.item}: {skip.reason}")
        if len(report.skipped) > 20:
            print(f"  ... and {len(report.skipped) - 20} more (mmkg ingest --json lists them all)")
    return 0 if report.ingested or report.updated or report.already_present else EXIT_USER_ERROR


def cmd_delete(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with open_collection(settings) as col:
        resolved = resolve_record_ids(col.store, args.ids, source=args.source)
        deleted = Ingestor(settings, col.store, col.vectors, col.encoder).delete_records(resolved.found)
    out = {"deleted": deleted, "not_found": resolved.missing, "ambiguous": resolved.ambiguous}
    if args.json:
        _print_json(out)
    else:
        print(f"deleted {len(deleted)} record(s)" + (": " + ", ".join(deleted) if deleted else ""))
    for name in resolved.missing:
        print(f"mmkg: no record {name!r} in this workspace", file=sys.stderr)
    for name, candidates in resolved.ambiguous.items():
        print(f"mmkg: {name!r} names {len(candidates)} records ({', '.join(candidates)}); "
              "use the rec: id or --source", file=sys.stderr)
    return 0 if deleted and not resolved.missing and not resolved.ambiguous else EXIT_USER_ERROR


def cmd_search(args: argparse.Namespace) -> int:
    settings = _settings(args)
    query = _query(args, settings)
    with open_collection(settings, read_only=True) as col:
        answer = Searcher(col).answer(query, args.text or args.image, k=args.k, target=args.target, mode=args.mode,
                                      where=_where(args.where))
    if args.json:
        _print_json(answer)
        return 0
    if answer["unmatched_words"]:
        print(unmatched_note(answer["unmatched_words"]))
    if answer["unlike_collection"]:
        print(UNLIKE_NOTE)
    for rank, hit in enumerate(answer["results"], 1):
        shown = hit["path"] if hit["kind"] == "image" else hit["text"]
        title = hit.get("title")
        named = f"  {title!r}" if title and hit["kind"] == "image" else ""
        attrs = f"  [{', '.join(hit['attributes'])}]" if hit["attributes"] else ""
        print(f"{rank:2d}. {hit['score']:.2f}  {hit['kind']:5s}  {shown}{named}{attrs}")
        for line in hit["explanation"]["text"][:4]:
            print(f"      why: {line}")
    return 0


def _query(args: argparse.Namespace, settings: Settings) -> Any:
    if (args.text is None) == (args.image is None):
        raise UserInputError("give a query text or --image FILE (one of them)")
    if args.image is not None:
        try:
            image, _ = load_image(Path(args.image), settings.max_image_bytes, settings.max_image_pixels)
        except BadImageError as exc:
            raise UserInputError(f"cannot use the query image: {exc}") from exc
        query = Query(image=image)
    else:
        query = Query(text=args.text)
    return query


def _where(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserInputError(f"--where takes key=value (for example colour=blue), not {pair!r}")
        out[key.strip()] = value.strip()
    return out


def cmd_explain(args: argparse.Namespace) -> int:
    from mmkg.retrieval.record_search import open_retriever  # torch: only the commands that need it load it

    settings = _settings(args)
    query = _query(args, settings)
    with open_collection(settings, read_only=True) as col:
        retriever = open_retriever(settings, col.store, col.vectors, col.encoder, mode=args.mode)
        explanation = retriever.explain(query, args.result_id)
    if args.json:
        _print_json(explanation.to_json())
    else:
        lines = explanation.lines()
        print("\n".join(lines) if lines else f"no path within the search's hops joins the query to {args.result_id}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with open_store(settings, read_only=True) as store:
        nodes, edges = store.counts()
    if args.json:
        _print_json({"nodes": nodes, "edges": edges})
    else:
        print("nodes: " + ", ".join(f"{k} {v}" for k, v in nodes.items()))
        print("edges: " + ", ".join(f"{k} {v}" for k, v in edges.items()))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from mmkg.evaluation import report  # torch: only the commands that need it load it
    from mmkg.evaluation.protocol import evaluate

    settings = _settings(args)
    result = evaluate(
        _existing_dir(args.data),
        settings,
        limit=args.limit,
        progress=not args.quiet,
        captions=args.captions,
        knowledge=_existing_dir(args.knowledge) if args.knowledge else None,
        workdir=Path(args.workdir) if args.workdir else None,
        per_query=Path(args.per_query) if args.per_query else None,
        relevance=_keys(args.relevance),
    )
    if args.plot:
        report.plot(result, Path(args.plot))
    if args.json:
        _print_json(result)
    else:
        print(report.table(result), end="")
        meta = result.get("meta", {})
        print(f"({meta.get('protocol')} protocol on {meta.get('data')}; relevance: {meta.get('relevance')}; "
              f"{meta.get('split')}; {meta.get('seconds')} s)")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from mmkg.evaluation.tune import tune_workspace  # torch: only the commands that need it load it

    settings = _settings(args)
    data = _existing_dir(args.data) if args.data else None
    config = tune_workspace(settings, data, knowledge=_existing_dir(args.knowledge) if args.knowledge else None,
                            progress=not args.quiet, relevance=_keys(args.relevance))
    if args.json:
        _print_json(config.to_json())
    else:
        print(f"fusion weights tuned on {config.tuned_on}; search uses them from now on")
        for kind in ("text", "image"):
            w = config.for_kind(kind)
            print(f"  {kind} queries: " + ", ".join(f"{k} {v:g}" for k, v in w.__dict__.items()))
    return 0


def cmd_neo4j(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.action == "start":
        # SIGTERM as Ctrl-C: a start stopped half-way leaves no server behind (start() cleans up on it); SIGINT
        # too, even when inherited as ignored (started in the background or under nohup).
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("starting Neo4j (the first start builds the launcher with Maven: a minute or two)", file=sys.stderr)
        info = neo4j_server.start(settings, port=args.port, data_dir=Path(args.data_dir) if args.data_dir else None)
        out: Any = info if isinstance(info, dict) else getattr(info, "__dict__", str(info))
        if args.foreground:
            return _neo4j_foreground(settings, _jsonable(out))
    elif args.action == "stop":
        out = neo4j_server.stop(settings)
    else:
        out = neo4j_server.status(settings)
    _print_json(_jsonable(out))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mmkg.service.server import serve  # FastAPI and uvicorn: only `mmkg serve` loads them

    settings = _settings(args)
    root = args.ingest_root or settings.ingest_root
    return serve(settings, host=args.host, port=args.port, ingest_root=Path(root) if root else None)


def _neo4j_foreground(settings: Settings, info: Any) -> int:
    """Hold the server until Ctrl-C or SIGTERM, then stop it: what a process manager expects."""
    try:  # a signal that lands while the info is still being printed must stop the server too
        _print_json(info)
        sys.stdout.flush()
        while neo4j_server.status(settings).get("running"):
            time.sleep(1.0)
        print("mmkg: the Neo4j server exited", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        return 130
    finally:
        neo4j_server.stop(settings)


def cmd_ui(args: argparse.Namespace) -> int:
    return launch.run(_settings(args), port=args.port, address=args.address)


# --- parser --------------------------------------------------------------------------------


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _keys(text: str | None) -> list[str] | None:
    """`--relevance articleType,baseColour` -> its keys (None: not given)."""
    keys = [k.strip() for k in (text or "").split(",") if k.strip()]
    return keys or None


def _existing_dir(path: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise UserInputError(f"not a folder: {path}")
    return p


def _len_or_none(source: Any) -> int | None:
    try:
        return len(source)
    except TypeError:
        return None


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", help="workspace folder (env MMKG_HOME, default ./.mmkg)")
    common.add_argument("--store", choices=["memory", "neo4j"], help="graph store (env MMKG_STORE, default memory)")
    common.add_argument("--encoder", choices=["lit", "clip"], help="encoder backend (env MMKG_ENCODER, default lit)")
    common.add_argument("--log-level", help="DEBUG, INFO, WARNING (default), ERROR")

    parser = argparse.ArgumentParser(prog="mmkg", description="Graph-based multimodal knowledge retrieval.")
    sub = parser.add_subparsers(dest="command", required=True)

    for add_commands in (_add_write_commands, _add_read_commands, _add_evaluation_commands, _add_app_commands):
        add_commands(sub, common)
    return parser


def _add_write_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """train encoder, ingest, delete: the commands that change the workspace."""
    train = sub.add_parser("train", help="train a model")
    train_sub = train.add_subparsers(dest="what", required=True)
    enc = train_sub.add_parser("encoder", parents=[common], help="train the lit encoder's projection heads")
    enc.add_argument("--data", required=True, help="a Flickr-layout folder (captions.jsonl + images/)")
    enc.add_argument("--if-missing", action="store_true", help="do nothing when heads are already trained")
    enc.add_argument("--seed", type=int, default=None,
                     help="the first member's initialisation and batch order (default 0)")
    enc.add_argument("--members", type=int, default=None,
                     help="heads trained with seeds SEED, SEED+1, ... and used as one ensemble (default 2); "
                          "benchmarks/lit_ensemble.py scores each member alone and the ensemble")
    enc.add_argument("--json", action="store_true")
    enc.set_defaults(func=cmd_train_encoder)

    ing = sub.add_parser("ingest", parents=[common], help="ingest a collection into the workspace")
    ing.add_argument("path", help="a collection folder or a catalog CSV")
    ing.add_argument("--format", choices=["flickr", "catalog", "coco", "medpix"], help="default: detected")
    ing.add_argument("--mapping", help="JSON column mapping for a catalog CSV")
    ing.add_argument("--json", action="store_true", help="print the report as JSON")
    ing.add_argument("--quiet", action="store_true", help="no progress bars")
    ing.add_argument("--sync", action="store_true", help="also delete this source's records it no longer holds")
    ing.add_argument("--engine", choices=["local", "ray"], help="local threads (default) or Ray Data "
                     "(env MMKG_INGEST_ENGINE)")
    ing.add_argument("--ray-address", help="join this Ray cluster (env MMKG_RAY_ADDRESS; default: a local Ray "
                     "for the ingest)")
    ing.add_argument("--workers", type=int, help="encoding threads or Ray encoder actors (default: all cores)")
    ing.set_defaults(func=cmd_ingest)

    dele = sub.add_parser("delete", parents=[common], help="delete records from the graph and every index")
    dele.add_argument("ids", nargs="+", metavar="RECORD_ID", help="a source's record id (a product id) or a rec: id")
    dele.add_argument("--source", help="only records of this source (when two sources share an id)")
    dele.add_argument("--json", action="store_true")
    dele.set_defaults(func=cmd_delete)


def _add_read_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """search, explain, stats."""
    srch = sub.add_parser("search", parents=[common], help="search by text or by image")
    srch.add_argument("text", nargs="?", help="the query text")
    srch.add_argument("--image", help="an image file to search with")
    srch.add_argument("--target", choices=["images", "texts"], default="images")
    srch.add_argument("-k", type=int, default=10)
    srch.add_argument("--mode", choices=["full", "gnn", "encoder"],
                      help="full (default): every signal; gnn: graph-refined vectors alone; encoder: the encoder alone")
    srch.add_argument("--where", action="append", metavar="KEY=VALUE", help="keep hits with this attribute/entity")
    srch.add_argument("--json", action="store_true")
    srch.set_defaults(func=cmd_search)

    exp = sub.add_parser("explain", parents=[common], help="the graph paths from a query to one result")
    exp.add_argument("text", nargs="?", help="the query text")
    exp.add_argument("result_id", help="a result's id, as `mmkg search --json` prints it")
    exp.add_argument("--image", help="an image file as the query")
    exp.add_argument("--mode", choices=["full", "gnn", "encoder"])
    exp.add_argument("--json", action="store_true")
    exp.set_defaults(func=cmd_explain)

    st = sub.add_parser("stats", parents=[common], help="node and edge counts")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_stats)


RELEVANCE_HELP = ("a catalog's attributes that a relevant product shares with the query's, comma-separated (default: "
                  "its kind and colour columns, found by name, and gender at the strict level)")


def _add_evaluation_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """eval, tune."""
    ev = sub.add_parser("eval", parents=[common],
                        help="retrieval protocol on a Flickr-layout folder (R@K both ways) or a catalog (mAP, NDCG@10)")
    ev.add_argument("--data", required=True)
    ev.add_argument("--limit", type=int, help="evaluate on the first N items only")
    ev.add_argument("--captions", default="captions.jsonl",
                    help="the captions file of a Flickr-layout folder (e.g. captions.zh.jsonl)")
    ev.add_argument("--knowledge", help="a training collection (Flickr layout) as background knowledge in the graph; "
                    "its hashed holdout tunes full and nnn")
    ev.add_argument("--relevance", metavar="KEY,KEY", help=RELEVANCE_HELP)
    ev.add_argument("--per-query", metavar="FILE", help="write one JSON line per system, direction and query")
    ev.add_argument("--plot", metavar="FILE.png", help="draw the figures as a bar chart")
    ev.add_argument("--workdir", help="keep the benchmark's workspace here (default: a temporary folder)")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_eval)

    tn = sub.add_parser("tune", parents=[common], help="tune the fusion weights search uses on a dev split")
    tn.add_argument("--data", help="a labelled folder (catalog, MedPix, Flickr layout) whose benchmark dev split "
                    "tunes the weights; default: the workspace's own collection (each record's text finds it)")
    tn.add_argument("--knowledge", help="with a Flickr-layout --data: its training collection")
    tn.add_argument("--relevance", metavar="KEY,KEY", help=RELEVANCE_HELP)
    tn.add_argument("--quiet", action="store_true", help="no progress bars")
    tn.add_argument("--json", action="store_true")
    tn.set_defaults(func=cmd_tune)


def _add_app_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """ui, serve, and the local Neo4j server."""
    ui = sub.add_parser("ui", parents=[common], help="the Streamlit explorer over the workspace")
    ui.add_argument("--port", type=int, default=8501)
    ui.add_argument("--address", default="127.0.0.1", help="interface to listen on (default loopback only)")
    ui.set_defaults(func=cmd_ui)

    srv = sub.add_parser("serve", parents=[common], help="the HTTP API (FastAPI; docs at /docs)")
    srv.add_argument("--host", default="127.0.0.1", help="interface to listen on (default loopback only; "
                     "any other needs MMKG_API_TOKEN)")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--ingest-root", help="the one folder POST /ingest may read (env MMKG_INGEST_ROOT; "
                     "default: API ingest off)")
    srv.set_defaults(func=cmd_serve)

    neo = sub.add_parser("neo4j", help="the local Neo4j server")
    neo_sub = neo.add_subparsers(dest="action", required=True)
    for action in ("start", "stop", "status"):
        p = neo_sub.add_parser(action, parents=[common])
        if action == "start":
            p.add_argument("--port", type=int, default=7687)
            p.add_argument("--data-dir", help="default: the workspace's neo4j/ folder")
            p.add_argument("--foreground", action="store_true",
                           help="stay in the foreground; Ctrl-C or SIGTERM stops the server")
        p.set_defaults(func=cmd_neo4j)


def _log_level(args: argparse.Namespace) -> int:
    """--log-level, else the settings' (MMKG_LOG_LEVEL); WARNING when the settings are unreadable (the command
    reports why)."""
    try:
        name = Settings.load(log_level=getattr(args, "log_level", None)).log_level
    except MmkgError:
        name = "WARNING"
    level = getattr(logging, name.upper(), None)
    return level if isinstance(level, int) else logging.WARNING


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=_log_level(args), format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")  # a dependency's deprecation
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except MmkgError as exc:
        print(f"mmkg: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("mmkg: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not a user's mistake: one line, the traceback only on request
        log.debug("internal error", exc_info=True)
        print(f"mmkg: internal error: {type(exc).__name__}: {exc} (rerun with --log-level DEBUG)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
