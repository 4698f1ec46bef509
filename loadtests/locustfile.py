"""Locust load test: simulated workshops doing attested parts lookups (and, on demand, scrapers).

    .venv/bin/locust -f loadtests/locustfile.py --host http://127.0.0.1:8000
    loadtests/run_locust.sh            # headless, against a server it starts itself

``WorkshopUser`` (the default): each simulated workshop registers its own account in
``on_start`` (unique e-mail, consent to the policy in force), gets an access token, creates an
API key and registers an EC P-256 attestation key, then works with the API key as bearer. Per
query it signs a fresh ES256 attestation (the gateway refuses a replayed one). Mostly
``POST /v1/lookups`` over real public VINs (the corpus tests/data/vins-dev.json, named in
``loadtests/public_vins.py``), sometimes a follow-up lookup with an alternative's
``vehicle_type_id``, some ``POST /v1/vins/decode``, occasionally ``GET /v1/catalogue/categories``
and, rarely, a mistyped VIN, which must be answered 422 ``invalid_vin`` (counted as a success
when it is).

Pacing is ``between(0.5, 1.0)`` s, about 1.3 requests/s per workshop: under the default flood
limit (burst 40, 5 tokens/s per account; lookup 2 tokens, decode 1). Mistyped VINs are
capped at ``--max-invalid`` per workshop (default 10): 25 of them an hour (12 points each,
threshold 300) block an account for guessing, which is the limiter doing its job, not what a
load test of honest users should measure. Any 429 for a workshop is a failure.

``ScraperUser`` (weight 0: off by default; ``--scrapers N`` runs N of them, or pick it with
``--class-picker`` in the web UI; its task is tagged ``scraper``) walks the serial numbers of
one VIN prefix (check digit recomputed, so every VIN is valid). The sequential-enumeration
policy must refuse it with 429 ``suspicious_usage_blocked``: that refusal counts as a success,
and the number of queries it took is reported at the end; afterwards it retries every 5 s and
must still be refused. A scraper still answered after ``--scraper-max-walk`` serials is a
failure.

Exit code (``quitting`` hook): 1 when more than 1 % of all requests failed, when the 95th
percentile of the ``/v1/lookups`` group exceeds ``--p95-ms`` (default 500), when no lookup was
made, or when a scraper ran and was never blocked; else 0.
"""

from __future__ import annotations

import logging
import secrets
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, constant, events, tag, task
from locust.exception import StopUser

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.public_vins import PUBLIC_VINS, dev_rows  # noqa: E402
from tests.gateway import signing  # noqa: E402
from vin.checkdigit import compute_check_digit  # noqa: E402

log = logging.getLogger("vin-gateway-locust")

EMBEDDED_VINS = PUBLIC_VINS
# Typos a workshop makes: a wrong check digit, a letter Q, a VIN cut short.
EMBEDDED_INVALID = ["1HGCM82643A004352", "1HGCM82633A00435Q", "1HGCM8263"]

# The scraper walks this (North American: the check digit is required, so it is recomputed).
SCRAPER_BASE_VIN = "1HGCM82633A004352"

PASSWORD = "locust workshop passphrase 42"
LOOKUP = "/v1/lookups"


def load_vins() -> tuple[list[str], list[str]]:
    """(valid VINs, invalid VINs) from the development corpus (the embedded lists stand in for
    a kind the corpus has none of)."""
    rows = dev_rows()
    valid = [r["vin"] for r in rows if r.get("valid") is not False and len(r["vin"]) == 17]
    invalid = [r["vin"] for r in rows if r.get("valid") is False]
    return valid or EMBEDDED_VINS, invalid or EMBEDDED_INVALID


VALID_VINS, INVALID_VINS = load_vins()

# What the scrapers met, reported when the run ends.
SCRAPER_REPORT: dict[str, Any] = {"started": 0, "blocked": [], "not_blocked": 0, "codes": Counter()}
# Catalogue outcomes of the workshops' lookups (a miss adds 1 point to the guessing score).
LOOKUP_OUTCOMES: Counter[str] = Counter()


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument(
        "--p95-ms",
        type=float,
        default=500.0,
        help="exit 1 when the 95th percentile of the /v1/lookups group exceeds this (ms)",
    )
    parser.add_argument(
        "--scrapers", type=int, default=0, help="run this many ScraperUser (weight 0 otherwise)"
    )
    parser.add_argument(
        "--scraper-max-walk",
        type=int,
        default=20,
        help="a scraper still answered after this many serials is a failure",
    )
    parser.add_argument(
        "--max-invalid", type=int, default=10, help="mistyped VINs per workshop at most"
    )


@events.init.add_listener
def _enable_scrapers(environment: Any, **_kwargs: Any) -> None:
    options = environment.parsed_options
    count = getattr(options, "scrapers", 0) if options else 0
    if count > 0:
        # weight-0 classes are dropped when the environment is built: add it back, fixed count
        ScraperUser.fixed_count = count
        if ScraperUser not in environment.user_classes:
            environment.user_classes.append(ScraperUser)


