"""host/protocols/common.py: the helpers every protocol adapter shares."""

from __future__ import annotations

import pytest

from host.protocols import common
from plugin_sdk.errors import InvalidRequest, NodeError, UpstreamError
from plugin_sdk.types import Usage


@pytest.mark.parametrize(("body", "message"), [
    (b"", "request body is empty: expected a JSON object"),
    (b"  \n", "request body is empty: expected a JSON object"),
    (b'{"a": 1,}', "request body is not valid JSON"),
    (b'"text"', "request body: expected a JSON object, got a string"),
    (b"null", "request body: expected a JSON object, got null"),
])
def test_body_that_is_not_a_json_object_is_an_invalid_request(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        common.decode_body(body)
    assert info.value.message.startswith(message)


def test_field_readers_return_values_of_the_right_type_and_none_when_absent_or_null() -> None:
    obj = {"s": "x", "i": 3, "f": 1.5, "b": False, "d": {}, "l": [], "n": None}
    assert (common.opt_str(obj, "s"), common.opt_int(obj, "i"), common.opt_float(obj, "i")) == ("x", 3, 3.0)
    assert (common.opt_bool(obj, "b"), common.opt_dict(obj, "d"), common.opt_list(obj, "l")) == (False, {}, [])
    assert common.opt_str(obj, "n") is None and common.opt_int(obj, "missing") is None


def test_booleans_are_not_numbers_and_integral_floats_are_integers() -> None:
    with pytest.raises(InvalidRequest, match="x: expected an integer, got boolean"):
        common.opt_int({"x": True}, "x")
    with pytest.raises(InvalidRequest, match="x: expected a number, got boolean"):
        common.opt_float({"x": False}, "x")
    assert common.opt_int({"x": 2.0}, "x") == 2


def test_field_errors_name_the_full_path_in_message_and_param() -> None:
    with pytest.raises(InvalidRequest) as info:
        common.req_str({}, "name", "tools[2].function")
    assert (info.value.message, info.value.param) == ("tools[2].function.name: required field is missing",
                                                      "tools[2].function.name")
    with pytest.raises(InvalidRequest) as info:
        common.opt_dict({"p": [1]}, "p", "tools[0]")
    assert info.value.message == "tools[0].p: expected an object, got an array"


def test_new_ids_carry_the_prefix_and_do_not_repeat() -> None:
    ids = {common.new_id("resp_") for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith("resp_") and len(i) == 29 for i in ids)


def test_sse_framing_with_and_without_event_name() -> None:
    assert common.sse_data({"a": "é"}) == 'data: {"a":"é"}\n\n'.encode()
    assert common.sse_event("response.created", {"n": 1}) == b'event: response.created\ndata: {"n":1}\n\n'


@pytest.mark.parametrize(("url", "parsed"), [
    ("data:image/png;base64,iVBOR", ("image/png", "iVBOR")),
    ("data:;base64,AAAA", ("application/octet-stream", "AAAA")),
    ("data:image/png,raw", None),
    ("https://example.com/a.png", None),
])
def test_data_urls_split_into_media_type_and_base64(url: str, parsed: tuple[str, str] | None) -> None:
    assert common.parse_data_url(url) == parsed


def test_retry_after_header_only_when_the_error_knows_it() -> None:
    assert common.retry_after_headers(UpstreamError("slow", status=429, retry_after="12")) == {"retry-after": "12"}
    assert common.retry_after_headers(UpstreamError("slow", status=429)) == {}
    assert common.retry_after_headers(NodeError("x")) == {}


def test_merged_usage_keeps_prompt_counts_sent_at_stream_start() -> None:
    start = Usage(input_tokens=100, cache_read_tokens=80)
    end = Usage(output_tokens=7, reasoning_tokens=3)
    assert common.merged_usage(start, end) == Usage(input_tokens=100, output_tokens=7, cache_read_tokens=80,
                                                    reasoning_tokens=3)
    assert common.merged_usage(None, end) is end
