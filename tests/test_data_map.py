"""docs/privacy.md cannot drift: every store the gateway writes is compared with the data map.

* the databases: both Alembic trees run on a fresh SQLite file and on fresh PostgreSQL
  databases; every live ``table.column`` must be in the map's section of its database, and
  every entry there must exist;
* Redis: a real workload through the app (embedded stand-in, and a redis-server of this test's
  own so that only this run's keys are there); every key and pub/sub channel must match a
  pattern of the map, with the Redis type the map names;
* the browser: storage keys in ``gateway/web/*.js`` against the map's browser entries;
* ``/metrics``: every family and label against the map, and every mapped metric exported;
* loggers and the files of the data directory.

Failures name the missing entries. Every row must be filled in (no empty cell).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, inspect

from gateway.config import sync_database_url
from gateway.db import migrate
from tests.gateway.conftest import PASSWORD, Account, Api, serving, settings_for
from tests.redis_procs import redis_server
from tests.searchlog.conftest import fresh_databases

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "privacy.md"
WEB = ROOT / "gateway" / "web"
GATEWAY = ROOT / "gateway"

#: section heading -> store
SECTIONS = {
    "Accounts database": "accounts",
    "Search-log database": "searchlog",
    "Redis": "redis",
    "Browser storage": "browser",
    "Log lines": "logs",
    "Metrics": "metrics",
    "Files in the data directory": "files",
}
PLACEHOLDER = re.compile(r"<[^>]+>")
PLACEHOLDER_VALUE = r"[A-Za-z0-9_.-]+"  # a variable part: no ':', '{', '}'

VIN = "1HGCM82633A004352"
OTHER_VIN = "JH4KA7561PC008269"


@dataclass(frozen=True)
class Entry:
    name: str
    cells: dict[str, str]
    line: int

    @property
    def regex(self) -> re.Pattern[str]:
        parts = PLACEHOLDER.split(self.name)
        return re.compile(PLACEHOLDER_VALUE.join(re.escape(p) for p in parts))

    def matches(self, value: str) -> bool:
        return self.regex.fullmatch(value) is not None

    @property
    def text(self) -> str:
        return " ".join(self.cells.values())


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_map(text: str) -> dict[str, list[Entry]]:
    """The map's entries by store: rows of the tables under the SECTIONS headings whose first
    cell is one name in backticks."""
    found: dict[str, list[Entry]] = {store: [] for store in SECTIONS.values()}
    store: str | None = None
    header: list[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("## "):
            store = SECTIONS.get(line[3:].strip())
            header = None
            continue
        if store is None or not line.startswith("|"):
            header = None if not line.startswith("|") else header
            continue
        cells = _cells(line)
        if header is None:
            header = cells
            continue
        if set("".join(cells)) <= set("-: "):
            continue  # the separator row
        first = re.fullmatch(r"`([^`]+)`", cells[0])
        if first is None:
            continue
        found[store].append(Entry(first.group(1), dict(zip(header, cells, strict=False)), number))
    return found


@pytest.fixture(scope="module")
def data_map() -> dict[str, list[Entry]]:
    return parse_map(DOC.read_text())


def _name(entry: Entry) -> str:
    return f"`{entry.name}` (docs/privacy.md line {entry.line})"


# --- the map itself ---------------------------------------------------------------------------


def test_every_store_has_its_section_and_every_row_is_explained(
    data_map: dict[str, list[Entry]],
) -> None:
    empty = [store for store, entries in data_map.items() if not entries]
    assert not empty, f"docs/privacy.md has no entries for {empty} (headings: {list(SECTIONS)})"
    unexplained = [
        f"{_name(e)}: {column}"
        for entries in data_map.values()
        for e in entries
        for column, value in e.cells.items()
        if not value or value.lower() in {"?", "todo", "tbd"}
    ]
    assert not unexplained, "rows with an empty cell: " + "; ".join(unexplained)
    names = [e.name for entries in data_map.values() for e in entries]
    twice = sorted({n for n in names if names.count(n) > 1})
    assert not twice, f"entries listed twice: {twice}"


def test_a_drifted_map_is_caught() -> None:
    """The parser is what every check relies on: a row removed is an entry missing."""
    text = DOC.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `account.email`"))
    parsed = parse_map(text.replace(row + "\n", ""))
    assert "account.email" not in {e.name for e in parsed["accounts"]}
    assert Entry("vl:{<account id>}:ban", {}, 0).matches("vl:{acct_ab12}:ban")
    assert not Entry("vl:{<account id>}:ban", {}, 0).matches("vl:{ip:ab12}:ban")


# --- (a) the databases --------------------------------------------------------------------------


def live_columns(url: str) -> set[str]:
    engine = create_engine(sync_database_url(url))
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            return {
                f"{table}.{column['name']}"
                for table in insp.get_table_names()
                for column in insp.get_columns(table)
            }
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh accounts and search-log database of each kind, migrated to head."""
    if request.param == "sqlite":
        urls = {
            "accounts": f"sqlite:///{tmp_path / 'accounts.sqlite3'}",
            "searchlog": f"sqlite:///{tmp_path / 'searchlog.sqlite3'}",
        }
        for tree, url in urls.items():
            migrate(tree, url)
        yield urls
        return
    with fresh_databases(request.getfixturevalue("postgres_urls")) as make:
        urls = {"accounts": make(), "searchlog": make()}
        for tree, url in urls.items():
            migrate(tree, url)
        yield urls


