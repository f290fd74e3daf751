"""The SDK's plain pieces on CPython: RPC param readers (pyodide_app.sdk.params), profile names
(pyodide_app.sdk.profiles) and the grouping of ``messages`` events (pyodide_app.sdk.events).

Each refusal is an ``InvalidInput`` naming the parameter: the page sees that message.
"""

from __future__ import annotations

from typing import Any

import pytest

from ping_core.errors import InvalidInput
from ping_core.ids import ConversationId, DeviceId
from pyodide_app.sdk.events import message_events
from pyodide_app.sdk.params import (
    MAX_TEXT,
    bytes_param,
    conv_param,
    device_param,
    int_param,
    key_package_list,
    param,
    payload_param,
    text_param,
    timeout_param,
)
from pyodide_app.sdk.profiles import check_profile, profile_key

CONV = "ab" * 16
DEVICE = "CD" * 32


def test_param_present_and_not_null() -> None:
    assert param({"a": 0}, "a") == 0
    for params in ({}, {"a": None}):
        with pytest.raises(InvalidInput, match="missing parameter 'a'"):
            param(params, "a")


def test_text_param_strips_and_bounds() -> None:
    assert text_param({"t": "  hi "}, "t") == "hi"
    assert text_param({"t": " "}, "t", allow_empty=True) == ""
    with pytest.raises(InvalidInput, match="t must not be empty"):
        text_param({"t": " "}, "t")
    with pytest.raises(InvalidInput, match="t must be text"):
        text_param({"t": b"hi"}, "t")
    with pytest.raises(InvalidInput, match="t is longer than 3 bytes"):
        text_param({"t": "\u00e9\u00e9"}, "t", max_len=3)  # 4 UTF-8 bytes


def test_bytes_and_payload_params() -> None:
    assert bytes_param({"b": b"x"}, "b", max_len=1) == b"x"
    for value in (b"", b"xx", "x"):
        with pytest.raises(InvalidInput, match="b must be"):
            bytes_param({"b": value}, "b", max_len=1)
    assert payload_param({"p": "h\u00e9"}, "p") == "h\u00e9".encode()
    assert payload_param({"p": b"\xff"}, "p") == b"\xff"
    with pytest.raises(InvalidInput, match=f"p must be 1..{MAX_TEXT} bytes"):
        payload_param({"p": "x" * (MAX_TEXT + 1)}, "p")


def test_int_param_refuses_bools_and_out_of_range() -> None:
    assert int_param({}, "n", 1, 5, default=3) == 3
    for value in (True, 0, 6, 2.0, None):
        with pytest.raises(InvalidInput, match="n must be an integer in 1..5"):
            int_param({"n": value}, "n", 1, 5)


def test_ids_and_timeout() -> None:
    assert conv_param({"conv": CONV}) == ConversationId.from_hex(CONV)
    assert device_param({"device_id": DEVICE}) == DeviceId.from_hex(DEVICE.lower())
    assert timeout_param({}) == 300.0
    for value in (0, -1, 901, "5"):
        with pytest.raises(InvalidInput, match="timeout_s must be in"):
            timeout_param({"timeout_s": value})


def test_key_package_list() -> None:
    got = key_package_list({"m": [{"conv": CONV, "key_package": b"k"}]}, "m", conv_param, "{conv, key_package}")
    assert got == [(ConversationId.from_hex(CONV), b"k")]
    with pytest.raises(InvalidInput, match=r"m is a list of \{conv, key_package\}"):
        key_package_list({"m": ["x"]}, "m", conv_param, "{conv, key_package}")
    with pytest.raises(InvalidInput, match="m must be a list of 1..1000 entries"):
        key_package_list({"m": []}, "m", conv_param, "{conv, key_package}")
    with pytest.raises(InvalidInput, match="key_package must be"):
        key_package_list({"m": [{"conv": CONV, "key_package": b""}]}, "m", conv_param, "{conv, key_package}")


def test_profile_names() -> None:
    assert check_profile("work-2.a_b") == "work-2.a_b"
    assert profile_key("p", "current") == "profile/p/current"
    for bad in ("", "x" * 65, "a/b", "\u00e9", None, 3):
        with pytest.raises(InvalidInput, match="a profile name is"):
            check_profile(bad)
    with pytest.raises(InvalidInput):
        profile_key("../x", "current")


def test_message_events_group_by_conversation_in_order() -> None:
    msgs: list[dict[str, Any]] = [{"conv": "a", "seq": 1}, {"conv": "b", "seq": 1}, {"conv": "a", "seq": 2}]
    assert message_events(msgs) == [
        {"type": "messages", "conv": "a", "messages": [msgs[0], msgs[2]]},
        {"type": "messages", "conv": "b", "messages": [msgs[1]]},
    ]
    assert message_events([]) == []
