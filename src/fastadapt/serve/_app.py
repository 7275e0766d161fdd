"""The adapt-and-predict HTTP service (FastAPI): versioned JSON endpoints, a cache of adapted states, API keys,
limits with clear errors, a bounded worker pool, Prometheus metrics and a playground page."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any

import torch
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._cache import AdaptedCache
from ._models import Adapted, InputError, ServedModel
from ._schemas import (
    AdaptRequest,
    AdaptResponse,
    Example,
    Item,
    PredictRequest,
    PredictResponse,
    RecommendRequest,
    RecommendResponse,
    _errors,
)

API = "/v1"


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; a request over a limit is refused naming the limit and the value."""

    body_bytes: int = 2_000_000
    support: int = 500
    ways: int = 100
    inputs: int = 1_000
    steps: int = 100
    top: int = 100
    image_pixels: int = 4_000_000
    text_chars: int = 2_000


class ServiceError(Exception):
    """An error answered as ``{"error": {"code", "message", ...}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers, extra


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers)


def _limit(name: str, value: int, maximum: int, what: str) -> None:
    if value > maximum:
        raise ServiceError(
            422,
            "limit_exceeded",
            f"{what}: {value} is over the limit of {maximum} ({name})",
            limit=name,
            value=value,
            max=maximum,
        )


# -- body size and metrics (plain ASGI: an exception raised while the body streams in reaches FastAPI's handlers
# as it is, which a BaseHTTPMiddleware's task group would wrap) -------------------------------------------------
def _too_large(size: int | None, limit: int) -> JSONResponse:
    told = f"{size} bytes" if size is not None else "the streamed body"
    return _error(
        413,
        "limit_exceeded",
        f"request body: {told} is over the limit of {limit} bytes (body_bytes)",
        limit="body_bytes",
        value=size,
        max=limit,
    )


class _TooLarge(StarletteHTTPException):
    """A body over the limit while it streams in (no Content-Length); FastAPI passes HTTP exceptions through."""

    def __init__(self) -> None:
        super().__init__(413, "request body over the limit")


class BodyLimit:
    """Refuses a request body over ``limit`` bytes with the service's JSON 413: at once from its Content-Length,
    or as it streams in. (FastAPI's ``max_body_size`` answers a declared size in plain text.)"""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await _too_large(int(declared), self.limit)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        await self.app(scope, counted, send)


class Measured:
    """Counts each request by route and status and times it (Prometheus)."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            endpoint = getattr(scope.get("route"), "path", "other")
            self.service.requests.labels(endpoint, str(status)).inc()
            self.service.latency.labels(endpoint).observe(time.perf_counter() - began)


# -- the app -------------------------------------------------------------------------------------
class Service:
    """The state behind the endpoints: models, cache, worker pool, keys, metrics."""

    def __init__(
        self,
        models: list[ServedModel],
        api_key_hashes: set[str] | None,
        limits: Limits,
        cache_items: int,
        cache_bytes: int,
        max_concurrency: int,
        timeout_s: float,
        max_queue: int = 64,
    ) -> None:
        names = [m.name for m in models]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"two models are named {repeated[0]!r}; name them apart (--name)")
        if max_concurrency < 1 or max_queue < 0 or timeout_s <= 0:
            raise ValueError("max_concurrency must be >= 1, max_queue >= 0 and timeout_s > 0")
        self.max_queue = max_queue
        self.models = {m.name: m for m in models}
        self.keys = api_key_hashes
        self.limits, self.timeout_s, self.max_concurrency = limits, timeout_s, max_concurrency
        self.registry = CollectorRegistry()
        self.requests = Counter("fastadapt_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram(
            "fastadapt_request_seconds",
            "HTTP request latency",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.cache_events = Counter("fastadapt_cache", "adapted-state cache events", ["event"], registry=self.registry)
        self.cache = AdaptedCache(cache_items, cache_bytes, lambda event: self.cache_events.labels(event).inc())
        Gauge("fastadapt_cache_items", "adapted states held", registry=self.registry).set_function(
            lambda: len(self.cache)
        )
        Gauge("fastadapt_cache_bytes", "bytes of adapted states held", registry=self.registry).set_function(
            lambda: self.cache.nbytes
        )
        self.pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="adapt")
        self.busy = 0  # jobs running or waiting for a worker

    def model(self, name: str) -> ServedModel:
        if name not in self.models:
            raise ServiceError(404, "unknown_model", f"no model {name!r}; served: {', '.join(sorted(self.models))}")
        return self.models[name]

    def authorize(self, request: Request) -> None:
        if self.keys is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        given = hashlib.sha256(key.strip().encode()).hexdigest() if scheme.lower() == "bearer" else ""
        matched = False
        for known in self.keys:  # every hash compared, in constant time each
            matched |= hmac.compare_digest(given, known)
        if not matched:
            raise ServiceError(
                401,
                "unauthorized",
                "missing or wrong API key: send 'Authorization: Bearer KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def run(self, work: Any) -> Any:
        """``work()`` in the worker pool within the timeout; 503 with Retry-After when the pool and its queue
        (``max_queue`` waiting) are full."""
        if self.busy >= self.max_concurrency + self.max_queue:
            raise ServiceError(
                503,
                "busy",
                f"all {self.max_concurrency} workers are busy and {self.max_queue} requests wait; retry later",
                headers={"Retry-After": "1"},
            )
        self.busy += 1
        future = asyncio.get_running_loop().run_in_executor(self.pool, work)

        def finished(_: Any) -> None:  # when the work ends, not when the request gives up: a thread cannot be stopped
            self.busy -= 1

        future.add_done_callback(finished)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            raise ServiceError(
                503,
                "timeout",
                f"the request took longer than {self.timeout_s:g} s (--timeout); retry later",
                headers={"Retry-After": "5"},
            ) from None

    def check_support(self, support: list[Example]) -> None:
        _limit("support", len(support), self.limits.support, "support examples")
        _limit("ways", len({json.dumps(e.label) for e in support}), self.limits.ways, "support labels")

    async def adapted(
        self, served: ServedModel, support: list[Example], steps: int | None, seed: int
    ) -> tuple[str, Adapted, bool]:
        if served.kind == "recommendation":
            raise ServiceError(422, "wrong_endpoint", f"model {served.name!r} recommends: use {API}/recommend")
        self.check_support(support)
        if steps is not None:
            _limit("steps", steps, self.limits.steps, "inner steps")
        effective = served.steps if steps is None else steps
        canonical = json.dumps(
            {
                "checkpoint": served.checkpoint_hash,
                "model": served.name,
                "support": [[e.input, e.label] for e in support],
                "steps": effective,
                "seed": seed,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        key = hashlib.sha256(canonical.encode()).hexdigest()
        inputs, labels = [e.input for e in support], [e.label for e in support]

        async def compute() -> Adapted:
            return await self.run(lambda: served.adapt(inputs, labels, effective, seed))  # type: ignore[no-any-return]

        value, cached = await self.cache.get_or_compute(key, compute)
        return key, value, cached


def create_app(
    models: list[ServedModel],
    *,
    api_key_hashes: set[str] | None = None,
    limits: Limits = Limits(),
    cache_items: int = 256,
    cache_bytes: int = 256 * 2**20,
    max_concurrency: int = 2,
    timeout_s: float = 30.0,
    max_queue: int = 64,
) -> FastAPI:
    """The service over ``models`` (see ``fastadapt serve``). ``api_key_hashes``: sha256 hex digests of the
    accepted keys, or ``None`` for no authentication."""
    service = Service(models, api_key_hashes, limits, cache_items, cache_bytes, max_concurrency, timeout_s, max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        lifespan=lifespan,
        title="fastadapt",
        version="1",
        summary="Adapt a meta-trained model to a few labelled examples and predict.",
        openapi_url=f"{API}/openapi.json",
        docs_url=f"{API}/docs",
        redoc_url=None,
    )
    app.state.service = service
    auth = [Depends(service.authorize)]

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return _error(error.status, error.code, error.message, error.headers, **error.extra)

    @app.exception_handler(InputError)
    async def input_error(request: Request, error: InputError) -> JSONResponse:
        extra = {} if error.limit is None else {"limit": error.limit, "value": error.value, "max": error.maximum}
        return _error(422, "invalid_input", str(error), **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return _error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if isinstance(error, _TooLarge):
            return _too_large(None, limits.body_bytes)
        codes = {404: "not_found", 405: "method_not_allowed"}
        return _error(error.status_code, codes.get(error.status_code, "http_error"), str(error.detail))

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "models": len(service.models)}

    @app.get("/metrics", dependencies=auth, response_class=Response, responses=_errors(401))
    async def metrics() -> Response:
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(f"{API}/models", dependencies=auth, responses=_errors(401))
    async def list_models() -> dict[str, Any]:
        return {"models": [m.summary for m in service.models.values()]}

    @app.get(f"{API}/models/{{name}}/example", dependencies=auth, responses=_errors(401, 404, 503))
    async def example(name: str, seed: int = Query(default=0, ge=0, le=2**63 - 1)) -> dict[str, Any]:
        """A support set and query inputs from the run's own test split (the playground's example set)."""
        served = service.model(name)
        if served.kind == "recommendation":
            raise ServiceError(422, "wrong_endpoint", f"model {name!r} recommends; it has no example support set")
        split = served.experiment.config.evaluation.split
        source = served.experiment.sources[split]
        task = await service.run(lambda: source.sample(torch.Generator().manual_seed(seed)))
        shots = min(len(task.query_x), 5)

        def label(y: torch.Tensor) -> Any:
            return float(y.reshape(-1)[0]) if served.kind == "regression" else f"class {int(y)}"

        return {
            "support": [
                {"input": x.tolist(), "label": label(y)} for x, y in zip(task.support_x, task.support_y, strict=True)
            ],
            "inputs": [x.tolist() for x in task.query_x[:: max(1, len(task.query_x) // shots)][:shots]],
            "answers": [label(y) for y in task.query_y[:: max(1, len(task.query_y) // shots)][:shots]],
        }

    @app.post(f"{API}/adapt", dependencies=auth, response_model=AdaptResponse, responses=_errors(401, 404, 413, 503))
    async def adapt(body: AdaptRequest) -> AdaptResponse:
        served = service.model(body.model)
        key, value, cached = await service.adapted(served, body.support, body.steps, body.seed)
        return AdaptResponse(adapted_id=key, labels=value.labels, adapt_ms=value.adapt_ms, cached=cached)

    @app.post(
        f"{API}/predict",
        dependencies=auth,
        response_model=PredictResponse,
        response_model_exclude_none=True,
        responses=_errors(401, 404, 413, 503),
    )
    async def predict(body: PredictRequest) -> PredictResponse:
        _limit("inputs", len(body.inputs), service.limits.inputs, "inputs")
        if body.adapted_id is not None:
            if body.model is not None or body.support is not None:
                raise ServiceError(422, "invalid_request", "give adapted_id, or model and support, not both")
            found = service.cache.get(body.adapted_id)
            if found is None:
                raise ServiceError(
                    404,
                    "unknown_adapted_id",
                    f"adapted_id {body.adapted_id!r} is unknown or was evicted from the "
                    f"cache; send {API}/adapt again (or model and support here)",
                )
            key, value = body.adapted_id, found
        elif body.model is not None and body.support is not None:
            key, value, _ = await service.adapted(service.model(body.model), body.support, body.steps, body.seed)
        else:
            raise ServiceError(422, "invalid_request", "give adapted_id, or model and support")
        served = service.model(value.model)
        out = await service.run(lambda: served.predict(value, body.inputs, body.top_k))
        if served.kind == "regression":
            return PredictResponse(adapted_id=key, values=out)
        return PredictResponse(adapted_id=key, predictions=out)

    @app.post(
        f"{API}/recommend", dependencies=auth, response_model=RecommendResponse, responses=_errors(401, 404, 413, 503)
    )
    async def recommend(body: RecommendRequest) -> RecommendResponse:
        served = service.model(body.model)
        if served.kind != "recommendation":
            raise ServiceError(422, "wrong_endpoint", f"model {body.model!r} is a {served.kind} model: use {API}/adapt")
        _limit("support", len(body.ratings), service.limits.support, "ratings")
        _limit("top", body.top, service.limits.top, "top")
        if body.steps is not None:
            _limit("steps", body.steps, service.limits.steps, "inner steps")
        features = body.user_features.model_dump() if body.user_features is not None else {}
        ratings = [(r.item_id, r.rating) for r in body.ratings]
        found = await service.run(lambda: served.recommend(ratings, features, body.top, body.steps))
        return RecommendResponse(items=[Item(**item) for item in found])

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground() -> HTMLResponse:
        return HTMLResponse((resources.files("fastadapt.serve") / "playground.html").read_text())

    app.add_middleware(BodyLimit, limit=limits.body_bytes)
    app.add_middleware(Measured, service=service)  # outermost: a refused body is counted too
    return app
