"""Locust load test: simulated workshops and web users doing attested parts lookups, and, on
demand, the abusers the limits must stop (scrapers, VIN guessers, login guessers).

    .venv/bin/locust -f loadtests/locustfile.py --host http://127.0.0.1:8000
    loadtests/run_locust.sh            # headless, against a server it starts itself
    .venv/bin/python loadtests/soak.py # the soak: every kind, production layout (README.md)

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

The other kinds have weight 0 (off by default; each runs with a fixed count when its option
asks for it, or pick it with ``--class-picker`` in the web UI):

- ``WebUser`` (``--web-users N``): a person at the web frontend, with a password and no key of
  their own: logs in (access token, logged in again before it expires), and per query asks
  ``POST /v1/attestations`` for a gateway-issued attestation (``basis: owner``, or
  ``owner_authorized`` with a work order) and sends it with ``POST /v1/lookups``; now and then
  ``GET /v1/me`` and the category list. Paced like a person, ``between(2, 5)`` s. Any refusal
  is a failure.
- ``ScraperUser`` (``--scrapers N``; its task is tagged ``scraper``) walks the serial numbers
  of one VIN prefix (check digit recomputed, so every VIN is valid). The sequential-enumeration
  policy must refuse it with 429 ``suspicious_usage_blocked``: that refusal counts as a
  success, and the number of queries it took is reported at the end; afterwards it retries
  every ``--abuser-retry-s`` s (5) and must still be refused until the block's
  ``Retry-After`` has passed (then it walks again). A scraper still answered after
  ``--scraper-max-walk`` serials is a failure.
- ``VinGuesserUser`` (``--vin-guessers N``): an account that sends invalid VINs (well-formed
  attestations, wrong check digits) at 2 per second: each is answered 422 ``invalid_vin`` (a
  success) until the guessing policy blocks it with 429 ``suspicious_usage_blocked`` (12 points
  each, threshold 300: at its 25th); then it retries like a scraper. Not blocked after
  ``--guesser-max-tries`` (40) is a failure.
- ``LoginGuesserUser`` (``--login-guessers N``): no account; guesses passwords twice a second
  for a few e-mails (up to 3 registered by the other users, 2 unknown). ``401
  invalid_credentials``, ``429 rate_limited`` (the per-network limit) and ``429
  login_throttled`` are expected; never refused with a 429 after
  ``--login-guesser-max-tries`` (40) attempts, or a 2xx, is a failure.

Every simulated user sends ``X-Forwarded-For`` with an address of its own (honest users in
10.1.0.0/16, each abuser a /24 of its own in 10.64.0.0/10), so when the gateway trusts
127.0.0.1 as a proxy (``VINGW_TRUSTED_PROXIES=127.0.0.1``, as the soak runs it) the per-network
limits of registration and login stay at their defaults; without that setting the header is
ignored and every user is 127.0.0.1 (``run_locust.sh`` raises the per-IP limit instead).

VIN requests are tallied per endpoint as the search log names them (``lookup``, ``decode``,
``issue_attestation``): sent, and answered per outcome (``ok``/``miss``/``issued``/``refused``
with its problem code; a 401 is answered but never logged, the caller is unknown).
``--report-json PATH`` writes those tallies, every request group's counts and percentiles
and the abusers' reports at the end (no VIN, no token, no e-mail in it); the soak compares
them with the search log's rows.

Exit code (``quitting`` hook): 1 when more than 1 % of all requests failed, when the 95th
percentile of the ``/v1/lookups`` group exceeds ``--p95-ms`` (default 500), when no lookup was
made, or when a scraper or guesser ran and was never refused; else 0.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, constant, events, tag, task
from locust.exception import StopUser

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import vin as vinlib  # noqa: E402
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
DECODE = "/v1/vins/decode"
ATTESTATIONS = "/v1/attestations"
# the search log's endpoint names (gateway/lookups/service.py)
ENDPOINTS = {LOOKUP: "lookup", DECODE: "decode", ATTESTATIONS: "issue_attestation"}
# request names of the abusive users; every other name is an honest user's
ABUSIVE_MARKS = ("[scraper", "[vin guesser", "[login guesser")


def load_vins() -> tuple[list[str], list[str]]:
    """(valid VINs, invalid VINs) from the development corpus (the embedded lists stand in for
    a kind the corpus has none of)."""
    rows = dev_rows()
    valid = [r["vin"] for r in rows if r.get("valid") is not False and len(r["vin"]) == 17]
    invalid = [r["vin"] for r in rows if r.get("valid") is False]
    return valid or EMBEDDED_VINS, invalid or EMBEDDED_INVALID


VALID_VINS, INVALID_VINS = load_vins()
# VINs whose check digit is required (North America, China...): a wrong one makes them invalid
CHECKED_VINS = [v for v in VALID_VINS if vinlib.decode(v).check_digit.required] or [
    SCRAPER_BASE_VIN
]

# What the scrapers met, reported when the run ends.
SCRAPER_REPORT: dict[str, Any] = {"started": 0, "blocked": [], "not_blocked": 0, "codes": Counter()}
GUESSER_REPORT: dict[str, Any] = {"started": 0, "blocked": [], "not_blocked": 0, "codes": Counter()}
LOGIN_GUESSER_REPORT: dict[str, Any] = {
    "started": 0,
    "refused": [],  # attempts until the first 429, per guesser
    "not_refused": 0,
    "succeeded": 0,
    "codes": Counter(),
}
# Catalogue outcomes of the workshops' lookups (a miss adds 1 point to the guessing score).
LOOKUP_OUTCOMES: Counter[str] = Counter()
# VIN requests: sent per endpoint; answered per (endpoint, outcome, code) as the search log
# records them; answered but not logged (401: no account) per endpoint
VIN_SENT: Counter[str] = Counter()
VIN_ANSWERED: Counter[tuple[str, str, str]] = Counter()
VIN_UNLOGGED: Counter[str] = Counter()
# e-mails registered by this run (login guessers pick targets among them); never reported
REGISTERED_EMAILS: list[str] = []
REGISTERED = Counter[str]()

# forwarded client addresses: honest users share 10.1.0.0/16, each abuser has a /24 of its own
_HONEST_HOSTS = itertools.count(1)
_ABUSER_NETS = itertools.count(1)


def honest_address() -> str:
    n = next(_HONEST_HOSTS)
    return f"10.1.{(n // 250) % 256}.{n % 250 + 1}"


def abuser_address() -> str:
    n = next(_ABUSER_NETS)
    return f"10.{64 + (n // 256) % 64}.{n % 256}.7"


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
    parser.add_argument("--web-users", type=int, default=0, help="run this many WebUser")
    parser.add_argument("--vin-guessers", type=int, default=0, help="run this many VinGuesserUser")
    parser.add_argument(
        "--login-guessers", type=int, default=0, help="run this many LoginGuesserUser"
    )
    parser.add_argument(
        "--guesser-max-tries",
        type=int,
        default=40,
        help="a VIN guesser still answered after this many invalid VINs is a failure",
    )
    parser.add_argument(
        "--login-guesser-max-tries",
        type=int,
        default=40,
        help="a login guesser never refused (429) after this many attempts is a failure",
    )
    parser.add_argument(
        "--abuser-retry-s",
        type=float,
        default=5.0,
        help="seconds between a blocked scraper's or guesser's retries",
    )
    parser.add_argument(
        "--report-json", default="", help="write the run's tallies and stats to this file"
    )


# option -> the weight-0 class it runs with a fixed count
OPTIONAL_KINDS = {
    "scrapers": "ScraperUser",
    "web_users": "WebUser",
    "vin_guessers": "VinGuesserUser",
    "login_guessers": "LoginGuesserUser",
}


@events.init.add_listener
def _enable_optional_users(environment: Any, **_kwargs: Any) -> None:
    options = environment.parsed_options
    for option, name in OPTIONAL_KINDS.items():
        count = getattr(options, option, 0) if options else 0
        if count > 0:
            cls = globals()[name]
            # weight-0 classes are dropped when the environment is built: add it back, fixed count
            cls.fixed_count = count
            if cls not in environment.user_classes:
                environment.user_classes.append(cls)


def problem_code(response: Any) -> str | None:
    try:
        body = response.json()
    except Exception:  # any non-JSON answer simply has no problem code
        return None
    return body.get("code") if isinstance(body, dict) else None


def _json(response: Any) -> Any:
    try:
        return response.json()
    except Exception:  # not JSON: nothing to read
        return None


def tally(endpoint: str, resp: Any) -> Any:
    """Count one answered VIN request as the search log records it; returns the parsed body."""
    status = resp.status_code
    if not status:  # no answer (connection error, timeout): maybe in flight, maybe not logged
        return None
    body = _json(resp)
    code = body.get("code") if isinstance(body, dict) and status >= 400 else None
    if status == 401:  # no account resolved: the gateway logs nothing
        VIN_UNLOGGED[endpoint] += 1
        return body
    if status < 300:
        if endpoint == "lookup":
            outcome = "ok" if isinstance(body, dict) and body.get("vehicle_type") else "miss"
        else:
            outcome = "issued" if endpoint == "issue_attestation" else "ok"
    elif status == 500 and code in (None, "internal_error"):
        outcome, code = "error", "internal_error"
    else:
        outcome = "refused"
    VIN_ANSWERED[(endpoint, outcome, code or "")] += 1
    return body


class ForwardedUser(FastHttpUser):
    """A user with a client address of its own, sent as X-Forwarded-For (see the docstring)."""

    abstract = True
    abusive = False

    def __init__(self, environment: Any) -> None:
        self.address = abuser_address() if self.abusive else honest_address()
        # read by FastHttpUser.__init__: the header goes with every request of this user
        self.default_headers = {"X-Forwarded-For": self.address}
        super().__init__(environment)

    @contextmanager
    def vin_post(
        self, path: str, *, json: dict[str, Any], headers: dict[str, str], name: str
    ) -> Iterator[tuple[Any, Any]]:
        """POST to a VIN endpoint, tallied (sent, then answered); yields (response, body)."""
        endpoint = ENDPOINTS[path]
        VIN_SENT[endpoint] += 1
        with self.client.post(
            path, json=json, headers=headers, name=name, catch_response=True
        ) as resp:
            body = tally(endpoint, resp)
            yield resp, body


class GatewayUser(ForwardedUser):
    """Registration and login, as every account holder does them."""

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

    def register(self) -> None:
        if GatewayUser.policy_version is None:
            policy = self.client.get("/v1/privacy-policy", name="/v1/privacy-policy").json()
            GatewayUser.policy_version = policy["version"]
        self.email = f"locust-{secrets.token_hex(8)}@example.com"
        account = self._retrying(
            "POST",
            "/v1/accounts",
            json={
                "email": self.email,
                "password": PASSWORD,
                "privacy_policy_version": GatewayUser.policy_version,
                "company": "Locust Garage",
            },
        )
        self.account_id = account["id"]
        REGISTERED_EMAILS.append(self.email)
        REGISTERED[type(self).__name__] += 1

    def login(self, name: str = "/v1/auth/token") -> dict[str, str]:
        token = self._retrying(
            "POST", "/v1/auth/token", data={"username": self.email, "password": PASSWORD}, name=name
        )
        # logged in again a minute before the token expires
        self.session_until = time.monotonic() + float(token.get("expires_in", 900)) - 60
        return {"Authorization": f"Bearer {token['access_token']}"}


class AttestingUser(GatewayUser):
    """An account of its own, an API key and an EC P-256 attestation key (``on_start``)."""

    abstract = True

    def on_start(self) -> None:
        self.register()
        session = self.login()
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
        with self.vin_post(LOOKUP, json=body, headers=self.attested(vin), name=LOOKUP) as (
            resp,
            answer,
        ):
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code} {problem_code(resp)}")
                return
            resp.success()
        LOOKUP_OUTCOMES["match" if answer.get("vehicle_type") else "miss"] += 1
        alternatives = answer.get("alternatives") or []
        if alternatives and secrets.randbelow(4) == 0:
            # the mechanic picks another engine/body: ask again, with a new attestation
            body = {"vin": vin, "vehicle_type_id": secrets.choice(alternatives)["id"]}
            with self.vin_post(
                LOOKUP, json=body, headers=self.attested(vin), name=LOOKUP + " [vehicle_type_id]"
            ) as (resp, _):
                if resp.status_code == 200:
                    resp.success()
                else:
                    resp.failure(f"{resp.status_code} {problem_code(resp)}")

    @task(8)
    def decode(self) -> None:
        vin = secrets.choice(VALID_VINS)
        with self.vin_post(DECODE, json={"vin": vin}, headers=self.attested(vin), name=DECODE) as (
            resp,
            answer,
        ):
            if resp.status_code == 200 and answer["vehicle"]["valid"]:
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
        with self.vin_post(
            LOOKUP, json={"vin": vin}, headers=self.attested(vin), name=LOOKUP + " [invalid VIN]"
        ) as (resp, _):
            code = problem_code(resp)
            if resp.status_code == 422 and code == "invalid_vin":
                resp.success()
            else:
                resp.failure(f"expected 422 invalid_vin, got {resp.status_code} {code}")
        return None


class WebUser(GatewayUser):
    """A person at the web frontend: password login, a gateway-issued attestation per query."""

    weight = 0
    wait_time = between(2.0, 5.0)

    def on_start(self) -> None:
        self.register()
        self.session = self.login()
        self.work_orders = 0

    def _session(self) -> dict[str, str]:
        if time.monotonic() >= self.session_until:
            self.session = self.login(name="/v1/auth/token [web, again]")
        return self.session

    def declaration(self) -> dict[str, Any]:
        """What the frontend's form sends: mostly "I own this vehicle", sometimes a work order."""
        if secrets.randbelow(5):
            return {"basis": "owner", "purpose": "parts_inquiry"}
        self.work_orders += 1
        return {
            "basis": "owner_authorized",
            "purpose": "maintenance",
            "owner_authorization": {
                "ref": f"WO-{self.work_orders}",
                "valid_until": int(time.time()) + 7 * 86_400,
                "scope": ["parts_inquiry", "maintenance"],
            },
        }

    @task(10)
    def lookup(self) -> None:
        vin = secrets.choice(VALID_VINS)
        session = self._session()
        with self.vin_post(
            ATTESTATIONS,
            json={"vin": vin, **self.declaration()},
            headers=session,
            name=ATTESTATIONS + " [web]",
        ) as (resp, issued):
            if resp.status_code != 201:
                resp.failure(f"{resp.status_code} {problem_code(resp)}")
                return
            resp.success()
        headers = {**session, "VIN-Attestation": issued["attestation"]}
        with self.vin_post(LOOKUP, json={"vin": vin}, headers=headers, name=LOOKUP + " [web]") as (
            resp,
            answer,
        ):
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code} {problem_code(resp)}")
                return
            resp.success()
        LOOKUP_OUTCOMES["match" if answer.get("vehicle_type") else "miss"] += 1

    @task(1)
    def me(self) -> None:
        with self.client.get(
            "/v1/me", headers=self._session(), name="/v1/me [web]", catch_response=True
        ) as resp:
            if resp.status_code == 200:
                resp.success()
            else:
                resp.failure(f"{resp.status_code} {problem_code(resp)}")

    @task(1)
    def categories(self) -> None:
        with self.client.get(
            "/v1/catalogue/categories",
            headers=self._session(),
            name="/v1/catalogue/categories [web]",
            catch_response=True,
        ) as resp:
            if resp.status_code == 200:
                resp.success()
            else:
                resp.failure(f"{resp.status_code} {problem_code(resp)}")


