"""``vin-gateway catalogue-serve``: the sample catalogue over the upstream HTTP protocol.

It lets the gateway's upstream path be run and tested end to end. It never receives a VIN:
only the decoded features (see ``gateway.catalogue.backends``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from gateway.catalogue.sample import SampleCatalogue
from gateway.text import Line

Make = Annotated[str, Line(64)]
CatalogueId = Annotated[str, Line(64)]


class Features(BaseModel):
    model_config = ConfigDict(extra="forbid")
    wmi: Annotated[str, Line(6)] | None = None
    vds: Annotated[str, Line(6)] | None = None
    make: Make | None = None
    make_candidates: list[Make] = Field(default_factory=list, max_length=20)
    model_year: int | None = None
    model_year_candidates: list[int] = Field(default_factory=list, max_length=5)
    country_code: Annotated[str, Line(2)] | None = None
    plant_code: Annotated[str, Line(1)] | None = None


class MatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: Features


class PartsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vehicle_type_id: CatalogueId
    categories: list[CatalogueId] | None = Field(default=None, max_length=20)


def create_catalogue_app(sample: SampleCatalogue | None = None) -> FastAPI:
    catalogue = sample or SampleCatalogue()
    app = FastAPI(
        title="vin-gateway sample catalogue",
        description="SAMPLE DATA: vehicle types from public facts, synthetic part numbers.",
    )

    @app.post("/catalogue/v1/match")
    async def match(body: MatchRequest) -> dict[str, Any]:
        return {"types": catalogue.match(body.features.model_dump())}

    @app.post("/catalogue/v1/parts")
    async def parts(body: PartsRequest) -> dict[str, Any]:
        return {"parts": catalogue.parts(body.vehicle_type_id, body.categories)}

    @app.get("/catalogue/v1/categories")
    async def categories() -> dict[str, Any]:
        return {"categories": catalogue.categories()}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
