"""LLM access for the offline taxonomy and labelling steps.

Only the ``openai`` client is used, so any OpenAI-compatible endpoint serves (OpenAI, Azure OpenAI, vLLM,
Ollama, llama.cpp). With no endpoint configured the pipeline starts the embedded local model: llama.cpp's
server from the prebuilt ``xllamacpp`` wheel, or llama-cpp-python's (``C2I_LLM_RUNTIME``), with the same
greedy answers from either (:mod:`clicks2intent.intent.llm.server`). Serving never calls an LLM: it uses
the distilled classifier.
"""

from __future__ import annotations

from clicks2intent.intent.llm.client import (
    InvalidAnswer,
    LLMClient,
    LLMConfigError,
    LLMResult,
    LLMSettings,
    ResponseCache,
    TokenLedger,
)

__all__ = [
    "InvalidAnswer",
    "LLMClient",
    "LLMConfigError",
    "LLMResult",
    "LLMSettings",
    "ResponseCache",
    "TokenLedger",
]
