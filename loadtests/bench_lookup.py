"""Full attested lookup path vs. a bare FastAPI endpoint, side by side, one worker each.

    .venv/bin/python loadtests/bench_lookup.py [--duration 10] [--connections 16] [--alg ES256]

Needs `wrk` (Debian: apt-get install wrk) and, unless --embedded, Redis on 127.0.0.1:6379.
Both servers run the same uvicorn (one worker, no access log); wrk runs on the other core with
one thread. The gateway path per request: API-key authentication, attestation verification,
replay check + quota (one Lua round trip), VIN decode, catalogue, search-log enqueue. Every
request carries a fresh attestation (pre-signed; one per request, as clients must), so no
request is refused as a replay. The flood limit is raised for the benchmark account; the Lua
script runs exactly as in production.

Prints requests/s of both, their ratio, and exits 1 if the ratio is below --min-ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from loadtests.public_vins import PUBLIC_VINS  # noqa: E402
from tests.gateway import signing  # noqa: E402
from tests.gateway.procs import BIN, running, workshop  # noqa: E402

VINS = PUBLIC_VINS

WRK_SCRIPT = r"""
local lines = {}
local i = 0
local auth = ""
function init(args)
  for line in io.lines(args[1]) do table.insert(lines, line) end
  auth = args[2]