class BlockedRetries:
    """A blocked abuser's retries: refused (429 suspicious_usage_blocked) until the block ends."""

    def blocked(self, resp: Any) -> None:
        self.done = True
        retry = float(resp.headers.get("Retry-After") or 0)
        self.block_ends = time.monotonic() + retry

    def retry_pause(self) -> None:
        time.sleep(self.environment.parsed_options.abuser_retry_s)  # type: ignore[attr-defined]

    def never_blocked(self, report: dict[str, Any], who: str, after: str) -> None:
        """The limiter let this abuser go on past its budget: a failed CHECK, and stop."""
        report["not_blocked"] += 1
        events.request.fire(
            request_type="CHECK",
            name=f"{who} blocked",
            response_time=0,
            response_length=0,
            exception=AssertionError(f"still answered after {after}"),
            context={},
        )
        self.done = True
        self.block_ends = float("inf")

    def judge_retry(self, resp: Any, report: dict[str, Any]) -> None:
        """A retry after the block: still refused, or answered only once the block is over."""
        code = problem_code(resp)
        report["codes"][f"{resp.status_code} {code or ''} (retry)".strip()] += 1
        if resp.status_code == 429 and code == "suspicious_usage_blocked":
            resp.success()
        elif report["not_blocked"]:
            resp.success()  # never blocked: already reported as a failure
        elif time.monotonic() >= self.block_ends - 1:
            resp.success()  # the block is over (15 min by default): abuse again
            self.done = False
        else:
            resp.failure(f"block did not hold: {resp.status_code} {code}")


