"""The REST API under /v1, beside the chat page: the same Python API (Library, Engine) as data.

- POST /v1/ask                 {question, history?, collection?, filters?, stream?} -> the Answer as JSON,
                               or server-sent events (token events, then the answer) with stream: true
- GET  /v1/search?q=&k=&chars= -> passages with article offsets
- GET  /v1/articles            -> the stored articles
- POST /v1/articles            JSON {records: [...]} or multipart files -> the ingest report
- DELETE /v1/articles/{id}
- POST /v1/chat/completions, GET /v1/models: OpenAI-compatible; the model name is the collection,
  citations come as [n] in the text and as a `citations` field
- GET  /v1/health              store and LLM reachable, article count, versions

Errors are JSON {"error": {"message", "type"}} with one line and the fitting status: 400 bad input,
404 unknown article or collection, 413 too large, 503 store or LLM down. Never a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from qa.config import upload_dir
from qa.ingest.pipeline import IngestReport
from qa.ingest.web import is_url
from qa.serve.state import ServerState
from qa.errors import BackendError, InputError, NotFound, QAError, StoreError
from qa.serve.schemas import AnswerOut, ArticlesOut, AskRequest, ChatCompletionOut, ChatRequest, DeletedOut, ErrorResponse, FeedIn, FeedOut, FeedRemoved, FeedsOut, HealthOut, IngestOut, ModelsOut, Records, SearchOut


INGEST_NICENESS = 10  # writes yield the CPU to questions (Linux: a thread's nice value is its own)


def _lower_priority() -> None:
    try:
        me = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + INGEST_NICENESS))
    except (AttributeError, OSError):  # not on this platform: writes run at the server's priority
        pass


# One writer thread at low priority for uploads (the threads it starts, the embedding and Chroma
# writes of qa/library.py, inherit it): on 2 cores, 20 clients asking while 200 articles stream in
# over a million chunks, answer p95 with ingest over the p95 without went from 1.29-1.33x to 1.21-1.23x.
INGEST_THREADS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qa-ingest", initializer=_lower_priority)


def errors_for(*statuses: int) -> dict:
    """The error responses a route can give, for its schema: each in the one error format."""
    names = {400: "Bad input", 401: "No or unknown token", 403: "The token's role may not do this",
             404: "No such article or collection", 413: "Too large", 503: "The store or the LLM is unreachable"}
    return {status: {"model": ErrorResponse, "description": names[status]} for status in statuses}


# POST /v1/articles takes JSON records as well as multipart files (FastAPI documents only the files).
RECORDS_BODY = {"requestBody": {"content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False, "minProperties": 1,
    "description": "Articles as JSON `records`, and/or `urls` to fetch (article pages or RSS/Atom feeds; "
                   "addresses in private networks are refused unless the operator allows them). At least one "
                   "record or URL.",
    "properties": {"urls": {"type": "array", "maxItems": 100, "items": {"type": "string"},
                            "description": "Article page or feed URLs; each failure is listed under `rejected`."},
                   "records": {"type": "array", "items": {
        "type": "object",
        # Field types are not enforced here on purpose: a record that cannot be ingested (no text,
        # a text that is not a string, a date that does not exist) is listed under "rejected" in the
        # report with its reason, and the batch's other records are still ingested.
        "description": "An article: text (a string, required), and optionally id, title, source, published "
                       "(YYYY-MM-DD), url, author. A record that cannot be ingested is reported under `rejected`.",
        "properties": {name: {"description": about} for name, about in (
            ("text", "The article's text (HTML is cleaned)."), ("id", "Default: from the title and date."),
            ("title", "Default: the first line."), ("source", "Where it came from."),
            ("published", "YYYY-MM-DD."), ("url", "Its address."), ("author", "Its author."))}}}},
    "anyOf": [{"required": ["records"], "properties": {"records": {"minItems": 1}}},
              {"required": ["urls"], "properties": {"urls": {"minItems": 1}}}]}}}}}


def event_stream(events: list[str] | None, about: str) -> dict:
    """A 200 response's server-sent events, each {event?, data} (as schemathesis and clients read them)."""
    event = {"type": "string", "enum": events} if events else {"type": "string"}
    return {"description": about, "content": {"text/event-stream": {"schema": {
        "type": "object", "required": ["data"], "properties": {"event": event, "data": {"type": "string"}}}}}}


