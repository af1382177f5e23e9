"""The client for Intercom's REST API: one request at a time, on the workspace's regional
host, never following a redirect, cut off at a deadline (connecting, sending and reading
alike), reading a bounded answer; each refusal (401, 403, 404, 429, 5xx) an IntercomError
whose message a person can act on. Also /me (whose token is this?) and revoking a token.
Imports plumbing.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
import socket
import threading
import time
import unicodedata
from contextvars import ContextVar, Token
from datetime import datetime
from typing import Any

import requests
import urllib3
from flask import current_app
from requests.adapters import HTTPAdapter
from sqlalchemy import Select, func, select
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from hedwig_app.plumbing import clean_text, id_or_none, text_or_none
from models import EMAIL_MAX, PREVIEW_WORKSPACE_ID, REGION_MAX, IntercomConnection, db, utcnow

INTERCOM_API_VERSION = "2.11"
INTERCOM_ANSWER_MAX = 1024 * 1024  # bytes: Hedwig reads small JSON answers, or none
CALL_TIMEOUTS = 3  # a whole call (connect, send, read the answer) lasts at most 3 timeouts
REGION_ALIASES = {"usa": "us", "europe": "eu", "australia": "au"}
RETRY_AFTER_MAX = 3600  # seconds
SECONDS = re.compile(r"[0-9]{1,12}")  # Retry-After's delay-seconds: digits only (RFC 9110)
WORKSPACE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # app.id_code, as it goes into Inbox links
ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # Intercom's codes: token_unauthorized, …
LOGGED_MAX = 40  # characters of a value from Intercom that a log line quotes

# The app's permission each call needs, as the Developer Hub names it: the sentence for a
# 401 token_unauthorized names it. (method, path or its first segment, permission)
PERMISSIONS = (
    ("GET", "/me", "Read admins"),
    ("POST", "/conversations", "Write conversations"),
    ("GET", "/conversations", "Read conversations"),
    ("GET", "/contacts", "Read and list users and companies"),
    ("GET", "/companies", "Read and list users and companies"),
)


class IntercomError(Exception):
    """A call to Intercom failed: ``http_status`` is Intercom's answer (None when there was
    none), ``code`` its error code (``errors[0].code``: "unauthorized", "token_unauthorized",
    "api_plan_restricted", …; None without one), ``retry_after`` the seconds a 429 asked
    Hedwig to wait."""

    def __init__(
        self,
        message: str,
        http_status: int | None = None,
        retry_after: float = 0,
        arrived: bool | None = False,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.retry_after = retry_after
        self.arrived = arrived  # None: the request went out, and the answer never came
        self.code = code


def call_seconds() -> float:
    """The longest one call to Intercom lasts, from connecting to the answer's last byte."""
    return CALL_TIMEOUTS * current_app.config["INTERCOM_TIMEOUT"]


def fetch_me(token: str) -> dict[str, str | None]:
    """Ask Intercom who granted the token: the workspace (app.id_code), its region and the
    admin. /me is asked on the US host, which routes to the workspace's own region."""
    body = call_intercom("GET", "/me", token=token)
    workspace = body.get("app") if isinstance(body.get("app"), dict) else {}
    workspace_id = id_or_none(workspace.get("id_code"))
    if (
        workspace_id is None
        or not WORKSPACE_ID.fullmatch(workspace_id)
        or workspace_id == PREVIEW_WORKSPACE_ID  # the canvas preview's own
    ):
        raise IntercomError("Intercom's /me answer named no workspace (app.id_code)")
    sent_email = body.get("email")
    email = text_or_none(sent_email, EMAIL_MAX)
    return {
        "workspace_id": workspace_id,
        "workspace_name": text_or_none(workspace.get("name")) or workspace_id,
        "region": region_of(workspace.get("region")),
        "admin_id": id_or_none(body.get("id")),
        "admin_name": text_or_none(body.get("name")),
        "admin_email": email,
        "email_verified": body.get("email_verified") is True,
        # Whether the email is as Intercom sent it: no invisible character dropped, no
        # look-alike (the Kelvin sign K, say) that NFKC would fold. Only such an email names
        # a teammate to sign in.
        "email_exact": isinstance(sent_email, str)
        and sent_email.strip() == email
        and unicodedata.normalize("NFKC", sent_email) == sent_email,
    }


