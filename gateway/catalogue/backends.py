"""The parts catalogue behind the gateway: embedded sample, or an upstream over HTTP.

Data minimization: a catalogue (embedded or upstream) only ever receives ``VehicleFeatures``,
the decoded facts of a VIN without its serial number (WMI, positions 4-8, make, model year,
country, plant). The VIN itself never leaves the gateway. Answers are cached by those features
(for matching) and by vehicle type (for parts), never by VIN, in bounded LRU caches.

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
from typing import Any, Protocol

import httpx
from cachetools import LRUCache

from gateway.catalogue.sample import SampleCatalogue
from gateway.errors import GatewayError, ServiceUnavailable


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


class VehicleTypeNotMatching(GatewayError):
    code, status, title = (
        "vehicle_type_not_matching",
        422,
        "The requested vehicle type is not one this VIN may be",
    )


class CatalogueUnavailable(ServiceUnavailable):
    code, title = "catalogue_unavailable", "The parts catalogue is unavailable"


class CatalogueBadGateway(GatewayError):
    code, status, title = "catalogue_bad_gateway", 502, "The parts catalogue answered badly"


class CatalogueTimeout(GatewayError):
    code, status, title = "catalogue_timeout", 504, "The parts catalogue did not answer in time"


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


class UpstreamBackend:
    """An upstream catalogue over HTTP: pooled client, timeouts, bounded retries, breaker."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 2.0,
        retries: int = 2,
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
        self.retries = retries
        self.breaker = breaker or CircuitBreaker()

    async def _call(self, method: str, path: str, json: Any = None) -> Any:
        if not self.breaker.allow():
            raise CatalogueUnavailable(headers={"Retry-After": str(self.breaker.retry_after)})
        last: GatewayError = CatalogueBadGateway()
        for attempt in range(self.retries + 1):
            try:
                response = await self.client.request(method, path, json=json)
            except httpx.TimeoutException:
                last = CatalogueTimeout()
            except httpx.TransportError:
                last = CatalogueBadGateway("The parts catalogue could not be reached")
            else:
                if response.status_code < 500:
                    if response.status_code >= 400:
                        self.breaker.success()
                        raise CatalogueBadGateway(
                            f"The parts catalogue refused the request ({response.status_code})"
                        )
                    try:
                        body = response.json()
                    except ValueError:
                        last = CatalogueBadGateway("The parts catalogue answered with bad JSON")
                    else:
                        self.breaker.success()
                        return body
                else:
                    last = CatalogueBadGateway(
                        f"The parts catalogue failed ({response.status_code})"
                    )
            if attempt < self.retries:
                await asyncio.sleep(0.05 * (2**attempt))
        self.breaker.failure()
        raise last

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
    """What the request path uses: a backend behind bounded caches (features, vehicle type)."""

    NO_MATCH = "No vehicle type in the catalogue matches this VIN's decoded features"

    def __init__(self, backend: CatalogueBackend, cache_size: int = 4096) -> None:
        self.backend = backend
        self._matches: LRUCache[VehicleFeatures, list[dict[str, Any]]] = LRUCache(
            max(1, cache_size)
        )
        self._parts: LRUCache[tuple[str, tuple[str, ...] | None], list[dict[str, Any]]] = LRUCache(
            max(1, cache_size)
        )
        self._categories: list[dict[str, Any]] | None = None

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
        parts = self._parts.get(key)
        if parts is None:
            parts = await self.backend.parts(chosen["id"], categories)
            self._parts[key] = parts
        return CatalogueAnswer(vehicle_type=chosen, alternatives=alternatives, parts=parts)

    async def categories(self) -> list[dict[str, Any]]:
        if self._categories is None:
            self._categories = await self.backend.categories()
        return self._categories

    async def close(self) -> None:
        await self.backend.close()
