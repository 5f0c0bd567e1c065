"""Chat history as callers give it (pairs or role messages), checked and trimmed."""

from __future__ import annotations


from qa.errors import InputError


def normalise_history(history) -> list[tuple[str, str]]:
    """Accept [(user, assistant)] pairs or [{"role", "content"}] messages (Gradio's format)."""
    pairs: list[tuple[str, str]] = []
    if not history:
        return pairs
    pending_user = None
    for item in history:
        if isinstance(item, dict):
            role, content = item.get("role"), item.get("content")
            if isinstance(content, list):  # Gradio 6 messages: [{"type": "text", "text": ...}, ...]
                content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            content = content if isinstance(content, str) else str(content or "")
            if role == "user":
                pending_user = content
            elif role == "assistant" and pending_user is not None:
                pairs.append((pending_user, content))
                pending_user = None
        else:
            user, assistant = item
            pairs.append((str(user or ""), str(assistant or "")))
    return pairs


def check_history(history, max_turns: int, max_chars: int) -> list[tuple[str, str]]:
    """The history as (user, assistant) pairs, or an InputError naming what is wrong with it:
    an item that is neither a pair nor a message, more than max_turns turns, more than
    max_chars characters."""
    if history is not None and not isinstance(history, (list, tuple)):
        raise InputError("history", "must be a list of [user, assistant] pairs or {role, content} messages")
    if history and len(history) > 2 * max_turns:  # before reading it: messages count two per turn
        raise InputError("history", f"more than {max_turns} turns")
    try:
        pairs = normalise_history(history)
    except (TypeError, ValueError, AttributeError):
        raise InputError("history", "must be a list of [user, assistant] pairs or {role, content} messages") from None
    if len(pairs) > max_turns:
        raise InputError("history", f"{len(pairs)} turns, more than {max_turns}")
    chars = sum(len(user) + len(reply) for user, reply in pairs)
    if chars > max_chars:
        raise InputError("history", f"{chars} characters, more than {max_chars}")
    return pairs


def recent_history(history, max_turns: int, max_chars: int) -> list[tuple[str, str]]:
    """The last turns of a long conversation that fit the limits (the chat page keeps the whole
    conversation on screen; answers read only its last turns)."""
    kept: list[tuple[str, str]] = []
    chars = 0
    for user, reply in reversed(normalise_history(history)):
        chars += len(user) + len(reply)
        if len(kept) == max_turns or chars > max_chars:
            break
        kept.append((user, reply))
    return kept[::-1]
