from __future__ import annotations

import decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.fhir.jsonio import dumps, parse
from adapter.fhir.outcomes import FhirError


@pytest.mark.parametrize("text", ["6.30", "0.1000", "-0.0", "1e2", "123456789012345678901234.5"])
def test_decimals_keep_their_digits(text):
    out = dumps(parse(f'{{"v": {text}}}'))
    assert decimal.Decimal(out.decode()[5:-1]) == decimal.Decimal(text)
    if "e" not in text:
        assert out == f'{{"v":{text}}}'.encode()


@pytest.mark.parametrize("body,reason", [
    (b'{"a": 1,}', "malformed JSON"),
    (b'{"a": NaN}', "not a JSON number"),
    (b'{"a": 1, "a": 2}', "duplicate property 'a'"),
    (b'\xff\xfe', "UTF-8"),
    (b'', "malformed JSON"),
    (b'{"a": "\\ud800"}', "surrogate"),
    (b'{"a": 1E+400}', "out of range"),
    (b'{"a": "x\\u0000"}', "NUL"),
    (b'[' * 65 + b']' * 65, "nested more than 64 levels"),
    (b'[' * 2000 + b']' * 2000, "nested more than 64 levels"),
])
def test_malformed_json_is_a_400(body, reason):
    with pytest.raises(FhirError) as caught:
        parse(body)
    assert caught.value.status == 400
    assert reason in str(caught.value)


TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)))


@given(st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | TEXT
    | st.decimals(min_value=decimal.Decimal("-1e300"), max_value=decimal.Decimal("1e300"),
                  allow_nan=False, allow_infinity=False).filter(
                      lambda d: (d == 0 or abs(d) > decimal.Decimal("1e-300")) and len(str(d)) <= 64),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20))
def test_round_trip(value):
    assert parse(dumps(value)) == value


def test_integers_beyond_64_bits_keep_their_digits():
    assert dumps(parse(b'{"n": 123456789012345678901234567890}')) == b'{"n":123456789012345678901234567890}'
