"""canonical_json (orjson with sorted keys) against the rfc8785 reference canonicaliser.

canonical_json accepts only the values the registry signs: strings, integers within
±(2**53 - 1), booleans, null, lists and objects whose keys are ASCII strings. For those it must
agree byte for byte with RFC 8785 (checked against the ``rfc8785`` package and the published JCS
test data). Everything else raises ``TypeError``:

* floats (orjson writes ``1.0``, ``-0.0`` and NaN where RFC 8785 gives ``1``, ``0`` and an error);
* integers beyond ±(2**53 - 1) (outside I-JSON; RFC 8785 refuses them too);
* non-ASCII object keys (orjson sorts keys by code point, RFC 8785 by UTF-16 code units, and the
  two orders differ once a key holds a character above U+FFFF next to one in U+E000..U+FFFF;
  refusing every non-ASCII key keeps the fast path exact). Non-ASCII *values* are fine.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.canonical import canonical_json

SAFE = 2**53 - 1  # rfc8785 (I-JSON) refuses integers of magnitude 2**53 and beyond

# Any Unicode scalar value (control characters included, surrogates excluded).
any_char = st.one_of(
    st.characters(max_codepoint=0xD7FF),
    st.characters(min_codepoint=0xE000),
)
any_text = st.text(any_char, max_size=20)

# Keys canonical_json accepts: any ASCII text, control characters included.
ascii_keys = st.text(st.characters(max_codepoint=0x7F), max_size=8)
# Keys it refuses: at least one character above U+007F (Latin, CJK, U+E000..U+FFFF, astral).
non_ascii_keys = st.builds(
    lambda before, char, after: before + char + after,
    ascii_keys,
    st.one_of(
        st.characters(min_codepoint=0x80, max_codepoint=0xD7FF),
        st.characters(min_codepoint=0xE000),
    ),
    ascii_keys,
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-SAFE, max_value=SAFE),
    any_text,
)


def _json_values(key_strategy: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(key_strategy, children, max_size=5),
        ),
        max_leaves=30,
    )


ascii_json = _json_values(ascii_keys)

# A JSON value with one non-ASCII key somewhere inside it (at the top or nested in lists and
# objects), every other key ASCII.
_bad_object = st.builds(
    lambda rest, key, value: {**rest, key: value},
    st.dictionaries(ascii_keys, scalars, max_size=3),
    non_ascii_keys,
    ascii_json,
)
with_non_ascii_key = st.recursive(
    _bad_object,
    lambda children: st.one_of(
        st.builds(lambda items, child: [*items, child], st.lists(ascii_json, max_size=3), children),
        st.builds(
            lambda rest, key, child: {**rest, key: child},
            st.dictionaries(ascii_keys, ascii_json, max_size=3),
            ascii_keys,
            children,
        ),
    ),
    max_leaves=5,
)


@settings(max_examples=500, deadline=None)
@given(ascii_json)
def test_matches_rfc8785(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(ascii_keys, scalars, max_size=12))
def test_flat_objects_with_ascii_keys_match_rfc8785(value: dict[str, Any]) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=300, deadline=None)
@given(with_non_ascii_key)
def test_non_ascii_keys_raise_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match="object keys must be ASCII strings"):
        canonical_json(value)


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_strings_match_rfc8785(value: str) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)
    assert orjson.loads(canonical_json(value)) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 8785 section 3.2.2.2: the six short escapes, \u00XX for other controls, nothing else.
        ('\b\t\n\f\r"\\', b'"\\b\\t\\n\\f\\r\\"\\\\"'),
        ("\x00\x01\x1f", b'"\\u0000\\u0001\\u001f"'),
        ("\x7f/\u2028\u00e9\U0001f600", '"\x7f/\u2028\u00e9\U0001f600"'.encode()),
        ({"b": [], "a": {}, "": None}, b'{"":null,"a":{},"b":[]}'),
        ({"z": 2, "Z": 3, "e": "\u00e9"}, b'{"Z":3,"e":"\xc3\xa9","z":2}'),
        (
            [True, False, None, -SAFE, SAFE, 0],
            b"[true,false,null,-9007199254740991,9007199254740991,0]",
        ),
    ],
)
def test_known_outputs(value: Any, expected: bytes) -> None:
    assert canonical_json(value) == expected
    assert rfc8785.dumps(value) == expected


# RFC 8785 section 3.2.3, the sorting example (all values are strings), and its expected order.
RFC8785_SORTING_INPUT = {
    "\u20ac": "Euro Sign",
    "\r": "Carriage Return",
    "\ufb33": "Hebrew Letter Dalet With Dagesh",
    "1": "One",
    "\U0001f600": "Emoji: Grinning Face",
    "\x80": "Control",
    "\u00f6": "Latin Small Letter O With Diaeresis",
}
RFC8785_SORTED_KEYS = ["\r", "1", "\x80", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]

# cyberphone/json-canonicalization testdata/{input,output}/*.json (the JCS reference test data).
# weird.json's output holds a raw U+0080 key and a raw U+007F in "Control\x7f" (167 characters).
CYBERPHONE_WEIRD_INPUT = r"""{
  "\u20ac": "Euro Sign",
  "1": "One",
  "\u0080": "Control\u007f",
  "\ud83d\ude02": "Smiley",
  "\u00f6": "Latin Small Letter O With Diaeresis",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "</script>": "Browser Challenge"
}
"""
CYBERPHONE_WEIRD_OUTPUT = (
    '{"1":"One","</script>":"Browser Challenge","\x80":"Control\x7f",'
    '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
    '"\U0001f602":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
).encode()
CYBERPHONE_FRENCH_INPUT = """{
  "peach": "This sorting order",
  "p\u00e9ch\u00e9": "is wrong according to French",
  "p\u00eache": "but canonicalization MUST",
  "sin":   "ingnore locale"
}
"""
CYBERPHONE_FRENCH_OUTPUT = (
    '{"peach":"This sorting order","p\u00e9ch\u00e9":"is wrong according to French",'
    '"p\u00eache":"but canonicalization MUST","sin":"ingnore locale"}'
).encode()
CYBERPHONE_UNICODE_INPUT = '{\n  "Unnormalized Unicode":"\\u1e0d\\u0307"\n}\n'
CYBERPHONE_UNICODE_OUTPUT = '{"Unnormalized Unicode":"\u1e0d\u0307"}'.encode()
CYBERPHONE_STRUCTURES_INPUT = """{
  "1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},
  "10": { },
  "": "empty",
  "a": { },
  "111": [ { } ],
  "A": { }
}"""
CYBERPHONE_STRUCTURES_OUTPUT = (
    b'{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}'
)


def test_rfc8785_sorting_example_reference() -> None:
    assert list(orjson.loads(rfc8785.dumps(RFC8785_SORTING_INPUT))) == RFC8785_SORTED_KEYS


def test_rfc8785_sorting_example_is_refused() -> None:
    # Its keys are non-ASCII, where orjson's code-point order and RFC 8785's UTF-16 order can
    # differ (U+FB33 vs U+1F600 here): canonical_json refuses rather than sign a wrong order.
    with pytest.raises(TypeError, match="object keys must be ASCII strings"):
        canonical_json(RFC8785_SORTING_INPUT)


def test_rfc8785_sorting_example_ascii_part() -> None:
    ascii_part = {k: v for k, v in RFC8785_SORTING_INPUT.items() if k.isascii()}
    assert list(orjson.loads(canonical_json(ascii_part))) == ["\r", "1"]
    assert canonical_json(ascii_part) == rfc8785.dumps(ascii_part)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CYBERPHONE_FRENCH_INPUT, CYBERPHONE_FRENCH_OUTPUT),
        (CYBERPHONE_UNICODE_INPUT, CYBERPHONE_UNICODE_OUTPUT),
        (CYBERPHONE_WEIRD_INPUT, CYBERPHONE_WEIRD_OUTPUT),
        (CYBERPHONE_STRUCTURES_INPUT, CYBERPHONE_STRUCTURES_OUTPUT),
    ],
)
def test_published_jcs_vectors_reference(text: str, expected: bytes) -> None:
    # The rfc8785 package itself reproduces the published outputs.
    assert rfc8785.dumps(json.loads(text)) == expected


def test_published_jcs_vector_in_range() -> None:
    # ASCII key, non-ASCII (unnormalised) value: exactly the published output.
    value = json.loads(CYBERPHONE_UNICODE_INPUT)
    assert canonical_json(value) == CYBERPHONE_UNICODE_OUTPUT


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (CYBERPHONE_FRENCH_INPUT, "object keys must be ASCII strings"),
        (CYBERPHONE_WEIRD_INPUT, "object keys must be ASCII strings"),
        (CYBERPHONE_STRUCTURES_INPUT, "cannot canonicalise float"),
    ],
)
def test_published_jcs_vectors_out_of_range_are_refused(text: str, why: str) -> None:
    with pytest.raises(TypeError, match=why):
        canonical_json(json.loads(text))


def test_published_vectors_with_floats_made_integers() -> None:
    value = json.loads(CYBERPHONE_STRUCTURES_INPUT)
    value["1"]["\n"] = 56
    assert canonical_json(value) == CYBERPHONE_STRUCTURES_OUTPUT


def test_astral_vs_high_bmp_key_order_is_refused() -> None:
    value = {"\ue000": 1, "\U00010000": 2}
    # RFC 8785: U+10000 is D800 DC00 in UTF-16, which sorts before E000; orjson would put
    # U+E000 first. canonical_json refuses the keys instead of writing the wrong order.
    assert rfc8785.dumps(value) == '{"\U00010000":2,"\ue000":1}'.encode()
    assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) != rfc8785.dumps(value)
    with pytest.raises(TypeError, match="object keys must be ASCII strings"):
        canonical_json(value)


@pytest.mark.parametrize(
    "value",
    [{"\u00e9": 1}, {"a": {"\u4e2d": None}}, [{"ok": [{"\U0001f600": True}]}], {"\x80": "x"}],
)
def test_non_ascii_keys_nested_anywhere_are_refused(value: Any) -> None:
    with pytest.raises(TypeError, match="object keys must be ASCII strings"):
        canonical_json(value)


def test_non_ascii_values_are_fine() -> None:
    value = {"use": "\u4f4f\u5b85", "note": "\U0001f600\ue000"}
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value",
    [1.5, 1.0, -0.0, 0.0, math.nan, math.inf, -math.inf, [0.5], {"a": 2.0}, {"a": [{"b": 1e3}]}],
)
def test_floats_are_refused(value: Any) -> None:
    with pytest.raises(TypeError, match="cannot canonicalise float"):
        canonical_json(value)


@pytest.mark.parametrize("value", [SAFE, -SAFE, 0, [SAFE, -SAFE], {"n": SAFE}])
def test_integers_at_the_safe_bounds_are_accepted(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value",
    [SAFE + 1, -SAFE - 1, 2**53, -(2**53), 2**63, [1, 2**53], {"a": {"b": -(2**60)}}],
)
def test_integers_beyond_the_safe_range_are_refused(value: Any) -> None:
    with pytest.raises(TypeError, match="integer out of the JSON-safe range"):
        canonical_json(value)


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", object(), {"a": frozenset()}])
def test_unsupported_types_raise_type_error(value: Any) -> None:
    # orjson.JSONEncodeError is TypeError itself.
    assert orjson.JSONEncodeError is TypeError
    with pytest.raises(TypeError):
        canonical_json(value)


def test_non_string_keys_raise_type_error() -> None:
    with pytest.raises(TypeError):
        canonical_json({1: "one"})


def test_lone_surrogate_raises_type_error() -> None:
    with pytest.raises(TypeError):
        canonical_json("\ud800")


def test_integers_beyond_64_bits_raise_type_error() -> None:
    with pytest.raises(TypeError):
        canonical_json(2**64)
