"""LLM providers: a registry of named providers, one cached instance per process.

Built in: `openai` (and every OpenAI-compatible server), `anthropic` and `echo`. Plug
your own with `register_provider(MyProvider)` or name it as "package.module:ClassName".

Every provider answers blocking (`complete`, `call_with_retries`) and on an event loop
(`acomplete`, `acall_with_retries`; a cancelled task closes its HTTP request at once).
"""

from __future__ import annotations

import importlib
import os
import threading

from agentq.errors import UnknownProvider
from agentq.providers.anthropic import AnthropicProvider
from agentq.providers.base import ChatMessage, ChatRequest, ChatResult, Provider
from agentq.providers.echo import EchoProvider
from agentq.providers.openai import OpenAIProvider
from agentq.providers.retry import acall_with_retries, call_with_retries, retry_wait

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "ChatResult",
    "Provider",
    "acall_with_retries",
    "aclose_providers",
    "call_with_retries",
    "close_providers",
    "get_provider",
    "provider_names",
    "register_provider",
    "retry_wait",
]

_lock = threading.Lock()
_classes: dict[str, type[Provider]] = {}
#: name -> instance; instances hold connection pools, so one per process and name
_instances: dict[str, Provider] = {}
_instances_pid = os.getpid()


def register_provider(cls: type[Provider], name: str | None = None) -> type[Provider]:
    """Make `cls` available as `name` (default `cls.name`); replaces (and closes) an
    earlier provider of that name. Returns `cls`, so it works as a class decorator."""
    key = name or getattr(cls, "name", None)
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise TypeError(f"{cls!r} is not a subclass of agentq.providers.Provider")
    if not isinstance(key, str) or not key:
        raise TypeError(f"{cls.__name__} needs a non-empty `name`")
    with _lock:
        _classes[key] = cls
        old = _instances.pop(key, None) if _instances_pid == os.getpid() else None
    if old is not None:
        old.close()
    return cls


def provider_names() -> list[str]:
    """The registered provider names, sorted."""
    with _lock:
        return sorted(_classes)


def _load_dotted(path: str) -> type[Provider]:
    module_name, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UnknownProvider(path, provider_names()) from exc
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise UnknownProvider(path, provider_names())
    return cls


def get_provider(name: str) -> Provider:
    """The process-wide instance of the provider `name`: a registered name or a
    "package.module:ClassName" path. Thread-safe. Raises `UnknownProvider` naming it."""
    global _instances_pid
    if _instances_pid != os.getpid():
        _forget_after_fork()
    provider = _instances.get(name)
    if provider is not None:
        return provider
    cls = _classes.get(name)
    if cls is None:
        if ":" not in name:
            raise UnknownProvider(name, provider_names())
        cls = _load_dotted(name)  # outside the lock: importing may be slow
    with _lock:
        provider = _instances.get(name)
        if provider is None:
            provider = _instances[name] = cls()
    return provider


def close_providers() -> None:
    """Close every cached provider's connection pool; the next `get_provider` makes a new
    one. In a forked child the inherited instances are dropped unclosed, since their
    sockets belong to the parent."""
    if _instances_pid != os.getpid():
        _forget_after_fork()
        return
    with _lock:
        instances = list(_instances.values())
        _instances.clear()
    for provider in instances:
        provider.close()


async def aclose_providers() -> None:
    """On an event loop: close the connections every cached provider pooled for this
    loop (call it before the loop ends); the instances stay cached and usable."""
    if _instances_pid != os.getpid():
        return
    with _lock:
        instances = list(_instances.values())
    for provider in instances:
        await provider.aclose()


def _forget_after_fork() -> None:
    global _lock, _instances_pid
    # The parent may have held the lock while forking; a fresh one cannot be stuck.
    _lock = threading.Lock()
    _instances.clear()
    _instances_pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)

for _cls in (OpenAIProvider, AnthropicProvider, EchoProvider):
    register_provider(_cls)
