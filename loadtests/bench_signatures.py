"""What one attestation signature costs the gateway to verify, by algorithm, side by side.

    .venv/bin/python loadtests/bench_signatures.py [--number 3000] [--repeat 5]

Verifies one valid token per algorithm through ``gateway.security.jws.verify`` (python-jose
with the registered key object, as the request path does) and, for comparison, the bare
``cryptography``/``hmac`` primitive on the same signing input. Prints the best of ``--repeat``
runs of ``--number`` verifications (timeit's rule: on a shared machine the slower runs measure
the other processes), in microseconds per verification.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import hmac
import secrets
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.security import jws
from tests.gateway import signing

VIN = "1HGCM82633A004352"


def cases() -> dict[str, tuple[Callable[[], None], Callable[[], object]]]:
    found: dict[str, tuple[Callable[[], None], Callable[[], object]]] = {}
    ec_key, ec_jwk = signing.ec_key()
    rsa_key, rsa_jwk = signing.rsa_key()
    for alg, key, jwk in (("ES256", ec_key, ec_jwk), ("RS256", rsa_key, rsa_jwk)):
        bound = jws.public_key_from_jwk("k", jwk, owner="a")
        token = signing.attestation(key, "k", "a", VIN)
        signing_input, _, sig = token.rpartition(".")
        raw = jws.b64url_decode(sig)
        public = key.public_key()
        message = signing_input.encode()
        primitive: Callable[[], object]
        if isinstance(public, ec.EllipticCurvePublicKey):
            r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            der = utils.encode_dss_signature(r, s)
            primitive = functools.partial(public.verify, der, message, ec.ECDSA(hashes.SHA256()))
        else:
            scheme = padding.PKCS1v15()
            primitive = functools.partial(public.verify, raw, message, scheme, hashes.SHA256())
        found[alg] = (lambda t=token, b=bound: jws.verify(t, b), primitive)
    secret = secrets.token_bytes(32)
    bound = jws.hmac_key("gw-att-1", secret, owner="vin-gateway")
    token = jws.sign({"sub": "a", "jti": secrets.token_urlsafe(16)}, bound, "vin-attestation+jwt")
    signing_input, _, sig = token.rpartition(".")
    mac = jws.b64url_decode(sig)

    def hmac_primitive() -> object:
        digest = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return hmac.compare_digest(digest, mac)

    found["HS256"] = (lambda: jws.verify(token, bound), hmac_primitive)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'algorithm':<10}{'gateway (jose) us':>20}{'primitive us':>15}")
    for alg, (through_gateway, primitive) in cases().items():
        best = [
            min(timeit.repeat(fn, number=args.number, repeat=args.repeat)) / args.number * 1e6
            for fn in (through_gateway, primitive)
        ]
        print(f"{alg:<10}{best[0]:>20.1f}{best[1]:>15.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
