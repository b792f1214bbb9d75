"""The schema text format and the per-field checks every entry goes through."""

from __future__ import annotations

import pytest

from ccadmin.content.schema import (
    SchemaError,
    format_default_fields,
    format_schema,
    nested_deeper_than,
    parse_default_fields,
    parse_schema,
    printable,
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
        ("message=a\ud800b", "message: Not valid Unicode text"),
        ("message=hi\nimage_url\udc00=x", r"image_url\\udc00: Not a field"),
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
    [
        ("42", True),
        ("a" * 128, True),
        ("é☃😀", True),
        ("", False),
        ("a" * 129, False),
        ("4\n2", False),
        ("4\ud8002", False),
        ("\udfff", False),
    ],
)
def test_user_id_rule(user_id, ok):
    assert (user_id_error(user_id) is None) is ok


@pytest.mark.parametrize("text", ["\ud800", "a\udbff", "\udc00z", "\udfff\ud800"])
def test_unpaired_surrogates_are_refused_in_values_and_names(text):
    clean, errors = validate_fields(SCHEMA, {"message": text})
    assert clean == {} and errors == {"message": "Not valid Unicode text (an unpaired surrogate)."}
    clean, errors = validate_fields(SCHEMA, {"message": "ok", f"x{text}": "y"})
    shown = printable(f"x{text}")
    assert errors == {shown: "Not a field of this campaign."}
    assert shown.encode("utf-8")
    assert user_id_error(f"user{text}") == "Not valid Unicode text (an unpaired surrogate)."


def test_a_surrogate_pair_is_one_character_not_an_error():
    clean, errors = validate_fields(SCHEMA, {"message": "hi 😀"})
    assert errors == {} and clean == {"message": "hi 😀"}


@pytest.mark.parametrize("value", [5, 1.5, True, ["a"], {"a": "b"}])
def test_field_values_must_be_text(value):
    clean, errors = validate_fields(SCHEMA, {"message": "ok", "image_url": value})
    assert errors == {"image_url": "Must be text."}


def test_none_is_an_empty_value():
    clean, errors = validate_fields(SCHEMA, {"message": "ok", "image_url": None})
    assert errors == {} and clean == {"message": "ok"}


@pytest.mark.parametrize(
    ("document", "limit", "deeper"),
    [
        ('{"fields": {"message": "hi"}}', 2, False),
        ('{"fields": {"message": {"a": "b"}}}', 2, True),
        ('{"fields": {"message": "{{name}} [[[[[[ {{{{"}}', 2, False),
        ('{"fields": {"message": "a \\" [ \\\\"}}', 2, False),
        ('{"a": "ends in a backslash \\\\", "b": [[["x"]]]}', 2, True),
        ('{"a": "\\u00e9 \\"[[[\\"", "b": ""}', 1, False),
        ('[{"user_id": 1}, {"user_id": 2}, {"user_id": 3}]', 2, False),
        ('[{"user_id": 1}, {"user_id": [2]}]', 2, True),
        ('{"user_id": 1, "message": "[{"}', 1, False),
        ('{"user_id": 1, "message": []}', 1, True),
        ("[" * 1000 + "]" * 1000, 2, True),
        ("[" * 100_000, 2, True),
        ('{"fields": {"message": "x"}', 2, False),
        ('{"a": [}', 2, False),
        ("", 2, False),
    ],
)
def test_nesting_depth_is_measured_outside_strings(document, limit, deeper):
    assert nested_deeper_than(document, limit) is deeper
    assert nested_deeper_than(document.encode(), limit) is deeper