end
request = function()
  i = i + 1
  local line = lines[(i - 1) % #lines + 1]
  local tab = line:find("\t")
  local token, vin = line:sub(1, tab - 1), line:sub(tab + 1)
  local headers = {["Content-Type"] = "application/json"}
  if auth ~= "" then
    headers["Authorization"] = auth
    headers["VIN-Attestation"] = token
  end
  return wrk.format("POST", "/v1/lookups", headers, '{"vin": "' .. vin .. '"}')
end
"""


def run_wrk(base: str, token_file: Path, auth: str, args: argparse.Namespace) -> tuple[float, int]:
    script = token_file.with_suffix(".lua")
    script.write_text(WRK_SCRIPT)
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{args.connections}",
            f"-d{args.duration}s",
            "-s",
            str(script),
            base,
            "--",
            str(token_file),
            auth,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, int(bad.group(1)) if bad else 0


def profiler(args: argparse.Namespace, base: str) -> subprocess.Popen[bytes]:
    """py-spy attached to the worker serving ``base`` for the wrk run (collapsed stacks)."""
    port = base.rsplit(":", 1)[1]
    pid = subprocess.run(
        ["pgrep", "-n", "-f", f"vin-gateway serve --port {port}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    return subprocess.Popen(
        [spy, "record", "--pid", pid, "-r", "250", "-d", str(args.duration), "-f", "raw",
         "-o", str(args.profile), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def gateway_signer(data_dir: Path, account_id: str):  # type: ignore[no-untyped-def]
    """Attestations exactly as POST /v1/attestations issues them (HS256, kid gw-att-1)."""
    import base64
    import hashlib
    import hmac
    import json
    import time

    secret = base64.urlsafe_b64decode(
        (data_dir / "secrets" / "attestation_signing.key").read_bytes().strip()
    )

    def sign(vin: str) -> str:
        now = int(time.time())
        header = {"alg": "HS256", "kid": "gw-att-1", "typ": "vin-attestation+jwt"}
        claims = {
            "iss": "vin-gateway", "sub": account_id, "aud": "vin-gateway", "iat": now,
            "exp": now + 120, "jti": secrets.token_urlsafe(18),
            "vin_sha256": signing.vin_sha256(vin), "basis": "owner", "purpose": "parts_inquiry",
        }  # fmt: skip
        body = (
            signing.b64(json.dumps(header).encode())
            + "."
            + signing.b64(json.dumps(claims).encode())
        )
        mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()
        return body + "." + signing.b64(mac)

    return sign


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--alg",
        choices=["ES256", "RS256", "HS256"],
        default="ES256",
        help="client-signed ES256/RS256, or HS256: what POST /v1/attestations issues (signed "
        "here with the gateway's own key from the benchmark's data dir, to skip 60k HTTP calls)",
    )
    parser.add_argument("--embedded", action="store_true", help="in-process Redis stand-in")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--separate-writer",
        action="store_true",
        help="run the search-log consumer as `vin-gateway searchlog-writer` beside the worker "
        "(the production layout) instead of inside it; the worker still enqueues every event",
    )
    parser.add_argument("--max-rps", type=int, default=6000, help="tokens to pre-sign per second")
    parser.add_argument(
        "--profile",
        type=Path,
        help="record the gateway worker with py-spy into this file (collapsed stacks)",
    )
    parser.add_argument("--min-ratio", type=float, default=0.40)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench_lookup: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="vingw-bench-"))
    env = {
        "VINGW_DATA_DIR": str(work / "var"),
        "VINGW_LIMIT_VIN_BURST": "1000000",
        "VINGW_LIMIT_VIN_PER_S": "1000000",
        # every policy still runs in the script; none may refuse the benchmark account
        "VINGW_LIMIT_SCORE_THRESHOLD": "1000000000",
        "VINGW_LIMIT_DISTINCT_MAX": "1000000000",
        "VINGW_LIMIT_SEQ_THRESHOLD": "1000000000",
        "VINGW_ACCESS_LOG_LEVEL": "WARNING",
        "VINGW_ARGON2_TIME_COST": "1",
        "VINGW_ARGON2_MEMORY_KIB": "1024",
    }
    if not args.embedded:
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()
        env["VINGW_REDIS_URL"] = args.redis_url
    if args.separate_writer:
        env["VINGW_SEARCHLOG_CONSUMER"] = "false"

    bare_cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "loadtests.bare_app:app",
        "--no-access-log",
        "--log-level",
        "warning",
        "--host",
        "127.0.0.1",
    ]
    bare_env = {"PYTHONPATH": str(HERE.parent)}
    with running(bare_cmd, bare_env, raw=True) as (base, _):
        lines = [f"-\t{VINS[i % len(VINS)]}" for i in range(len(VINS))]
        bare_file = work / "bare.tsv"
        bare_file.write_text("\n".join(lines) + "\n")
        bare_rps, bare_bad = run_wrk(base, bare_file, "", args)

    writer = None
    if args.separate_writer:
        writer_env = {k: v for k, v in os.environ.items() if not k.startswith("VINGW_")}
        writer = subprocess.Popen(
            [str(BIN), "searchlog-writer"], env={**writer_env, **env},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    with running([str(BIN), "serve"], env, raw=True) as (base, _):
        with httpx.Client(base_url=base) as client:
            w = workshop(client, kind="ec" if args.alg == "ES256" else "rsa", api_key=True)
        account_id, key, kid = w["id"], w["key"], w["kid"]
        count = args.max_rps * args.duration
        sign = (
            gateway_signer(work / "var", account_id)
            if args.alg == "HS256"
            else lambda vin: signing.attestation(key, kid, account_id, vin)
        )
        lines = [sign(vin) + "\t" + vin for vin in (VINS[i % len(VINS)] for i in range(count))]
        gw_file = work / "gateway.tsv"
        gw_file.write_text("\n".join(lines) + "\n")
        spy = profiler(args, base) if args.profile else None
        gw_rps, gw_bad = run_wrk(base, gw_file, f"Bearer {w['api_key']}", args)
        if spy is not None:
            spy.wait(timeout=args.duration + 30)
        if gw_rps * args.duration > count:
            print("warning: tokens were reused; raise --max-rps", file=sys.stderr)

    if writer is not None:
        writer.terminate()
        try:
            writer.wait(30)
        except subprocess.TimeoutExpired:
            writer.kill()
    shutil.rmtree(work, ignore_errors=True)
    ratio = gw_rps / bare_rps
    mode = "embedded stand-in" if args.embedded else "Redis"
    if args.separate_writer:
        mode += ", search-log writer in its own process"
    print(f"bare FastAPI endpoint : {bare_rps:9.0f} req/s  (non-2xx: {bare_bad})")
    print(f"attested lookup path  : {gw_rps:9.0f} req/s  (non-2xx: {gw_bad}; {args.alg}, {mode})")
    print(f"ratio                 : {ratio:9.2f}  (target >= {args.min_ratio})")
    if bare_bad or gw_bad:
        print("FAIL: some requests were not answered 2xx", file=sys.stderr)
        return 1
    return 0 if ratio >= args.min_ratio else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    raise SystemExit(main())
