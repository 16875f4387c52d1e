"""Checks shared by services. Each raises `Invalid` naming the field."""

from __future__ import annotations

import re
import uuid
import zoneinfo
from functools import lru_cache
from typing import Any, TypeVar

import msgspec
from zxcvbn import zxcvbn

from ..errors import BadRequest, Invalid

T = TypeVar("T")
S = TypeVar("S", bound=str)

_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,50}$")
# Control characters other than tab, newline and carriage return: PostgreSQL cannot store NUL
# in text at all, and the rest have no business in what people write to each other.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_AT_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")
_UNKNOWN = re.compile(r"unknown field `(?P<name>[^`]+)`")


def email(value: str, field: str = "email") -> str:
    value = value.strip()
    if len(value) > 255 or not _EMAIL.match(value):
        raise Invalid(field, "must be a valid email address")
    return value


def username(value: str, field: str = "username") -> str:
    if not _USERNAME.match(value):
        raise Invalid(field, "must be 3-50 characters: letters, digits, '_', '.' or '-'")
    return value


# zxcvbn's score: 0 too guessable, 1 very guessable, 2 somewhat guessable, 3 safely
# unguessable, 4 very unguessable. 3 means about 10^8 guesses or more, out of reach of online
# guessing and slow offline guessing against our argon2 hashes.
MIN_PASSWORD_SCORE = 3
# zxcvbn refuses longer input (its matching is quadratic); the rest of a longer password can
# only add strength.
_ZXCVBN_MAX = 72


def password(
    value: str, *, email: str = "", username: str = "", names: tuple[str, ...] = ()
) -> str:
    """A password that is long enough and not guessable: zxcvbn (Dropbox's estimator, with its
    lists of common passwords, names, words, keyboard patterns, dates and l33t substitutions)
    must rate it at least MIN_PASSWORD_SCORE, counting the user's own email, username and name
    as known words. The refusal says why, in zxcvbn's words."""
    if len(value) < 8:
        raise Invalid("password", "must be at least 8 characters long")
    if len(value) > 128:
        raise Invalid("password", "must be at most 128 characters long")
    lowered = value.lower()
    if (username and lowered == username.lower()) or (email and lowered == email.lower()):
        raise Invalid("password", "must not be the same as your email or username")
    known = [w for w in (email, email.partition("@")[0], username, *names) if w]
    verdict = zxcvbn(value[:_ZXCVBN_MAX], user_inputs=known)
    if verdict["score"] < MIN_PASSWORD_SCORE:
        feedback = verdict.get("feedback") or {}
        why = [feedback.get("warning") or "", *list(feedback.get("suggestions") or [])]
        reason = " ".join(w.strip() for w in why if w and w.strip())
        raise Invalid(
            "password",
            "is too easy to guess"
            + (f": {reason}" if reason else ": add more words or characters"),
        )
    return value


def no_control_characters(value: str, field: str) -> str:
    """Refuse NUL and other control characters (tab, newline and carriage return are fine)."""
    found = _CONTROL.search(value)
    if found:
        raise Invalid(
            field, f"must not contain control characters (found U+{ord(found.group()):04X})"
        )
    return value


def text(value: str, field: str, *, max_len: int, min_len: int = 1) -> str:
    no_control_characters(value, field)
    stripped = value.strip()
    if len(stripped) < min_len:
        raise Invalid(
            field, "must not be empty" if min_len == 1 else f"must be at least {min_len} characters"
        )
    if len(stripped) > max_len:
        raise Invalid(field, f"must be at most {max_len} characters")
    return stripped


def one_of(value: str, field: str, choices: tuple[S, ...]) -> S:
    """`value` if it is one of `choices`, typed as the choices are (e.g. a Literal)."""
    if value not in choices:
        raise Invalid(field, f"must be one of: {', '.join(choices)}")
    return choices[choices.index(value)]


