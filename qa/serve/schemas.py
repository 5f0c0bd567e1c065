"""The REST API's request and response bodies (pydantic): what /docs and /v1/openapi.json show."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from qa.answer.types import Citation
from qa.store.filters import Filters


class AskFilters(BaseModel):
    """Which articles to answer from; every field optional, dates inclusive."""

    model_config = ConfigDict(extra="forbid")
    article_id: str | None = None
    source: str | None = Field(None, description="The source (publication) field of the articles.")
    date_from: str | None = Field(None, description="A calendar date, YYYY-MM-DD.", examples=["2019-11-01"])
    date_to: str | None = Field(None, description="A calendar date, YYYY-MM-DD, not before date_from.", examples=["2019-11-30"])

    @model_validator(mode="after")
    def _real_filters(self):
        Filters.parse(self.model_dump(exclude_none=True))  # real dates, in order: else a FilterError (400)
        return self


class Message(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = ""


HISTORY_NOTE = ("Earlier turns, oldest first: [user, assistant] pairs or {role, content} messages; at most "
                "QA_MAX_HISTORY_TURNS turns (default 50) and QA_MAX_HISTORY_CHARS characters (default 20,000).")


class AskRequest(BaseModel):
    question: str = Field(description="At most QA_MAX_QUESTION_CHARS characters (default 2,000).")
    history: list[tuple[str, str]] | list[Message] | None = Field(None, description=HISTORY_NOTE)
    collection: str | None = None
    filters: AskFilters | None = None
    stream: bool = Field(False, description="Server-sent events: `token` events, then one `answer` event (or `error`).")


class ChatMessage(Message):
    pass


class ChatRequest(BaseModel):
    model: str = Field("articles", description="The collection to answer from (GET /v1/models).")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None


class Records(BaseModel):
    """Articles as JSON records, or URLs to fetch (article pages or RSS/Atom feeds), or both."""

    model_config = ConfigDict(extra="forbid")
    records: list[dict[str, Any]] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _something(self):
        if not self.records and not self.urls:
            raise ValueError("send 'records' (articles as JSON) or 'urls' (pages or feeds to fetch)")
        return self


class FeedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="An RSS or Atom feed's URL (fetched once now to check it is one).")
    every: str = Field("15m", description="How often to poll it: 90s, 15m, 1h.")


class FeedOut(BaseModel):
    url: str
    every_s: float
    title: str
    etag: str | None
    last_modified: str | None
    last_poll: float | None = Field(description="Unix time of the last poll.")
    next_poll: float
    last_status: str
    last_error: str | None
    last_added: int
    items_added: int
    items_seen: int


class FeedsOut(BaseModel):
    feeds: list[FeedOut]


class FeedRemoved(BaseModel):
    removed: str


# --- responses: what the schema promises, and what every route returns ----------------------------
class ErrorDetail(BaseModel):
    message: str = Field(description="One line naming the field, file or server at fault.")
    type: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class AnswerOut(BaseModel):
    answer: str
    kind: str = Field(description="span | quote | fact | summary | timeline | not_found")
    citations: list[Citation]  # the engine's own dataclass: one definition for code and schema
    closest: list[Citation] = Field(description="A refusal: the nearest passages (not citations).")
    grounded: float
    refused: bool
    question: str = Field(description="The standalone question actually answered.")
    signals: dict[str, Any]
    timings: dict[str, float]
    tokens: int
    dates: str


class Passage(BaseModel):
    article_id: str
    title: str
    published: str | None
    start: int
    end: int
    score: float
    text: str


class SearchOut(BaseModel):
    passages: list[Passage]


class ArticleOut(BaseModel):
    id: str
    content_hash: str
    text_hash: str | None
    title: str
    source: str | None
    published: str | None
    chunks: int | None
    chars: int | None
    url: str | None = None
    author: str | None = None
    dateline: str | None = None
    outlet: str | None = None
    story: str | None = Field(None, description="A wire copy: the id of the story it repeats (it has no chunks of its own).")


class ArticlesOut(BaseModel):
    articles: list[ArticleOut]


class Rejected(BaseModel):
    source: str
    reason: str


class IngestOut(BaseModel):
    added: list[str]
    replaced: list[str]
    unchanged: list[str]
    rejected: list[Rejected]
    copies: list[dict[str, str]] = Field(default_factory=list, description="Wire copies stored: {id, story}.")
    chunks_added: int
    summary: str


class DeletedOut(BaseModel):
    deleted: str


class ModelOut(BaseModel):
    id: str
    object: str = "model"
    owned_by: str


class ModelsOut(BaseModel):
    object: str = "list"
    data: list[ModelOut]


class ChoiceMessage(BaseModel):
    role: str
    content: str


class Choice(BaseModel):
    index: int
    message: ChoiceMessage
    finish_reason: str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionOut(BaseModel):
    id: str
    object: str
    created: int
    model: str
    choices: list[Choice]
    citations: list[Citation]
    kind: str
    usage: Usage


class HealthOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    ok: bool
    store: str
    versions: dict[str, str]
    articles: int | None = None
    llm: str | None = None
    llm_status: str | None = None
    encoder: dict[str, Any] | str | None = None
