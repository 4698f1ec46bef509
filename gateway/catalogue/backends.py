"""The parts catalogue behind the gateway: embedded sample, or an upstream over HTTP.

Data minimization: a catalogue (embedded or upstream) only ever receives ``VehicleFeatures``,
the decoded facts of a VIN without its serial number (WMI, positions 4-8, make, model year,
country, plant). The VIN itself never leaves the gateway. Answers are cached by those features
(for matching) and by vehicle type (for parts), never by VIN, in bounded LRU caches whose entries
expire after ``catalogue_cache_ttl_s``, so changes in the catalogue become visible.

Upstream protocol (served by ``vin-gateway catalogue-serve`` too):
- ``POST /catalogue/v1/match`` ``{"features": {...}}`` -> ``{"types": [vehicle type, ...]}``
- ``POST /catalogue/v1/parts`` ``{"vehicle_type_id", "categories"}`` -> ``{"parts": [...]}``
- ``GET /catalogue/v1/categories`` -> ``{"categories": [...]}``
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import orjson
from cachetools import TTLCache
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from gateway.catalogue.exceptions import (
    CatalogueBadGateway,
    CatalogueTimeout,
    CatalogueUnavailable,
    VehicleTypeNotMatching,
)
from gateway.catalogue.sample import SampleCatalogue
from gateway.exceptions import GatewayError

if TYPE_CHECKING:
    from gateway.config import Settings


@dataclass(frozen=True, slots=True)
class VehicleFeatures:
    wmi: str | None
    vds: str | None  # VIN positions 4-8
    make: str | None
    make_candidates: tuple[str, ...] = ()
    model_year: int | None = None
    model_year_candidates: tuple[int, ...] = ()
    country_code: str | None = None
    plant_code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["make_candidates"] = list(self.make_candidates)
        d["model_year_candidates"] = list(self.model_year_candidates)
        return d


@dataclass(slots=True)
class CatalogueAnswer:
    vehicle_type: dict[str, Any] | None
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    parts: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    #: ``parts`` as JSON, serialized once per vehicle type and cached with it
    parts_json: bytes = b"[]"


class CatalogueBackend(Protocol):
    async def match(self, features: VehicleFeatures) -> list[dict[str, Any]]: ...
    async def parts(self, type_id: str, categories: list[str] | None) -> list[dict[str, Any]]: ...
    async def categories(self) -> list[dict[str, Any]]: ...
    async def close(self) -> None: ...


@functools.cache
def shared_sample() -> SampleCatalogue:
    """The packaged sample catalogue, loaded once per process (read-only)."""
    return SampleCatalogue()


class EmbeddedBackend:
    """The sample catalogue shipped in the package, in process."""

    def __init__(self, sample: SampleCatalogue | None = None) -> None:
        self.sample = sample or shared_sample()

    async def match(self, features: VehicleFeatures) -> list[dict[str, Any]]:
        return self.sample.match(features.to_dict())

    async def parts(self, type_id: str, categories: list[str] | None) -> list[dict[str, Any]]:
        return self.sample.parts(type_id, categories)

    async def categories(self) -> list[dict[str, Any]]:
        return self.sample.categories()

    async def close(self) -> None:
        return None


class CircuitBreaker:
    """Open after ``threshold`` consecutive failures; one trial call after ``cooldown_s``."""

    def __init__(
        self,
        threshold: int = 5,
        cooldown_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if self.clock() - self.opened_at >= self.cooldown_s:
            self.opened_at = self.clock()  # half-open: let this one call try
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = self.clock()

    @property
    def retry_after(self) -> int:
        if self.opened_at is None:
            return 0
        return max(1, int(self.cooldown_s - (self.clock() - self.opened_at)) + 1)


# Backoff between attempts: "full jitter" (uniform in [0, min(0.1 s * 2**(n-1), 0.5 s)] before
# retry n), so gateway workers that failed together do not retry in lock-step. Small on purpose: a
# request waits on it, and the breaker, not a long backoff, protects a catalogue that is down.
RETRY_WAIT_MULTIPLIER_S = 0.1
RETRY_WAIT_MAX_S = 0.5
# 5xx answers worth another attempt (transient); 501, 505, ... will not change on a retry
RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


def max_call_seconds(timeout_s: float, retries: int) -> float:
    """Upper bound of one upstream call: every attempt at its deadline plus the longest waits."""
    waits = sum(
        min(RETRY_WAIT_MULTIPLIER_S * 2.0**n, RETRY_WAIT_MAX_S) for n in range(max(0, retries))
    )
    return timeout_s * (retries + 1) + waits


class _Failed(Exception):
    """One failed attempt: the problem to answer with, and whether another attempt may help."""

    def __init__(self, problem: GatewayError, *, transient: bool) -> None:
        super().__init__(problem.detail)
        self.problem = problem
        self.transient = transient


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, _Failed) and exc.transient


class UpstreamBackend:
    """An upstream catalogue over HTTP: pooled client, timeouts, bounded retries, breaker.

    Every call is an idempotent read, so transport errors, timeouts and the 5xx answers in
    ``RETRYABLE_STATUS`` are retried (tenacity, ``retries`` more attempts, jittered backoff);
    4xx answers and bad bodies are not. Each attempt has a hard deadline of ``timeout_s``
    (``asyncio.timeout``, beyond httpx's per-operation timeouts, so a slowly dripping answer is
    cut too), hence one call takes at most ``max_call_seconds(timeout_s, retries)``:
    ``timeout_s * (retries + 1)`` plus the waits (at most 0.3 s for 2 retries; 6.3 s in all with
    the defaults 2.0 s and 2 retries). The values come from the caller (``Settings``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        retries: int,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 1.0)),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            transport=transport,
            headers={"User-Agent": "vin-gateway"},
        )
        self.timeout_s = timeout_s
        self.retries = retries
        self.breaker = breaker or CircuitBreaker()

    async def _call(self, method: str, path: str, json: Any = None) -> Any:
        if not self.breaker.allow():
            raise CatalogueUnavailable(headers={"Retry-After": str(self.breaker.retry_after)})
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_random_exponential(multiplier=RETRY_WAIT_MULTIPLIER_S, max=RETRY_WAIT_MAX_S),
            retry=retry_if_exception(_transient),
            reraise=True,
        )
        try:
            body: Any = await retrying(self._attempt, method, path, json)
        except _Failed as failed:
            self.breaker.failure()
            raise failed.problem from None
        self.breaker.success()
        return body

    async def _attempt(self, method: str, path: str, json: Any) -> Any:
        """One request within its deadline; raises ``_Failed`` or (4xx) the problem itself."""
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self.client.request(method, path, json=json)
        except (httpx.TimeoutException, TimeoutError):
            raise _Failed(CatalogueTimeout(), transient=True) from None
        except httpx.TransportError:
            problem = CatalogueBadGateway("The parts catalogue could not be reached")
            raise _Failed(problem, transient=True) from None
        status = response.status_code
        if status >= 500:
            problem = CatalogueBadGateway(f"The parts catalogue failed ({status})")
            raise _Failed(problem, transient=status in RETRYABLE_STATUS)
        if status >= 400:
            self.breaker.success()  # it is up and answering: the request was refused
            raise CatalogueBadGateway(f"The parts catalogue refused the request ({status})")
        try:
            return response.json()
        except ValueError:
            problem = CatalogueBadGateway("The parts catalogue answered with bad JSON")
            raise _Failed(problem, transient=False) from None

    async def match(self, features: VehicleFeatures) -> list[dict[str, Any]]:
        body = await self._call("POST", "/catalogue/v1/match", {"features": features.to_dict()})
        return _list_of_dicts(body, "types")

    async def parts(self, type_id: str, categories: list[str] | None) -> list[dict[str, Any]]:
        payload = {"vehicle_type_id": type_id, "categories": categories}
        return _list_of_dicts(await self._call("POST", "/catalogue/v1/parts", payload), "parts")

    async def categories(self) -> list[dict[str, Any]]:
        return _list_of_dicts(await self._call("GET", "/catalogue/v1/categories"), "categories")

    async def close(self) -> None:
        await self.client.aclose()


