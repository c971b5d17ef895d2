"""url: keep where a link points (scheme, host, path shape), not who followed it."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from pydantic import Field

from .base import ActionError, BuildContext, Options, action

USER_SEGMENTS = ("u", "users", "accounts", "profile", "profiles", "learner", "learners",
                 "student", "students", "preferences", "progress")
_EMAIL = re.compile(r"(?<![\w.%+@-])[\w.%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}"
                    r"(?![\w-])", re.IGNORECASE)
"""An e-mail address anywhere in a segment (``mailto:a@b.fr``), but not in an Open edX
block id (``type@html+block@intro.html``: an address is never preceded by ``@``)."""


class UrlOptions(Options):
    token: str = Field("_user_", pattern=r"^[A-Za-z0-9_.~-]+$")
    """What replaces a path segment that names a person (URL-safe characters only)."""
    after: tuple[str, ...] = USER_SEGMENTS
    """A segment that follows one of these (compared lower-cased) names a person, as in
    Open edX ``/u/<username>`` or ``/api/user/v1/accounts/<username>``. A list given here
    replaces the default one: the ``edx`` policy adds ``certificates``."""


def treat_url(text: str, forms: frozenset[str], markers: frozenset[str], token: str) -> str:
    """``text`` without user info, query, fragment and segment parameters (``;k=v``, which
    can carry an e-mail or a session id), person-naming segments replaced."""
    if "://" in text:
        scheme, _, rest = text.partition("://")
        lead = f"{scheme}://"
    elif text.startswith("//"):  # protocol-relative: an authority all the same
        lead, rest = "//", text[2:]
    else:
        lead = ""
    head = ""
    if lead:
        cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i != -1),
                  default=len(rest))
        netloc, rest = rest[:cut], rest[cut:]
        head = lead + _host(netloc.rpartition("@")[2], forms, token)
    path = rest if head else text
    for sep in ("?", "#"):
        path = path.partition(sep)[0]
    segments = path.split("/")
    prev = ""
    for i, seg in enumerate(segments):
        if ";" in seg:
            seg = segments[i] = seg.partition(";")[0]
        if seg:
            plain = unquote(seg).lower()
            if (plain in forms or prev in markers or _EMAIL.search(plain)
                    or any(p in forms for p in plain.split(","))):
                segments[i] = token
            prev = plain
    out = head + "/".join(segments)
    return text if out == text else out


def _host(host: str, forms: frozenset[str], token: str) -> str:
    """``host`` (with its port) where labels spelling one of the record's identifiers
    (``jdupont.pages.example.org``, ``jean.dupont.example.org``) are one ``token``.
    Longest identifiers first, so the output does not depend on set order. An IP address
    is left alone: a user id ``6`` is not ``10.0.0.6``."""
    if host.startswith("["):  # an IPv6 address (``[::ffff:10.0.0.6]``) names no one
        return host
    name, colon, port = host.rpartition(":")
    if not colon or not port.isdigit():
        name, colon, port = host, "", ""
    name = unquote(name).lower()
    if name.replace(".", "").isdigit():
        return host
    dotted = f".{name}."
    for f in sorted((f for f in forms if f".{f}." in dotted), key=lambda f: (-len(f), f)):
        dotted = dotted.replace(f".{f}.", f".{token}.")
        dotted = dotted.replace(f".{f}.", f".{token}.")  # again: neighbours share a dot
    new = dotted[1:-1]
    return host if new == name else f"{new}{colon}{port}"


@action("url", UrlOptions, record_aware=True,
        summary="Keep a URL's scheme, host and path shape; drop user info, query and "
                "fragment and the parameters of path segments (;k=v); replace with a token "
                "each path segment that is one of the record's identifiers (in any form), "
                "holds an e-mail address or follows a user segment such as /u/, and the host "
                "name labels that spell an identifier. Text that is not a URL (an event "
                "name) stays as it is; null and \"\" too.")
def url(options: UrlOptions, ctx: BuildContext):
    markers = frozenset(a.lower() for a in options.after)
    token = options.token
    empty: frozenset[str] = frozenset()

    def run(value: Any, rec: Any) -> Any:
        if value is None or value == "":
            return value
        if type(value) is not str:
            raise ActionError("a URL must be text")
        return treat_url(value, rec.forms if rec is not None else empty, markers, token)

    return run