def problem_code(response: Any) -> str | None:
    try:
        body = response.json()
    except Exception:  # any non-JSON answer simply has no problem code
        return None
    return body.get("code") if isinstance(body, dict) else None


class AttestingUser(FastHttpUser):
    """An account of its own, an API key and an EC P-256 attestation key (``on_start``)."""

    abstract = True
    policy_version: str | None = None

    def _retrying(self, method: str, path: str, **kwargs: Any) -> Any:
        """Registration and login share the per-IP limit of 127.0.0.1: wait out a 429."""
        for _ in range(5):
            with self.client.request(method, path, catch_response=True, **kwargs) as resp:
                if resp.status_code == 429:
                    retry = float(resp.headers.get("Retry-After") or 1)
                    resp.failure(f"429 {problem_code(resp)} (per-IP limit) on login")
                    time.sleep(min(retry, 10.0))
                    continue
                if resp.status_code >= 400:
                    resp.failure(f"{resp.status_code} {problem_code(resp)}")
                    raise StopUser()
                resp.success()
                return resp.json()
        raise StopUser()

    def on_start(self) -> None:
        if AttestingUser.policy_version is None:
            policy = self.client.get("/v1/privacy-policy", name="/v1/privacy-policy").json()
            AttestingUser.policy_version = policy["version"]
        email = f"locust-{secrets.token_hex(8)}@example.com"
        account = self._retrying(
            "POST",
            "/v1/accounts",
            json={
                "email": email,
                "password": PASSWORD,
                "privacy_policy_version": AttestingUser.policy_version,
                "company": "Locust Garage",
            },
        )
        self.account_id = account["id"]
        token = self._retrying(
            "POST", "/v1/auth/token", data={"username": email, "password": PASSWORD}
        )
        session = {"Authorization": f"Bearer {token['access_token']}"}
        api_key = self._retrying(
            "POST", "/v1/api-keys", json={"name": "workshop pc"}, headers=session
        )
        self.key, jwk = signing.ec_key()
        registered = self._retrying(
            "POST", "/v1/attestation-keys", json={"jwk": jwk}, headers=session
        )
        self.kid = registered["kid"]
        self.auth = {"Authorization": f"Bearer {api_key['key']}"}

    def attested(self, vin: str) -> dict[str, str]:
        """Headers for one query: the API key and a fresh attestation for this VIN."""
        token = signing.attestation(self.key, self.kid, self.account_id, vin)
        return {**self.auth, "VIN-Attestation": token}


class WorkshopUser(AttestingUser):
    """An honest workshop: one account, ~1 request/s, real VINs, a typo now and then."""

    weight = 1
    wait_time = between(0.5, 1.0)

    def on_start(self) -> None:
        super().on_start()
        self.categories: list[str] = []
        self.invalid_sent = 0

    @task(30)
    def lookup(self) -> None:
        vin = secrets.choice(VALID_VINS)
        body: dict[str, Any] = {"vin": vin}
        if self.categories and secrets.randbelow(5) == 0:
            body["categories"] = [secrets.choice(self.categories)]
        with self.client.post(
            LOOKUP, json=body, headers=self.attested(vin), name=LOOKUP, catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code} {problem_code(resp)}")
                return
            answer = resp.json()
            resp.success()
        LOOKUP_OUTCOMES["match" if answer.get("vehicle_type") else "miss"] += 1
        alternatives = answer.get("alternatives") or []
        if alternatives and secrets.randbelow(4) == 0:
            # the mechanic picks another engine/body: ask again, with a new attestation
            body = {"vin": vin, "vehicle_type_id": secrets.choice(alternatives)["id"]}
            with self.client.post(
                LOOKUP,
                json=body,
                headers=self.attested(vin),
                name=LOOKUP + " [vehicle_type_id]",
                catch_response=True,
            ) as resp:
                if resp.status_code == 200:
                    resp.success()
                else:
                    resp.failure(f"{resp.status_code} {problem_code(resp)}")

    @task(8)
    def decode(self) -> None:
        vin = secrets.choice(VALID_VINS)
        with self.client.post(
            "/v1/vins/decode",
            json={"vin": vin},
            headers=self.attested(vin),
            name="/v1/vins/decode",
            catch_response=True,
        ) as resp:
            if resp.status_code == 200 and resp.json()["vehicle"]["valid"]:
                resp.success()
            else:
                resp.failure(f"{resp.status_code} {problem_code(resp)}")

    @task(2)
    def categories(self) -> None:
        with self.client.get(
            "/v1/catalogue/categories",
            headers=self.auth,
            name="/v1/catalogue/categories",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code} {problem_code(resp)}")
                return
            resp.success()
            cats = resp.json().get("categories") or []
            self.categories = [c["id"] if isinstance(c, dict) else c for c in cats]

    @task(1)
    def mistyped_vin(self) -> None:
        if self.invalid_sent >= self.environment.parsed_options.max_invalid:
            return self.lookup()
        self.invalid_sent += 1
        vin = secrets.choice(INVALID_VINS)
        with self.client.post(
            LOOKUP,
            json={"vin": vin},
            headers=self.attested(vin),
            name=LOOKUP + " [invalid VIN]",
            catch_response=True,
        ) as resp:
            code = problem_code(resp)
            if resp.status_code == 422 and code == "invalid_vin":
                resp.success()
            else:
                resp.failure(f"expected 422 invalid_vin, got {resp.status_code} {code}")
        return None


