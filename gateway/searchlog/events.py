"""One VIN query as the request path knows it, and the pseudonymized row it becomes.

The row is built at once, in ``record``: nothing clear (VIN, account id, token, owner reference,
grant id, full IP, user agent) ever sits in a queue, in Redis or in the log database.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from gateway.searchlog.pseudonym import KeyRing, truncate_ip, ua_family

Row = dict[str, Any]  # a pseudonymized search_event row, as queued and inserted
SHARD = "_shard"  # in a row on its way to the stream: the shard it goes to (never inserted)


def shard_of(account_id: str, shards: int) -> int:
    """The queue shard of an account's events: stable (the same in every process and in every
    key epoch, so a flush for the account drains one shard) and spread evenly. Only the shard
    number appears in a key name; an account id never does. The number carries log2(N) bits
    about the account to someone who already knows its id, and nothing to anyone else."""
    digest = hashlib.blake2b(account_id.encode(), digest_size=8, person=b"vingw-sl-shard").digest()
    return int.from_bytes(digest, "big") % shards


@dataclass(slots=True)
class QueryEvent:
    """What the request path knows about one VIN query (clear values; never stored as is)."""

    account_id: str
    endpoint: str
    outcome: str
    code: str | None = None
    vin: str | None = None
    wmi: str | None = None
    make: str | None = None
    model_year: int | None = None
    country_code: str | None = None
    basis: str | None = None
    purpose: str | None = None
    owner_ref: str | None = None
    jti: str | None = None
    token_sha256: str | None = None
    gateway_issued: bool | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    latency_ms: float | None = None
    grant_id: str | None = None  # only when the query was made under a grant of the caller


def pseudonymize(event: QueryEvent, at: float, keyring: KeyRing, instance: str) -> Row:
    """The event's row: keyed pseudonyms under the epoch of ``at``, a random event id (inserts
    are idempotent on it), the IP truncated and the user agent reduced to its family."""
    epoch = keyring.epoch_of(at)

    def p(domain: str, value: str | None) -> str | None:
        return keyring.pseudonym(domain, value, epoch) if value else None

    return {
        "event_id": os.urandom(16).hex(),  # 128 random bits, as uuid4().hex without the object
        "at": int(at),
        "key_epoch": epoch,
        "account_pseudonym": keyring.pseudonym("account", event.account_id, epoch),
        "vin_pseudonym": p("vin", event.vin),
        "wmi": event.wmi,
        "make": event.make,
        "model_year": event.model_year,
        "country_code": event.country_code,
        "endpoint": event.endpoint,
        "outcome": event.outcome,
        "code": event.code,
        "basis": event.basis,
        "purpose": event.purpose,
        "owner_ref_pseudonym": p("owner_ref", event.owner_ref),
        "jti_digest": p("jti", event.jti),
        "token_digest": p("jti", "token:" + event.token_sha256 if event.token_sha256 else None),
        "gateway_issued": event.gateway_issued,
        "client_ip": truncate_ip(event.client_ip),
        "ua_family": ua_family(event.user_agent),
        "latency_ms": None if event.latency_ms is None else round(event.latency_ms, 2),
        "instance": instance,
        "grant_pseudonym": p("grant", event.grant_id),
    }
