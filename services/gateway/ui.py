"""The web UI: the lookup and notifications pages, their static files, and the browser
login that stands in for bearer tokens when ``LOOKOUT_API_TOKENS`` is set.

Pages are plain HTML templates in ``static/`` filled with two values (the CSRF token and
the logout form); everything else is static CSS and JavaScript, no build step. Every page
is served with a strict Content-Security-Policy (no inline script or style), so data shown
by the scripts can only ever be text.

Login: ``POST /login`` with one of the API tokens opens a session, an opaque random id in
an HttpOnly, SameSite=Strict cookie (Secure over https). Sessions live in the NATS KV
bucket ``ui_sessions`` (see :class:`Sessions`), so they survive a gateway restart and every
gateway replica honours them: no sticky sessions needed. The bucket holds a SHA-256 of the
session id, never the id itself, with the session's CSRF token and expiry; its TTL is the
session lifetime (12 h), so an expired session vanishes by itself. Every request that
carries the cookie looks the session up in the bucket (there is no local cache), so a
logout on one replica ends the session on every replica at once. When the bus is down, a
request that needs its session checked answers 503 with a JSON reason, never a logout.

A request to ``/api`` authenticated by that cookie that changes state must carry the
session's CSRF token in the ``X-CSRF-Token`` header (the pages read it from
``<meta name="csrf-token">``); bearer-token clients are not concerned. The login form
itself is guarded by an Origin check and a double-submit token, so no other site can log a
browser in with its own token. Failed logins are throttled per client and globally, with
backoff (:mod:`services.gateway.loginlimit`): 429 with ``Retry-After``, the right token
included, while locked out.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import math
import mimetypes
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from services.gateway import hosts
from services.gateway import state as gateway_state
from services.gateway.answers import api_json
from services.gateway.hardening import FORM_MAX_BYTES, capped, too_large
from services.gateway.loginlimit import LOGIN_THROTTLE, LoginThrottle, client_of
from services.gateway.state import BUS, SETTINGS, Bus
from shared.core import logging as log
from shared.core.settings import Settings
from shared.lookups import catalog

_log = log.get("gateway")

STATIC_DIR = Path(__file__).parent / "static"
SESSION_COOKIE = "lookout_session"
LOGIN_COOKIE = "lookout_login"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL = gateway_state.SESSION_TTL
FAILED_LOGIN_DELAY = 0.3
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cross-Origin-Opener-Policy": "same-origin",
}
"""What the UI's answers add to the headers every gateway answer gets (hardening.HEADERS)."""

# --------------------------------------------------------------------------- sessions


class Session(msgspec.Struct, frozen=True):
    """What the bucket keeps of a session: its CSRF token, when it ends (Unix time) and
    which API token logged it in (its index; None in sessions from before it was kept)."""

    csrf: str
    expires: float
    token: int | None = None


class SessionStoreUnavailable(Exception):
    """The session bucket cannot be reached: a session can be neither confirmed nor refused."""


SESSION_UNAVAILABLE = "session store unavailable (message bus unreachable): retry in a moment"
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{32,64}")
_encode_session = msgspec.json.Encoder().encode
_decode_session = msgspec.json.Decoder(Session).decode


