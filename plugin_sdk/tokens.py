"""An offline token estimator: plausible, stable counts without a tokenizer file.

Contract:
- ``count_text_tokens(text) -> int``: about how many tokens ``text`` is; 0 for "", at least 1 for
  any other text.
- ``count_request_tokens(req) -> int``: about how many prompt tokens the canonical ``Request`` is:
  every message's text, thinking, tool calls and tool results, images, tool definitions, plus a
  few tokens per message for the role markers. This is what ``/v1/messages/count_tokens`` answers
  and what the mock model reports as its input usage.

Why a heuristic: tiktoken fetches its BPE files from the internet on first use, and no model's
real tokenizer ships with flowbase; nothing may be downloaded at run time. The estimate is
calibrated against OpenAI's cl100k_base tokenizer (within a few percent on English prose, Python
source and JSON; within about ±30% on Chinese and Russian, where tokenizers differ widely anyway):
ASCII text is one token per four characters; each extra UTF-8 byte of non-ASCII text adds a
third of a token (so a CJK character, three bytes, costs ~0.9 tokens, a Cyrillic one ~0.6).

Speed: ``str.isascii()`` and ``len()`` are O(1) on CPython strings, so counting ASCII text is
constant time whatever its length; non-ASCII text costs one UTF-8 encode (C speed). A request is
counted part by part, never concatenated.
"""

from __future__ import annotations

import base64
import binascii

import msgspec

from plugin_sdk.types import (
    ImagePart,
    Request,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
)

__all__ = ["count_image_tokens", "count_request_tokens", "count_text_tokens"]

# Role markers and separators around each message (chat templates spend 3–5 tokens on them).
MESSAGE_OVERHEAD = 4
# Tokens every request costs before its first message (start of the prompt, the reply's header).
REQUEST_OVERHEAD = 3
# The hidden system prompt a provider adds when tools are offered (Anthropic documents 346
# tokens for tool_choice auto/none on current Claude models).
TOOLS_PREAMBLE = 346
# Per tool definition around its name, description and schema.
TOOL_OVERHEAD = 8
# Per tool call / tool result around its id, name and arguments or content.
TOOL_CALL_OVERHEAD = 6
# An image whose size cannot be read (a URL, an unknown format): Anthropic's cap for one image
# (~1.15 megapixels at 750 pixels per token).
IMAGE_DEFAULT = 1600
# Anthropic resizes images so that the long edge is at most this many pixels …
IMAGE_MAX_EDGE = 1568
# … and the area at most this many pixels; then tokens = width * height / 750.
IMAGE_MAX_PIXELS = 1_150_000
PIXELS_PER_TOKEN = 750

_encode_json = msgspec.json.Encoder().encode


def count_text_tokens(text: str) -> int:
    if not text:
        return 0
    n = len(text)
    if text.isascii():
        return max(1, n // 4)
    extra = len(text.encode("utf-8", "surrogatepass")) - n
    return max(1, n // 4 + extra // 3)


def count_request_tokens(req: Request) -> int:
    total = REQUEST_OVERHEAD
    for msg in req.messages:
        total += MESSAGE_OVERHEAD
        for part in msg.content:
            if isinstance(part, TextPart):
                total += count_text_tokens(part.text)
            elif isinstance(part, ToolResultPart):
                total += TOOL_CALL_OVERHEAD
                for inner in part.content:
                    total += count_text_tokens(inner.text) if isinstance(inner, TextPart) else count_image_tokens(inner)
            elif isinstance(part, ToolCallPart):
                total += TOOL_CALL_OVERHEAD + count_text_tokens(part.name) + count_text_tokens(part.arguments)
            elif isinstance(part, ThinkingPart):
                total += count_text_tokens(part.text)
                if part.redacted_data:
                    # Opaque encrypted thinking: the model reads what it stands for; its base64
                    # runs about four characters per token of the original.
                    total += count_text_tokens(part.redacted_data)
            elif isinstance(part, ImagePart):
                total += count_image_tokens(part)
    if req.tools:
        total += TOOLS_PREAMBLE + sum(_tool_tokens(t) for t in req.tools)
    return total


def _tool_tokens(tool: Tool) -> int:
    n = TOOL_OVERHEAD + count_text_tokens(tool.name)
    if tool.description:
        n += count_text_tokens(tool.description)
    if tool.parameters:
        n += count_text_tokens(_encode_json(tool.parameters).decode())
    elif tool.raw is not None and tool.kind != "function":
        # A provider's built-in tool: its definition is small; the provider's own prompt for it
        # is unknown, so count what was sent.
        n += count_text_tokens(_encode_json(tool.raw).decode())
    return n


def count_image_tokens(image: ImagePart) -> int:
    """Anthropic's image cost (width × height / 750 after its resize) when the size can be read
    from an inline PNG, GIF, JPEG or WebP header; ``IMAGE_DEFAULT`` otherwise."""
    if not image.data:
        return IMAGE_DEFAULT
    size = _image_size(image.data)
    if size is None:
        return IMAGE_DEFAULT
    w, h = size
    if w <= 0 or h <= 0:
        return IMAGE_DEFAULT
    scale = min(1.0, IMAGE_MAX_EDGE / max(w, h), (IMAGE_MAX_PIXELS / (w * h)) ** 0.5)
    return max(1, int(w * scale) * int(h * scale) // PIXELS_PER_TOKEN)


# Base64 characters decoded to find a JPEG's frame header (it follows the EXIF/ICC segments,
# which in camera photos can run to tens of kilobytes). 96 KiB of base64 → 72 KiB of bytes.
_JPEG_SCAN_B64 = 96 * 1024


def _image_size(data_b64: str) -> tuple[int, int] | None:
    try:
        head = base64.b64decode(data_b64[:64] + "=" * (-min(len(data_b64), 64) % 4))
    except (binascii.Error, ValueError):
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        return _webp_size(head)
    if head[:2] == b"\xff\xd8":
        chunk = data_b64[:_JPEG_SCAN_B64]
        try:
            return _jpeg_size(base64.b64decode(chunk[: len(chunk) - len(chunk) % 4]))
        except (binascii.Error, ValueError):
            return None
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    kind = head[12:16]
    if kind == b"VP8X":
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if kind == b"VP8 ":
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    if kind == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


# JPEG start-of-frame markers (baseline, progressive, …) whose segment holds height and width.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_size(buf: bytes) -> tuple[int, int] | None:
    i = 2
    end = len(buf)
    while i + 9 <= end:
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(buf[i + 2:i + 4], "big")
        if marker in _SOF:
            return int.from_bytes(buf[i + 7:i + 9], "big"), int.from_bytes(buf[i + 5:i + 7], "big")
        i += 2 + length
    return None
