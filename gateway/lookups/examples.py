"""OpenAPI examples of the VIN endpoints, all with the public example VIN 1HGCM82633A004352.

The decoded vehicle is the ``vin`` library's own answer for it (so the example cannot drift);
the catalogue part is what the embedded SAMPLE catalogue answers (part numbers are synthetic).
"""

from __future__ import annotations

from typing import Any

import vin as vinlib
from gateway.openapi import EXAMPLE_VIN

VEHICLE: dict[str, Any] = vinlib.decode(EXAMPLE_VIN).to_dict()

DECODE_REQUEST = {"vin": EXAMPLE_VIN}
LOOKUP_REQUEST = {"vin": EXAMPLE_VIN, "categories": ["brakes"]}
ATTESTATION_REQUESTS = {
    "owner": {
        "summary": "The user owns the vehicle",
        "value": {"vin": EXAMPLE_VIN, "basis": "owner", "purpose": "parts_inquiry"},
    },
    "owner_authorized": {
        "summary": "The owner authorized a workshop (work order)",
        "value": {
            "vin": EXAMPLE_VIN,
            "basis": "owner_authorized",
            "purpose": "maintenance",
            "owner_authorization": {
                "ref": "WO-2026-0815",
                "valid_until": 1_893_456_000,
                "scope": ["maintenance"],
            },
        },
    },
}

DECODE_RESPONSE = {"vehicle": VEHICLE}
LOOKUP_RESPONSE = {
    "query_id": "q_5f2c9a01d3e4b677",
    "vehicle": VEHICLE,
    "vehicle_type": {
        "id": "vt_honda_accord_2003_2005_5e1242d5",
        "make": "Honda",
        "model": "Accord",
        "years": {"from": 2003, "to": 2005},
        "body": "Coupe",
        "engine": "V6 (J30A4)",
    },
    "alternatives": [],
    "parts": [
        {
            "part_number": "13.0460-8204.2",
            "name": "Front brake pad set",
            "category": "brakes",
            "brand": "ATE",
            "fits_note": "Front axle",
            "sample": True,
        }
    ],
    "reason": None,
}
ATTESTATION_RESPONSE = {
    "attestation": "eyJhbGciOiJIUzI1NiIsImtpZCI6ImdhdGV3YXkiLCJ0eXAiOiJ2aW4tYXR0ZXN0YXRpb24rand0In0"
    ".eyJpc3MiOiJ2aW4tZ2F0ZXdheSJ9.c2lnbmF0dXJl",
    "expires_at": "2026-11-02T10:05:00Z",
    "jti": "Zx3k9QbT2mVw7LrP1sYd0aHc",
}


def request_body(*, example: Any = None, examples: dict[str, Any] | None = None) -> dict[str, Any]:
    """``openapi_extra`` for a JSON request body's example(s)."""
    media: dict[str, Any] = {"examples": examples} if examples else {"example": example}
    return {"requestBody": {"content": {"application/json": media}}}


def response_example(status: int, example: Any) -> dict[int | str, dict[str, Any]]:
    return {status: {"content": {"application/json": {"example": example}}}}