class ScraperUser(AttestingUser):
    """Walks serial numbers under one prefix; must end up blocked (429 suspicious_usage_blocked)."""

    weight = 0
    wait_time = constant(0.2)

    def on_start(self) -> None:
        super().on_start()
        SCRAPER_REPORT["started"] += 1
        self.serial = int(SCRAPER_BASE_VIN[11:]) + secrets.randbelow(1000) * 50
        self.walked = 0
        self.done = False  # blocked (then it only checks the block holds) or given up

    def next_vin(self) -> str:
        self.serial += 1
        vin = SCRAPER_BASE_VIN[:11] + f"{self.serial:06d}"
        return vin[:8] + (compute_check_digit(vin) or "0") + vin[9:]

    @tag("scraper")
    @task
    def walk(self) -> None:
        if self.done:
            return self.still_blocked()
        vin = self.next_vin()
        self.walked += 1
        with self.client.post(
            LOOKUP,
            json={"vin": vin},
            headers=self.attested(vin),
            name=LOOKUP + " [scraper]",
            catch_response=True,
        ) as resp:
            code = problem_code(resp)
            SCRAPER_REPORT["codes"][f"{resp.status_code} {code or ''}".strip()] += 1
            if resp.status_code == 429 and code == "suspicious_usage_blocked":
                resp.success()
                policy = resp.json().get("policy")
                SCRAPER_REPORT["blocked"].append((self.walked, policy))
                self.done = True
                return None
            if resp.status_code in (200, 429):  # answered, or a flood refusal on the way
                resp.success()
            else:
                resp.failure(f"{resp.status_code} {code}")
        if self.walked >= self.environment.parsed_options.scraper_max_walk:
            SCRAPER_REPORT["not_blocked"] += 1
            events.request.fire(
                request_type="CHECK",
                name="scraper blocked",
                response_time=0,
                response_length=0,
                exception=AssertionError(f"still answered after {self.walked} serials"),
                context={},
            )
            self.done = True
        return None

    def still_blocked(self) -> None:
        """After the block: a retry now and then (another serial) must still be refused."""
        time.sleep(5.0)
        vin = self.next_vin()
        with self.client.post(
            LOOKUP,
            json={"vin": vin},
            headers=self.attested(vin),
            name=LOOKUP + " [scraper, blocked]",
            catch_response=True,
        ) as resp:
            code = problem_code(resp)
            SCRAPER_REPORT["codes"][f"{resp.status_code} {code or ''} (retry)".strip()] += 1
            if resp.status_code == 429 and code == "suspicious_usage_blocked":
                resp.success()
            elif SCRAPER_REPORT["not_blocked"]:
                resp.success()  # never blocked: already reported as a failure
            else:
                resp.failure(f"block did not hold: {resp.status_code} {code}")


@events.quitting.add_listener
def _exit_code(environment: Any, **_kwargs: Any) -> None:
    options = environment.parsed_options
    stats = environment.stats
    problems = []
    if stats.total.fail_ratio > 0.01:
        problems.append(f"failure ratio {stats.total.fail_ratio:.2%} > 1%")
    lookups = stats.get(LOOKUP, "POST")
    if lookups.num_requests == 0:
        problems.append("no lookup was made")
    else:
        p95 = lookups.get_response_time_percentile(0.95)
        log.info(
            "lookups: %d, failures %d, median %s ms, p95 %s ms (limit %s ms)",
            lookups.num_requests,
            lookups.num_failures,
            lookups.median_response_time,
            p95,
            options.p95_ms,
        )
        log.info("lookup catalogue outcomes: %s", dict(LOOKUP_OUTCOMES))
        if p95 > options.p95_ms:
            problems.append(f"p95 of {LOOKUP} {p95} ms > {options.p95_ms} ms")
    if SCRAPER_REPORT["started"]:
        walks = [n for n, _ in SCRAPER_REPORT["blocked"]]
        policies = Counter(p for _, p in SCRAPER_REPORT["blocked"])
        log.info(
            "scrapers: %d started, %d blocked (policies %s) after %s queries, %d never blocked;"
            " answers %s",
            SCRAPER_REPORT["started"],
            len(walks),
            dict(policies),
            walks,
            SCRAPER_REPORT["not_blocked"],
            dict(SCRAPER_REPORT["codes"]),
        )
        if not walks or SCRAPER_REPORT["not_blocked"]:
            problems.append("a scraper was not blocked")
    for problem in problems:
        log.error("FAIL: %s", problem)
    environment.process_exit_code = 1 if problems else 0
