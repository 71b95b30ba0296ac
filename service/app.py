"""The HTTP API: a FastAPI app over one workspace (`mmkg serve` runs it under uvicorn).

Requests and responses are Pydantic models; every error is JSON `{"error": "..."}` with its status,
never a traceback. With a token configured (MMKG_API_TOKEN), every endpoint but /healthz needs
`Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mmkg.errors import BadImageError, MmkgError, ModelNotReadyError, StoreUnavailableError, UserInputError
from mmkg.ingest.images import decode_image
from mmkg.retrieval.search import MAX_QUERY_CHARS
from mmkg.retrieval.search import Query as SearchQuery
from mmkg.service.state import AmbiguousIdError, ForbiddenError, ServiceState, WriteInProgressError
from mmkg.settings import Settings

log = logging.getLogger(__name__)

MAX_K = 1000
FORM_OVERHEAD = 64 * 1024
"""Bytes a multipart upload may carry beyond the image itself (boundaries, the other fields)."""


# --- models at the edge ----------------------------------------------------------------------

Target = Literal["images", "texts"]
Mode = Literal["encoder", "gnn", "full"]


class SearchRequest(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="the query text")
    k: int = Field(10, ge=1, le=MAX_K)
    target: Target = "images"
    mode: Mode | None = Field(None, description="default: full when a GNN is trained, else encoder")
    where: dict[str, str] | None = Field(None, description='keep hits with these attributes: {"baseColour": "Blue"}')


class SearchResponse(BaseModel):
    query: str
    target: Target
    results: list[dict[str, Any]] = Field(description="the hit objects `mmkg search --json` prints")
    unmatched_words: list[str] = Field(default_factory=list,
                                       description="query words no record states: the results only come near them")
    unlike_collection: bool = Field(False, description="the query photo is unlike every photo in the collection: "
                                                      "the results match it only loosely")


class ExplainRequest(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    id: str = Field(min_length=1, description="an image or text id from a search result")
    mode: Mode | None = None


class IngestRequest(BaseModel):
    path: str = Field(min_length=1, description="a collection folder or catalog CSV, relative to the ingest root")
    format: Literal["flickr", "catalog", "coco", "medpix"] | None = None
    mapping: str | None = Field(None, description="a JSON column mapping, relative to the ingest root")
    sync: bool = Field(False, description="also delete the source's records it no longer holds")


class JobResponse(BaseModel):
    id: str
    path: str
    state: str
    progress: dict[str, int | None]
    report: dict[str, Any] | None = None
    error: str | None = None
    created: float
    finished: float | None = None


class ErrorResponse(BaseModel):
    error: str


# --- errors ----------------------------------------------------------------------------------


class BodyTooLargeError(Exception):
    pass


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _status_of(exc: Exception) -> int:
    if isinstance(exc, ForbiddenError):
        return 403
    if isinstance(exc, LookupError):
        return 404
    if isinstance(exc, WriteInProgressError | AmbiguousIdError):
        return 409
    if isinstance(exc, BadImageError):
        return 413 if "too large" in str(exc) else 400
    if isinstance(exc, ModelNotReadyError | StoreUnavailableError):
        return 503
    if isinstance(exc, UserInputError):
        return 400
    if type(exc).__name__ == "StoreLockedError":
        return 409
    return 400 if isinstance(exc, MmkgError) else 500


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return _error(422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(BodyTooLargeError)
    async def too_large(_: Request, exc: BodyTooLargeError) -> JSONResponse:
        return _error(413, str(exc))

    async def expected(_: Request, exc: Exception) -> JSONResponse:
        message = str(exc.args[0]) if isinstance(exc, LookupError) and exc.args else str(exc)
        return _error(_status_of(exc), message)

    app.add_exception_handler(MmkgError, expected)
    app.add_exception_handler(LookupError, expected)

    @app.exception_handler(Exception)
    async def failed(_: Request, exc: Exception) -> JSONResponse:
        """A bug: logged here with its traceback; the client gets one line."""
        log.error("internal error: %s", exc, exc_info=exc)
        return _error(500, f"internal error: {type(exc).__name__} (see the server log)")


# --- middleware ------------------------------------------------------------------------------


class Guard:
    """Bearer token on every path but /healthz, and a cap on request bodies (checked as they arrive)."""

    def __init__(self, app: ASGIApp, token: str | None, max_body: int) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.token is not None and scope.get("path") != "/healthz":
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                response = JSONResponse(
                    {"error": "missing or wrong bearer token (Authorization: Bearer $MMKG_API_TOKEN)"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _error(413, f"request body larger than {self.max_body} bytes")(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLargeError(f"request body larger than {self.max_body} bytes")
            return message

        await self.app(scope, counted, send)


# --- the app ---------------------------------------------------------------------------------


def create_app(settings: Settings, ingest_root: Path | None = None, state: ServiceState | None = None) -> FastAPI:
    """The API over `settings.home`; `ingest_root` is the one folder POST /ingest may read."""
    root = ingest_root if ingest_root is not None else (Path(settings.ingest_root) if settings.ingest_root else None)
    service = state or ServiceState(settings, root)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="mmkg",
        summary="Graph-based multimodal knowledge retrieval: search by text or image, with explanation paths.",
        version="0.1.0",
        lifespan=lifespan,
        responses={
            400: {"model": ErrorResponse},
            401: {"model": ErrorResponse},
            404: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
        },
    )
    app.state.service = service
    app.add_middleware(Guard, token=settings.api_token, max_body=settings.max_image_bytes + FORM_OVERHEAD)
    _install_error_handlers(app)
    for routes in (_service_routes, _search_routes, _item_routes, _write_routes):
        app.include_router(routes(service, settings))
    return app


def _service_routes(service: ServiceState, settings: Settings) -> APIRouter:
    """Liveness and the collection's counts."""
    router = APIRouter(tags=["service"])

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: answers without a token and without touching the collection."""
        return {"status": "ok"}

    @router.get("/stats")
    def stats() -> dict[str, Any]:
        """Node and edge counts, vectors per index, the workspace revision, running jobs."""
        searcher = service.searcher()
        with searcher._lock:
            nodes, edges = searcher.collection.store.counts()
            vectors = {
                name: len(index)
                for name, index in zip(("images", "texts", "entities"), searcher.collection.vectors, strict=True)
            }
        return {
            "nodes": nodes,
            "edges": edges,
            "vectors": vectors,
            "revision": service.workspace.revision(),
            "store": settings.store,
            "jobs_running": [j.id for j in service.running_jobs()],
        }

    return router


def _search_routes(service: ServiceState, settings: Settings) -> APIRouter:
    """Search by text or by an uploaded image, and the explanation of a result."""
    router = APIRouter(tags=["search"])

    @router.post("/search", response_model=SearchResponse)
    def search(req: SearchRequest) -> dict[str, Any]:
        """Text search: the same hits as `mmkg search --json`."""
        return service.searcher().answer(SearchQuery(text=req.text), req.text, req.k, req.target, req.mode,
                                         req.where)

    @router.post("/search/image", response_model=SearchResponse)
    def search_image(
        file: Annotated[UploadFile, File(description="the query image (size and pixel limits as for ingest)")],
        k: Annotated[int, Form(ge=1, le=MAX_K)] = 10,
        target: Annotated[Target, Form()] = "images",
        mode: Annotated[Mode | None, Form()] = None,
        where: Annotated[str | None, Form(description='a JSON object, e.g. {"baseColour": "Blue"}')] = None,
    ) -> dict[str, Any]:
        """Image search (multipart upload): the same hits as `mmkg search --image FILE --json`."""
        data = file.file.read(settings.max_image_bytes + 1)
        if len(data) > settings.max_image_bytes:
            raise BadImageError(f"image file too large (> {settings.max_image_bytes} bytes)")
        if not data:
            raise BadImageError("empty image file")
        image = decode_image(data, settings.max_image_pixels, name=file.filename or "upload")
        return service.searcher().answer(SearchQuery(image=image), file.filename or "image", k, target, mode,
                                         _parse_where(where))

    @router.post("/explain")
    def explain(req: ExplainRequest) -> dict[str, Any]:
        """The graph paths from a text query to one result."""
        return service.searcher().explain(SearchQuery(text=req.text), req.id, req.mode)

    return router


def _item_routes(service: ServiceState, settings: Settings) -> APIRouter:
    """One stored item, and the items nearest to it."""
    router = APIRouter(tags=["items"])

    @router.get("/items/{item_id:path}/similar", response_model=SearchResponse)
    def similar(
        item_id: str, k: Annotated[int, Query(ge=1, le=MAX_K)] = 10, target: Annotated[Target | None, Query()] = None
    ) -> dict[str, Any]:
        """Items nearest to a stored image or text by its stored vector (nothing is re-encoded)."""
        hits = service.searcher().similar(item_id, k, target)
        shown: Target = target or ("images" if item_id.startswith("img:") else "texts")
        return {"query": item_id, "target": shown, "results": hits}

    @router.get("/items/{item_id:path}")
    def item(item_id: str) -> dict[str, Any]:
        """One image, text, entity or record: its properties, its record(s) and its entities."""
        return service.searcher().item(item_id)

    return router


def _write_routes(service: ServiceState, settings: Settings) -> APIRouter:
    """Deleting a record and ingesting a collection (one writer at a time)."""
    router = APIRouter(tags=["write"])

    @router.delete("/records/{record_id:path}")
    def delete_record(record_id: str) -> dict[str, Any]:
        """Delete a record (its source id, e.g. a product id, or its rec: id) from the graph and every index."""
        return service.delete(record_id)

    @router.post("/ingest", status_code=202, response_model=JobResponse)
    def ingest(req: IngestRequest) -> dict[str, Any]:
        """Ingest a collection inside the ingest root, as a background job (progress at /jobs/{id})."""
        path = service.resolve_ingest_path(req.path)
        mapping = service.resolve_ingest_path(req.mapping) if req.mapping else None
        return service.start_ingest(path, req.format, mapping, req.sync).to_json()

    @router.get("/jobs/{job_id}", response_model=JobResponse)
    def job(job_id: str) -> dict[str, Any]:
        return service.job(job_id).to_json()

    return router


def _parse_where(raw: str | None) -> dict[str, str] | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise UserInputError(f'where must be a JSON object such as {{"baseColour": "Blue"}}: {exc}') from exc
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise UserInputError('where must be a JSON object of strings, such as {"baseColour": "Blue"}')
    return value