@lru_cache(maxsize=1024)
def _zone_exists(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def timezone(value: str, field: str = "timezone") -> str:
    if not value or len(value) > 50 or not _zone_exists(value):
        raise Invalid(
            field, f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
        )
    return value


def parse_uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise Invalid(field, "must be a UUID") from None


def tags(values: list[str], field: str = "tags", *, max_count: int = 20) -> list[str]:
    if len(values) > max_count:
        raise Invalid(field, f"at most {max_count} tags")
    cleaned: list[str] = []
    for tag in values:
        no_control_characters(tag, field)
        t = tag.strip().lower()
        if not t or len(t) > 50:
            raise Invalid(field, "each tag must be 1-50 characters")
        if t not in cleaned:
            cleaned.append(t)
    return cleaned


def http_url(value: str, field: str, *, max_len: int = 2048) -> str:
    """An absolute http(s) URL (what clients may link to from posts and resources)."""
    value = no_control_characters(value, field).strip()
    if len(value) > max_len or not re.match(r"^https?://[^\s/$.?#][^\s]*$", value, re.IGNORECASE):
        raise Invalid(field, "must be an http(s) URL")
    return value


def optional_text(value: str | None, field: str, max_len: int) -> str | None:
    """Text that may be left out: blank becomes None, otherwise trimmed and bounded."""
    if value is None or not value.strip():
        return None
    return text(value, field, max_len=max_len)


def optional_url(value: str | None, field: str) -> str | None:
    if value is None or not value.strip():
        return None
    return http_url(value, field)


def camel(name: str) -> str:
    """The API's name for a snake_case field (errors name fields as clients send them)."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def field_of_msgspec_error(message: str) -> tuple[str, str]:
    """Turn msgspec's 'Expected `int`, got `str` - at `$.maxMembers`' into (field, reason);
    the field is "" when the error is about the value as a whole."""
    path = ""
    m = _AT_PATH.search(message)
    if m:
        path = m.group("path").lstrip(".")
        message = message[: m.start()]
    for pattern, reason in ((_MISSING, "is required"), (_UNKNOWN, "is not a known field")):
        found = pattern.search(message)
        if found:
            name = found.group("name")
            return (f"{path}.{name}" if path else name), reason
    return path, (message[0].lower() + message[1:] if message else "is invalid")


def invalid_from(exc: msgspec.ValidationError, *, within: str = "body") -> Invalid:
    """The 422 for a msgspec validation error, naming the field; fields of a value that is
    itself a field are named `within.field` (unless `within` is the request body)."""
    field, reason = field_of_msgspec_error(str(exc))
    if within == "body":
        return Invalid(field or "body", reason)
    return Invalid(f"{within}.{field}" if field else within, reason)


def convert(
    data: Any, type_: type[T], *, strict: bool = True, within: str = "body", check: bool = True
) -> T:
    """`msgspec.convert`, with a 422 naming the field (see `invalid_from`) when the data does
    not fit `type_`, and every value checked by `check_input` (`check=False`: the caller has
    checked every string `data` holds, and it holds nothing else)."""
    try:
        value = msgspec.convert(data, type_, strict=strict)
    except msgspec.ValidationError as exc:
        raise invalid_from(exc, within=within) from None
    except RecursionError:
        raise Invalid(within, TOO_DEEP) from None
    if check:
        check_input(value)
    return value


def decode_json(raw: bytes, type_: type[T]) -> T:
    """A client's JSON body as `type_`: msgspec's decoding (400 when it is not JSON, 422 naming
    the field when it does not fit) and then `check_input` on everything in it."""
    try:
        value = msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise invalid_from(exc) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        # msgspec gives up around a thousand levels, before any field could be named
        raise Invalid("body", TOO_DEEP) from None
    check_input(value)
    return value


# Free-form JSON fields (settings, metadata, patterns): how deep and how large one may be. The
# database's jsonb and every reader after it pay for each level, and no honest client nests
# its settings more than a few levels.
MAX_FREE_FORM_DEPTH = 16
MAX_FREE_FORM_BYTES = 64 * 1024
# What a client is told when the database refuses a value that passed validation; what the
# database said goes to the log, never to the client.
OUT_OF_RANGE = "holds a value out of the range this server can store"
TOO_DEEP = f"is nested too deeply (at most {MAX_FREE_FORM_DEPTH} levels)"
_INT64 = (-(2**63), 2**63 - 1)  # what jsonb and bigint columns hold


def check_input(value: Any, field: str = "") -> None:
    """The rules every client value obeys, checked once where requests are decoded, so no field
    can forget them: no control characters in any string (tab, newline and carriage return are
    fine; keys of free-form objects count too), and free-form values at most
    MAX_FREE_FORM_DEPTH deep and MAX_FREE_FORM_BYTES large. Raises Invalid naming the field
    (for free-form values, the field that holds them)."""
    if isinstance(value, msgspec.Struct):
        later = getattr(value, "__checked_later__", ())
        names = value.__struct_encode_fields__
        for attr, name in zip(value.__struct_fields__, names, strict=True):
            path = f"{field}.{name}" if field else name
            if attr in later:
                # its text is checked where each item is used, so one bad item fails alone;
                # its shape is bounded now
                _free_form(getattr(value, attr), path, strings=False)
            else:
                check_input(getattr(value, attr), path)
    elif isinstance(value, str):
        no_control_characters(value, field or "body")
    elif isinstance(value, dict):
        _free_form(value, field or "body")
    elif isinstance(value, list | tuple):
        if any(isinstance(item, msgspec.Struct) for item in value):
            for i, item in enumerate(value):
                check_input(item, f"{field}[{i}]")
        else:
            _free_form(value, field or "body")


def _free_form(value: Any, field: str, *, strings: bool = True) -> None:
    _check_free_form(value, field, field, 1, strings)
    if len(msgspec.json.encode(value)) > MAX_FREE_FORM_BYTES:
        raise Invalid(field, f"is too large (at most {MAX_FREE_FORM_BYTES} bytes)")


def _check_free_form(value: Any, field: str, path: str, depth: int, strings: bool) -> None:
    """Too deep names the field; a control character names where it is (`tags[1]`)."""
    if depth > MAX_FREE_FORM_DEPTH:
        raise Invalid(field, TOO_DEEP)
    if isinstance(value, str):
        if strings:
            no_control_characters(value, path)
    elif isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        raise Invalid(path, "holds an integer too large to store (at most 64 bits)")
    elif isinstance(value, dict):
        for key, item in value.items():
            if strings and isinstance(key, str):
                no_control_characters(key, path)
            _check_free_form(item, field, f"{path}.{key}", depth + 1, strings)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_free_form(item, field, f"{path}[{i}]", depth + 1, strings)
    elif isinstance(value, msgspec.Struct) and strings:
        check_input(value, path)


def bounded_json(value: T, field: str, max_bytes: int) -> T:
    """A client-supplied JSON value (settings, metadata) no larger than `max_bytes` encoded."""
    if len(msgspec.json.encode(value)) > max_bytes:
        raise Invalid(field, "is too large")
    return value
