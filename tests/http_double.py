"""A small HTTP test double of the Meshes API for the client's error mapping.

The sandbox covers behaviour; this double covers what the sandbox never does on purpose (429 with
Retry-After, 5xx, non-JSON bodies). It runs for real on 127.0.0.1, verifies every machine token as
the docs prescribe, and answers each path with a scripted sequence of responses.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ORG = "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b"
ACCESS_KEY = "mk_testdoubleaccesskey000001"
SECRET_KEY = "s" * 43
PUBLISHABLE_KEY = "mesh_pub_abc.def_ghi-jkl_asdf123"
INGESTION = {("POST", "/events"), ("POST", "/events/bulk")}


@dataclass
class Scripted:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None


class ApiDouble:
    def __init__(self) -> None:
        self.scripts: dict[tuple[str, str], list[Scripted]] = defaultdict(list)
        self.requests: list[dict[str, Any]] = []
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        app = Starlette(routes=[Route("/api/v1/{path:path}", self._handle, methods=["GET", "POST", "PUT", "DELETE"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def script(self, method: str, path: str, *responses: Scripted) -> None:
        self.scripts[(method, path)].extend(responses)

    def start(self) -> ApiDouble:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test double did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)

    async def _handle(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        claims = _verify(request.headers.get("authorization", ""))
        publishable = request.headers.get("x-meshes-publishable-key") == PUBLISHABLE_KEY
        if claims is None and publishable and (request.method, path) in INGESTION:
            claims = {"publishable": True}  # accepted on ingestion only, as documented
        self.requests.append(
            {
                "method": request.method,
                "path": path,
                "claims": claims,
                "headers": dict(request.headers),
                "body": await request.body(),
            }
        )
        if claims is None:
            return JSONResponse(
                {"message": "Unauthorized", "error": {"name": "Unauthorized", "message": "invalid machine token"}},
                status_code=401,
            )
        queue = self.scripts.get((request.method, path))
        if not queue:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if answer.text is not None:
            return Response(answer.text, status_code=answer.status, headers=answer.headers)
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


def _verify(authorization: str) -> dict[str, Any] | None:
    """The documented checks: HS256, kid, iss, aud, org, expiry, lifetime ≤ 60 s."""
    if not authorization.startswith("Bearer "):
        return None
    token = authorization.removeprefix("Bearer ")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(
            token, SECRET_KEY, algorithms=["HS256"], audience="meshes-api", issuer=f"urn:meshes:m2m:{ACCESS_KEY}"
        )
    except jwt.PyJWTError:
        return None
    if header.get("kid") != ACCESS_KEY or claims.get("org") != ORG or claims["exp"] - claims["iat"] > 60:
        return None
    return {"header": header, **claims}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
