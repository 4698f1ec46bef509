"""A lean Redis connection for the request path's commands: multiplexed and pipelined.

Every VIN request makes exactly one Redis call, ``EVALSHA admit.lua``, and its search-log event
is shipped with ``XADD`` in batches. Through redis-py each call walks the script wrapper, the
command dispatcher, the connection pool (a checkout and a release) and the parser, and a lookup
spent more client CPU there than Redis spends running the script. This connection does only
what those calls need, with hiredis packing the commands and parsing the replies in C:

- **multiplexed**: concurrent requests share the connection; replies are matched to commands
  in order (Redis answers a connection in order);
- **pipelined**: the commands of one event-loop turn go out in one write (one system call for
  all the requests that reached Redis in that turn);
- **fail closed, bounded**: each call has the configured timeout (``VINGW_REDIS_TIMEOUT_S``),
  connecting included, one attempt, no retry; a call that times out leaves its place in the
  queue, so a late reply is matched to it and dropped, never to the next caller; a connection
  that answered nothing for a whole timeout is given up (memory stays bounded);
- **reconnect**: a broken connection fails the calls waiting on it and the next call opens a new
  one (AUTH and SELECT as the URL says; ``rediss://`` is TLS with certificate verification,
  ``unix://`` a socket);
- **NOSCRIPT**: a Redis that lost its script cache (a restart, ``SCRIPT FLUSH``) gets the script
  with ``SCRIPT LOAD`` and the call again, both in one write, within the same timeout as the
  first attempt: a call never waits more than one timeout, whatever it takes to make it.

Errors are redis-py's exception types, so the limiter treats them as it treats redis-py's (503
``limiter_unavailable``). The embedded stand-in (fakeredis) has no socket: the limiter keeps
redis-py's script call there.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.kv import cluster_client

Arg = str | bytes | int | float


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP (hiredis's C packer; its stub types the tuple as one element)."""
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]
    return packed


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.pending: deque[asyncio.Future[Any]] = deque()
        self._out: list[bytes] = []
        self.broken: BaseException | None = None
        self.last_reply = time.monotonic()  # replies prove Redis alive; silence drops it
        self._parser = hiredis.Reader(replyError=ResponseError)
        self.task = asyncio.create_task(self._read(reader), name="vingw-admission-reader")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(65_536)
                if not data:
                    raise RedisConnectionError("Redis closed the connection")
                self._parser.feed(data)
                self.last_reply = time.monotonic()
                while (reply := self._parser.gets()) is not False:
                    future = self.pending.popleft()
                    if not future.done():  # a caller that timed out left its place here
                        future.set_result(reply)
        except (Exception, asyncio.CancelledError) as exc:
            self.fail(exc if isinstance(exc, Exception) else RedisConnectionError("closed"))

    def fail(self, exc: BaseException) -> None:
        if self.broken is None:
            self.broken = exc
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(RedisConnectionError("the Redis connection broke"))
        with contextlib.suppress(Exception):
            self.writer.close()

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one packed command; everything queued in this loop turn is written at once."""
        if self.broken is not None:
            raise RedisConnectionError("the Redis connection broke")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.pending.append(future)
        if not self._out:
            loop.call_soon(self._flush)
        self._out.append(packed)
        return future

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.broken is None:
            try:
                self.writer.write(out[0] if len(out) == 1 else b"".join(out))
            except Exception as exc:
                self.fail(exc)


class PipelinedRedis:
    def __init__(self, url: str, *, timeout_s: float) -> None:
        options = parse_url(url)
        self._path: str | None = options.get("path")
        self._host: str = options.get("host", "localhost")
        self._port = int(options.get("port", 6379))
        self._db = int(options.get("db", 0))
        self._username: str | None = options.get("username")
        self._password: str | None = options.get("password")
        self._tls = options.get("connection_class") is SSLConnection
        self._ssl_options: dict[str, Any] = {
            k: v for k, v in options.items() if k.startswith("ssl_")
        }
        self.timeout_s = timeout_s
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._generation = 0  # connections opened so far

    @property
    def live_generation(self) -> int | None:
        """The number of the connection the next call goes out on, or None when the next call
        opens a new one. A call that starts (no await in between) with a live connection uses
        it, so a caller can tell which connection, and so which Redis process, answered it."""
        conn = self._conn
        return self._generation if conn is not None and conn.broken is None else None

    async def execute(self, *args: Arg) -> Any:
        return await self._call(pack(args))

    async def execute_many(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands in one write; their replies in order (errors raised at the end,
        after every reply arrived: no half-read pipeline is left on the connection)."""
        futures: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = await self._connected()
                futures = [conn.send(pack(c)) for c in commands]
                replies = await asyncio.gather(*futures)
        except TimeoutError:
            raise self._timed_out() from None
        except OSError as exc:
            self._drop()
            raise RedisConnectionError(f"Redis is unreachable ({type(exc).__name__})") from None
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return list(replies)

    async def evalsha(self, sha: str, source: str, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """``EVALSHA`` with the script loaded on NOSCRIPT; redis-py's errors on failure.

        One deadline for the whole call: the reload (``SCRIPT LOAD`` and the call again, sent
        in one write on the same connection) spends what is left of the first attempt's
        timeout, never a timeout of its own."""
        packed = pack(("EVALSHA", sha, len(keys), *keys, *args))

        async def call(conn: _Connection) -> Any:
            reply = await conn.send(packed)
            if not (isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT")):
                return reply
            loaded = conn.send(pack(("SCRIPT", "LOAD", source)))
            again = conn.send(packed)
            loaded_reply, reply = await asyncio.gather(loaded, again)
            if isinstance(loaded_reply, ResponseError):
                return loaded_reply
            if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
                return NoScriptError(str(reply))
            return reply

        return await self._bounded(call)

    def _timed_out(self) -> RedisTimeoutError:
        """A call ran out of time. A connection that answered nothing for a whole timeout is
        given up (a frozen Redis, a half-open socket after a failover): the callers waiting on
        it fail now, its buffers go, and the next call connects anew, instead of every call
        timing out on it until TCP itself gives up."""
        conn = self._conn
        if conn is not None and time.monotonic() - conn.last_reply >= self.timeout_s:
            self._drop()
        return RedisTimeoutError("Redis did not answer in time")

    async def _call(self, packed: bytes) -> Any:
        return await self._bounded(lambda conn: conn.send(packed))

    async def _bounded(self, exchange: Callable[[_Connection], Awaitable[Any]]) -> Any:
        """Connect if need be and run ``exchange`` on the connection, all within one timeout."""
        try:
            async with asyncio.timeout(self.timeout_s):
                conn = await self._connected()
                reply = await exchange(conn)
        except TimeoutError:
            raise self._timed_out() from None
        except OSError as exc:
            self._drop()
            raise RedisConnectionError(f"Redis is unreachable ({type(exc).__name__})") from None
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def _connected(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.broken is None:
            return conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # one connect for every caller waiting on it
            conn = self._conn
            if conn is not None and conn.broken is None:
                return conn
            self._drop()
            if self._path is not None:
                reader, writer = await asyncio.open_unix_connection(self._path)
            else:
                context = self._ssl_context() if self._tls else None
                reader, writer = await asyncio.open_connection(self._host, self._port, ssl=context)
            conn = _Connection(reader, writer)
            try:
                if self._password is not None:
                    auth: tuple[str, ...] = (
                        (self._username, self._password) if self._username else (self._password,)
                    )
                    await self._checked(conn.send(pack(("AUTH", *auth))))
                if self._db:
                    await self._checked(conn.send(pack(("SELECT", self._db))))
            except BaseException:
                conn.fail(RedisConnectionError("connection set-up failed"))
                raise
            self._conn = conn
            self._generation += 1
            return conn

    def _ssl_context(self) -> ssl.SSLContext:
        """TLS as the URL asks (``rediss://``, ``ssl_ca_certs``, ``ssl_cert_reqs``,
        ``ssl_certfile``/``ssl_keyfile``); certificates are verified unless it says none."""
        o = self._ssl_options
        context = ssl.create_default_context(cafile=o.get("ssl_ca_certs"))
        if o.get("ssl_certfile"):
            context.load_cert_chain(o["ssl_certfile"], o.get("ssl_keyfile"))
        if str(o.get("ssl_cert_reqs", "required")).lower() in {"none", "0"}:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    @staticmethod
    async def _checked(future: asyncio.Future[Any]) -> None:
        reply = await future
        if isinstance(reply, ResponseError):
            raise RedisConnectionError(f"Redis refused the connection set-up: {reply}")

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.fail(RedisConnectionError("connection dropped"))
            self._conn.task.cancel()
            self._conn = None

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await conn.task
            conn.fail(RedisConnectionError("closed"))
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()


class ClusterPipelined:
    """The same calls as ``PipelinedRedis`` on a Redis Cluster (``VINGW_REDIS_CLUSTER=true``),
    through redis-py's ``RedisCluster``: each command goes to the master of its key's hash slot
    (redis-py computes it as Redis does: CRC16 of the hash tag), MOVED and ASK are followed
    with a slot-map refresh, and a batch (``execute_many``) is split per master and sent in
    one pipeline each. One deadline per call (``timeout_s``), redirections and the NOSCRIPT
    reload included, one attempt: the bounds of ``PipelinedRedis``.

    Why not a slot-aware ``PipelinedRedis`` (one multiplexed connection per master): measured
    in docs/deploy.md "Redis Cluster"; this is the simpler of the two.

    ``live_generation`` is always None: there is no one connection whose Redis process the
    limiter could trust between calls, so the admission script checks the running process
    (INFO server, on the account's own master) for every attested admission."""

    live_generation: int | None = None

    def __init__(self, url: str, *, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.client = cluster_client(url, timeout_s=timeout_s)

    async def _bounded(self, call: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await call
        except TimeoutError:
            raise RedisTimeoutError("Redis did not answer in time") from None
        except OSError as exc:
            raise RedisConnectionError(f"Redis is unreachable ({type(exc).__name__})") from None

    async def execute(self, *args: Arg) -> Any:
        return await self._bounded(self.client.execute_command(*args))

    async def execute_many(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands, one pipeline per master; their replies in order (the first error
        raised after every reply arrived)."""

        async def run() -> list[Any]:
            await self.client.initialize()  # the slot map first (a no-op once known)
            pipe = self.client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=True))

        replies: list[Any] = await self._bounded(run())
        return replies

    async def evalsha(self, sha: str, source: str, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """``EVALSHA`` on the keys' master, the script loaded there on NOSCRIPT (within the same
        deadline)."""

        async def call() -> Any:
            try:
                return await self.client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                key = keys[0]
                node = self.client.get_node_from_key(
                    key.decode() if isinstance(key, bytes) else str(key)
                )
                await self.client.execute_command("SCRIPT LOAD", source, target_nodes=node)
                return await self.client.evalsha(sha, len(keys), *keys, *args)

        return await self._bounded(call())

    async def aclose(self) -> None:
        await self.client.aclose()


Admission = PipelinedRedis | ClusterPipelined


def make_pipelined(url: str, *, timeout_s: float, cluster: bool) -> Admission:
    """The lean connection for ``url``: one server, or the cluster it belongs to."""
    if cluster:
        return ClusterPipelined(url, timeout_s=timeout_s)
    return PipelinedRedis(url, timeout_s=timeout_s)
