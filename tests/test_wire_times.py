"""The gate's fast Timestamp conversion agrees with protobuf's own, to the nanosecond."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from server.wire import _set_time


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
def test_set_time_matches_from_datetime(naive: datetime) -> None:
    at = naive.replace(tzinfo=UTC)
    fast, reference = Timestamp(), Timestamp()
    _set_time(fast, at)
    reference.FromDatetime(at)
    assert (fast.seconds, fast.nanos) == (reference.seconds, reference.nanos)
