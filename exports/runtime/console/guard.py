"""Who may use the console: its own host names, its per-session secret and, for what acts or streams, proof
of the same origin.

Starlette's :class:`~starlette.middleware.trustedhost.TrustedHostMiddleware` refuses a ``Host`` that is not
one of :func:`allowed_hosts` (a DNS-rebinding page sends its own name). :class:`Guard` checks the rest:

- the secret, from the ``X-BMI-Token`` header (scripts) or the session cookie that opening
  ``/?token=SECRET`` sets (HttpOnly, so no script reads it; SameSite=Strict, so no other site's request
  carries it);
- same-origin proof for controls, cues, paradigms, the event stream and the runs API: an ``Origin`` header
  equal to the console's own origin, or ``Sec-Fetch-Site: same-origin`` (what browsers send on a page's own
  requests, where they send no ``Origin``). A request with neither is refused: a client that is not a browser
  sends ``Origin`` itself.
"""

from __future__ import annotations

import hmac
import socket
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..inputs import LOOPBACK

WILDCARDS = ("0.0.0.0", "::", "")


def allowed_hosts(host: str) -> list[str]:
    """The names a request's ``Host`` may carry: loopback's, the bound address, and for a wildcard bind this
    machine's own names (bind to an address to reach the console by that address)."""
    names = set(LOOPBACK) | ({host} if host not in WILDCARDS else {socket.gethostname(), socket.getfqdn()})
    return sorted(n.lower() for n in names if n)


class Guard:
    def __init__(self, secret: str, port: int):
        self.secret = secret.encode()
        self.cookie = f"bmi_console_{port}"  # cookies are per host, not per port: one name per console

    def _has_secret(self, request: Request) -> bool:
        given = request.headers.get("x-bmi-token") or request.cookies.get(self.cookie) or ""
        return hmac.compare_digest(given.encode(), self.secret)

    @staticmethod
    def origin_problem(request: Request) -> str | None:
        """Why the request does not come from the console's own page, or None."""
        origin = request.headers.get("origin")
        if origin is not None:
            own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
            return None if origin.lower() == own else f"cross-origin request from {origin} refused"
        if request.headers.get("sec-fetch-site") == "same-origin":
            return None
        return ("no proof of the same origin: the request needs an Origin header equal to the console's own "
                "(or a browser's Sec-Fetch-Site: same-origin)")

    def check(self, request: Request, *, same_origin: bool = True) -> Response | None:
        """None when the request may go on, else the refusal (403 with the reason)."""
        if not self._has_secret(request):
            return JSONResponse({"ok": False, "message": "missing or wrong console secret (open the console with the "
                                 "URL bmi serve printed, or send the X-BMI-Token header)"}, 403)
        problem = same_origin and self.origin_problem(request)
        if problem:
            return JSONResponse({"ok": False, "message": problem}, 403)
        return None

    def page(self, request: Request) -> Response | None:
        """A page: ``?token=`` right sets the cookie and reloads the page without it; else the cookie."""
        given = request.query_params.get("token")
        if given is not None:
            if not hmac.compare_digest(given.encode(), self.secret):
                return self._refused_page()
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            response = RedirectResponse(request.url.path + (f"?{urlencode(rest)}" if rest else ""), 303)
            response.set_cookie(self.cookie, given, httponly=True, samesite="strict", path="/")
            return response
        return None if self._has_secret(request) else self._refused_page()

    @staticmethod
    def _refused_page() -> Response:
        return HTMLResponse("<!doctype html><title>bmi console</title><h1>This console needs its secret</h1>"
                            "<p>Open it with the address <code>bmi serve</code> (or <code>bmi console</code>) printed, "
                            "<code>http://HOST:PORT/?token=...</code>, or the one your lab gave you.</p>", 403)
