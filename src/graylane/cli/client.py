"""The CLI's HTTP client to the control plane API, turning API errors back into GraylaneErrors.

It authenticates with `$GRAYLANE_TOKEN` when set, else with the token the local control plane wrote
to the state folder (`$GRAYLANE_STATE/cli-token`), sent only to a loopback address."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx

from graylane.errors import Conflict, Forbidden, GraylaneError, NotFound, ValidationError
from graylane.settings import read_cli_token, server_address

_BY_STATUS: dict[int, type[GraylaneError]] = {403: Forbidden, 404: NotFound, 409: Conflict, 422: ValidationError}


class _Unreachable(GraylaneError):
    """No connection to the control plane (nothing was sent)."""


class _Stopping(GraylaneError):
    """503 with Retry-After: the control plane that answered is stopping (draining); another replica answers."""

    retry_after_s = 1.0


class ApiClient:
    def __init__(self, base_url: str | None = None, token: str | None = None, timeout: float = 60.0) -> None:
        self.base_url = base_url or server_address().url
        token = token or os.environ.get("GRAYLANE_TOKEN") or (read_cli_token() if _local(self.base_url) else None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, trust_env=False)

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.ConnectError:
            raise _Unreachable(f"cannot reach the Graylane control plane at {self.base_url}",
                                hint="start it with `graylane up`, or set GRAYLANE_SERVER") from None
        if resp.status_code == 503 and resp.headers.get("retry-after", "").isdigit():
            err = error_from_response(resp)
            stopping = _Stopping(err.message, where=err.where, hint=err.hint)
            stopping.retry_after_s = min(float(resp.headers["retry-after"]), 5.0)
            raise stopping
        if resp.status_code >= 400:
            raise error_from_response(resp)
        if not resp.content:
            return None
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.text

    def idempotent(self, method: str, path: str, *, attempts: int = 3, **kw: Any) -> Any:
        """A request sent with a fresh `Idempotency-Key` (one per user action) and sent again with the same key
        when the connection failed before an answer came, or the control plane answered that it is stopping
        (503 with Retry-After, after that wait: behind a Service the next try reaches another replica). The server
        records the action once."""
        headers = {**(kw.pop("headers", None) or {}), "Idempotency-Key": str(uuid.uuid4())}
        for attempt in range(attempts):
            try:
                return self.request(method, path, headers=headers, **kw)
            except (httpx.TransportError, _Unreachable, _Stopping) as exc:
                if attempt == attempts - 1:
                    raise
                if isinstance(exc, _Stopping):
                    time.sleep(exc.retry_after_s)
        return None

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Any:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Any:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    def close(self) -> None:
        self._http.close()


def error_from_response(resp: httpx.Response) -> GraylaneError:
    """API errors are `{"error": {"message", "where", "hint"}}` (see graylane.server.app); Prometheus' query API
    answers `{"status": "error", "error": "..."}` (graylane.server.api.prometheus)."""
    try:
        body = resp.json()
        err = body.get("error") or {} if isinstance(body, dict) else {}
    except ValueError:
        err = {"message": resp.text.strip() or resp.reason_phrase}
    if not isinstance(err, dict):
        err = {"message": str(err)}
    cls = _BY_STATUS.get(resp.status_code, GraylaneError)
    return cls(str(err.get("message") or resp.reason_phrase), where=err.get("where"), hint=err.get("hint"))


def _local(url: str) -> bool:
    """The state folder's token belongs to the control plane on this machine: never send it elsewhere."""
    import ipaddress

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
