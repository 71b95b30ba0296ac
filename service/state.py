"""What the API server keeps between requests: the encoder, one read-only view of the collection, the
writer's lock and the ingest jobs.

Readers never wait for a writer: searches run on a read-only view (the embedded store opened without
its lock), which is replaced by a fresh one when the workspace's revision moves (every writer bumps it
after each durable change: this server's own ingest and delete, or `mmkg ingest` in another process).
A reload is built beside the view in use and swapped in; the old view is closed once its in-flight
request is done. After a delete made through the API the reload happens before the response, so
the deleted record is never served again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkg.collection import open_collection
from mmkg.encoders.factory import create_encoder
from mmkg.errors import MmkgError, UserInputError
from mmkg.ingest.detect import open_source
from mmkg.ingest.pipeline import Ingestor, resolve_record_ids
from mmkg.service.search import Searcher
from mmkg.settings import Settings
from mmkg.workspace import Workspace

log = logging.getLogger(__name__)

MAX_JOBS_KEPT = 100


class WriteInProgressError(MmkgError):
    """Another ingest or delete is running in this server: one writer at a time."""


class JobCancelled(MmkgError):
    """The server is shutting down: the ingest stops between batches (and resumes on the next run)."""


@dataclass
class Job:
    id: str
    path: str
    state: str = "queued"
    """queued, running, done, failed or cancelled."""
    done: int = 0
    total: int | None = None
    report: dict[str, Any] | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "state": self.state,
            "progress": {"done": self.done, "total": self.total},
            "report": self.report,
            "error": self.error,
            "created": self.created,
            "finished": self.finished,
        }


class _View:
    """One opened read-only collection and its searcher."""

    def __init__(self, searcher: Searcher, closer: ExitStack, signature: tuple[Any, ...]) -> None:
        self.searcher = searcher
        self.closer = closer
        self.signature = signature

    def close(self) -> None:
        with self.searcher._lock:  # wait for the request using it
            self.closer.close()


class ServiceState:
    """The collection as the API serves it; thread-safe."""

    def __init__(self, settings: Settings, ingest_root: Path | None = None) -> None:
        self.settings = settings
        self.ingest_root = ingest_root.resolve() if ingest_root is not None else None
        self.workspace = Workspace(Path(settings.home))
        self._encoder: Any = None
        self._view: _View | None = None
        self._view_lock = threading.Lock()
        self._reloading = False
        self.write_lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self._jobs_lock = threading.Lock()
        self.stopping = threading.Event()

    # --- the read-only view ---------------------------------------------------------------

    def encoder(self) -> Any:
        if self._encoder is None:
            self._encoder = create_encoder(self.settings)
        return self._encoder

    def signature(self) -> tuple[Any, ...]:
        """What a view was opened on: the workspace revision and the trained GNN (a retrain changes search)."""
        gnn = self.workspace.models_dir / "gnn" / "gnn.json"
        try:
            gnn_mtime = gnn.stat().st_mtime_ns
        except OSError:
            gnn_mtime = None
        return (self.workspace.revision(), gnn_mtime)

    def searcher(self) -> Searcher:
        """The current view's searcher; a newer revision starts a reload in the background (the first
        view, and none yet, is loaded now)."""
        view = self._view
        if view is None:
            return self.reload().searcher
        if view.signature != self.signature() and not self.write_lock.locked():
            self._reload_in_background()
        return view.searcher

    def reload(self) -> _View:
        """Open a fresh read-only view now and swap it in."""
        with self._view_lock:
            signature = self.signature()
            if self._view is not None and self._view.signature == signature:
                return self._view
            view = self._open_view(signature)
            old, self._view = self._view, view
        if old is not None:
            threading.Thread(target=old.close, name="mmkg-close-view", daemon=True).start()
        return view

    def _open_view(self, signature: tuple[Any, ...]) -> _View:
        stack = ExitStack()
        try:
            col = stack.enter_context(open_collection(self.settings, read_only=True, encoder=self.encoder()))
            searcher = Searcher(col)
            searcher.retriever(None)  # load the graph state now, not in the first request
        except BaseException:
            stack.close()
            raise
        return _View(searcher, stack, signature)

    def _reload_in_background(self) -> None:
        with self._view_lock:
            if self._reloading:
                return
            self._reloading = True

        def work() -> None:
            try:
                self.reload()
            except Exception:  # the old view keeps serving; the next request tries again
                log.warning("reloading the collection failed", exc_info=True)
            finally:
                self._reloading = False

        threading.Thread(target=work, name="mmkg-reload", daemon=True).start()

    def close(self) -> None:
        self.stopping.set()
        with self._view_lock:
            view, self._view = self._view, None
        if view is not None:
            view.close()

    # --- writes ---------------------------------------------------------------------------

    def writer(self) -> AbstractContextManager[Any]:
        """The collection opened for writing, under the server's one-writer lock."""
        if not self.write_lock.acquire(blocking=False):
            raise WriteInProgressError("an ingest or delete is already running; try again when it is done")
        stack = ExitStack()
        stack.callback(self.write_lock.release)
        try:
            col = stack.enter_context(open_collection(self.settings, encoder=self.encoder()))
        except BaseException:
            stack.close()
            raise
        return _Writer(stack, col)

    def delete(self, given: str) -> dict[str, Any]:
        with self.writer() as col:
            resolved = resolve_record_ids(col.store, [given])
            if resolved.ambiguous:
                candidates = resolved.ambiguous[given]
                raise AmbiguousIdError(
                    f"{given!r} names {len(candidates)} records ({', '.join(candidates)}); use its rec: id"
                )
            if not resolved.found:
                raise LookupError(f"no record {given!r}")
            deleted = Ingestor(self.settings, col.store, col.vectors, col.encoder).delete_records(resolved.found)
        self.reload()
        return {"deleted": deleted}

    def resolve_ingest_path(self, raw: str) -> Path:
        """A path from a request, allowed only inside the configured ingest root (symlinks resolved)."""
        if self.ingest_root is None:
            raise ForbiddenError("ingest over the API is off: start `mmkg serve --ingest-root DIR` to allow one folder")
        if "\x00" in raw:
            raise UserInputError("the path contains a NUL byte")
        candidate = (self.ingest_root / raw).resolve()
        if not candidate.is_relative_to(self.ingest_root):
            raise ForbiddenError(f"the path must be inside the ingest root {self.ingest_root}")
        if not candidate.exists():
            raise LookupError(f"nothing at {raw!r} inside the ingest root")
        return candidate

    def start_ingest(self, path: Path, fmt: str | None, mapping: Path | None, sync: bool) -> Job:
        source = open_source(path, fmt, mapping)  # a bad layout is the request's error, before any job
        if self.write_lock.locked():
            raise WriteInProgressError("an ingest or delete is already running; try again when it is done")
        job = Job(id=uuid.uuid4().hex[:12], path=str(path))
        with self._jobs_lock:
            self.jobs[job.id] = job
            for old in sorted(self.jobs.values(), key=lambda j: j.created)[:-MAX_JOBS_KEPT]:
                del self.jobs[old.id]
        threading.Thread(target=self._run_ingest, args=(job, source, sync), name=f"mmkg-ingest-{job.id}").start()
        return job

    def _run_ingest(self, job: Job, source: Any, sync: bool) -> None:
        def progress(done: int, total: int | None) -> None:
            job.done, job.total = done, total
            if self.stopping.is_set():
                raise JobCancelled("the server is shutting down")

        try:
            try:
                total = len(source)
            except TypeError:
                total = None
            job.total, job.state = total, "running"
            with self.writer() as col:
                ingestor = Ingestor(self.settings, col.store, col.vectors, col.encoder)
                report = ingestor.run(source.records(), source.name, total=total, progress=False, sync=sync,
                                      on_progress=progress)
            job.report = report.to_json()
            job.state = "done"
        except JobCancelled:
            job.state, job.error = "cancelled", "the server stopped; ingest the same path again to finish"
        except MmkgError as exc:
            job.state, job.error = "failed", str(exc)
        except Exception as exc:  # a bug: reported on the job, never a traceback to the client
            log.exception("ingest job %s failed", job.id)
            job.state, job.error = "failed", f"internal error: {type(exc).__name__}: {exc}"
        finally:
            job.finished = time.time()
        if not self.stopping.is_set():
            try:
                self.reload()
            except Exception:
                log.warning("reloading after the ingest failed", exc_info=True)

    def job(self, job_id: str) -> Job:
        with self._jobs_lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise LookupError(f"no job {job_id!r}")
        return job

    def running_jobs(self) -> Iterator[Job]:
        with self._jobs_lock:
            return iter([j for j in self.jobs.values() if j.state in ("queued", "running")])


class _Writer:
    def __init__(self, stack: ExitStack, col: Any) -> None:
        self._stack = stack
        self.col = col

    def __enter__(self) -> Any:
        return self.col

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


class ForbiddenError(MmkgError):
    """The request asks for something this server is configured not to do (a path outside the root)."""


class AmbiguousIdError(UserInputError):
    """A source id that several sources use."""