@pytest.mark.parametrize("tree", ["accounts", "searchlog"])
def test_every_column_of_the_migrated_schema_is_mapped(
    tree: str,
    database_urls: dict[str, str],
    data_map: dict[str, list[Entry]],
    request: pytest.FixtureRequest,
) -> None:
    postgresql = request.node.callspec.params["database_urls"] == "postgresql"
    columns = live_columns(database_urls[tree])
    assert columns, f"no tables in the migrated {tree} database"
    entries = data_map[tree]

    def mapped(column: str) -> bool:
        table = column.split(".", 1)[0]
        return any(e.matches(column) or e.matches(f"{table}.*") for e in entries)

    missing = sorted(c for c in columns if not mapped(c))
    assert not missing, (
        f"columns of the {tree} database ({'PostgreSQL' if postgresql else 'SQLite'}) missing "
        f"from docs/privacy.md, section {tree!r}: {missing}"
    )
    tables = {c.split(".", 1)[0] for c in columns}
    stale = []
    for e in entries:
        if "PostgreSQL only" in e.text and not postgresql:
            continue
        table, column = e.name.split(".", 1)
        if column == "*":
            hit = any(Entry(table, {}, 0).matches(t) for t in tables)
        else:
            hit = any(e.matches(c) for c in columns)
        if not hit:
            stale.append(_name(e))
    assert not stale, (
        f"entries of docs/privacy.md's {tree} section that the migrated schema "
        f"({'PostgreSQL' if postgresql else 'SQLite'}) does not have: {stale}"
    )


# --- (b) Redis, (d) metrics and the data directory, after a real workload ----------------------


async def workload(api: Api) -> None:
    """What a day of use does: register, log in (and fail once), keys, lookups accepted and
    refused, a gateway-issued attestation, an invalid VIN, the grant flow, export, an
    erasure."""
    c = api.client
    workshop = await api.workshop()
    r = await c.post(
        "/v1/auth/token", data={"username": workshop.email, "password": PASSWORD[::-1]}
    )
    assert r.status_code == 401, r.text
    r = await c.post("/v1/api-keys", json={"name": "workshop pc"}, headers=workshop.auth)
    assert r.status_code == 201, r.text
    by_key = Account(workshop.id, workshop.email, r.json()["key"], workshop.key, workshop.kid)

    assert (await api.lookup(workshop, VIN)).status_code == 200
    assert (await api.lookup(by_key, OTHER_VIN)).status_code == 200
    forged = api.attest(workshop, VIN)
    forged["VIN-Attestation"] = forged["VIN-Attestation"][:-4] + "AAAA"
    r = await c.post("/v1/lookups", json={"vin": VIN}, headers=forged)
    assert r.status_code == 403, r.text
    r = await c.post("/v1/lookups", json={"vin": VIN[:-1] + "3"}, headers=api.attest(workshop, VIN))
    assert r.status_code in (403, 422), r.text  # bound to another VIN / invalid check digit
    r = await c.post(
        "/v1/attestations",
        json={"vin": VIN, "basis": "owner", "purpose": "parts_inquiry"},
        headers=workshop.auth,
    )
    assert r.status_code in (200, 201), r.text
    issued = {**workshop.auth, "VIN-Attestation": r.json()["attestation"]}
    assert (await c.post("/v1/vins/decode", json={"vin": VIN}, headers=issued)).status_code == 200

    await grant_flow(api, workshop)

    assert (await c.get("/v1/me/export", headers=workshop.auth)).status_code == 200
    leaving = await api.workshop()
    assert (await api.lookup(leaving, VIN)).status_code == 200
    assert (await c.delete("/v1/me", headers=leaving.auth)).status_code == 204
    await api.state.searchlog.flush()


