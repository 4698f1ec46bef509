"""The upstream catalogue client: data minimization, timeouts, bounded retries, breaker, TTL.

The upstream is a real HTTP server (uvicorn on 127.0.0.1 in a thread, answering the upstream
protocol) whose answers each test sets, so the client runs over real sockets: httpx is not
mocked. The ``catalogue-serve`` process is exercised end to end in test_processes.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

import vin as vinlib
from gateway.catalogue.backends import (
    Catalogue,
    CircuitBreaker,
    EmbeddedBackend,
    UpstreamBackend,
    build_catalogue,
    max_call_seconds,
)
from gateway.catalogue.exceptions import (
    CatalogueBadGateway,
    CatalogueTimeout,
    CatalogueUnavailable,
)
from gateway.config import Settings
from gateway.lookups.service import features_of
from tests.gateway.procs import free_port

VIN = "1HGCM82633A004352"
TYPE = {"id": "vt_1", "make": "Honda", "model": "Accord", "years": {"from": 2003, "to": 2007}}
TYPE_2 = {"id": "vt_2", "make": "Honda", "model": "Accord", "years": {"from": 2003, "to": 2005}}
PART = {"part_number": "X1", "name": "Oil filter", "category": "filters", "brand": "Mann"}
PART_2 = {"part_number": "X2", "name": "Air filter", "category": "filters", "brand": "Mann"}


@dataclass
class Seen:
    method: str
    path: str
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded unless bytes
    delay_s: float = 0.0  # before the answer starts
    drip_s: float = 0.0  # > 0: the body one byte at a time, this far apart


@dataclass
class Upstream:
    """A real HTTP catalogue whose answers the test sets (``types``, ``parts``, ``handler``)."""

    url: str = ""
    types: list[dict[str, Any]] = field(default_factory=lambda: [TYPE])
    parts: list[dict[str, Any]] = field(default_factory=lambda: [PART])
    categories: list[dict[str, Any]] = field(default_factory=lambda: [{"id": "filters"}])
    handler: Callable[[Seen], Reply] | None = None
    seen: list[Seen] = field(default_factory=list)

    def reset(self) -> None:
        fresh = Upstream(url=self.url)
        self.types, self.parts, self.categories = fresh.types, fresh.parts, fresh.categories
        self.handler, self.seen = None, []

    def answer(self, request: Seen) -> Reply:
        return self.default(request) if self.handler is None else self.handler(request)

    def default(self, request: Seen) -> Reply:
        """The healthy answers of the upstream protocol, from ``types``, ``parts``, ..."""
        if request.path == "/catalogue/v1/match":
            return Reply(body={"types": self.types})
        if request.path == "/catalogue/v1/parts":
            return Reply(body={"parts": self.parts})
        if request.path == "/catalogue/v1/categories":
            return Reply(body={"categories": self.categories})
        return Reply(404, {})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = Seen(scope["method"], scope["path"], body)
        self.seen.append(request)
        reply = self.answer(request)
        raw = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        await asyncio.sleep(reply.delay_s)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(raw))]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        if not reply.drip_s:
            await send({"type": "http.response.body", "body": raw})
            return
        for i in range(len(raw)):
            await asyncio.sleep(reply.drip_s)
            last = i == len(raw) - 1
            await send(
                {"type": "http.response.body", "body": raw[i : i + 1], "more_body": not last}
            )


@pytest.fixture(scope="module")
def server() -> Iterator[Upstream]:
    upstream = Upstream()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    upstream.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        upstream, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=1
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "the test upstream did not start"
        time.sleep(0.01)
    yield upstream
    uv.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
async def upstream(server: Upstream) -> AsyncIterator[Upstream]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
async def make(upstream: Upstream) -> AsyncIterator[Callable[..., Catalogue]]:
    made: list[Catalogue] = []

    def factory(
        *,
        url: str | None = None,
        timeout_s: float = 2.0,
        retries: int = 2,
        breaker: CircuitBreaker | None = None,
        cache_ttl_s: float = 300.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> Catalogue:
        backend = UpstreamBackend(
            url or upstream.url, timeout_s=timeout_s, retries=retries, breaker=breaker
        )
        catalogue = Catalogue(backend, cache_size=64, cache_ttl_s=cache_ttl_s, timer=timer)
        made.append(catalogue)
        return catalogue

    yield factory
    for catalogue in made:
        await catalogue.close()


def features() -> Any:
    return features_of(vinlib.decode(VIN))


async def test_upstream_never_receives_the_vin(upstream: Upstream, make: Any) -> None:
    catalogue = make()
    answer = await catalogue.lookup(features())
    assert answer.vehicle_type == TYPE and answer.parts == [PART]
    assert len(upstream.seen) == 2
    for request in upstream.seen:
        sent = request.body.decode() + request.path
        assert VIN not in sent
        assert VIN[-6:] not in sent  # not even the serial number
    sent_features = json.loads(upstream.seen[0].body)["features"]
    assert sent_features["wmi"] == "1HG" and sent_features["vds"] == "CM826"
    # a second lookup of the same vehicle features is served from the bounded caches
    await catalogue.lookup(features())
    assert len(upstream.seen) == 2


async def test_changed_answers_are_seen_after_the_ttl_and_not_before(
    upstream: Upstream, make: Any
) -> None:
    now = [1000.0]
    catalogue = make(cache_ttl_s=60, timer=lambda: now[0])
    first = await catalogue.lookup(features())
    assert first.vehicle_type == TYPE and first.parts == [PART]
    assert await catalogue.categories() == [{"id": "filters"}]
    calls = len(upstream.seen)

    upstream.types, upstream.parts = [TYPE_2], [PART_2]  # the catalogue changes
    upstream.categories = [{"id": "filters"}, {"id": "brakes"}]
    now[0] += 59.9
    cached = await catalogue.lookup(features())
    assert cached.vehicle_type == TYPE and cached.parts == [PART]
    assert await catalogue.categories() == [{"id": "filters"}]
    assert len(upstream.seen) == calls  # within the TTL: not asked again

    now[0] += 0.2  # past the TTL
    fresh = await catalogue.lookup(features())
    assert fresh.vehicle_type == TYPE_2 and fresh.parts == [PART_2]
    assert await catalogue.categories() == [{"id": "filters"}, {"id": "brakes"}]
    assert len(upstream.seen) == calls + 3


async def test_changed_parts_of_a_cached_type_are_seen_after_the_ttl(
    upstream: Upstream, make: Any
) -> None:
    now = [0.0]
    catalogue = make(cache_ttl_s=5, timer=lambda: now[0])
    assert (await catalogue.lookup(features())).parts == [PART]
    upstream.parts = [PART, PART_2]
    now[0] += 4.99
    assert (await catalogue.lookup(features())).parts == [PART]
    now[0] += 0.01
    assert (await catalogue.lookup(features())).parts == [PART, PART_2]


async def test_server_errors_are_retried_then_502(upstream: Upstream, make: Any) -> None:
    upstream.handler = lambda r: Reply(503, {})
    catalogue = make(retries=2)
    started = time.monotonic()
    with pytest.raises(CatalogueBadGateway) as failed:
        await catalogue.lookup(features())
    assert len(upstream.seen) == 3
    assert failed.value.status == 502 and failed.value.code == "catalogue_bad_gateway"
    assert "503" in failed.value.detail and VIN not in failed.value.detail
    assert time.monotonic() - started < max_call_seconds(2.0, 2)


async def test_a_retry_that_succeeds_answers(upstream: Upstream, make: Any) -> None:
    def once_down(request: Seen) -> Reply:
        upstream.handler = None  # up again from the next request on
        return Reply(502, {})

    upstream.handler = once_down
    catalogue = make(retries=1)
    assert (await catalogue.lookup(features())).vehicle_type == TYPE
    assert len(upstream.seen) == 3  # match (502, then 200), parts


async def test_not_transient_server_errors_are_not_retried(upstream: Upstream, make: Any) -> None:
    upstream.handler = lambda r: Reply(501, {})
    catalogue = make(retries=2)
    with pytest.raises(CatalogueBadGateway):
        await catalogue.lookup(features())
    assert len(upstream.seen) == 1


async def test_client_errors_are_not_retried(upstream: Upstream, make: Any) -> None:
    upstream.handler = lambda r: Reply(400, {})
    catalogue = make(retries=2)
    with pytest.raises(CatalogueBadGateway):
        await catalogue.lookup(features())
    assert len(upstream.seen) == 1


async def test_timeouts_are_504(upstream: Upstream, make: Any) -> None:
    upstream.handler = lambda r: Reply(body={"types": [TYPE]}, delay_s=0.6)
    catalogue = make(timeout_s=0.2, retries=1)
    with pytest.raises(CatalogueTimeout) as failed:
        await catalogue.lookup(features())
    assert failed.value.status == 504 and failed.value.code == "catalogue_timeout"
    assert len(upstream.seen) == 2  # retried once


async def test_a_dripping_answer_is_cut_at_the_call_bound(upstream: Upstream, make: Any) -> None:
    # every byte comes well within httpx's read timeout, so only the per-attempt deadline cuts it
    upstream.handler = lambda r: Reply(body=b" " * 48 + b"{}", drip_s=0.02)
    catalogue = make(timeout_s=0.3, retries=1)
    started = time.monotonic()
    with pytest.raises(CatalogueTimeout):
        await catalogue.lookup(features())
    elapsed = time.monotonic() - started
    assert len(upstream.seen) == 2
    assert 0.6 <= elapsed < max_call_seconds(0.3, 1) + 0.5


async def test_an_unreachable_upstream_is_502_after_retries(make: Any) -> None:
    catalogue = make(url=f"http://127.0.0.1:{free_port()}", retries=2)
    with pytest.raises(CatalogueBadGateway) as failed:
        await catalogue.lookup(features())
    assert failed.value.detail == "The parts catalogue could not be reached"


async def test_breaker_opens_and_recovers(upstream: Upstream, make: Any) -> None:
    state = {"up": False}
    upstream.handler = lambda r: upstream.default(r) if state["up"] else Reply(500, {})

    now = [1000.0]
    breaker = CircuitBreaker(threshold=2, cooldown_s=10, clock=lambda: now[0])
    catalogue = make(retries=0, breaker=breaker)
    for _ in range(2):
        with pytest.raises(CatalogueBadGateway):
            await catalogue.lookup(features())
    calls = len(upstream.seen)
    with pytest.raises(CatalogueUnavailable) as refused:
        await catalogue.lookup(features())
    assert len(upstream.seen) == calls  # open: the upstream is not called at all
    assert refused.value.status == 503 and refused.value.code == "catalogue_unavailable"
    assert int(refused.value.headers["Retry-After"]) >= 1
    state["up"] = True
    now[0] += 9
    with pytest.raises(CatalogueUnavailable):  # still open within the cooldown
        await catalogue.lookup(features())
    now[0] += 2
    assert (await catalogue.lookup(features())).vehicle_type == TYPE


async def test_bad_json_is_502_and_not_retried(upstream: Upstream, make: Any) -> None:
    upstream.handler = lambda r: Reply(200, b"<html>")
    catalogue = make(retries=2)
    with pytest.raises(CatalogueBadGateway):
        await catalogue.lookup(features())
    assert len(upstream.seen) == 1


def test_call_bound_is_attempts_times_timeout_plus_capped_waits() -> None:
    assert max_call_seconds(2.0, 0) == 2.0
    assert max_call_seconds(2.0, 2) == pytest.approx(6.0 + 0.1 + 0.2)
    assert max_call_seconds(1.0, 5) == pytest.approx(6.0 + 0.1 + 0.2 + 0.4 + 0.5 + 0.5)


async def test_settings_are_the_source_of_the_catalogue_values(tmp_path: Path) -> None:
    embedded = build_catalogue(Settings(_env_file=None, data_dir=tmp_path))
    assert isinstance(embedded.backend, EmbeddedBackend)  # in process, no retry wrapper
    assert embedded._matches.ttl == Settings.model_fields["catalogue_cache_ttl_s"].default
    await embedded.close()
    upstream = build_catalogue(
        Settings(
            _env_file=None,
            data_dir=tmp_path,
            catalogue_url="http://127.0.0.1:9",
            catalogue_timeout_s=0.5,
            catalogue_retries=4,
            catalogue_cache_size=7,
            catalogue_cache_ttl_s=12.5,
        )
    )
    backend = upstream.backend
    assert isinstance(backend, UpstreamBackend)
    assert (backend.timeout_s, backend.retries) == (0.5, 4)
    assert (upstream._matches.maxsize, upstream._matches.ttl) == (7, 12.5)
    assert (upstream._parts.maxsize, upstream._parts.ttl) == (7, 12.5)
    await upstream.close()
