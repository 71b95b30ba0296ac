"""Suite-wide fixtures: the local Neo4j server for tests marked `neo4j`.

The server is started once per session with the project's own `mmkg.graph.neo4j_server.start()` (the
code behind `mmkg neo4j start`) on a free port in a temporary workspace, and stopped at the end. Set
MMKG_TEST_NEO4J_URI (with MMKG_TEST_NEO4J_USER / MMKG_TEST_NEO4J_PASSWORD, default NEO4J_USER /
NEO4J_PASSWORD) to run against a server of your own instead; its database is wiped between tests.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mmkg.settings import Settings


@dataclass(frozen=True)
class Neo4jTestServer:
    uri: str
    user: str
    password: str
    settings: Settings | None
    """The workspace settings of a server this session started (None for an external one)."""
    port: int | None




@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jTestServer]:
    external = os.environ.get("MMKG_TEST_NEO4J_URI")
    if external:
        user = os.environ.get("MMKG_TEST_NEO4J_USER") or os.environ.get("NEO4J_USER") or "neo4j"
        password = os.environ.get("MMKG_TEST_NEO4J_PASSWORD") or os.environ.get("NEO4J_PASSWORD")
        if not password:
            pytest.fail("MMKG_TEST_NEO4J_URI is set but no password (MMKG_TEST_NEO4J_PASSWORD or NEO4J_PASSWORD)")
        yield Neo4jTestServer(external, user, password, None, None)
        return

    from mmkg.graph import neo4j_server

    if shutil.which("java") is None:
        pytest.skip("Java 17 is needed for the Neo4j tests")
    if shutil.which("mvn") is None and not neo4j_server.jar_is_current():
        pytest.skip("Maven is needed to build the local Neo4j server for the Neo4j tests")
    # Settings built directly, not from the environment: a developer's NEO4J_* must not leak in.
    settings = Settings(home=tmp_path_factory.mktemp("neo4j-workspace"))
    port = neo4j_server.free_port()
    neo4j_server.start(settings, port=port)
    try:
        conn = neo4j_server.connection_settings(settings)
        yield Neo4jTestServer(conn.uri, conn.user, conn.password, settings, port)
    finally:
        neo4j_server.stop(settings)


def wipe_neo4j(server: Neo4jTestServer) -> None:
    """Remove every node and relationship; constraints and indexes stay."""
    from neo4j import GraphDatabase

    with (
        GraphDatabase.driver(server.uri, auth=(server.user, server.password)) as driver,
        driver.session() as session,
    ):  # CALL ... IN TRANSACTIONS needs an auto-commit transaction, hence session.run
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()


@pytest.fixture
def neo4j_store_factory(neo4j_server: Neo4jTestServer) -> Iterator[Callable[[], object]]:
    """A callable that opens a new Neo4jGraphStore on the test database, which starts out empty."""
    from mmkg.graph.neo4j_store import Neo4jGraphStore

    wipe_neo4j(neo4j_server)
    opened: list[Neo4jGraphStore] = []

    def make() -> Neo4jGraphStore:
        store = Neo4jGraphStore(neo4j_server.uri, neo4j_server.user, neo4j_server.password)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def neo4j_store(neo4j_store_factory: Callable[[], object]) -> object:
    """A Neo4jGraphStore on an empty database."""
    return neo4j_store_factory()


# --- real collections and a small trained workspace, for tests across the suite -------------

SHARED = Path(os.environ.get("MMKG_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared data folder is missing: {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A workspace whose lit heads were trained on 64 Flickr8k train images (a smoke model, not a good one)."""
    from mmkg.training.lit_train import train_lit

    home = tmp_path_factory.mktemp("trained-home")
    train_lit(
        shared_data / "flickr8k" / "train",
        Settings.load(home=home),
        max_images=64,
        epochs=2,
        holdout=8,
        hflip=False,
        progress=False,
    )
    return home


@pytest.fixture(scope="session")
def catalog_gallery(trained_home: Path):  # type: ignore[no-untyped-def]
    """A factory: `catalog_gallery(folder, home, gallery_size=None)` ingests a catalog folder's first
    `gallery_size` records (all by default) into `home` as a benchmark gallery with the trained smoke model, and
    returns (gallery, encoder, settings, every record of the folder)."""
    from mmkg.encoders.factory import create_encoder
    from mmkg.evaluation.gallery import Gallery
    from mmkg.ingest.catalog import CatalogSource
    from mmkg.ingest.records import Record

    def make(folder: Path, home: Path, gallery_size: int | None = None) -> tuple[Any, Any, Settings, list[Any]]:
        settings = Settings.load(home=trained_home)
        encoder = create_encoder(settings)
        source = CatalogSource.open(folder)
        records = [r for r in source.records() if isinstance(r, Record)]
        size = len(records) if gallery_size is None else gallery_size
        return Gallery.ingest(records[:size], source.name, settings, encoder, home), encoder, settings, records

    return make


@pytest.fixture
def home(tmp_path: Path, trained_home: Path) -> Path:
    """A fresh workspace holding only the trained heads (and the feature cache, to stay fast)."""
    target = tmp_path / "home"
    shutil.copytree(trained_home, target)
    return target


@pytest.fixture(scope="session")
def fashion_subset(shared_data: Path):  # type: ignore[no-untyped-def]
    """A factory: `fashion_subset(dest, n)` copies the first n products (of those whose id is in `ids`, when
    given) into a catalog folder of its own."""

    def make(dest: Path, n: int, ids: Collection[str] | None = None) -> Path:
        return _fashion_subset(shared_data, dest, n, ids)

    return make


def _fashion_subset(shared_data: Path, dest: Path, n: int, ids: Collection[str] | None = None) -> Path:
    """The first n fashion products (among `ids`) with their images, as a catalog folder of its own."""
    src = shared_data / "fashion"
    (dest / "images").mkdir(parents=True)
    with open(src / "products.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        chosen = (row for row in reader if ids is None or row["id"] in ids)
        rows = [row for _, row in zip(range(n), chosen, strict=False)]
        fields = reader.fieldnames or []
    with open(dest / "products.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            shutil.copy(src / row["image"], dest / row["image"])
            writer.writerow(row)
    return dest


# --- process lifecycle helpers (mmkg serve / ui / neo4j stop what they started) ----------------


class ProcessTree:
    """Look at a process and its descendants through /proc, and at loopback ports."""

    @staticmethod
    def descendants(pid: int) -> set[int]:
        found: set[int] = set()
        todo = [pid]
        while todo:
            current = todo.pop()
            for task in Path(f"/proc/{current}/task").glob("*"):
                try:
                    children = (task / "children").read_text().split()
                except OSError:
                    continue
                for child in map(int, children):
                    if child not in found:
                        found.add(child)
                        todo.append(child)
        return found

    @staticmethod
    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"

    @staticmethod
    def port_free(port: int) -> bool:
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # SO_REUSEADDR: a connection of the stopped server left in TIME_WAIT is not a bound port; on Linux
            # the bind still fails while any socket listens there, which is what "left bound" means.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
        return True

    @staticmethod
    def wait_port(port: int, timeout: float, proc: object = None) -> None:
        import socket
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:  # type: ignore[attr-defined]
                raise AssertionError(f"the process exited with {proc.poll()} before port {port} opened")  # type: ignore[attr-defined]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.2)
        raise AssertionError(f"nothing answered on port {port} within {timeout} s")


@pytest.fixture
def proc_tree() -> type[ProcessTree]:
    return ProcessTree
