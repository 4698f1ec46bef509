"""Refusals of the parts catalogue: no matching vehicle type, an upstream that fails."""

from __future__ import annotations

from gateway.exceptions import GatewayError, ServiceUnavailable


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
