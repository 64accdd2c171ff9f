"""Built-in plugin package ``openai_compat``: the ``openai.chat`` node type (provider type
``openai``), a model node for OpenAI and every server that speaks Chat Completions (vLLM, Ollama,
LM Studio, OpenRouter, DeepSeek …). See ``node.py`` for its behaviour and ``manifests/openai_compat.yaml``
for its config."""

from __future__ import annotations

from plugin_sdk.hookspecs import hookimpl
from plugin_sdk.node import Register
from plugins.openai_compat import node


@hookimpl
def register_node_types(register: Register) -> None:
    register("openai.chat", node.run, close=node.close)