class ScraperUser(BlockedRetries, AttestingUser):
    """Walks serial numbers under one prefix; must end up blocked (429 suspicious_usage_blocked)."""

    weight = 0
    abusive = True
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
        with self.vin_post(
            LOOKUP, json={"vin": vin}, headers=self.attested(vin), name=LOOKUP + " [scraper]"
        ) as (resp, _):
            code = problem_code(resp)
            SCRAPER_REPORT["codes"][f"{resp.status_code} {code or ''}".strip()] += 1
            if resp.status_code == 429 and code == "suspicious_usage_blocked":
                resp.success()
                policy = resp.json().get("policy")
                SCRAPER_REPORT["blocked"].append((self.walked, policy))
                self.walked = 0
                self.blocked(resp)
                return None
            if resp.status_code in (200, 429):  # answered, or a flood refusal on the way
                resp.success()
            else:
                resp.failure(f"{resp.status_code} {code}")
        if self.walked >= self.environment.parsed_options.scraper_max_walk:
            self.never_blocked(SCRAPER_REPORT, "scraper", f"{self.walked} serials")
        return None

    def still_blocked(self) -> None:
        """After the block: a retry now and then (another serial) must still be refused."""
        self.retry_pause()
        vin = self.next_vin()
        with self.vin_post(
            LOOKUP,
            json={"vin": vin},
            headers=self.attested(vin),
            name=LOOKUP + " [scraper, blocked]",
        ) as (resp, _):
            self.judge_retry(resp, SCRAPER_REPORT)


