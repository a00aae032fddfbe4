"""Test aids for applications built on agentq: the one part of the package meant for tests.

    agentq.testing.fake_llm   FakeLLMServer: a real OpenAI- and Anthropic-compatible HTTP
                              server in a subprocess that answers without a model, with set
                              latency and scripted failures (`agentq fake-llm` serves it)
    agentq.testing.stack      Stack: Celery workers and the reconciler as real processes,
                              sharing one environment; use_env points this process at it

    from agentq.testing.fake_llm import FakeLLMServer
    from agentq.testing.stack import Stack

Nothing else in agentq imports this package, except `agentq demo` and `agentq bench`.
"""
