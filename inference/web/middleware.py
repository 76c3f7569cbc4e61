"""ASGI guards in front of the whole app (API and demo alike): the API token and the body size cap."""
from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "cvg_token"


async def send_json(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """One JSON error {"error": message} with its status, straight on the ASGI channel."""
    body = json.dumps({"error": message, "status": status}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class TokenGuard:
    """Every HTTP and websocket request must carry the token: `Authorization: Bearer <token>`,
    `X-API-Token: <token>`, or the cookie a browser gets by opening any page once with `?token=<token>`."""

    def __init__(self, app: ASGIApp, token: str):
        self.app, self.token = app, token.encode()

    def _ok(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        cookie = SimpleCookie(headers.get("cookie", ""))
        from_cookie = cookie[COOKIE].value if COOKIE in cookie else None
        if self._ok(bearer) or self._ok(headers.get("x-api-token")) or self._ok(from_cookie):
            return await self.app(scope, receive, send)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = next((v for k, v in query if k == "token"), None)
        if scope["type"] == "http" and scope.get("method") == "GET" and self._ok(given):
            # a browser opened the page with ?token=: keep it in a cookie and drop it from the address
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", location.encode()), (b"content-length", b"0"),
                                    (b"set-cookie", f"{COOKIE}={given}; HttpOnly; SameSite=Strict; Path=/".encode())]})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        what = "wrong API token" if (bearer or headers.get("x-api-token") or from_cookie or given) else "no API token"
        await send_json(send, 401, f"{what}: send 'Authorization: Bearer <token>' (or open the page once "
                                   "with ?token=<token>); the server's token is its --token or $CVG_API_TOKEN",
                        [(b"www-authenticate", b"Bearer")])


class BodyLimit:
    """Refuse (413) a request body larger than `max_bytes`, by its Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = (f"request body above this server's limit of {self.max_bytes} bytes: send less "
                   "(or raise the server's --max-body)")
        for k, v in scope.get("headers", []):
            if k.lower() == b"content-length" and v.isdigit() and int(v) > self.max_bytes:
                return await send_json(send, 413, message)
        # read the body up to the cap, then hand it on whole (bodies here are small: JSON and latent files)
        chunks, seen = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                return await send_json(send, 413, message)
            chunks.append(chunk)
            if not msg.get("more_body"):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)
