"""A campaign's field schema and the checks every content entry must pass.

Pure functions, no database: the admin forms use them today and a bulk import
can use the same rules, so a row is accepted or refused the same way everywhere.
A schema is a list of {"name": str, "max_length": int}; `message` is always in it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import accumulate, count
from operator import sub
from typing import Any

from ccadmin.models.content import USER_ID_MAX_LENGTH

REQUIRED_FIELD = "message"
DEFAULT_MAX_LENGTH = 140
# Bodies must stay far below the caller's 1 MB limit, whatever the schema says.
MAX_FIELD_LENGTH = 10_000
MAX_FIELDS = 50
# These names are the envelope every body carries (see payload.render_payload).
RESERVED_NAMES = frozenset({"user_id", "campaign", "has_content", "version"})
FIELD_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Tab, newline and carriage return are fine inside a message; other control
# characters break templates downstream and are never typed on purpose.
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_ANY = re.compile(r"[\x00-\x1f\x7f]")
# A JSON escape like "\ud800" decodes to a lone surrogate: a str Python holds
# but cannot encode as UTF-8, so no database, payload or export could take it.
_SURROGATE = re.compile("[\ud800-\udfff]")
NOT_UNICODE = "Not valid Unicode text (an unpaired surrogate)."
NOT_TEXT = "Must be text."
# Bytes of JSON text that matter to its nesting: brackets, and the quotes of strings.
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'[]{}"')
# An opening bracket becomes 2, a closing one 0: the running sum minus the
# position is then the nesting depth (see nested_deeper_than).
_DEPTH_STEPS = bytes.maketrans(b"[]{}", b"\x02\x00\x02\x00")


class SchemaError(ValueError):
    """A schema or default-fields text is malformed; the message says where."""


def unencodable(text: str) -> bool:
    """True when `text` holds a lone surrogate, which nothing downstream can encode as UTF-8."""
    return _SURROGATE.search(text) is not None


def printable(text: str) -> str:
    """`text` safe to show, store and log: lone surrogates written as `\\udXXXX`."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def nested_deeper_than(document: str | bytes, limit: int) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit`, measured without parsing.

    json.loads recurses once per level and fails with RecursionError on a
    deep document, so callers check first. Counting brackets settles most
    bodies at once. Otherwise only brackets and string quotes are kept (escaped
    quotes dropped, brackets inside strings cut out) and innermost pairs are
    removed `limit` times: what is left is deeper, or unbalanced and measured.
    All of it runs in C, a few microseconds for an entry's body.
    """
    raw = document.encode("utf-8", "surrogatepass") if isinstance(document, str) else document
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    if b"\\\\" in raw:
        raw = raw.replace(b"\\\\", b"")
    if b'\\"' in raw:
        raw = raw.replace(b'\\"', b"")
    # Dropping an empty string's two quotes keeps every other quote's parity.
    kept = raw.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in kept:
        kept = b"".join(kept.split(b'"')[::2])
    steps = kept.translate(_DEPTH_STEPS)
    left = steps
    for _ in range(limit):
        left = left.replace(b"\x02\x00", b"")
    if not left:
        return False
    return max(map(sub, accumulate(steps), count(1))) > limit


def parse_schema(text: str) -> list[dict[str, Any]]:
    """Parse `name:max_length` lines (blank lines ignored) into a schema list."""
    schema: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        name, sep, length_text = line.partition(":")
        name = name.strip()
        if not FIELD_NAME_PATTERN.match(name):
            raise SchemaError(
                f"Line {number}: {name!r} is not a valid field name "
                "(letters, digits and _, not starting with a digit, at most 64)."
            )
        if name in RESERVED_NAMES:
            raise SchemaError(f"Line {number}: {name!r} is reserved; choose another name.")
        if name in seen:
            raise SchemaError(f"Line {number}: {name!r} is listed twice.")
        max_length = DEFAULT_MAX_LENGTH
        if sep:
            try:
                max_length = int(length_text.strip())
            except ValueError:
                raise SchemaError(
                    f"Line {number}: the maximum length of {name!r} must be a whole number."
                ) from None
            if not 1 <= max_length <= MAX_FIELD_LENGTH:
                raise SchemaError(
                    f"Line {number}: the maximum length of {name!r} must be between 1 "
                    f"and {MAX_FIELD_LENGTH}."
                )
        seen.add(name)
        schema.append({"name": name, "max_length": max_length})
    if REQUIRED_FIELD not in seen:
        raise SchemaError(f"The {REQUIRED_FIELD!r} field is required.")
    if len(schema) > MAX_FIELDS:
        raise SchemaError(f"At most {MAX_FIELDS} fields.")
    return schema


def format_schema(schema: list[dict[str, Any]]) -> str:
    """The editable text for a schema (the inverse of parse_schema)."""
    return "\n".join(f"{field['name']}:{field['max_length']}" for field in schema or [])


def parse_default_fields(text: str, schema: list[dict[str, Any]]) -> dict[str, str]:
    """Parse `name=value` lines and check every value against the schema."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        name, sep, value = raw.partition("=")
        name = name.strip()
        if not sep:
            raise SchemaError(f"Line {number}: expected name=value.")
        if name in values:
            raise SchemaError(f"Line {number}: {name!r} is set twice.")
        values[name] = value.strip()
    clean, errors = validate_fields(schema, values, require_message=False)
    if errors:
        name, message = next(iter(errors.items()))
        raise SchemaError(f"{name}: {message}")
    return clean


def format_default_fields(default_fields: Mapping[str, Any]) -> str:
    """The editable text for default fields (the inverse of parse_default_fields)."""
    return "\n".join(f"{name}={value}" for name, value in (default_fields or {}).items())


def validate_fields(
    schema: list[dict[str, Any]],
    values: Mapping[str, Any],
    require_message: bool = True,
) -> tuple[dict[str, str], dict[str, str]]:
    """Check field values against a schema; return (clean values, errors by field name).

    Empty optional fields are left out of the clean values; line endings are
    normalised to `\\n` so a length counts what the caller will receive.
    """
    limits = {field["name"]: field["max_length"] for field in schema or []}
    clean: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name in values:
        if name not in limits:
            errors[printable(str(name))] = "Not a field of this campaign."
    for name, max_length in limits.items():
        raw = values.get(name)
        if raw is not None and not isinstance(raw, str):
            errors[name] = NOT_TEXT
            continue
        value = "" if raw is None else raw.replace("\r\n", "\n").replace("\r", "\n")
        if not value.strip():
            if name == REQUIRED_FIELD and require_message:
                errors[name] = "A message is required."
            continue
        if len(value) > max_length:
            errors[name] = f"Too long: {len(value)} characters, at most {max_length}."
        elif _CONTROL_IN_TEXT.search(value):
            errors[name] = "Contains control characters."
        elif unencodable(value):
            errors[name] = NOT_UNICODE
        else:
            clean[name] = value
    return clean, errors


def user_id_error(user_id: str | None) -> str | None:
    """Why a user id is not acceptable (same rule as the API), or None."""
    if not user_id:
        return "A user id is required."
    if len(user_id) > USER_ID_MAX_LENGTH:
        return f"At most {USER_ID_MAX_LENGTH} characters."
    if _CONTROL_ANY.search(user_id):
        return "Control characters are not allowed."
    if unencodable(user_id):
        return NOT_UNICODE
    return None
