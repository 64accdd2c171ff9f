"""The Responses API's previous_response_id continues a conversation without resending it."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support_host import Flowbase
from tests.support_upstream import FakeUpstream, upstream  # noqa: F401  (fixture)

PROXY = """
version: 1
name: proxy
model: gpt-proxy
providers:
  upstream: {type: openai, base_url: "${UPSTREAM_BASE_URL}", api_key: sk-whatever-123}
nodes:
  - {id: answer, type: llm, provider: upstream, model: small}
"""


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream) -> Iterator[openai.OpenAI]:  # noqa: F811
    wf = tmp_path_factory.mktemp("wf")
    (wf / "proxy.yaml").write_text(PROXY)
    with Flowbase(data_dir=tmp_path_factory.mktemp("d"), workflows=wf,
                  env={"UPSTREAM_BASE_URL": upstream.openai_base_url}) as fb:
        yield openai.OpenAI(base_url=fb.url + "/v1", api_key="x", max_retries=0)


def test_a_follow_up_with_previous_response_id_sends_the_earlier_turns_upstream(
        client: openai.OpenAI, upstream: FakeUpstream) -> None:  # noqa: F811
    first = client.responses.create(model="gpt-proxy", input="my name is Ada", instructions="be kind")
    second = client.responses.create(model="gpt-proxy", input="what is my name?", previous_response_id=first.id,
                                     instructions="be brief")
    assert second.output_text
    sent = upstream.requests()[-1]["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0]["content"] == "be brief" and sent[1]["content"] == "my name is Ada"
    assert sent[2]["content"] == first.output_text and sent[3]["content"] == "what is my name?"
    third = client.responses.create(model="gpt-proxy", input="and again?", previous_response_id=second.id, stream=True)
    done = [e for e in third if e.type == "response.completed"]
    assert done and upstream.requests()[-1]["body"]["messages"][0]["content"] == "my name is Ada"


def test_an_unknown_previous_response_id_is_a_404_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="gpt-proxy", input="hi", previous_response_id="resp_doesnotexist")
    assert "resp_doesnotexist" in info.value.message
