"""The offline token estimator (plugin_sdk/tokens.py) behind /v1/messages/count_tokens and the mock
model's usage: stable, plausible, monotonic counts; images sized from their headers."""

from __future__ import annotations

import base64
import struct

import pytest

from plugin_sdk.tokens import (
    IMAGE_DEFAULT,
    TOOLS_PREAMBLE,
    count_image_tokens,
    count_request_tokens,
    count_text_tokens,
)
from plugin_sdk.types import (
    ImagePart,
    Message,
    Request,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
    text_message,
)


def png(w: int, h: int) -> str:
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", w, h) + b"\x08\x06\x00\x00\x00"
                            + b"\x00" * 64).decode()


def gif(w: int, h: int) -> str:
    return base64.b64encode(b"GIF89a" + struct.pack("<HH", w, h) + b"\x00" * 64).decode()


def jpeg(w: int, h: int, exif: int = 0) -> str:
    app1 = b"\xff\xe1" + struct.pack(">H", exif + 2) + b"E" * exif if exif else b""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    sof = b"\xff\xc0" + struct.pack(">HBHH", 17, 8, h, w) + b"\x00" * 10
    return base64.b64encode(b"\xff\xd8" + app0 + app1 + sof + b"\xff\xda" + b"\x00" * 64).decode()


def webp(w: int, h: int) -> str:
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (w - 1).to_bytes(3, "little") \
        + (h - 1).to_bytes(3, "little")
    return base64.b64encode(b"RIFF" + struct.pack("<I", 30) + b"WEBP" + vp8x + b"\x00" * 32).decode()


def test_empty_text_is_zero_tokens_and_any_other_text_at_least_one() -> None:
    assert count_text_tokens("") == 0
    assert count_text_tokens("a") == 1
    assert count_text_tokens(" ") == 1


def test_english_runs_about_four_characters_per_token() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 100
    assert count_text_tokens(text) == len(text) // 4


def test_non_ascii_text_costs_more_per_character_than_ascii() -> None:
    chinese = "自托管的虚拟模型网关" * 50
    russian = "Шлюз моделей" * 50
    assert count_text_tokens(chinese) > len(chinese) * 0.8
    assert len(russian) // 4 < count_text_tokens(russian) < len(russian)


def test_counts_never_shrink_when_text_grows() -> None:
    for alphabet in ("x", "é", "自", "a é 自 🙂"):
        text, previous = "", 0
        for i in range(300):
            text += alphabet[i % len(alphabet)]
            n = count_text_tokens(text)
            assert n >= previous
            previous = n


def test_lone_surrogates_from_json_escapes_do_not_break_counting() -> None:
    assert count_text_tokens("bad \ud800 text") >= 1


@pytest.mark.parametrize(("data", "w", "h"), [
    (png(200, 100), 200, 100), (gif(300, 150), 300, 150), (jpeg(640, 480), 640, 480),
    (jpeg(120, 90, exif=5000), 120, 90), (webp(400, 200), 400, 200),
])
def test_image_cost_follows_the_size_in_the_image_header(data: str, w: int, h: int) -> None:
    assert count_image_tokens(ImagePart(data=data, media_type="image/x")) == w * h // 750


def test_large_images_are_costed_after_anthropics_resize_and_unknown_ones_at_the_cap() -> None:
    big = count_image_tokens(ImagePart(data=png(4000, 3000)))
    assert 1400 <= big <= IMAGE_DEFAULT
    assert count_image_tokens(ImagePart(url="https://x.test/a.png")) == IMAGE_DEFAULT
    assert count_image_tokens(ImagePart(data="not base64!")) == IMAGE_DEFAULT
    assert count_image_tokens(ImagePart(data=base64.b64encode(b"\xff\xd8\xff").decode())) == IMAGE_DEFAULT
    assert count_image_tokens(ImagePart(data=png(0, 10))) == IMAGE_DEFAULT


def test_a_request_counts_every_kind_of_content_and_tools_add_the_tool_preamble() -> None:
    base = Request(model="m", messages=[text_message("user", "Hello there, how are you?")])
    n = count_request_tokens(base)
    assert n > count_text_tokens("Hello there, how are you?")
    richer = Request(model="m", messages=[
        *base.messages,
        Message("assistant", [ThinkingPart("let me think " * 10, signature="sig"), ToolCallPart("t", "f", '{"a": 1}')]),
        Message("tool", [ToolResultPart("t", [TextPart("result " * 20), ImagePart(data=png(750, 10))])]),
        Message("user", [ImagePart(url="https://x.test/i.png"), ThinkingPart(redacted_data="QUJD" * 10)]),
    ])
    n_rich = count_request_tokens(richer)
    assert n_rich > n + IMAGE_DEFAULT + 10 + count_text_tokens("let me think " * 10)
    tools = Request(model="m", messages=base.messages, tools=[
        Tool("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}}),
        Tool("web_search", kind="web_search_20250305", raw={"type": "web_search_20250305", "name": "web_search"})])
    assert count_request_tokens(tools) > n + TOOLS_PREAMBLE


def test_counting_the_same_request_twice_gives_the_same_answer() -> None:
    req = Request(model="m", messages=[text_message("user", "stable " * 33)], tools=[Tool("f", parameters={"a": 1})])
    assert count_request_tokens(req) == count_request_tokens(req)