class VinGuesserUser(BlockedRetries, AttestingUser):
    """Invalid VINs with well-formed attestations; must end up blocked for guessing."""

    weight = 0
    abusive = True
    wait_time = constant(0.5)  # 2 lookups/s: 4 tokens/s, under the flood refill

    def on_start(self) -> None:
        super().on_start()
        GUESSER_REPORT["started"] += 1
        self.tries = 0
        self.done = False

    @staticmethod
    def guess() -> str:
        """A corpus VIN that needs its check digit, with a wrong one (position 9): invalid."""
        real = secrets.choice(CHECKED_VINS)
        wrong = secrets.choice([c for c in "0123456789X" if c != real[8]])
        return real[:8] + wrong + real[9:]

    @tag("guesser")
    @task
    def guess_vin(self) -> None:
        if self.done:
            return self.still_blocked()
        vin = self.guess()
        self.tries += 1
        with self.vin_post(
            LOOKUP, json={"vin": vin}, headers=self.attested(vin), name=LOOKUP + " [vin guesser]"
        ) as (resp, _):
            code = problem_code(resp)
            GUESSER_REPORT["codes"][f"{resp.status_code} {code or ''}".strip()] += 1
            if resp.status_code == 429 and code == "suspicious_usage_blocked":
                resp.success()
                GUESSER_REPORT["blocked"].append((self.tries, resp.json().get("policy")))
                self.tries = 0
                self.blocked(resp)
                return None
            # invalid_vin, or a flood refusal on the way
            if (resp.status_code == 422 and code == "invalid_vin") or resp.status_code == 429:
                resp.success()
            else:
                resp.failure(f"{resp.status_code} {code}")
        if self.tries >= self.environment.parsed_options.guesser_max_tries:
            self.never_blocked(GUESSER_REPORT, "vin guesser", f"{self.tries} invalid VINs")
        return None

    def still_blocked(self) -> None:
        self.retry_pause()
        vin = secrets.choice(VALID_VINS)
        with self.vin_post(
            LOOKUP,
            json={"vin": vin},
            headers=self.attested(vin),
            name=LOOKUP + " [vin guesser, blocked]",
        ) as (resp, _):
            self.judge_retry(resp, GUESSER_REPORT)


