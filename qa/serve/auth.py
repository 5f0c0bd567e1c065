"""Tokens with roles, for the page and the API.

QA_TOKENS="alice:s3cret-token:editor,bob:other-token:reader" (or QA_TOKENS_FILE, one
`name:token:role` a line): each token has a name and a role —
- reader: ask, search, list articles;
- editor: + ingest, delete, the Settings tab (this session's LLM choice);
- admin: + everything an editor can, and whatever later needs more than an editor.

The API takes `Authorization: Bearer TOKEN`; the page's login takes the name and the token. With
tokens configured nothing is served without one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qa.errors import QAError

ROLES = ("reader", "editor", "admin")


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class Tokens:
    """token -> User, from QA_TOKENS and QA_TOKENS_FILE."""

    def __init__(self, spec: str = "", file: Path | None = None):
        lines = [part for part in spec.split(",") if part.strip()]
        if file:
            try:
                lines += [line for line in Path(file).read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
            except OSError as exc:
                raise QAError(f"QA_TOKENS_FILE {file}: cannot read ({exc.strerror})") from None
        self.by_token: dict[str, User] = {}
        for line in lines:
            parts = [p.strip() for p in line.split(":")]
            if len(parts) != 3 or not all(parts) or parts[2] not in ROLES:
                raise QAError(f"token entries look like name:token:role with a role of {', '.join(ROLES)}; got '{parts[0] if parts else ''}:…'")
            name, token, role = parts
            if any(u.name == name for u in self.by_token.values()) or token in self.by_token:
                raise QAError(f"token entries: the name '{name}' or its token is given twice")
            self.by_token[token] = User(name, role)

    @classmethod
    def from_settings(cls, settings) -> "Tokens":
        return cls(settings.tokens, settings.tokens_file)

    def __bool__(self) -> bool:
        return bool(self.by_token)

    def user(self, token: str | None) -> User | None:
        return self.by_token.get(token or "")

    def login(self, name: str, token: str) -> bool:
        """The page's login: the token's own name and the token."""
        user = self.user(token)
        return user is not None and user.name == name

    def by_name(self, name: str | None) -> User | None:
        return next((u for u in self.by_token.values() if u.name == name), None)
