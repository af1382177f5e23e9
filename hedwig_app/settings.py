"""Settings: defaults, then HEDWIG_* environment variables, then create_app's ``config``,
each checked at start-up so that a setting that cannot work stops Hedwig with one sentence
saying what would (SetupError); and the keys Hedwig makes once and keeps in its instance
folder (the session key, the key that encrypts Intercom tokens). Imports nothing of Hedwig's
but a column's length from models.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from cryptography.fernet import Fernet
from flask import Flask

from models import REGION_MAX

SECRET_KEY_MIN = 32
FORM_FIELDS_MAX = 100
DEFAULTS: dict[str, Any] = {
    "INTERCOM_OAUTH_URL": "https://app.intercom.com/oauth",
    "INTERCOM_API_URL": "",  # by region, unless set
    # Intercom's hosts by region. The EU and AU web hosts come from public guides, not from
    # Intercom's docs: HEDWIG_INTERCOM_REGIONS (JSON) replaces any of them.
    "INTERCOM_REGIONS": {
        "us": {"api": "https://api.intercom.io", "web": "https://app.intercom.com"},
        "eu": {"api": "https://api.eu.intercom.io", "web": "https://app.eu.intercom.com"},
        "au": {"api": "https://api.au.intercom.io", "web": "https://app.au.intercom.com"},
    },
    "INTERCOM_CLIENT_ID": "",
    "INTERCOM_CLIENT_SECRET": "",
    "BASE_URL": "",
    "TRUSTED_PROXIES": 0,
    "SESSION_COOKIE_SECURE": False,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    "PERMANENT_SESSION_LIFETIME": 7 * 24 * 3600,  # seconds a sign-in lasts
    "MAX_CONTENT_LENGTH": 256 * 1024,  # forms: the longest holds 10,000 characters of details
    "MAX_FORM_PARTS": FORM_FIELDS_MAX,  # multipart forms
    # Canvas requests carry the conversation, which may hold up to 500 parts.
    "CANVAS_MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
    "INTERCOM_TIMEOUT": 10,  # seconds, for each call to Intercom's API
    "SEND_NOTES_AT_ONCE": True,  # false: only `flask send-notes` sends them
    # The secrets GitHub's and Linear's webhooks sign with; unset, their endpoint is off (404).
    "GITHUB_WEBHOOK_SECRET": "",
    "LINEAR_WEBHOOK_SECRET": "",
    "WEBHOOK_MAX_CONTENT_LENGTH": 1024 * 1024,  # GitHub's issue and pull request events
    # Outgoing webhooks to loopback, private and link-local addresses (off: SSRF).
    "WEBHOOKS_ALLOW_PRIVATE": False,
    "API_RATE_LIMIT": 120,  # requests a minute per API token; 0: no limit
}


# Settings read from the environment as text, even when they look like numbers.
TEXT_SETTINGS = (
    "SECRET_KEY",
    "TOKEN_KEY",
    "DATABASE_URL",
    "INTERCOM_CLIENT_ID",
    "INTERCOM_CLIENT_SECRET",
    "INTERCOM_OAUTH_URL",
    "INTERCOM_API_URL",
    "BASE_URL",
    "GITHUB_WEBHOOK_SECRET",
    "LINEAR_WEBHOOK_SECRET",
)


NUMBER_SETTINGS = (
    "TRUSTED_PROXIES",
    "PERMANENT_SESSION_LIFETIME",
    "INTERCOM_TIMEOUT",
    "MAX_CONTENT_LENGTH",
    "CANVAS_MAX_CONTENT_LENGTH",
    "WEBHOOK_MAX_CONTENT_LENGTH",
    "API_RATE_LIMIT",
)
BOOLEAN_SETTINGS = ("SESSION_COOKIE_SECURE", "SEND_NOTES_AT_ONCE", "WEBHOOKS_ALLOW_PRIVATE")
BOOLEAN_WORDS = {"true": True, "yes": True, "on": True, "1": True}
BOOLEAN_WORDS |= {"false": False, "no": False, "off": False, "0": False}
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


class SetupError(RuntimeError, click.ClickException):
    """A setting or file Hedwig cannot start with. The message is one sentence saying what
    works; the flask command prints it alone, without a traceback."""

    def __init__(self, message: str) -> None:
        click.ClickException.__init__(self, message)


def load_settings(app: Flask, config: Mapping[str, Any]) -> None:
    """Defaults, then HEDWIG_* variables, then ``config``; a setting that cannot work stops
    the start with a sentence saying what would."""
    # A copy: Flask writes HEDWIG_INTERCOM_REGIONS__eu__api into the dict it finds there.
    app.config.update(copy.deepcopy(DEFAULTS))
    app.config.from_prefixed_env("HEDWIG")
    app.config.update(config)
    for name in TEXT_SETTINGS:
        if app.config.get(name) is not None:
            app.config[name] = str(app.config[name])
    for name in BOOLEAN_SETTINGS:
        app.config[name] = boolean_setting(name, app.config[name])
    for name in NUMBER_SETTINGS:
        value = app.config[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise SetupError(f"HEDWIG_{name} must be a number of 0 or more (it is {value!r}).")
    app.config["BASE_URL"] = base_url_setting(app.config["BASE_URL"])
    app.config["INTERCOM_REGIONS"] = regions_setting(app.config["INTERCOM_REGIONS"])
    app.config["SECRET_KEY"] = secret_key(app)


def boolean_setting(name: str, value: Any) -> bool:
    """Yes or no, as people write it: true/false, yes/no, on/off, 1/0, any case."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word not in BOOLEAN_WORDS:
        raise SetupError(
            f"HEDWIG_{name} must be true or false (or yes/no, on/off, 1/0); it is {value!r}."
        )
    return BOOLEAN_WORDS[word]