class LoginGuesserUser(ForwardedUser):
    """Guesses passwords for a few e-mails from a network of its own; must be refused (429)."""

    weight = 0
    abusive = True
    wait_time = constant(0.5)

    def on_start(self) -> None:
        LOGIN_GUESSER_REPORT["started"] += 1
        self.targets = [f"nobody-{secrets.token_hex(6)}@example.com" for _ in range(2)]
        self.tries = 0
        self.refused = False
        self.gave_up = False

    def target(self) -> str:
        if len(self.targets) < 5 and REGISTERED_EMAILS:
            self.targets.append(secrets.choice(REGISTERED_EMAILS))
        return self.targets[self.tries % len(self.targets)]

    @tag("guesser")
    @task
    def guess_password(self) -> None:
        form = {"username": self.target(), "password": f"guess {secrets.token_hex(6)}"}
        self.tries += 1
        with self.client.post(
            "/v1/auth/token", data=form, name="/v1/auth/token [login guesser]", catch_response=True
        ) as resp:
            code = problem_code(resp)
            LOGIN_GUESSER_REPORT["codes"][f"{resp.status_code} {code or ''}".strip()] += 1
            if resp.status_code == 429:
                resp.success()
                if not self.refused:
                    self.refused = True
                    LOGIN_GUESSER_REPORT["refused"].append(self.tries)
            elif resp.status_code == 401 and code == "invalid_credentials":
                resp.success()
            elif 200 <= resp.status_code < 300:
                LOGIN_GUESSER_REPORT["succeeded"] += 1
                resp.failure("a guessed password was accepted")
            else:
                resp.failure(f"{resp.status_code} {code}")
        max_tries = self.environment.parsed_options.login_guesser_max_tries
        if not self.refused and not self.gave_up and self.tries >= max_tries:
            self.gave_up = True
            LOGIN_GUESSER_REPORT["not_refused"] += 1
            events.request.fire(
                request_type="CHECK",
                name="login guesser refused",
                response_time=0,
                response_length=0,
                exception=AssertionError(f"never refused in {self.tries} attempts"),
                context={},
            )