def _list_of_dicts(body: Any, key: str) -> list[dict[str, Any]]:
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise CatalogueBadGateway(f"The parts catalogue answer has no {key!r} list")
    return items


class Catalogue:
    """What the request path uses: a backend behind bounded caches (features, vehicle type).

    Entries expire ``cache_ttl_s`` after they were stored (``cachetools.TTLCache``: LRU-bounded
    by ``cache_size`` per cache, per-entry expiry on ``timer``), so a changed catalogue answer is
    seen after at most that long. The values come from the caller (``build_catalogue`` passes
    the ``Settings``); ``timer`` is injectable for tests.
    """

    NO_MATCH = "No vehicle type in the catalogue matches this VIN's decoded features"

    def __init__(
        self,
        backend: CatalogueBackend,
        *,
        cache_size: int,
        cache_ttl_s: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        size = max(1, cache_size)
        self._matches: TTLCache[VehicleFeatures, list[dict[str, Any]]] = TTLCache(
            size, cache_ttl_s, timer
        )
        self._parts: TTLCache[
            tuple[str, tuple[str, ...] | None], tuple[list[dict[str, Any]], bytes]
        ] = TTLCache(size, cache_ttl_s, timer)
        self._categories: TTLCache[None, list[dict[str, Any]]] = TTLCache(1, cache_ttl_s, timer)

    async def lookup(
        self,
        features: VehicleFeatures,
        *,
        vehicle_type_id: str | None = None,
        categories: list[str] | None = None,
    ) -> CatalogueAnswer:
        matches = self._matches.get(features)
        if matches is None:
            matches = await self.backend.match(features)
            self._matches[features] = matches
        if vehicle_type_id is not None:
            chosen = next((t for t in matches if t.get("id") == vehicle_type_id), None)
            if chosen is None:
                raise VehicleTypeNotMatching(
                    "Choose one of the vehicle types offered for this VIN",
                    vehicle_type_ids=[t.get("id") for t in matches],
                )
        elif matches:
            chosen = matches[0]
        else:
            return CatalogueAnswer(vehicle_type=None, reason=self.NO_MATCH)
        alternatives = [t for t in matches if t is not chosen]
        key = (chosen["id"], tuple(sorted(categories)) if categories else None)
        cached = self._parts.get(key)
        if cached is None:
            parts = await self.backend.parts(chosen["id"], categories)
            cached = self._parts[key] = (parts, orjson.dumps(parts))
        return CatalogueAnswer(
            vehicle_type=chosen, alternatives=alternatives, parts=cached[0], parts_json=cached[1]
        )

    async def categories(self) -> list[dict[str, Any]]:
        found = self._categories.get(None)
        if found is None:
            found = await self.backend.categories()
            self._categories[None] = found
        return found

    async def close(self) -> None:
        await self.backend.close()


def build_catalogue(settings: Settings) -> Catalogue:
    """The catalogue the settings describe, every value from them: the embedded sample (in
    process, no retry wrapper) or an upstream with timeouts, retries and a breaker."""
    backend: CatalogueBackend
    if settings.catalogue_url:
        backend = UpstreamBackend(
            settings.catalogue_url,
            timeout_s=settings.catalogue_timeout_s,
            retries=settings.catalogue_retries,
        )
    else:
        backend = EmbeddedBackend()
    return Catalogue(
        backend,
        cache_size=settings.catalogue_cache_size,
        cache_ttl_s=settings.catalogue_cache_ttl_s,
    )