ASK_STREAM = event_stream(["token", "answer", "error"], "With stream: true: `token` events ({text}), then one `answer` "
                          "(the answer object) or `error` ({message, status}); data is JSON.")
CHAT_STREAM = event_stream(None, "With stream: true: OpenAI chat.completion.chunk objects as JSON data, then [DONE].")


def error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    """The one error format. The message stays one line whatever a client sent into it (a
    collection name with a newline): control characters are shown escaped."""
    message = re.sub(r"[\x00-\x1f\x7f\u2028\u2029]", lambda m: m.group().encode("unicode_escape").decode("ascii"), message)
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def status_of(exc: QAError) -> int:
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, (StoreError, BackendError)):
        return 503
    return 400


def validation_message(errors: list[dict]) -> str:
    """One line for the first problem pydantic found: "filters: unknown field 'evil'"."""
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, QAError):  # our own check inside a model (Filters.parse): its message as it is
        return str(cause)
    if first.get("type") == "extra_forbidden" and loc:
        return f"{'.'.join(loc[:-1]) or 'body'}: unknown field '{loc[-1]}'"
    if first.get("type") == "json_invalid":
        return f"body: not valid JSON ({cause or first.get('msg', '')})".splitlines()[0]
    return f"{'.'.join(loc) or 'body'}: {first.get('msg', 'invalid request')}".splitlines()[0]


ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
               413: "request_too_large", 503: "unavailable_error"}