def is_abusive(name: str) -> bool:
    return any(mark in name for mark in ABUSIVE_MARKS) or name.endswith((" blocked", " refused"))


def _report(environment: Any) -> dict[str, Any]:
    """Everything the soak needs, without a VIN, a token or an e-mail."""
    stats = environment.stats
    groups = []
    for (name, method), entry in sorted(stats.entries.items()):
        groups.append({
            "name": name,
            "method": method,
            "kind": "abusive" if is_abusive(name) else "honest",
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "median_ms": entry.median_response_time,
            "p95_ms": entry.get_response_time_percentile(0.95) if entry.num_requests else 0,
            "p99_ms": entry.get_response_time_percentile(0.99) if entry.num_requests else 0,
            "max_ms": entry.max_response_time if entry.num_requests else 0,
            "rps": entry.total_rps,
        })  # fmt: skip
    errors = [
        {"name": e.name, "method": e.method, "error": str(e.error), "occurrences": e.occurrences}
        for e in stats.errors.values()
    ]

    def plain(report: dict[str, Any]) -> dict[str, Any]:
        return {k: dict(v) if isinstance(v, Counter) else v for k, v in report.items()}

    return {
        "groups": groups,
        "errors": sorted(errors, key=lambda e: -e["occurrences"])[:20],
        "total": {"requests": stats.total.num_requests, "failures": stats.total.num_failures},
        "vin_sent": dict(VIN_SENT),
        "vin_answered": [[e, o, c, n] for (e, o, c), n in sorted(VIN_ANSWERED.items())],
        "vin_unlogged": dict(VIN_UNLOGGED),
        "registered": dict(REGISTERED),
        "lookup_outcomes": dict(LOOKUP_OUTCOMES),
        "scrapers": plain(SCRAPER_REPORT),
        "vin_guessers": plain(GUESSER_REPORT),
        "login_guessers": plain(LOGIN_GUESSER_REPORT),
    }


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
    for kind, report in (("scrapers", SCRAPER_REPORT), ("VIN guessers", GUESSER_REPORT)):
        if report["started"]:
            walks = [n for n, _ in report["blocked"]]
            policies = Counter(p for _, p in report["blocked"])
            log.info(
                "%s: %d started, %d blocks (policies %s) after %s queries, %d never blocked;"
                " answers %s",
                kind,
                report["started"],
                len(walks),
                dict(policies),
                walks,
                report["not_blocked"],
                dict(report["codes"]),
            )
            if not walks or report["not_blocked"]:
                problems.append(f"a {kind[:-1]} was not blocked")
    logins = LOGIN_GUESSER_REPORT
    if logins["started"]:
        log.info(
            "login guessers: %d started, refused (429) after %s attempts, %d never refused, %d"
            " guesses accepted; answers %s",
            logins["started"],
            logins["refused"],
            logins["not_refused"],
            logins["succeeded"],
            dict(logins["codes"]),
        )
        if not logins["refused"] or logins["not_refused"] or logins["succeeded"]:
            problems.append("a login guesser was not refused")
    for problem in problems:
        log.error("FAIL: %s", problem)
    if getattr(options, "report_json", ""):
        report = _report(environment)
        report["problems"] = problems
        Path(options.report_json).write_text(json.dumps(report, indent=1, default=str))
    environment.process_exit_code = 1 if problems else 0
