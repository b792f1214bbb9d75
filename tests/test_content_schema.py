"""The schema text format and the per-field checks every entry goes through."""

from __future__ import annotations

import pytest

from ccadmin.content_schema import (
    SchemaError,
    format_default_fields,
    format_schema,
    parse_default_fields,
    parse_schema,
    user_id_error,
    validate_fields,
)

SCHEMA = [{"name": "message", "max_length": 10}, {"name": "image_url", "max_length": 20}]


def test_parse_schema_reads_lines_and_round_trips():
    text = "message:140\n\n  image_url : 300 \ncta\n"
    schema = parse_schema(text)
    assert schema == [
        {"name": "message", "max_length": 140},
        {"name": "image_url", "max_length": 300},
        {"name": "cta", "max_length": 140},
    ]
    assert parse_schema(format_schema(schema)) == schema


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("image:10", "'message' field is required"),
        ("message:140\nuser_id:10", "Line 2: 'user_id' is reserved"),
        ("message:140\nversion", "'version' is reserved"),
        ("message:140\nmessage:20", "Line 2: 'message' is listed twice"),
        ("message:abc", "must be a whole number"),
        ("message:0", "between 1 and"),
        ("message:140\n2fast:10", "Line 2: '2fast' is not a valid field name"),
        ("message:140\nbad-name:10", "not a valid field name"),
    ],
)
def test_parse_schema_rejects_with_a_clear_message(text, expected):
    with pytest.raises(SchemaError, match=expected):
        parse_schema(text)


def test_default_fields_parse_and_round_trip():
    values = parse_default_fields("message=Hi = you\n\nimage_url=\n", SCHEMA)
    assert values == {"message": "Hi = you"}
    assert parse_default_fields(format_default_fields(values), SCHEMA) == values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nonsense", "expected name=value"),
        ("unknown=1", "unknown: Not a field of this campaign"),
        ("message=01234567890", "message: Too long: 11 characters, at most 10"),
        ("message=a\nmessage=b", "'message' is set twice"),
    ],
)
def test_default_fields_are_checked_against_the_schema(text, expected):
    with pytest.raises(SchemaError, match=expected):
        parse_default_fields(text, SCHEMA)


def test_validate_fields_reports_each_field():
    clean, errors = validate_fields(SCHEMA, {"message": "", "image_url": "x" * 21})
    assert clean == {}
    assert errors == {
        "message": "A message is required.",
        "image_url": "Too long: 21 characters, at most 20.",
    }


def test_validate_fields_counts_newlines_once_and_drops_empty_optionals():
    clean, errors = validate_fields(SCHEMA, {"message": "ab\r\ncd", "image_url": "  "})
    assert errors == {}
    assert clean == {"message": "ab\ncd"}


def test_validate_fields_rejects_control_characters_and_unknown_fields():
    clean, errors = validate_fields(SCHEMA, {"message": "a\x00b", "extra": "x"})
    assert errors == {
        "message": "Contains control characters.",
        "extra": "Not a field of this campaign.",
    }


def test_exact_max_length_is_accepted():
    clean, errors = validate_fields(SCHEMA, {"message": "x" * 10})
    assert errors == {} and clean == {"message": "x" * 10}


@pytest.mark.parametrize(
    ("user_id", "ok"),
    [("42", True), ("a" * 128, True), ("", False), ("a" * 129, False), ("4\n2", False)],
)
def test_user_id_rule(user_id, ok):
    assert (user_id_error(user_id) is None) is ok
