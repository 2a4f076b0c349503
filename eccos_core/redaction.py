"""The one place that decides what is a credential and removes it from anything eccos writes or shows.

Used by saved routers and models files, log lines, error messages, fallback records and reprs. A parameter is
a credential when its name is in :data:`SECRET_KEYS` or ends with one of :data:`SECRET_SUFFIXES`; values are
found through nested mappings (``extra_headers.Authorization``) and lists.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "***"
"""What a credential is replaced with."""

SECRET_KEYS = frozenset(
    {
        "api_key",
        "api-key",
        "apikey",
        "x-api-key",
        "authorization",
        "proxy-authorization",
        "password",
        "secret",
        "client_secret",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_access_key_id",
        "azure_ad_token",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "vertex_credentials",
        "credentials",
        "private_key",
        "cookie",
    }
)
"""Parameter names (case-insensitive) whose values are credentials."""

SECRET_SUFFIXES = ("_api_key", "-api-key", "_secret", "_password", "_access_token", "_credentials", "-token")
"""Name endings that mark a credential (``OPENAI_API_KEY``, ``client_secret``); ``max_tokens`` is not one."""

_MIN_SECRET_LENGTH = 4


def is_secret_param(name: str) -> bool:
    """Whether a parameter or header name holds a credential (``max_tokens`` does not; ``api_key`` does)."""
    lowered = name.lower()
    return lowered in SECRET_KEYS or lowered.endswith(SECRET_SUFFIXES)


def without_credentials(params: Any) -> Any:
    """A copy of ``params`` with every credential *removed* (nested headers included): what may go elsewhere."""
    if isinstance(params, Mapping):
        return {key: without_credentials(value) for key, value in params.items() if not is_secret_param(str(key))}
    if isinstance(params, (list, tuple)):
        return [without_credentials(v) for v in params]
    return params


def redact_params(params: Any) -> Any:
    """A copy of ``params`` with every credential value replaced by ``***``, walking nested mappings and lists.

    URLs keep their host and path but lose userinfo (``user:pw@``) and query strings' values.
    """
    if isinstance(params, Mapping):
        return {
            key: (REDACTED if is_secret_param(str(key)) and value is not None else redact_params(value))
            for key, value in params.items()
        }
    if isinstance(params, (list, tuple)):
        return [redact_params(v) for v in params]
    if isinstance(params, str) and "://" in params:
        return redact_url(params)
    return params


def redact_url(url: str) -> str:
    """``url`` without credentials: userinfo and every query parameter value become ``***``."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        query = urlencode([(k, REDACTED) for k, _ in parse_qsl(query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_in(params: Iterable[Any]) -> tuple[str, ...]:
    """Every credential value inside ``params`` (mappings and lists, walked recursively).

    Also the forms a provider may echo: without a ``Bearer`` prefix, URL userinfo and query values, and the
    Basic-auth base64 of URL userinfo.
    """
    found: list[str] = []

    def add(secret: str) -> None:
        found.append(secret)
        if secret.lower().startswith(("bearer ", "basic ")):
            found.append(secret.split(" ", 1)[1])

    def walk(value: Any, secret: bool) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, secret or is_secret_param(str(key)))
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item, secret)
        elif isinstance(value, str) and "://" in value:
            found.extend(_url_secrets(value))
            if secret:
                add(value)
        elif secret and value is not None and not isinstance(value, bool):
            add(str(value))

    for item in params:
        walk(item, False)
    return tuple(found)


def _url_secrets(url: str) -> list[str]:
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    out: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        out += [userinfo, unquote(userinfo), *unquote(userinfo).split(":", 1)[1:]]
        out.append(base64.b64encode(unquote(userinfo).encode()).decode())
    out += [v for _, v in parse_qsl(parts.query, keep_blank_values=False)]
    return out


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (longest first).

    Secrets shorter than four characters are left alone: replacing ``"a"`` everywhere would shred the text
    without protecting anything.
    """
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= _MIN_SECRET_LENGTH:
            text = text.replace(secret, REDACTED)
    return text


__all__ = [
    "REDACTED",
    "SECRET_KEYS",
    "is_secret_param",
    "redact",
    "redact_params",
    "redact_url",
    "secrets_in",
    "without_credentials",
]