def call_intercom(
    method: str, path: str, token: str | None = None, region: str = "us", **kwargs: Any
) -> dict:
    """One request to Intercom's API on the region's host: its JSON object (empty when the
    answer has no body), or an IntercomError whose message a person can read."""
    response, whole = intercom_answer(method, path, token, region, **kwargs)
    if not whole:
        raise IntercomError(
            f"Intercom's answer to {path} was too long, or too slow, to read whole",
            response.status_code,
            arrived=True,
        )
    if not response.content.strip():
        return {}
    try:
        body = response.json()
    except (ValueError, RecursionError):
        raise IntercomError(f"Intercom's answer to {path} was not JSON") from None
    if not isinstance(body, dict):
        raise IntercomError(f"Intercom's answer to {path} was not a JSON object")
    return body


def intercom_response(
    method: str, path: str, token: str | None = None, region: str = "us", **kwargs: Any
) -> requests.Response:
    """Intercom's 2xx answer to one request (its body possibly dropped: its status said what
    happened), or an IntercomError: it did not answer in time, could not be reached, or
    refused (refusal())."""
    return intercom_answer(method, path, token, region, **kwargs)[0]


def intercom_answer(
    method: str, path: str, token: str | None, region: str, **kwargs: Any
) -> tuple[requests.Response, bool]:
    """Intercom's 2xx answer to one request, and whether its body was read whole."""
    headers = {"Accept": "application/json", "Intercom-Version": INTERCOM_API_VERSION}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    timeout = current_app.config["INTERCOM_TIMEOUT"]
    deadline = CallDeadline(call_seconds(), then_every=timeout)
    with deadline.session() as session:
        try:
            with deadline:  # over before the session closes its connections
                # Never follow a redirect: it would carry the client secret or the token
                # elsewhere.
                response = session.request(
                    method,
                    intercom_api_url(region) + path,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                    stream=True,
                    **kwargs,
                )
                whole = read_bounded(response)
        except requests.RequestException as error:
            raise unanswered(path, error, deadline.cut_off) from None
        response.close()
    if not 200 <= response.status_code < 300:
        raise refusal(method, path, response)
    return response, whole


def unanswered(path: str, error: requests.RequestException, cut_off: bool) -> IntercomError:
    """A call that got no answer: never sent (it may go again), or sent and unanswered (it
    may have arrived)."""
    if isinstance(error, requests.ConnectionError) and never_sent(error):
        return IntercomError(
            f"could not reach Intercom for {path} ({type(error).__name__})", arrived=False
        )
    if cut_off:
        return IntercomError(
            f"Intercom did not answer {path} within {call_seconds():g} seconds", arrived=None
        )
    if isinstance(error, requests.ConnectionError):
        return IntercomError(
            f"Intercom's connection for {path} broke ({type(error).__name__})", arrived=None
        )
    timeout = current_app.config["INTERCOM_TIMEOUT"]
    return IntercomError(f"Intercom did not answer {path} within {timeout} seconds", arrived=None)


