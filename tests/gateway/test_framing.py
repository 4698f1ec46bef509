"""What a real ``vin-gateway serve`` answers to requests that cannot be framed, byte for byte as
docs/problems.md ("Before the application") states it.

The expected status, content type, body and connection fate come from the doc's table; the bytes
sent for each case are here. A case without a row, or a row without a case, fails."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from tests.gateway.procs import FAST_ENV, running

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parents[2] / "docs" / "problems.md"
SECTION = "## Before the application: what the HTTP server answers itself"
#: Generous bound for an answer or a close (fail-fast against a hang, not a speed check).
WAIT_S = 20.0

ROW = re.compile(
    r"^\| `(?P<case>[a-z0-9-]+)` \| .+? \| (?P<status>\d{3}) \| `(?P<ctype>[^`]+)` \| "
    r"(?P<body>`[^`]+`|problem `[a-z_]+`) \| (?P<connection>closed|kept) \|$"
)
#: The headers of uvicorn's own 400 (the doc names them all).
SERVER_400_HEADERS = {"date", "content-type", "content-length", "connection"}

JSON = b"Content-Type: application/json\r\n"


def post(headers: bytes, body: bytes) -> bytes:
    return b"POST /v1/accounts HTTP/1.1\r\nHost: gw.test\r\n" + JSON + headers + b"\r\n" + body


def get(target: bytes = b"/healthz", headers: bytes = b"Host: gw.test\r\n") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\n" + headers + b"\r\n"


CHUNKED = b"Transfer-Encoding: chunked\r\n"
ONE_CHUNK = b"2\r\n{}\r\n0\r\n\r\n"
LONG_QUERY = b"/healthz?" + b"a" * (65535 - len(b"/healthz?"))
OVER = 16385  # VINGW_MAX_BODY_BYTES (16384) + 1

CASES: dict[str, bytes] = {
    "content-length-not-a-number": post(b"Content-Length: abc\r\n", b"{}"),
    "content-length-negative": post(b"Content-Length: -1\r\n", b"{}"),
    "content-length-signed": post(b"Content-Length: +2\r\n", b"{}"),
    "content-length-inner-space": post(b"Content-Length: 1 2\r\n", b"{}"),
    "content-length-overflow": post(b"Content-Length: 99999999999999999999999\r\n", b"{}"),
    "content-length-twice": post(b"Content-Length: 2\r\nContent-Length: 2\r\n", b"{}"),
    "content-length-and-chunked": post(b"Content-Length: 2\r\n" + CHUNKED, ONE_CHUNK),
    "content-length-zero-and-chunked": post(CHUNKED + b"Content-Length: 0\r\n", b"0\r\n\r\n"),
    "transfer-encoding-unknown": post(b"Transfer-Encoding: gzip\r\n", b"{}"),
    "transfer-encoding-chunked-not-last": post(b"Transfer-Encoding: chunked, gzip\r\n", ONE_CHUNK),
    "chunk-size-not-hex": post(CHUNKED, b"zz\r\n{}\r\n0\r\n\r\n"),
    "chunk-size-overflow": post(CHUNKED, b"ffffffffffffffffff\r\n{}\r\n0\r\n\r\n"),
    "chunk-data-unterminated": post(CHUNKED, b"2\r\n{}XX0\r\n\r\n"),
    "header-space-before-colon": post(b"Transfer-Encoding : chunked\r\n", ONE_CHUNK),
    "header-name-with-space": get(headers=b"Host: gw.test\r\nBad Name: 1\r\n"),
    "header-without-colon": get(headers=b"Host: gw.test\r\nNoColon\r\n"),
    "header-folded": get(headers=b"Host: gw.test\r\nX-A: 1\r\n folded\r\n"),
    "header-control-character": get(headers=b"Host: gw.test\r\nX-A: a\x01b\r\n"),
    "bare-lf": b"GET /healthz HTTP/1.1\nHost: gw.test\n\n",
    "request-line-garbage": b"GARBAGE\r\n\r\n",
    "method-unknown": b"FOO /healthz HTTP/1.1\r\nHost: gw.test\r\n\r\n",
    "method-lowercase": b"get /healthz HTTP/1.1\r\nHost: gw.test\r\n\r\n",
    "http-version-unknown": b"GET /healthz HTTP/9.9\r\nHost: gw.test\r\n\r\n",
    "http2-prior-knowledge": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "target-nul": get(b"/heal\x00thz"),
    "target-too-long": get(LONG_QUERY + b"a"),
    "target-longest": get(LONG_QUERY),
    "header-line-1mib": get(headers=b"Host: gw.test\r\nX-Long: " + b"a" * (1 << 20) + b"\r\n"),
    "headers-5000": get(
        headers=b"Host: gw.test\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(5000))
    ),
    "host-missing": get(headers=b""),
    "body-over-limit": post(b"Content-Length: %d\r\n" % OVER, b"a" * OVER),
    "body-over-limit-chunked": post(CHUNKED, b"%x\r\n" % OVER + b"a" * OVER + b"\r\n0\r\n\r\n"),
}


@dataclass(frozen=True)
class Row:
    case: str
    status: int
    content_type: str
    body: str  # the exact text, or "problem <code>"
    connection: str


def doc_rows() -> dict[str, Row]:
    text = DOC.read_text()
    assert SECTION in text, "docs/problems.md lost its framing section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows: dict[str, Row] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        m = ROW.match(line)
        assert m, f"unparsable row in docs/problems.md: {line}"
        body = m["body"]
        rows[m["case"]] = Row(
            case=m["case"],
            status=int(m["status"]),
            content_type=m["ctype"],
            body=body.strip("`") if body.startswith("`") else "problem " + body.split("`")[1],
            connection=m["connection"],
        )
    return rows


ROWS = doc_rows()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def read_answer(sock: socket.socket, buffer: bytearray) -> Answer:
    """One HTTP/1.1 answer with a Content-Length (all of the gateway's and uvicorn's have one)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {bytes(buffer)!r}"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        assert name.lower() not in headers, f"header {name} twice"
        headers[name.lower()] = value.strip()
    length = int(headers["content-length"])
    body = bytearray(rest)
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    buffer[:] = body[length:]
    return Answer(int(status_line.split(" ")[1]), headers, bytes(body[:length]))


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    env = {**FAST_ENV, "VINGW_DATA_DIR": str(tmp_path_factory.mktemp("framing") / "var")}
    with running(["serve"], env) as (base, _):
        yield int(base.rsplit(":", 1)[1])


def test_every_documented_case_is_sent_and_every_case_documented() -> None:
    assert set(ROWS) == set(CASES)
    assert len(ROWS) >= 30


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_answer_is_what_the_doc_says(port: int, case: str) -> None:
    row = ROWS[case]
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        sock.sendall(CASES[case])
        buffer = bytearray()
        answer = read_answer(sock, buffer)
        assert answer.status == row.status, (case, answer)
        assert answer.headers["content-type"] == row.content_type, case
        if row.body.startswith("problem "):
            problem = orjson.loads(answer.body)
            assert problem["code"] == row.body.removeprefix("problem "), case
            assert problem["status"] == row.status
        else:
            assert answer.body == row.body.encode(), case
        if row.status == 400:
            assert set(answer.headers) == SERVER_400_HEADERS, case
            assert answer.headers["connection"] == "close"
        if row.connection == "closed":
            assert buffer == b""
            assert sock.recv(65536) == b"", f"{case}: more bytes after the answer"
        else:
            assert "connection" not in answer.headers, case
            sock.sendall(get())
            again = read_answer(sock, buffer)
            assert (again.status, again.body) == (200, b'{"status":"ok"}'), case
