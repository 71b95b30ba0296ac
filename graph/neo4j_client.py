"""What every Neo4j-backed component shares: opening a driver, turning "the server is not there"
into one clear StoreUnavailableError, and running managed transactions on a closed-aware client.

`Neo4jGraphStore` (graph/neo4j_store.py) and `Neo4jVectorIndex` (index/neo4j_index.py) are
both `Neo4jClient`s, so a refused connection or a bad password reads the same from either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from neo4j import Driver, GraphDatabase, ManagedTransaction
from neo4j.exceptions import (
    AuthError,
    ClientError,
    ConfigurationError,
    DatabaseUnavailable,
    ServiceUnavailable,
    SessionExpired,
)

from mmkg.errors import MmkgError, StoreUnavailableError

T = TypeVar("T")

SCHEMES = frozenset({"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"})


def open_driver(
    uri: str, user: str, password: str, connection_timeout: float = 5.0, max_retry_time: float = 15.0
) -> Driver:
    """A driver for `uri`; a malformed URI is a StoreUnavailableError (nothing is contacted yet)."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme not in SCHEMES:
        raise StoreUnavailableError(f"invalid Neo4j URI {uri!r}: use bolt://host:port or neo4j://host:port")
    try:
        return GraphDatabase.driver(
            uri,
            auth=(user, password),
            connection_timeout=connection_timeout,
            max_transaction_retry_time=max_retry_time,
            notifications_min_severity="OFF",  # e.g. "type DESCRIBES does not exist yet" on an empty graph
        )
    except (ValueError, ConfigurationError) as exc:
        raise StoreUnavailableError(f"invalid Neo4j URI {uri!r}: {exc}") from exc


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def reason(exc: BaseException) -> str:
    """A few words for why a connection failed, from the driver's long message chain."""
    seen: BaseException | None = exc
    text = ""
    while seen is not None:
        text += " " + str(seen)
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        seen = seen.__cause__ or seen.__context__
    low = text.lower()
    if "connection refused" in low:
        return "connection refused"
    if "timed out" in low or "timeout" in low:
        return "connection timed out"
    if isinstance(exc, SessionExpired | ServiceUnavailable) and ("defunct" in low or "lost" in low or "closed" in low):
        return "the connection was lost"
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return first[:200]


class Neo4jClient:
    """A driver, a database and the address they came from; subclasses set these in `__init__`, and
    `what` (this client in messages: "Neo4j graph store at ...") and `purpose` (" for the images
    vectors", or '')."""

    _driver: Driver
    database: str
    uri: str
    user: str
    _closed: bool
    what: str = "Neo4j client"
    purpose: str = ""

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Driver failures that mean "the server is not there" become one clear StoreUnavailableError."""
        user = self.user or "?"
        try:
            yield
        except AuthError as exc:
            raise StoreUnavailableError(f"Neo4j rejected the credentials for user {user}") from exc
        except (ServiceUnavailable, SessionExpired, DatabaseUnavailable, OSError) as exc:
            raise StoreUnavailableError(
                f"cannot reach Neo4j at {self.uri or 'its address'}{self.purpose}: {reason(exc)}"
                " — start it with `mmkg neo4j start` or set NEO4J_URI"
            ) from exc
        except ClientError as exc:
            if exc.code == "Neo.ClientError.Security.AuthenticationRateLimit":
                raise StoreUnavailableError(
                    f"Neo4j rejected the credentials for user {user} (too many failed attempts; wait a moment)"
                ) from exc
            if exc.code == "Neo.ClientError.Security.CredentialsExpired":
                raise StoreUnavailableError(f"the Neo4j password of user {user} has expired; set a new one") from exc
            if exc.code == "Neo.ClientError.Database.DatabaseNotFound":
                raise StoreUnavailableError(f"Neo4j at {self.uri} has no database {self.database!r}") from exc
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise MmkgError(f"{self.what} is closed")

    def _write(self, fn: Callable[[ManagedTransaction], T]) -> T:
        self._check_open()
        with self._guard(), self._driver.session(database=self.database) as session:
            return session.execute_write(fn)

    def _read(self, fn: Callable[[ManagedTransaction], T]) -> T:
        self._check_open()
        with self._guard(), self._driver.session(database=self.database) as session:
            return session.execute_read(fn)

    def _query(self, cypher: str, **params: Any) -> list[dict[str, Any]]:
        def work(tx: ManagedTransaction) -> list[dict[str, Any]]:
            return [r.data() for r in tx.run(cypher, params)]

        return self._read(work)