class CallDeadline:
    """The moment a call to Intercom is cut off, whatever it is doing: its connection's socket
    is shut then (and every ``then_every`` seconds after, for one made late), which ends a
    read still waiting for a byte. A socket timeout alone would not: an answer dripping a
    byte a second never trips it."""

    def __init__(self, seconds: float, then_every: float) -> None:
        self.lock = threading.Lock()
        self.current: Token | None = None
        # The sockets, not the connections: for an answer that closes the connection,
        # http.client hands the socket to the answer and the connection forgets it.
        self.sockets: list[socket.socket] = []
        self.cut_off = self.over = False
        self.every = min(max(then_every, 0.1), threading.TIMEOUT_MAX)
        self.timer = self.new_timer(min(seconds, threading.TIMEOUT_MAX))

    def new_timer(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self.cut)
        timer.daemon = True
        return timer

    def __enter__(self) -> CallDeadline:
        self.current = CURRENT_DEADLINE.set(self)  # for the connections this call makes
        self.timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self.lock:  # waits for a cut() under way: none begins after this
            self.over = True
            self.timer.cancel()
        if self.current is not None:
            CURRENT_DEADLINE.reset(self.current)

    @staticmethod
    def session() -> requests.Session:
        """A session whose connections the call's deadline watches."""
        session = requests.Session()
        adapter = WatchedAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def watch(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.append(sock)

    def cut(self) -> None:
        with self.lock:
            if self.over:
                return
            self.cut_off = True
            for sock in self.sockets:
                shut(sock)
            self.timer = self.new_timer(self.every)
            self.timer.start()


def shut(sock: socket.socket) -> None:
    """Shut a socket for reading and writing: a read waiting on it returns."""
    with contextlib.suppress(OSError):  # closed already
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the file descriptor, TLS or not


CURRENT_DEADLINE: ContextVar[CallDeadline | None] = ContextVar("intercom_call", default=None)


class WatchedAdapter(HTTPAdapter):
    """requests' adapter, its connections handed to the call's deadline as they are made."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:
            manager.pool_classes_by_scheme = WATCHED_POOLS  # an HTTP proxy; SOCKS has its own
        return manager


class WatchedPool:
    """A connection pool whose new connections the call's deadline can cut."""

    def _new_conn(self) -> Any:
        connection = super()._new_conn()  # type: ignore[misc]
        deadline = CURRENT_DEADLINE.get()
        if deadline is not None:
            connect = connection.connect

            def watched_connect() -> None:
                connect()
                if isinstance(connection.sock, socket.socket):
                    deadline.watch(connection.sock)

            connection.connect = watched_connect
        return connection


class WatchedHTTPPool(WatchedPool, HTTPConnectionPool):
    pass


class WatchedHTTPSPool(WatchedPool, HTTPSConnectionPool):
    pass


WATCHED_POOLS = {"http": WatchedHTTPPool, "https": WatchedHTTPSPool}


def read_bounded(response: requests.Response) -> bool:
    """Read the answer, up to INTERCOM_ANSWER_MAX: past it (an endpoint sending hundreds of
    megabytes) the rest is dropped unread, as is a body the deadline cut. Whether the body
    was read whole: its status has said what happened; a body Hedwig needs is small JSON."""
    body = bytearray()
    try:
        for chunk in response.iter_content(64 * 1024):
            body += chunk
            if len(body) > INTERCOM_ANSWER_MAX:
                response._content = b""
                return False
    except requests.RequestException:
        response._content = b""
        return False
    response._content = bytes(body)  # what response.json() and .content read
    return True


def never_sent(error: requests.RequestException) -> bool:
    """Whether the request failed before it reached Intercom (no connection was made)."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(error, requests.ConnectTimeout) or isinstance(
        reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
    )


def refusal(method: str, path: str, response: requests.Response) -> IntercomError:
    """Intercom's non-2xx answer, as a sentence that says what it means and what to do: the
    one mapping every call uses (connecting, notes, company reads)."""
    status, code = response.status_code, error_code(response)
    if status == 401 and code == "token_unauthorized":
        meaning = (
            f"the app lacks a permission this needs ({permission_needed(method, path)}): add "
            "it in the Developer Hub (your app → Configure → Authentication / permissions), "
            "then reinstall the app"
        )
    elif status == 401:  # "unauthorized", another code, or no body: the token itself
        meaning = (
            "it no longer accepts this token (revoked, or the app was uninstalled): connect again"
        )
    elif status == 403 and code == "api_plan_restricted":
        meaning = "your Intercom plan does not include this"
    else:
        meaning = {
            403: "it does not allow this",
            404: "it has no such thing (deleted or merged)",
            429: "it asks Hedwig to slow down for a while",
        }.get(status, "it had a problem" if status >= 500 else "")
    said = f"HTTP {status} ({code})" if code else f"HTTP {status}"
    message = f"Intercom answered {path} with {said}"
    wait = retry_after_seconds(response)
    return IntercomError(f"{message}: {meaning}" if meaning else message, status, wait, code=code)


def error_code(response: requests.Response) -> str | None:
    """``errors[0].code`` of Intercom's error body (``{"type": "error.list", "errors":
    [{"code", "message"}]}``), when the body was read and the code looks like one."""
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    errors = body.get("errors") if isinstance(body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    code = first.get("code") if isinstance(first, dict) else None
    return code if isinstance(code, str) and ERROR_CODE.fullmatch(code) else None


def permission_needed(method: str, path: str) -> str:
    """The app's permission a call needs, by the Developer Hub's name."""
    for needs_method, prefix, permission in PERMISSIONS:
        if method == needs_method and (path == prefix or path.startswith(prefix + "/")):
            return permission
    return "the one this call needs"


def retry_after_seconds(response: requests.Response) -> float:
    """How long a 429 asks to wait: Retry-After (seconds, or an HTTP date), else
    X-RateLimit-Reset (epoch seconds), at most RETRY_AFTER_MAX: an answer cannot park Hedwig
    for years, nor overflow a date. Anything else (a negative or fractional number, "1_000")
    says nothing."""
    retry_after = response.headers.get("Retry-After", "").strip()
    reset = response.headers.get("X-RateLimit-Reset", "").strip()
    if SECONDS.fullmatch(retry_after):
        wait = float(retry_after)
    elif (when := http_date(retry_after)) is not None:
        wait = when - time.time()
    elif SECONDS.fullmatch(reset):
        wait = float(reset) - time.time()
    else:
        return 0.0
    return min(max(0.0, wait), RETRY_AFTER_MAX)


def http_date(value: str) -> float | None:
    """An HTTP date ("Wed, 21 Oct 2015 07:28:00 GMT") as epoch seconds, or None."""
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def intercom_api_url(region: str) -> str:
    """The API host for a workspace's region (the US's for a region Hedwig does not know);
    HEDWIG_INTERCOM_API_URL replaces every region's (for stand-ins and tests)."""
    regions = current_app.config["INTERCOM_REGIONS"]
    override = current_app.config["INTERCOM_API_URL"]
    return (override or regions.get(region, regions["us"])["api"]).rstrip("/")


