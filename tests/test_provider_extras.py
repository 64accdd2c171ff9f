"""Parameters a client sent that the canonical model does not name reach an upstream only where
they mean something there."""

from __future__ import annotations

from plugin_sdk.types import Request, text_message
from plugins.anthropic_api import wire as anthropic_wire
from plugins.openai_compat import wire as openai_wire

EXTRA = {"seed": 7, "context_management": {"edits": []}, "truncation": "auto", "top_k": 5, "service_tier": "flex"}


def request(origin: str | None) -> Request:
    return Request(model="m", messages=[text_message("user", "hi")], max_tokens=10, extra=dict(EXTRA), origin=origin)


def test_a_chat_client_s_extra_parameters_pass_through_to_an_openai_upstream_untouched() -> None:
    body = openai_wire.build_body(request("chat"), {"model": "small"}, stream=False)
    assert {k: body[k] for k in EXTRA} == EXTRA


def test_an_anthropic_client_s_own_parameters_do_not_reach_an_openai_upstream() -> None:
    body = openai_wire.build_body(request("messages"), {"model": "small"}, stream=False)
    assert body["seed"] == 7
    assert not {"context_management", "truncation", "top_k", "service_tier"} & body.keys()


def test_an_openai_client_s_service_tier_does_not_reach_an_anthropic_upstream_but_top_k_does() -> None:
    body = anthropic_wire.build_body(request("responses"), {"model": "claude"}, stream=False)
    assert body["top_k"] == 5 and "service_tier" not in body and "context_management" not in body
    same = anthropic_wire.build_body(request("messages"), {"model": "claude"}, stream=False)
    assert same["context_management"] == {"edits": []} and same["service_tier"] == "flex"
