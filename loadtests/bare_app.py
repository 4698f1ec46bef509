"""The baseline for bench_lookup.py: a bare FastAPI endpoint with the same body and server."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

app = FastAPI()


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    vin: str = Field(max_length=64)


class Answer(BaseModel):
    vin: str
    ok: bool


@app.post("/v1/lookups")
async def lookup(body: Body) -> Answer:
    return Answer(vin=body.vin, ok=True)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