async def grant_flow(api: Api, workshop: Account) -> None:
    """Owner declares a vehicle, grants the workshop by its code and by a one-time code (one
    wrong guess first), the workshop queries under the grant (and out of it), the owner reads
    the uses and revokes; then a second vehicle, granted, queried under its grant and deleted
    (``forget_grants`` runs: its search-log rows are unlinked, its use counter deleted)."""
    c = api.client
    owner = await api.register()
    r = await c.post("/v1/vehicles", json={"vin": VIN, "label": "family car"}, headers=owner.auth)
    assert r.status_code == 201, r.text
    vehicle = r.json()["id"]
    code = (await c.get("/v1/me", headers=workshop.auth)).json()["workshop_code"]
    until = (datetime.now(UTC) + timedelta(days=7)).isoformat()
    r = await c.post(
        "/v1/grants",
        json={"vehicle_id": vehicle, "valid_until": until, "max_uses": 5, "workshop_code": code},
        headers=owner.auth,
    )
    assert r.status_code == 201, r.text
    grant = r.json()["grant"]["id"]
    r = await c.post(
        "/v1/grants", json={"vehicle_id": vehicle, "valid_until": until}, headers=owner.auth
    )
    assert r.status_code == 201, r.text
    pending, one_time = r.json()["grant"]["id"], r.json()["code"]
    r = await c.post("/v1/grant-codes/redeem", json={"code": "00000-00000"}, headers=workshop.auth)
    assert r.status_code == 404, r.text
    r = await c.post("/v1/grant-codes/redeem", json={"code": one_time}, headers=workshop.auth)
    assert r.status_code == 200, r.text

    granted = {"basis": "owner_granted", "grant_id": grant}
    headers = api.attest(workshop, VIN, **granted)
    r = await c.post("/v1/lookups", json={"vin": VIN}, headers=headers)
    assert r.status_code == 200, r.text
    headers = api.attest(workshop, OTHER_VIN, **granted)
    r = await c.post("/v1/lookups", json={"vin": OTHER_VIN}, headers=headers)
    assert r.status_code == 403, r.text  # grant_vehicle_mismatch
    r = await c.get(f"/v1/grants/{grant}/uses", headers=owner.auth)
    assert r.status_code == 200, r.text
    r = await c.post(f"/v1/grants/{pending}/revoke", headers=owner.auth)
    assert r.status_code == 200, r.text
    assert (await c.get("/v1/grants", headers=workshop.auth)).status_code == 200

    r = await c.post("/v1/vehicles", json={"vin": OTHER_VIN}, headers=owner.auth)
    assert r.status_code == 201, r.text
    second = r.json()["id"]
    r = await c.post(
        "/v1/grants",
        json={"vehicle_id": second, "valid_until": until, "workshop_code": code},
        headers=owner.auth,
    )
    assert r.status_code == 201, r.text
    headers = api.attest(
        workshop, OTHER_VIN, basis="owner_granted", grant_id=r.json()["grant"]["id"]
    )
    r = await c.post("/v1/lookups", json={"vin": OTHER_VIN}, headers=headers)
    assert r.status_code == 200, r.text
    assert (await c.delete(f"/v1/vehicles/{second}", headers=owner.auth)).status_code == 204


async def redis_contents(redis: Any) -> tuple[dict[str, str], list[str]]:
    keys = {}
    async for key in redis.scan_iter(count=1000):
        name = key.decode() if isinstance(key, bytes) else str(key)
        kind = await redis.type(key)
        keys[name] = kind.decode() if isinstance(kind, bytes) else str(kind)
    channels = [
        ch.decode() if isinstance(ch, bytes) else str(ch) for ch in await redis.pubsub_channels()
    ]
    return keys, channels


