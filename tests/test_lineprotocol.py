"""Line-protocol serializer: spec examples, and property tests that round-trip through a real influxd."""

from __future__ import annotations

import itertools
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devkit.services import Influxd
from gateway.core.lineprotocol import escape_key, escape_measurement, format_field, line, reading_line, series_prefix


def test_spec_examples() -> None:
    assert escape_measurement("my measurement,x") == "my\\ measurement\\,x"
    assert escape_key("tag key=1,2") == "tag\\ key\\=1\\,2"
    assert format_field('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'
    assert format_field(True) == "true"
    assert format_field(3) == "3i"
    assert format_field(1.5) == "1.5"
    assert format_field(math.nan) is None and format_field(math.inf) is None and format_field(None) is None
    assert series_prefix("reading", {"tag": "GT-101", "site": "S", "hs": None, "unit": ""}) == (
        "reading,site=S,tag=GT-101 "
    )
    assert line("m", {"a": "1"}, {"x": math.nan}, 5) is None
    assert line("m", {"a": "1"}, {"x": 1.0, "s": "ok"}, 5) == 'm,a=1 x=1.0,s="ok" 5'


def test_reading_line() -> None:
    p = series_prefix("reading", {"site": "S", "tag": "PT-1", "unit": "°C"})
    assert reading_line(p, 1.25, "good", 1732300000123456789) == (
        'reading,site=S,tag=PT-1,unit=°C value=1.25,quality="good" 1732300000123456789'
    )
    # no value (comm / stale), NaN and inf: quality only, never a fake value
    assert reading_line(p, None, "comm", 7) == 'reading,site=S,tag=PT-1,unit=°C quality="comm" 7'
    assert reading_line(p, math.nan, "bad", 7).endswith(' quality="bad" 7')
    assert reading_line(p, -math.inf, "bad", 7).endswith(' quality="bad" 7')
    assert reading_line(p, 3, "good", 7).endswith(" value=3.0,quality=\"good\" 7")
    assert reading_line(p, 1e300, "good", 7).endswith(" value=1e+300,quality=\"good\" 7")


def test_newlines_and_backslashes_cannot_break_a_line() -> None:
    out = line("m\nx", {"k\n": "a\\", "b": "c\r\nd"}, {"s": "x\ny"}, 1)
    assert out is not None and "\n" not in out and "\r" not in out


# Text that InfluxDB can store in tag values: no control characters or lone surrogates.
tag_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00"),
    min_size=1,
    max_size=24,
)
field_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00"),
    max_size=40,
)
_counter = itertools.count(1)


def _expected_tag(s: str) -> str:
    return s.replace("\\", "/")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tag_value=tag_text, other=tag_text, text=field_text, value=st.floats(allow_nan=False, allow_infinity=False))
def test_round_trip_through_real_influxd(
    influxd: Influxd, influx_db: str, tag_value: str, other: str, text: str, value: float
) -> None:
    ts = next(_counter) * 1_000_000_007  # distinct ns timestamps, exact to the ns
    meas = "lp test,m"  # a measurement needing escapes
    key = f"k{ts}"
    lp = line(meas, {"id": key, "t v,=": tag_value, "o": other}, {"value": value, "s": text, "n": 7}, ts)
    assert lp is not None
    influxd.write(influx_db, lp)
    rows = influxd.select(influx_db, f"SELECT * FROM \"lp test,m\" WHERE id = '{key}'")
    assert len(rows) == 1, (lp, rows)
    row = rows[0]
    assert row["time"] == ts
    assert row["t v,="] == _expected_tag(tag_value).replace("\n", " ").replace("\r", " ")
    assert row["o"] == _expected_tag(other).replace("\n", " ").replace("\r", " ")
    assert row["s"] == text.replace("\n", " ").replace("\r", " ")
    assert float(row["value"]) == value  # JSON may print a float as an integer
    assert row["n"] == 7