def region_of(value: Any) -> str:
    """Intercom's name for a region as Hedwig keys it (us, eu, au, or one
    HEDWIG_INTERCOM_REGIONS adds); none is the US. A name Hedwig does not know is kept as
    Intercom said it, cut to the column, so that the team page can say so; its hosts are the
    US's (intercom_api_url, intercom_web_url): US hosts route to other regions, while the
    reverse fails."""
    said = " ".join(clean_text("" if value is None else str(value), LOGGED_MAX).lower().split())
    region = REGION_ALIASES.get(said, said) or "us"
    if region in current_app.config["INTERCOM_REGIONS"]:
        return region
    # A few characters of it: Intercom's answer could hold megabytes.
    shown = repr(said[:LOGGED_MAX]) + ("…" if len(said) > LOGGED_MAX else "")
    current_app.logger.warning("Unknown Intercom region %s: using the US hosts", shown)
    if len(region) > REGION_MAX:
        region = region[: REGION_MAX - 1] + "…"  # never a configured name, which has no "…"
    return region


def refuse_connection(connection: IntercomConnection, reason: str) -> None:
    """Intercom refused the connection's token (or Hedwig cannot use it): it waits for a
    reconnect, and everything sent with it (notes, company reads) waits too. The caller
    commits."""
    if connection.refused_at is None:
        connection.refused_at, connection.refusal = utcnow(), reason
        current_app.logger.warning(
            "Intercom workspace %s needs reconnecting: %s", connection.workspace_id, reason
        )


def due_for_intercom(outbox: Any, now: datetime) -> Select:
    """An outbox's pending rows (notes, company reads) whose time has come, soonest first,
    except those whose workspace waits for a reconnect (refuse_connection)."""
    return (
        select(outbox.id)
        .outerjoin(IntercomConnection, IntercomConnection.workspace_id == outbox.workspace_id)
        .where(
            outbox.state == "pending",
            outbox.next_attempt_at <= now,
            IntercomConnection.refused_at.is_(None),
        )
        .order_by(outbox.next_attempt_at, outbox.id)
    )


def next_due_at(outbox: Any) -> Any:
    """When an outbox's next pending row comes due (NULL: none will, without a reconnect)."""
    return (
        select(func.min(outbox.next_attempt_at))
        .outerjoin(IntercomConnection, IntercomConnection.workspace_id == outbox.workspace_id)
        .where(outbox.state == "pending", IntercomConnection.refused_at.is_(None))
        .scalar_subquery()
    )


def seconds_until_due(*due_at: Any) -> float | None:
    """How long until the first of these (next_due_at()s) comes due, read in one statement
    (None: none will). Ends the sender's read transaction."""
    times = [time for time in db.session.execute(select(*due_at)).one() if time is not None]
    db.session.rollback()
    return None if not times else max(0.0, (min(times) - utcnow()).total_seconds())


def revoke_token(connection: IntercomConnection) -> str | None:
    """Ask Intercom to revoke the connection's token: None when it did, else why not."""
    token = connection.token
    if token is None:
        return "its token no longer decrypts here"
    try:
        call_intercom("POST", "/auth/uninstall", token=token, region=connection.region)
    except IntercomError as error:
        current_app.logger.warning("Revoking %s's token failed: %s", connection.workspace_id, error)
        return str(error)
    return None
