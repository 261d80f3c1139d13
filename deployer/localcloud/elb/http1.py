"""HTTP/1.1 framing for the load balancer's proxy, on h11: read events, rewrite heads, tunnel.

h11 parses and frames every message (one ``h11.Connection`` per client connection as the
server, one per target connection as the client); this module adds what a proxy needs on
top: the request head rewritten with the hop-by-hop headers dropped and the
``X-Forwarded-*`` ones added, the response head with its hop-by-hop headers dropped, reads
bounded by the idle timeout, and after a 101 bytes both ways. Errors are :class:`Broken`
(a read or write stopped, saying which side and whether by timeout) and h11's own
protocol errors, which the load balancer turns into the ALB's 400, 502 and 504.
"""

from __future__ import annotations

import asyncio

import h11

CHUNK = 65536
HEAD_LIMIT = 65536
_HOP_BY_HOP_REQUEST = frozenset((b"connection", b"keep-alive", b"proxy-connection", b"te",
                                 b"upgrade", b"expect", b"x-forwarded-for",
                                 b"x-forwarded-proto", b"x-forwarded-port"))
_HOP_BY_HOP_RESPONSE = frozenset((b"connection", b"keep-alive"))
_REASONS = {400: "Bad Request", 502: "Bad Gateway", 503: "Service Temporarily Unavailable",
            504: "Gateway Time-out"}


class Broken(Exception):
    """A read or write stopped: ``reading`` says whether the source (not the sink) failed."""

    def __init__(self, reading: bool, timeout: bool = False) -> None:
        super().__init__("read" if reading else "write")
        self.reading = reading
        self.timeout = timeout


def server() -> h11.Connection:
    return h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)


def client() -> h11.Connection:
    return h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_LIMIT)


async def next_event(conn: h11.Connection, reader: asyncio.StreamReader,
                     idle: float) -> object:
    """The next h11 event, reading as needed; raises :class:`Broken` on timeout or error."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            async with asyncio.timeout(idle):
                data = await reader.read(CHUNK)
        except TimeoutError:
            raise Broken(True, timeout=True) from None
        except OSError:
            raise Broken(True) from None
        conn.receive_data(data)  # b"" at the end: h11 decides whether a body ended there


def upstream_request(request: h11.Request, client_ip: bytes, port: bytes,
                     upgrade: bool) -> h11.Request:
    headers = []
    forwarded_for = b""
    upgrade_line = None
    has_host = False
    for name, value in request.headers.raw_items():
        lname = name.lower()
        if lname not in _HOP_BY_HOP_REQUEST:
            has_host = has_host or lname == b"host"
            headers.append((name, value))
        elif lname == b"x-forwarded-for":
            forwarded_for = value
        elif lname == b"upgrade":
            upgrade_line = (name, value)
    if not has_host:
        headers.append((b"Host", b"%s:%s" % (client_ip, port)))
    if upgrade and upgrade_line is not None:
        headers.append(upgrade_line)
        headers.append((b"Connection", b"upgrade"))
    headers.append((b"X-Forwarded-For",
                    forwarded_for + b", " + client_ip if forwarded_for else client_ip))
    headers.append((b"X-Forwarded-Proto", b"http"))
    headers.append((b"X-Forwarded-Port", port))
    return h11.Request(method=request.method, target=request.target, headers=headers)


def wants_upgrade(request: h11.Request) -> bool:
    connection = b""
    upgrade = False
    for name, value in request.headers:
        if name == b"connection":
            connection += b"," + value.lower()
        elif name == b"upgrade":
            upgrade = True
    return upgrade and b"upgrade" in {t.strip() for t in connection.split(b",")}


def client_response(response: h11.Response, until_close: bool) -> h11.Response:
    """The target's answer for the client: its own headers, less this hop's."""
    headers = [(n, v) for n, v in response.headers.raw_items()
               if n.lower() not in _HOP_BY_HOP_RESPONSE]
    if until_close:
        headers.append((b"Connection", b"close"))  # the body ends when the connection does
    return h11.Response(status_code=response.status_code, headers=headers,
                        reason=response.reason)


def has_no_length(response: h11.Response, method: bytes) -> bool:
    if method == b"HEAD" or response.status_code in (204, 304):
        return False
    names = {name for name, _ in response.headers}
    return b"content-length" not in names and b"transfer-encoding" not in names


def error_events(status: int, keep_alive: bool) -> list:
    title = f"{status} {_REASONS[status]}"
    body = (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n").encode()
    headers = [(b"Server", b"awselb/2.0"), (b"Content-Type", b"text/html"),
               (b"Content-Length", str(len(body)).encode())]
    if not keep_alive:
        headers.append((b"Connection", b"close"))
    return [h11.Response(status_code=status, headers=headers, reason=_REASONS[status]),
            h11.Data(data=body), h11.EndOfMessage()]


def raw_error(status: int) -> bytes:
    """An error page outside any h11 state (the request never parsed)."""
    conn = h11.Connection(h11.SERVER)
    return b"".join(conn.send(event) or b"" for event in error_events(status, False))


async def tunnel(creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter,
                 treader: asyncio.StreamReader, twriter: asyncio.StreamWriter,
                 idle: float) -> None:
    """After a 101: bytes both ways until one side closes or both stay idle too long."""
    loop = asyncio.get_running_loop()
    last = [loop.time()]

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while True:
            try:
                async with asyncio.timeout(idle):
                    data = await src.read(CHUNK)
            except TimeoutError:
                if loop.time() - last[0] >= idle:
                    return
                continue
            if not data:
                return
            last[0] = loop.time()
            dst.write(data)
            await dst.drain()

    pumps = [asyncio.ensure_future(pump(creader, twriter)),
             asyncio.ensure_future(pump(treader, cwriter))]
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
