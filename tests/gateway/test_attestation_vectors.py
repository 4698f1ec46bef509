"""The independent attestation vectors, run in order against the real verifier and replay cache.

The vectors are the in-repo copy tests/data/attestation-vectors.json (made with an independent
signer; provenance in tests/data/PROVENANCE.md). A missing file fails, never skips.

The verifier's stateless checks and the limiter's admission script (which claims the jti) are
exactly what the request path runs; the clock is injected from each case's ``verify_at``.
"""

from __future__ import annotations

import fakeredis
import pytest
import redis.asyncio as aioredis

from gateway.config import Settings
from gateway.limits.limiter import Limiter, LimitPolicy
from gateway.security import jws
from gateway.security.attestation import AttestationVerifier
from gateway.security.exceptions import AttestationError
from tests.testdata import ATTESTATION_VECTORS, load_json


def load_vectors() -> dict:
    data: dict = load_json(ATTESTATION_VECTORS)
    return data


async def run_vectors(redis_client) -> list[tuple[str, str, str]]:
    data = load_vectors()
    keys = {
        k["kid"]: jws.public_key_from_jwk(k["kid"], k["jwk"], owner=k["account_id"])
        for k in data["registered_keys"]
    }
    for k in data["registered_keys"]:
        assert keys[k["kid"]].alg == k["alg"]

    async def resolve(kid: str):
        return keys.get(kid)

    verifier = AttestationVerifier(
        resolve_key=resolve,
        issuer="vin-gateway-itself",
        audience=data["audience"],
        max_lifetime_s=data["max_lifetime_s"],
        future_iat_leeway_s=data["future_iat_leeway_s"],
        exp_leeway_s=0,
    )
    limiter = Limiter(redis_client, LimitPolicy.from_settings(Settings()), key=b"k" * 32)
    results = []
    for case in data["cases"]:
        try:
            att = await verifier.check(
                case["token"],
                account_id=case["account_id"],
                normalized_vin=case["body_vin"].strip().upper(),
                now=case["verify_at"],
            )
            decision = await limiter.admit(
                case["account_id"], jti=att.jti, jti_ttl=verifier.replay_ttl(att, case["verify_at"])
            )
            got = "attestation_replayed" if decision.verdict == "replayed" else "ok"
        except AttestationError as exc:
            got = exc.code
        results.append((case["name"], case["expect"], got))
    return results


def assert_all_agree(results) -> None:
    disagreements = [r for r in results if r[1] != r[2]]
    assert not disagreements, disagreements
    assert len(results) == len(load_vectors()["cases"])


async def test_vectors_with_embedded_stand_in() -> None:
    assert_all_agree(await run_vectors(fakeredis.FakeAsyncRedis()))


@pytest.mark.redis
async def test_vectors_with_real_redis(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        async for key in client.scan_iter("vl:{acct_7Qm2Xv9LpA}*"):  # earlier runs' jtis
            await client.delete(key)
        assert_all_agree(await run_vectors(client))
    finally:
        await client.aclose()