def session_key(session_id: str) -> str:
    """The session's key in the bucket: a SHA-256 of its id, never the id itself, so what
    the bucket holds cannot be replayed as a cookie."""
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """Browser sessions in the NATS KV bucket ``ui_sessions``, shared by every gateway
    replica and kept across restarts. The bucket's TTL is the session lifetime, so an
    expired session vanishes by itself; its expiry is checked on every lookup too."""

    def __init__(self, the_bus: Bus, ttl: float = SESSION_TTL) -> None:
        self.bus = the_bus
        self.ttl = ttl
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        js = self.bus.js
        if js is None or not self.bus.usable:
            raise SessionStoreUnavailable
        if self._kv is None:
            try:
                self._kv = await js.key_value(gateway_state.SESSIONS_BUCKET)
            except Exception as exc:
                raise SessionStoreUnavailable from exc
        return self._kv

    async def create(self, token: int | None = None) -> tuple[str, Session]:
        kv = await self._bucket()
        session_id = secrets.token_urlsafe(32)
        session = Session(
            csrf=secrets.token_urlsafe(32), expires=time.time() + self.ttl, token=token
        )
        try:
            await kv.put(session_key(session_id), _encode_session(session))
        except Exception as exc:
            raise SessionStoreUnavailable from exc
        return session_id, session

    async def get(self, session_id: str) -> Session | None:
        kv = await self._bucket()
        try:
            entry = await kv.get(session_key(session_id))
        except KeyNotFoundError:  # never made, logged out, or expired
            return None
        except Exception as exc:
            raise SessionStoreUnavailable from exc
        try:
            session = _decode_session(entry.value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        return session if session.expires > time.time() else None

    async def drop(self, session_id: str) -> None:
        kv = await self._bucket()
        try:
            await kv.delete(session_key(session_id))
        except Exception as exc:
            raise SessionStoreUnavailable from exc


SESSIONS = web.AppKey("ui_sessions", Sessions)


async def session_of(request: web.Request) -> Session | None:
    """The request's session, or None; :class:`SessionStoreUnavailable` when it cannot be
    told (the bus is down)."""
    sessions = request.config_dict.get(SESSIONS)
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if sessions is None or not _SESSION_ID.fullmatch(session_id):
        return None
    try:
        return await sessions.get(session_id)
    except SessionStoreUnavailable:
        _log.warning("session lookup failed: message bus unavailable", path=request.path)
        raise


def _unavailable() -> web.Response:
    """503 for a request whose session cannot be checked: not a silent logout."""
    return api_json(
        503,
        {"error": SESSION_UNAVAILABLE},
        _headers(**{"Retry-After": "5", "Cache-Control": "no-store"}),
    )


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison that does not leak the length either."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def token_index(settings: Settings, given: str) -> int | None:
    """Which of the API tokens ``given`` is (its index), or None; compared in constant time
    with every token (no early exit), for the bearer header and the login form alike."""
    found: int | None = None
    for index, expected in enumerate(settings.api_tokens):
        if _same(given, expected.reveal()):
            found = index
    return found if given else None


def _cross_site(request: web.Request) -> bool:
    """Whether a browser says this request comes from another site (or an opaque origin).
    ``Sec-Fetch-Site`` is trusted when sent (it survives proxies that rewrite ``Host``);
    older browsers are judged by ``Origin`` against ``Host``."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc.lower() != request.host.lower()


async def cookie_auth_failure(request: web.Request) -> tuple[int, str] | None:
    """For an ``/api`` request without ``Authorization`` but with the session cookie:
    None when it may pass, else (status, reason); 503 when the session cannot be checked."""
    try:
        session = await session_of(request)
    except SessionStoreUnavailable:
        return 503, SESSION_UNAVAILABLE
    if session is None:
        return 401, "session expired or invalid: log in again (or use a bearer token)"
    if request.method in SAFE_METHODS:
        return None
    given = request.headers.get(CSRF_HEADER, "")
    if not given:
        return 403, f"missing {CSRF_HEADER} header (needed with a session cookie)"
    if not _same(given, session.csrf):
        return 403, f"{CSRF_HEADER} does not match the session"
    if _cross_site(request):
        return 403, "cross-site request refused"
    return None


def open_api_failure(request: web.Request) -> str | None:
    """For the open API (no tokens, loopback only): a state-changing request that a
    browser marks as coming from another site is refused, so a web page cannot drive it."""
    if request.method not in SAFE_METHODS and _cross_site(request):
        return "cross-site request refused"
    return None


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: str
    etag: str


def _load(name: str) -> _File:
    body = (STATIC_DIR / name).read_bytes()
    content_type = {
        ".js": "text/javascript",
        ".css": "text/css",
        ".svg": "image/svg+xml",
        ".html": "text/html",
    }.get(Path(name).suffix) or (mimetypes.guess_type(name)[0] or "application/octet-stream")
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return _File(body, content_type, etag)


STATIC = web.AppKey("ui_static", dict[str, _File])
TEMPLATES = web.AppKey("ui_templates", dict[str, str])
PAGES = (
    "index.html",
    "notifications.html",
    "silences.html",
    "login.html",
    "indicator.html",
    "watches.html",
)
ASSETS = (
    "app.css",
    "theme.js",
    "common.js",
    "lookup.js",
    "render.js",
    "notifications.js",
    "silences.js",
    "login.js",
    "indicator.js",
    "watches.js",
    "favicon.svg",
)
"""What ``/static/`` serves (other files in ``static/`` belong to other pages)."""


def _headers(**extra: str) -> dict[str, str]:
    return {**PAGE_HEADERS, **extra}


async def static_file(request: web.Request) -> web.StreamResponse:
    found = request.app[STATIC].get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound(headers=_headers())
    headers = _headers(ETag=found.etag, **{"Cache-Control": "no-cache"})
    if request.headers.get("If-None-Match") == found.etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=found.body, content_type=found.content_type, headers=headers)


# --------------------------------------------------------------------------- pages


def _render(
    request: web.Request, page: str, session: Session | None, status: int = 200, **values: str
) -> web.Response:
    logout = ""
    if session is not None:
        logout = (
            '<form method="post" action="/logout" class="logout">'
            f'<input type="hidden" name="csrf" value="{html.escape(session.csrf)}">'
            '<button type="submit" class="btn btn-quiet">Log out</button></form>'
        )
    text = request.app[TEMPLATES][page]
    fills = {
        "csrf": html.escape(session.csrf) if session else "",
        "session": logout,
        **{k: html.escape(v) for k, v in values.items()},
    }
    text = re.sub(r"\{\{(\w+)\}\}", lambda m: fills.get(m[1], ""), text)
    return web.Response(
        status=status,
        text=text,
        content_type="text/html",
        headers=_headers(**{"Cache-Control": "no-store"}),
    )


def _login_page(
    request: web.Request, status: int = 200, error: str = "", next_path: str | None = None
) -> web.Response:
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    fresh = not re.fullmatch(r"[A-Za-z0-9_-]{32,64}", nonce)
    if fresh:
        nonce = secrets.token_urlsafe(32)
    response = _render(
        request,
        "login.html",
        None,
        status,
        login_csrf=nonce,
        error=error,
        next=next_path if next_path is not None else _next(request),
    )
    if fresh:
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            httponly=True,
            samesite="Strict",
            secure=_is_https(request),
            path="/login",
            max_age=3600,
        )
    return response


def _next(request: web.Request) -> str:
    if request.path == "/login":
        wanted = request.query.get("next", "/")
        return wanted if _safe_next(wanted) else "/"
    return request.path_qs if _safe_next(request.path_qs) else request.path


def _safe_next(value: str) -> bool:
    """A path on this site: no scheme, no host, no ``//`` or ``/\\`` tricks; printable
    ASCII without spaces or backslashes only."""
    return bool(re.fullmatch(r"/(?![/\\])[\x21-\x5b\x5d-\x7e]*", value)) and len(value) <= 2048


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers=_headers(Location=location))


def _is_https(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.scheme == "https" or forwarded == "https"


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        settings: Settings = request.app[SETTINGS]
        if not settings.api_tokens:  # the open UI (loopback only): no login, no session
            return _render(request, name, None)
        try:
            session = await session_of(request)
        except SessionStoreUnavailable:
            return _unavailable()
        if session is None:
            return _login_page(request)
        return _render(request, name, session)

    return handler


async def login_form(request: web.Request) -> web.StreamResponse:
    if not request.app[SETTINGS].api_tokens:
        return _redirect("/")
    try:
        if await session_of(request) is not None:
            return _redirect("/")
    except SessionStoreUnavailable:
        return _unavailable()
    return _login_page(request)


async def login(request: web.Request) -> web.StreamResponse:
    settings: Settings = request.app[SETTINGS]
    if not settings.api_tokens:
        return _redirect("/")
    browser_said = "Origin" in request.headers or "Sec-Fetch-Site" in request.headers
    if _cross_site(request) or not browser_said:
        return web.Response(
            status=403,
            text="login refused: the form must be sent from this site",
            headers=_headers(),
        )
    try:
        form = await _small_form(request)
    except web.HTTPRequestEntityTooLarge:
        return too_large(FORM_MAX_BYTES)
    token = str(form.get("token", "")).strip()
    nonce = str(form.get("csrf", ""))
    wanted = str(form.get("next", "/"))
    wanted = wanted if _safe_next(wanted) else "/"
    expected_nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not expected_nonce or not _same(nonce, expected_nonce):
        return _login_page(request, 403, "The form expired: please try again.", wanted)
    # Checked, compared and counted with no await in between (see loginlimit).
    throttle = request.app[LOGIN_THROTTLE]
    client = client_of(request.remote)
    wait = throttle.check(client)
    if wait > 0:  # the token is not even looked at: a guess cannot be confirmed
        return _locked_out(request, wait, wanted)
    index = token_index(settings, token)
    if index is None:
        lockout = throttle.failed(client)
        if lockout > 0:
            _log.warning("ui login failed, client locked out", remote=request.remote, s=lockout)
        else:
            _log.info("ui login failed", remote=request.remote)
        await asyncio.sleep(FAILED_LOGIN_DELAY)  # slows guessing down
        return _login_page(request, 401, "That token is not valid.", wanted)
    throttle.succeeded(client)
    try:
        session_id, _ = await request.app[SESSIONS].create(index)
    except SessionStoreUnavailable:
        _log.warning("ui login failed: message bus unavailable", remote=request.remote)
        return _unavailable()
    response = _redirect(wanted)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="Strict",
        secure=_is_https(request),
        path="/",
    )
    response.del_cookie(LOGIN_COOKIE, path="/login")
    _log.info("ui login", remote=request.remote)
    return response


def _locked_out(request: web.Request, wait: float, wanted: str) -> web.Response:
    """429 with ``Retry-After``: too many failed logins from this client (or everywhere)."""
    seconds = max(1, math.ceil(wait))
    message = f"Too many failed logins: try again in {seconds} s."
    response = _login_page(request, 429, message, wanted)
    response.headers["Retry-After"] = str(seconds)
    return response


async def _small_form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | FileField]:
    """The login/logout form, refused beyond :data:`FORM_MAX_BYTES`."""
    return await capped(request, FORM_MAX_BYTES).post()


async def logout(request: web.Request) -> web.StreamResponse:
    try:
        session = await session_of(request)
    except SessionStoreUnavailable:
        return _unavailable()
    if session is not None:
        try:
            form = await _small_form(request)
        except web.HTTPRequestEntityTooLarge:
            return too_large(FORM_MAX_BYTES)
        given = str(form.get("csrf", "")) or request.headers.get(CSRF_HEADER, "")
        if not _same(given, session.csrf) or _cross_site(request):
            return web.Response(
                status=403, text="logout refused: missing or wrong CSRF token", headers=_headers()
            )
        try:
            await request.app[SESSIONS].drop(request.cookies[SESSION_COOKIE])
        except SessionStoreUnavailable:
            return _unavailable()
    response = _redirect("/login" if request.app[SETTINGS].api_tokens else "/")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def _provider_choices(settings: Settings) -> str:
    """One checked box per provider the launcher registered that is on, in column order."""
    return "\n".join(
        '<label class="check"><input type="checkbox" name="provider" '
        f'value="{html.escape(spec.name)}" checked> {html.escape(spec.label)}</label>'
        for spec in catalog.active(settings)
    )


NAV = (
    ("/", "Lookups", "index.html"),
    ("/watches", "Watches", "watches.html"),
    ("/notifications", "Notifications", "notifications.html"),
    ("/silences", "Silences", "silences.html"),
)
"""The main navigation of every page: path, label, and the page that marks it current."""


def _nav(page: str) -> str:
    """The navigation of ``page`` (its own link marked ``aria-current``)."""
    current = ' aria-current="page"'
    links = "".join(
        f'\n    <a href="{path}"{current if mine == page else ""}>{label}</a>'
        for path, label, mine in NAV
    )
    return f'<nav aria-label="Main">{links}\n  </nav>'


def setup(app: web.Application) -> None:
    """Add the pages, the static files and the login routes to the gateway app."""
    app[SESSIONS] = Sessions(app[BUS])
    app[LOGIN_THROTTLE] = LoginThrottle()
    # One navigation for every page (the same for every request), filled in once.
    app[TEMPLATES] = {
        name: (STATIC_DIR / name).read_text("utf-8").replace("{{nav}}", _nav(name))
        for name in PAGES
    }
    # The lookup form's provider choices, from the catalog (the same for every request).
    app[TEMPLATES]["index.html"] = app[TEMPLATES]["index.html"].replace(
        "{{providers}}", _provider_choices(app[SETTINGS])
    )
    app[STATIC] = {name: _load(name) for name in ASSETS}
    # Browser-readable answers: behind the Host check (DNS rebinding, see hosts).
    app.router.add_get("/", hosts.guarded(_page("index.html")))
    app.router.add_get("/notifications", hosts.guarded(_page("notifications.html")))
    # An indicator's history (its value is read by indicator.js from the path) and watches.
    app.router.add_get("/indicator/{value:.+}", hosts.guarded(_page("indicator.html")))
    app.router.add_get("/watches", hosts.guarded(_page("watches.html")))
    app.router.add_get("/silences", hosts.guarded(_page("silences.html")))
    app.router.add_get("/login", hosts.guarded(login_form))
    app.router.add_post("/login", hosts.guarded(login))
    app.router.add_post("/logout", hosts.guarded(logout))
    app.router.add_get("/static/{name}", hosts.guarded(static_file))
