"""loadtests/soak.py: its judgments on made-up measurements, and a short real run (load-test smoke).

The smoke run is the command itself for ~25 s against a redis-server of its own and the test
PostgreSQL, with the growth thresholds relaxed (25 s is too short for a steady state) but the
search-log comparison, the stream drain, the abusers' refusals and the server logs judged as in
the full soak.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from loadtests import soak
from tests.redis_procs import redis_server

ROOT = Path(__file__).resolve().parents[2]


def thresholds(**changes: float) -> argparse.Namespace:
    args = soak.parse_args(["--users", "10"])
    for name, value in changes.items():
        setattr(args, name, value)
    return args


def samples(rss_mib: list[float], fds: list[int] | None = None) -> list[soak.Sample]:
    """One sample every 10 s of traffic for the worker: its RSS and fd count."""
    fds = fds or [40] * len(rss_mib)
    return [
        soak.Sample(t=10.0 * i, traffic=True, rss_kib={"worker 1": int(r * 1024)},
                    fds={"worker 1": f}, keys=0, keys_no_ttl=0, used_memory=0, xlen=0,
                    pending=0)
        for i, (r, f) in enumerate(zip(rss_mib, fds, strict=True))
    ]  # fmt: skip


def test_rss_growing_over_the_second_half_fails_and_warm_up_growth_does_not() -> None:
    args = thresholds()
    # warm-up growth in the first half, flat afterwards (the second half starts at t = 50 s)
    flat = samples([100, 150, 180, 190, 195, 200, 200, 201, 200, 201, 200])
    assert soak.check_processes(flat, 50, args)[0] == []
    leaking = samples([100 + 5 * i for i in range(11)])  # 200 -> 250 MiB over the second half
    failed, rows = soak.check_processes(leaking, 50, args)
    assert len(failed) == 1 and "worker 1: RSS grew" in failed[0]
    assert rows[0][0] == "worker 1"


def test_rss_growth_must_exceed_both_the_mib_and_the_percent_limit() -> None:
    growing = samples([1000 + 3 * i for i in range(11)])  # +15 MiB of 1015: 1.5 %
    assert soak.check_processes(growing, 50, thresholds())[0] == []
    failed = soak.check_processes(growing, 50, thresholds(max_rss_growth_pct=1.0))[0]
    assert failed and "RSS grew" in failed[0]


def test_file_descriptor_growth_fails() -> None:
    steady = samples([200] * 11, [40, 41, 40, 42, 40, 41, 40, 42, 41, 40, 41])
    assert soak.check_processes(steady, 50, thresholds())[0] == []
    leaking = samples([200] * 11, [40 + 4 * i for i in range(11)])
    failed = soak.check_processes(leaking, 50, thresholds())[0]
    assert failed == ["worker 1: open file descriptors grew 62 -> 78 over the second half "
                      "(limit +8)"]  # fmt: skip


def test_key_shapes_hide_ids_and_hash_tags() -> None:
    assert soak.shape_of("vl:{acct_0123456789abcdef}:jti:Zm9vYmFyYmF6cXV4MTIzNA") == (
        "vl:{*}:jti:*"
    )
    assert soak.shape_of("vl:{acct_0123456789abcdef}:ban") == "vl:{*}:ban"
    assert soak.shape_of("vingw:searchlog") == "vingw:searchlog"


def shape(count: int, ttl: float | None) -> soak.Shape:
    return soak.Shape(count=count, max_ttl_s=ttl, bytes=100 * count)


def test_keys_that_outlive_the_run_must_not_grow() -> None:
    args = thresholds()
    mid = {"leak:*": shape(100, None), "vl:{*}:strikes": shape(5, 2_592_000.0)}
    assert soak.check_keys(mid, mid, 290, args)[0] == []
    end = {"leak:*": shape(200, None), "vl:{*}:strikes": shape(5, 2_592_000.0)}
    failed = soak.check_keys(mid, end, 290, args)[0]
    assert len(failed) == 1 and "'leak:*' (no TTL) grew 100 -> 200" in failed[0]


def test_short_lived_keys_may_only_stay_near_their_steady_count() -> None:
    args = thresholds()
    mid = {"vl:{*}:jti:*": shape(6000, 121.0)}
    assert soak.check_keys(mid, {"vl:{*}:jti:*": shape(6900, 121.0)}, 290, args)[0] == []
    failed = soak.check_keys(mid, {"vl:{*}:jti:*": shape(9000, 121.0)}, 290, args)[0]
    assert any("beyond what their TTL explains" in f for f in failed)
    # not yet steady at the middle census (the TTL is longer than the traffic had run): reported
    failed, rows = soak.check_keys(mid, {"vl:{*}:jti:*": shape(9000, 121.0)}, 20, args)
    assert not any("jti" in f for f in failed) and "not judged" in rows[0][-1]


def test_redis_db_memory_growth_fails() -> None:
    args = thresholds()
    mid = {"vl:{*}:vins": soak.Shape(count=50, max_ttl_s=86_400.0, bytes=4 * 2**20)}
    end = {"vl:{*}:vins": soak.Shape(count=50, max_ttl_s=86_400.0, bytes=8 * 2**20)}
    failed = soak.check_keys(mid, end, 290, args)[0]
    assert failed == ["Redis db memory grew 4.00 -> 8.00 MiB over the second half "
                      "(limit 6.00 MiB)"]  # fmt: skip


def report(answered: dict[tuple[str, str, str], int], sent: dict[str, int]) -> dict[str, object]:
    return {
        "vin_answered": [[e, o, c, n] for (e, o, c), n in answered.items()],
        "vin_sent": sent,
        "vin_unlogged": {"lookup": 1},
    }


def test_search_log_rows_are_compared_per_outcome_with_what_was_answered() -> None:
    answered = {("lookup", "ok", ""): 90, ("lookup", "refused", "invalid_vin"): 10}
    sent = {"lookup": 103}  # one 401 (not logged) and two without an answer
    ok = Counter({("lookup", "ok", ""): 91, ("lookup", "refused", "invalid_vin"): 10})
    assert soak.check_searchlog(report(answered, sent), ok, ok)[0] == []
    # the refusals are logged too: a missing refused row is a loss even if the total matches
    lost = Counter({("lookup", "ok", ""): 100, ("lookup", "refused", "invalid_vin"): 0})
    failed = soak.check_searchlog(report(answered, sent), lost, lost)[0]
    assert failed[0] == ("search log lost rows: lookup refused invalid_vin: 0 rows for 10 "
                         "answered requests")  # fmt: skip
    # more rows than requests sent without an answer can explain
    extra = Counter({("lookup", "ok", ""): 95, ("lookup", "refused", "invalid_vin"): 10})
    failed = soak.check_searchlog(report(answered, sent), extra, extra)[0]
    assert failed == ["search log: lookup: 105 rows, more than the 100 answered requests plus 2 "
                      "sent without an answer"]  # fmt: skip
    # rows that only the shutdown wrote were buffered while the gateway ran
    failed = soak.check_searchlog(report(answered, sent), ok, Counter({("lookup", "ok", ""): 1}))[0]
    assert failed == ["search log: 100 rows were written only by the shutdown, not while running"]


def test_a_stream_that_does_not_drain_or_backs_up_fails() -> None:
    args = thresholds()
    quiet = samples([200] * 11)
    assert soak.check_stream(quiet, 50, (0, 0, 0.5), args) == []
    assert soak.check_stream(quiet, 50, (3, 3, 30.0), args) == [
        "search-log stream still holds 3 entries (3 pending) 30 s after the traffic (limit 0)"
    ]
    backed_up = samples([200] * 11)
    backed_up[-2].xlen = 9000
    assert "backlog reached 9000" in soak.check_stream(backed_up, 50, (0, 0, 1.0), args)[0]


def test_honest_failures_and_latency_fail_abusers_refusals_do_not() -> None:
    args = thresholds()
    group = {"method": "POST", "median_ms": 5, "p95_ms": 20, "p99_ms": 40, "max_ms": 90}
    groups = [
        {**group, "name": "/v1/lookups", "kind": "honest", "requests": 1000, "failures": 0},
        {**group, "name": "/v1/lookups [scraper]", "kind": "abusive", "requests": 50,
         "failures": 0},
    ]  # fmt: skip
    assert soak.check_users({"groups": groups}, 0, args)[0] == []
    groups[0] |= {"failures": 20, "p95_ms": 800}
    failed = soak.check_users(
        {"groups": groups, "problems": ["a scraper was not blocked"]}, 1, args
    )[0]
    assert failed == [
        "honest users: 20 of 1000 requests failed (2.00% > 1.00%)",
        "honest /v1/lookups: p95 800 ms > 500 ms",
        "locust: a scraper was not blocked",
    ]


def test_server_log_errors_fail_and_machine_findings_are_only_noted(tmp_path: Path) -> None:
    server, writer = tmp_path / "server.log", tmp_path / "writer.log"
    server.write_text(
        "2026-12-01 12:00:00,000 ERROR vin_gateway.redis Redis is not durable: no AOF\n"
        "2026-12-01 12:00:00,001 INFO uvicorn Started server process\n"
    )
    writer.write_text(
        "2026-12-01 12:00:01,000 ERROR vin_gateway.redis Redis is not durable: no AOF\n"
    )
    failed, found, noted = soak.check_logs({"server": server, "writer": writer})
    assert failed == [] and noted == ["ERROR vin_gateway.redis Redis is not durable: no AOF"]
    assert set(found) == {"server", "writer"}
    with server.open("a") as out:
        out.write("Traceback (most recent call last):\n")
    failed, _, _ = soak.check_logs({"server": server, "writer": writer})
    assert failed == ["server log: 1 error line(s), first: Traceback (most recent call last):"]


def test_write_docs_replaces_only_the_soak_section(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text(
        "# Benchmarks\n\n<!-- bench_lookup:begin -->\nkept\n<!-- bench_lookup:end -->\n"
    )
    args = thresholds()
    args.started, args.command, args.load_before, args.load_after = (
        datetime(2026, 12, 1, 12, 0),
        "soak",
        "0.1",
        "0.2",
    )
    res = soak.Result(args, soak.user_mix(args))
    soak.write_docs(docs, res, args)
    first = docs.read_text()
    assert first.startswith("# Benchmarks\n\n<!-- bench_lookup:begin -->\nkept\n")
    assert first.count(soak.BEGIN) == 1 and "## Soak" in first
    res.failed = ["worker 1: RSS grew"]
    soak.write_docs(docs, res, args)
    second = docs.read_text()
    assert second.count(soak.BEGIN) == 1 and second.count("## Soak") == 1
    assert "- worker 1: RSS grew" in second and "no growth, no loss" not in second
    assert second.split(soak.BEGIN)[0] == first.split(soak.BEGIN)[0]


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
def test_a_short_soak_runs_the_whole_command(
    tmp_path: Path, postgres_urls: tuple[str, str]
) -> None:
    admin = make_url(postgres_urls[0]).set(database="postgres").render_as_string(False)
    # durable as production's must be (AOF), so the gateway's start-up check finds nothing
    with redis_server(tmp_path, "--appendonly", "yes") as (port, _):
        cmd = [
            sys.executable, str(ROOT / "loadtests" / "soak.py"), "--duration", "25",
            "--users", "8", "--spawn-rate", "8", "--interval", "2",
            "--redis-url", f"redis://127.0.0.1:{port}/0", "--postgres-url", admin,
            # 25 s is no steady state: growth limits relaxed; loss, drain and refusals are not
            "--max-rss-growth-mib", "256", "--max-fd-growth", "64", "--key-slack", "5000",
            "--max-redis-growth-pct", "10000", "--p95-ms", "5000", "--p99-ms", "10000",
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "Verdict: no growth, no loss." in out
    # every kind ran, and the abusers were refused (the locustfile's checks passed)
    for line in ("scrapers: 1 started, blocked after", "VIN guessers: 1 started, blocked after",
                 "login guessers: 1 started, first 429 after"):  # fmt: skip
        assert line in out, out[-6000:]
    # the search log was compared outcome by outcome, refusals included
    assert "| lookup | refused | suspicious_usage_blocked |" in out
    assert "| issue_attestation | issued | - |" in out