def install_error_handlers(app: FastAPI) -> None:
    """One-line JSON errors, {"error": {"message", "type"}}, for everything under /v1: our own
    errors, pydantic's, the body-parsing errors raised before a route runs, unknown routes and
    methods — and, as a last guard, anything unexpected (500, logged with its traceback)."""
    import logging

    from fastapi.exception_handlers import http_exception_handler

    @app.exception_handler(QAError)
    async def _qa_error(_request: Request, exc: QAError):
        return error(status_of(exc), str(exc), type(exc).__name__)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        return error(400, validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if not request.url.path.startswith("/v1"):  # the chat page's own routes keep their responses
            return await http_exception_handler(request, exc)
        message = str(exc.detail).splitlines()[0] if exc.detail else "error"
        return error(exc.status_code, message, ERROR_TYPES.get(exc.status_code, "invalid_request_error"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        logging.getLogger("qa.serve.api").exception("unexpected error on %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); the server log has the details", "internal_error")


def truthful_schema(app: FastAPI, bearer: bool) -> dict:
    """The app's OpenAPI schema, made once, as the server behaves: FastAPI's automatic 422
    responses removed (validation errors are 400s in the one error format, documented per
    route) and, with tokens configured, the bearer scheme every route needs."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
                if bearer:
                    operation["security"] = [{"bearer": []}]
        components = schema.get("components", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(name, None)
        if bearer:
            components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
            schema["components"] = components
        app.openapi_schema = schema
    return app.openapi_schema


def access(tokens, basic: tuple[str, str] | None):
    """`require(role)` dependencies. With tokens configured (QA_TOKENS), every call needs
    `Authorization: Bearer TOKEN` of a role that may do it (401 without, 403 below the role);
    else, with QA_UI_AUTH, the page's user and password (HTTP basic); else nothing (the server
    binds loopback only unless told otherwise)."""
    import base64
    import secrets

    def require(role: str):
        def check(request: Request) -> None:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            if tokens:
                user = tokens.user(value.strip()) if scheme.lower() == "bearer" else None
                if user is None:
                    raise HTTPException(401, "a token is required: Authorization: Bearer TOKEN")
                if not user.can(role):
                    raise HTTPException(403, f"the {user.role} role cannot do this (it needs {role})")
                return
            if basic is None:
                return
            try:
                user, _, password = base64.b64decode(value).decode().partition(":") if scheme.lower() == "basic" else ("", "", "")
            except ValueError:
                user, password = "", ""
            if not (secrets.compare_digest(user, basic[0]) and secrets.compare_digest(password, basic[1])):
                raise HTTPException(401, "authentication required (the QA_UI_AUTH user and password, HTTP basic)")

        return Depends(check)

    return require


def query_names(dependant) -> set[str]:
    """The query parameters a route takes, its dependencies' included."""
    return {p.alias for p in dependant.query_params}.union(*(query_names(d) for d in dependant.dependencies))


def known_query_only(request: Request) -> None:
    """A query parameter the route does not take is a 400, not silently ignored (a typo such as
    ?limit= for ?k= would otherwise answer something else than asked)."""
    route = request.scope.get("route")
    if route is None or not request.query_params:
        return
    known = query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise InputError("query", f"unknown parameter {unknown[0]!r}" + (f" (known: {', '.join(sorted(known))})" if known else ""))


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def build_router(state: "ServerState", require, openapi=None) -> APIRouter:
    """`state`: the server's state (qa/serve/state.py: one Library per collection); `require`:
    role checks (see access()); `openapi`: the app's schema, served at /v1/openapi.json."""
    router = APIRouter(prefix="/v1", dependencies=[Depends(known_query_only)])
    reader, editor = [require("reader")], [require("editor")]

    def library(collection: str | None):
        return state.library(collection)

    @router.post("/ask", dependencies=reader, response_model=AnswerOut,
                 responses={200: ASK_STREAM, **errors_for(400, 401, 403, 404, 503)})
    async def ask(body: AskRequest):
        engine = state.engine_for(body.collection)
        filters = body.filters.model_dump(exclude_none=True) if body.filters else None
        history = [m.model_dump() if isinstance(m, BaseModel) else m for m in body.history] if body.history else None
        if not body.stream:
            answer = await run_in_threadpool(engine.ask, body.question, history, filters)
            return answer.to_dict()

        def events():
            from qa.answer.types import Answer

            try:
                for item in engine.stream(body.question, history, filters):
                    if isinstance(item, Answer):
                        yield sse("answer", item.to_dict())
                    elif item:
                        yield sse("token", {"text": item})
            except QAError as exc:
                yield sse("error", {"message": str(exc), "status": status_of(exc)})

        return StreamingResponse(iterate_in_threadpool(events()), media_type="text/event-stream")

    @router.get("/search", dependencies=reader, response_model=SearchOut, responses=errors_for(400, 401, 403, 404, 503))
    async def search(q: str = Query(description="The question or search words."),
                     k: int = Query(5, ge=1, le=100, description="How many chunks (without chars)."),
                     chars: int | None = Query(None, ge=1, le=100_000, description="The best sentences within this many characters, as passages."),
                     mode: Literal["hybrid", "vector", "keyword"] = Query("hybrid", description="keyword: BM25 only; vector: embeddings only."),
                     collection: str | None = None):
        lib = library(collection)
        if chars:
            hits = await run_in_threadpool(lambda: lib.passages(q, chars, mode=mode))
        else:
            hits = await run_in_threadpool(lambda: lib.search(q, k, mode=mode))
        fields = ("article_id", "title", "published", "start", "end", "score", "text")
        return {"passages": [{f: getattr(h, f) for f in fields} for h in hits]}

    @router.get("/articles", dependencies=reader, response_model=ArticlesOut, responses=errors_for(400, 401, 403, 404, 503))
    async def articles(collection: str | None = None):
        records = await run_in_threadpool(library(collection).articles)
        return {"articles": [r.__dict__ for r in records]}

    @router.post("/articles", dependencies=editor, response_model=IngestOut,
                 responses=errors_for(400, 401, 403, 404, 413, 503), openapi_extra=RECORDS_BODY)
    async def ingest(request: Request, collection: str | None = None, files: list[UploadFile] | None = File(None)):
        lib = library(collection)
        limit = int(state.settings.max_file_mb * 1e6)
        upload_dir(state.settings).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=upload_dir(state.settings), prefix="api-") as tmp:
            paths, not_urls = [], []
            if files:
                for n, upload in enumerate(files):
                    data = await upload.read(limit + 1)
                    if len(data) > limit:
                        raise HTTPException(413, f"{upload.filename}: larger than {state.settings.max_file_mb:g} MB")
                    # The client's file name is kept only as a name, never as a path.
                    # (one folder per file: the name gives the article id and date, and may repeat)
                    path = Path(tmp) / f"{n:04d}" / Path(upload.filename or "upload.txt").name
                    path.parent.mkdir()
                    path.write_bytes(data)
                    paths.append(path)
            elif request.headers.get("content-type", "").startswith(("multipart/", "application/x-www-form-urlencoded")):
                raise InputError("files", "no file in the form (send one or more parts named 'files')")
            else:
                try:
                    body = Records.model_validate(json.loads(await request.body() or b"null"))
                except (ValueError, TypeError) as exc:
                    raise InputError("body", f"expected JSON {{\"records\": [{{\"text\": ...}}]}} and/or {{\"urls\": [...]}}, or multipart files ({str(exc).splitlines()[0]})") from None
                if body.records:
                    path = Path(tmp) / "records.jsonl"
                    path.write_text("".join(json.dumps(r) + "\n" for r in body.records), encoding="utf-8")
                    paths.append(path)
                # Fetched by the library's rules (a private address is refused); never read as a path.
                paths += [url for url in body.urls if is_url(url)]
                not_urls = [url for url in body.urls if not is_url(url)]
            report = await asyncio.wrap_future(INGEST_THREADS.submit(lib.ingest, paths)) if paths else IngestReport()
            report.rejected += [(url, "not a URL (expected http:// or https://)") for url in not_urls]
        return {
            "added": report.added, "replaced": report.replaced, "unchanged": report.unchanged,
            "rejected": [{"source": s if is_url(s) else Path(s).name, "reason": r} for s, r in report.rejected],
            "copies": [{"id": a, "story": b} for a, b in report.copies],
            "chunks_added": report.chunks_added, "summary": report.summary(),
        }

    @router.get("/feeds", dependencies=reader, response_model=FeedsOut, responses=errors_for(400, 401, 403, 404, 503))
    async def feeds(collection: str | None = None):
        found = await run_in_threadpool(lambda: library(collection).feeds.list())
        return {"feeds": [f.to_dict() for f in found]}

    @router.post("/feeds", dependencies=editor, response_model=FeedOut, responses=errors_for(400, 401, 403, 404, 503))
    async def follow(body: FeedIn, collection: str | None = None):
        feed = await run_in_threadpool(library(collection).follow, body.url, body.every)
        return feed.to_dict()

    @router.delete("/feeds", dependencies=editor, response_model=FeedRemoved, responses=errors_for(400, 401, 403, 404, 503))
    async def unfollow(url: str = Query(description="The feed's URL, as added."), collection: str | None = None):
        if not await run_in_threadpool(library(collection).unfollow, url):
            raise HTTPException(404, f"not a followed feed: {url}")
        return {"removed": url}

    @router.delete("/articles/{article_id}", dependencies=editor, response_model=DeletedOut,
                   responses=errors_for(400, 401, 403, 404, 503))
    async def delete(article_id: str, collection: str | None = None):
        if not await run_in_threadpool(library(collection).delete, article_id):
            raise HTTPException(404, f"no article '{article_id}'")
        return {"deleted": article_id}

    @router.get("/models", dependencies=reader, response_model=ModelsOut, responses=errors_for(401, 403))
    async def models():
        names = state.collections()
        return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "articles-qa"} for n in names]}

    @router.post("/chat/completions", dependencies=reader, response_model=ChatCompletionOut,
                 responses={200: CHAT_STREAM, **errors_for(400, 401, 403, 404, 503)})
    async def chat_completions(body: ChatRequest):
        from qa.answer.conversation import normalise_history

        messages = [m.model_dump() for m in body.messages if m.role in ("user", "assistant")]
        if not messages or messages[-1]["role"] != "user":
            raise InputError("messages", "the last message must be the user's question")
        # The last user turn is the question (paired with an empty reply, normalise_history reads
        # its text the way it reads Gradio's and OpenAI's content parts).
        question = normalise_history(messages + [{"role": "assistant", "content": ""}])[-1][0]
        history = normalise_history(messages[:-1])
        engine = state.engine_for(body.model)
        created, ident = int(time.time()), f"chatcmpl-{uuid.uuid4().hex[:24]}"

        if not body.stream:
            answer = await run_in_threadpool(engine.ask, question, history)
            return {
                "id": ident, "object": "chat.completion", "created": created, "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.cited_text()},
                             "finish_reason": "stop"}],
                "citations": [c.to_dict() for c in answer.citations], "kind": answer.kind,
                "usage": {"prompt_tokens": 0, "completion_tokens": answer.tokens, "total_tokens": answer.tokens},
            }

        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            payload = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": body.model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(payload)}\n\n"

        def events():
            from qa.answer.types import Answer

            # The final text can differ from what the model streamed (a span snapped to the
            # source, a quote, a refusal): the grounded answer is what the client receives.
            yield chunk({"role": "assistant", "content": ""})
            try:
                for item in engine.stream(question, history):
                    if isinstance(item, Answer):
                        yield chunk({"content": item.cited_text()})
                        yield chunk({}, "stop", citations=[c.to_dict() for c in item.citations], kind=item.kind)
            except QAError as exc:
                yield f"data: {json.dumps({'error': {'message': str(exc), 'type': type(exc).__name__}})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(iterate_in_threadpool(events()), media_type="text/event-stream")

    @router.get("/openapi.json", dependencies=reader, include_in_schema=False)
    async def schema():
        return openapi() if openapi else {}

    @router.get("/health", dependencies=reader, response_model=HealthOut,
                responses={**errors_for(401, 403), 503: {"model": HealthOut, "description": "The store or the LLM is down (the same body)."}})
    async def health():
        from importlib.metadata import version

        lib = library(None)
        status: dict[str, Any] = {"versions": {p: version(p) for p in ("articles-qa", "chromadb", "gradio", "llama-index-core")}}
        try:
            status["articles"] = len(await run_in_threadpool(lib.articles))
            status["store"] = "ok"
        except QAError as exc:
            status["store"] = str(exc)
        if hasattr(lib.embedder, "reader"):  # the local model: which encoder wrote the collection, which encodes questions
            try:
                reader = await run_in_threadpool(lambda: lib.embedder.reader)
                status["encoder"] = {"collection": lib.embedder.recorded, "questions": reader}
            except QAError as exc:
                status["encoder"] = str(exc)
        try:
            from qa.models.backends import get_llm

            llm = get_llm(state.settings)
            await run_in_threadpool(llm.check)
            status["llm"], status["llm_status"] = llm.name, "ok"
        except QAError as exc:
            status["llm_status"] = str(exc)
        ok = status["store"] == "ok" and status["llm_status"] == "ok"
        return JSONResponse(status | {"ok": ok}, status_code=200 if ok else 503)

    return router