def base_url_setting(value: str) -> str:
    """The public origin: https, a host, nothing after it (http only on this machine)."""
    if not value:
        return ""
    parts = urlsplit(value)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or (parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS)
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise SetupError(
            "HEDWIG_BASE_URL must be Hedwig's public https origin and nothing more, like "
            f"https://abc123.ngrok.app (it is {value!r})."
        )
    return value.rstrip("/")


REGION_NAME = re.compile(rf"[a-z0-9][a-z0-9_-]{{0,{REGION_MAX - 1}}}")  # a column's length
REGIONS_EXAMPLE = json.dumps({"eu": DEFAULTS["INTERCOM_REGIONS"]["eu"]})


def regions_setting(value: Any) -> dict[str, dict[str, str]]:
    """Intercom's hosts by region: the defaults, with any region HEDWIG_INTERCOM_REGIONS names
    replaced or added. Flask reads the variable as JSON, else keeps it as text: anything but a
    JSON object of regions and their URLs stops the start, saying what is wrong."""
    regions = copy.deepcopy(DEFAULTS["INTERCOM_REGIONS"])
    if isinstance(value, str) and not value.strip():
        return regions  # set, but empty
    if not isinstance(value, dict):
        raise regions_error(f"it is not a JSON object ({json.dumps(value, default=str)[:100]})")
    for name, hosts in value.items():
        region = str(name).lower()
        if not REGION_NAME.fullmatch(region):
            raise regions_error(
                f"the region name {region[:40]!r} is not 1 to {REGION_MAX} letters, digits, - or _"
            )
        if not isinstance(hosts, dict) or set(hosts) != {"api", "web"}:
            raise regions_error(f"{region} needs an api and a web URL, and nothing else")
        for key in ("api", "web"):
            if not is_intercom_origin(hosts[key]):
                shown = json.dumps(hosts[key], default=str)[:100]
                raise regions_error(f"{region}'s {key} ({shown}) is not an https URL with a host")
        regions[region] = {key: hosts[key].rstrip("/") for key in ("api", "web")}
    return regions


def is_intercom_origin(value: Any) -> bool:
    """An https URL with a host (http only on this machine, for a stand-in)."""
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return False
    return (
        bool(host)
        and not parts.query
        and not parts.fragment
        and (parts.scheme == "https" or (parts.scheme == "http" and host in LOOPBACK_HOSTS))
    )


def regions_error(problem: str) -> SetupError:
    return SetupError(
        "HEDWIG_INTERCOM_REGIONS must be a JSON object giving each region (1 to "
        f"{REGION_MAX} letters, digits, - or _) its https api and web URLs, like "
        f"{REGIONS_EXAMPLE}, but {problem}."
    )


def make_private_folder(folder: Path) -> None:
    """The instance folder holds the keys and the database: its owner's alone."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_uid == os.getuid():
        folder.chmod(0o700)


def secret_key(app: Flask) -> str:
    """The configured key, else one generated once and kept in the instance folder."""
    configured = app.config.get("SECRET_KEY")
    if configured:
        if len(configured) < SECRET_KEY_MIN:
            raise SetupError(
                f"HEDWIG_SECRET_KEY is too short ({len(configured)} characters): use at least "
                f"{SECRET_KEY_MIN}, e.g. the output of: python -c 'import secrets; "
                "print(secrets.token_hex(32))'"
            )
        return configured
    return instance_secret(app, "secret_key", lambda: secrets.token_hex(32))


def instance_secret(app: Flask, name: str, generate: Callable[[], str]) -> str:
    """A secret kept in a file of the instance folder (mode 0600), made the first time.

    The new key is written whole to a temporary file, then linked into place: a start that
    fails halfway (a full disk) leaves no half-written key, and two workers starting at once
    never each keep a different one (the link fails for the second; it reads the first's).
    """
    path = Path(app.instance_path, name)
    if not path.exists():
        temporary = path.with_name(f".{name}.{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(generate())
                file.flush()
                os.fsync(file.fileno())
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    try:
        key = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise SetupError(f"Hedwig cannot read its key file {path}: {error}.") from None
    if not key:
        raise SetupError(
            f"Hedwig's key file {path} is empty: an earlier start failed while writing it (a "
            "full disk?). Delete the file and start Hedwig again to make a new key."
        )
    return key


def load_token_cipher(app: Flask) -> Fernet:
    """The key that encrypts Intercom tokens at rest: kept outside the database, so a copy of
    the database alone (a backup, say) holds no usable token."""
    key = app.config.get("TOKEN_KEY")
    source = "HEDWIG_TOKEN_KEY"
    if not key:
        key = instance_secret(app, "token_key", lambda: Fernet.generate_key().decode())
        source = str(Path(app.instance_path, "token_key"))
    try:
        return Fernet(key)
    except ValueError:
        raise SetupError(
            f"{source} does not hold a Fernet key: make one with python -c 'from "
            "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from None