@dataclass
class Run:
    mode: str
    keys: dict[str, str]
    channels: list[str]
    metrics: str
    files: list[str]


@pytest.fixture(scope="module", params=["embedded", "services"])
async def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The workload once per configuration; "services" on a redis-server of its own, so that
    only this run's keys are in it."""
    mode = request.param
    base = tmp_path_factory.mktemp(f"data-map-{mode}")
    data_dir = base / "data"
    overrides: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if mode == "services":
            (base / "redis").mkdir()
            port, _ = stack.enter_context(redis_server(base / "redis"))
            overrides["redis_url"] = f"redis://127.0.0.1:{port}/0"
        settings = settings_for(mode, request, data_dir, **overrides)
        async with serving(settings, mode) as api:
            await workload(api)
            keys, channels = await redis_contents(api.state.redis)
            metrics = (await api.client.get("/metrics")).text
    files = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file())
    return Run(mode, keys, channels, metrics, files)


def _of_kind(entries: list[Entry], channel: bool) -> list[Entry]:
    return [e for e in entries if ("channel" in e.cells.get("type", "")) == channel]


async def test_every_redis_key_and_channel_is_mapped(
    run: Run, data_map: dict[str, list[Entry]]
) -> None:
    keys = _of_kind(data_map["redis"], channel=False)
    channels = _of_kind(data_map["redis"], channel=True)
    assert len(run.keys) >= 5, f"the workload left almost nothing in Redis: {run.keys}"
    unmapped = sorted(k for k in run.keys if not any(e.matches(k) for e in keys))
    assert not unmapped, f"Redis keys ({run.mode}) missing from docs/privacy.md: {unmapped}"
    wrong_type = sorted(
        f"{k} is a {kind}, the map says {e.cells.get('type')} ({_name(e)})"
        for k, kind in run.keys.items()
        for e in keys
        if e.matches(k) and e.cells.get("type") != kind
    )
    assert not wrong_type, "Redis types differ from docs/privacy.md: " + "; ".join(wrong_type)
    unmapped_channels = sorted(c for c in run.channels if not any(e.matches(c) for e in channels))
    assert not unmapped_channels, f"pub/sub channels missing from the map: {unmapped_channels}"
    assert run.channels, "no worker subscribed to the invalidation channel"
    used = {e.name for e in keys if any(e.matches(k) for k in run.keys)}
    # the grant flow's keys (use counter, code throttle, declarations) are mapped and written;
    # with a Redis stream (services) so is the forgotten-grants set of the vehicle deletion
    grant_rows = {e.name for e in keys if any(p in e.name for p in (":grant:", "{grc:", ":decl"))}
    assert len(grant_rows) >= 4, f"docs/privacy.md maps too few grant keys: {grant_rows}"
    if run.mode == "services":
        grant_rows |= {e.name for e in keys if e.name.endswith(":forgotten")}
    assert grant_rows <= used, f"grant keys the grant flow never wrote: {grant_rows - used}"
    assert len(used) >= 8, f"the workload touched too few mapped key patterns: {sorted(used)}"


def test_every_metric_is_mapped_and_exported(run: Run, data_map: dict[str, list[Entry]]) -> None:
    entries = {e.name.removeprefix("metric:"): e for e in data_map["metrics"]}
    exported: dict[str, set[str]] = {}
    families = list(text_string_to_metric_families(run.metrics))
    names = {f.name for f in families}
    for family in families:
        name = family.name
        if name.endswith("_created") and name.removesuffix("_created") in names:
            continue  # the creation time of a counter or histogram, part of that metric
        if family.type == "counter" and not name.endswith("_total"):
            name += "_total"
        labels = exported.setdefault(name, set())
        for sample in family.samples:
            labels.update(set(sample.labels) - {"le", "quantile"})

    def entry_of(name: str) -> Entry | None:
        return next((e for n, e in entries.items() if Entry(n, {}, 0).matches(name)), None)

    unmapped = sorted(n for n in exported if entry_of(n) is None)
    assert not unmapped, (
        f"metrics exported at /metrics but missing from docs/privacy.md: {unmapped}"
    )
    bad_labels = []
    for name, labels in exported.items():
        entry = entry_of(name)
        assert entry is not None
        declared = entry.cells.get("labels", "-").strip()
        if declared == "any":
            continue
        allowed = {x.strip() for x in declared.split(",") if x.strip() not in {"", "-"}}
        if labels - allowed:
            bad_labels.append(f"{name}: labels {sorted(labels)}, the map says {declared!r}")
    assert not bad_labels, "metric labels differ from docs/privacy.md: " + "; ".join(bad_labels)
    stale = sorted(_name(e) for n, e in entries.items() if "<" not in n and n not in exported)
    assert not stale, f"metrics in docs/privacy.md that /metrics does not export: {stale}"


def test_every_file_of_the_data_directory_is_mapped(
    run: Run, data_map: dict[str, list[Entry]]
) -> None:
    entries = [Entry(e.name.removeprefix("file:"), e.cells, e.line) for e in data_map["files"]]
    found = {re.sub(r"-(wal|shm|journal)$", "", f) for f in run.files}
    unmapped = sorted(f for f in found if not any(e.matches(f) for e in entries))
    assert not unmapped, f"files in the data directory ({run.mode}) not in the map: {unmapped}"
    if run.mode == "embedded":  # embedded writes every file the map names
        stale = sorted(_name(e) for e in entries if not any(e.matches(f) for f in found))
        assert not stale, f"files in docs/privacy.md the embedded gateway never wrote: {stale}"


# --- (c) browser storage, loggers: read from the source ---------------------------------------

STORAGE_APIS = {
    "localStorage": r"\blocalStorage\b",
    "sessionStorage": r"\bsessionStorage\b",
    "cookie": r"\bdocument\.cookie\b",
    "indexedDB": r"\bindexedDB\b",
    "cacheStorage": r"\bcaches\.open\b",
}


def test_every_browser_storage_key_is_mapped(data_map: dict[str, list[Entry]]) -> None:
    sources = {p.name: p.read_text() for p in sorted(WEB.glob("*.js"))}
    assert "app.js" in sources
    entries = data_map["browser"]
    used_apis = {
        api for api, pattern in STORAGE_APIS.items() for src in sources.values()
        if re.search(pattern, src)
    }  # fmt: skip
    mapped_apis = {e.name.split(":", 1)[0] for e in entries}
    assert used_apis <= mapped_apis, (
        f"the frontend uses {sorted(used_apis - mapped_apis)} but docs/privacy.md maps none"
    )
    # every storage key is a "vingw." string constant (a trailing "." is a prefix + id)
    literals = {
        m.group(1)
        for src in sources.values()
        for m in re.finditer(r"[\"'`](vingw\.[A-Za-z0-9_.-]*)[\"'`]", src)
    }
    assert literals, "no storage key found in gateway/web/*.js"
    names = {e.name.split(":", 1)[1] for e in entries}
    missing = sorted(
        lit for lit in literals
        if not any(n == lit or (lit.endswith(".") and n.startswith(lit + "<")) for n in names)
    )  # fmt: skip
    assert not missing, f"browser storage keys in gateway/web/*.js missing from the map: {missing}"
    stale = sorted(
        _name(e) for e in entries
        if not any(PLACEHOLDER.split(e.name.split(":", 1)[1])[0] == lit for lit in literals)
    )  # fmt: skip
    assert not stale, f"browser storage keys in docs/privacy.md no script uses: {stale}"


def test_every_logger_is_mapped(data_map: dict[str, list[Entry]]) -> None:
    used = {
        m.group(1)
        for path in GATEWAY.rglob("*.py")
        for m in re.finditer(r"getLogger\(\s*[\"']([^\"']+)[\"']", path.read_text())
    }
    mapped = {e.name.removeprefix("log:") for e in data_map["logs"]}
    assert used - mapped == set(), f"loggers missing from docs/privacy.md: {sorted(used - mapped)}"
    assert mapped - used == set(), (
        f"loggers in docs/privacy.md no module uses: {sorted(mapped - used)}"
    )


def test_no_placeholder_entry_hides_everything(data_map: dict[str, list[Entry]]) -> None:
    """A pattern that is all placeholder would match any key and explain nothing."""
    lazy = [
        _name(e) for entries in data_map.values() for e in entries
        if not PLACEHOLDER.sub("", e.name.split(":", 1)[-1]).strip("{}:._*")
    ]  # fmt: skip
    assert not lazy, f"entries that are only placeholders: {lazy}"
