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

import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from .config import upload_dir
from .errors import BackendError, InputError, NotFound, QAError, StoreError


class AskRequest(BaseModel):
    question: str
    history: list[tuple[str, str]] | list[dict[str, Any]] | None = None
    collection: str | None = None
    filters: dict[str, str] | None = None
    stream: bool = False


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = ""


class ChatRequest(BaseModel):
    model: str = "articles"
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None


class Records(BaseModel):
    records: list[dict[str, Any]] = Field(min_length=1)


def error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def status_of(exc: QAError) -> int:
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, (StoreError, BackendError)):
        return 503
    return 400


def install_error_handlers(app: FastAPI) -> None:
    """One-line JSON errors for everything under /v1."""

    @app.exception_handler(QAError)
    async def _qa_error(_request: Request, exc: QAError):
        return error(status_of(exc), str(exc), type(exc).__name__)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return error(400, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))


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


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def build_router(app_state, require, openapi=None) -> APIRouter:
    """`app_state`: the chat App (qa/ui.py), which holds one Library per collection; `require`:
    role checks (see access()); `openapi`: the app's schema, served at /v1/openapi.json."""
    router = APIRouter(prefix="/v1")
    reader, editor = [require("reader")], [require("editor")]

    def library(collection: str | None):
        return app_state.library(collection)

    @router.post("/ask", dependencies=reader)
    async def ask(body: AskRequest):
        engine = app_state.engine_for(body.collection or app_state.settings.collection, "", "", "", 0)
        if not body.stream:
            answer = await run_in_threadpool(engine.ask, body.question, body.history, body.filters)
            return answer.to_dict()

        def events():
            from .engine import Answer

            try:
                for item in engine.stream(body.question, body.history, body.filters):
                    if isinstance(item, Answer):
                        yield sse("answer", item.to_dict())
                    elif item:
                        yield sse("token", {"text": item})
            except QAError as exc:
                yield sse("error", {"message": str(exc), "status": status_of(exc)})

        return StreamingResponse(iterate_in_threadpool(events()), media_type="text/event-stream")

    @router.get("/search", dependencies=reader)
    async def search(q: str, k: int = 5, chars: int | None = None, collection: str | None = None):
        if k < 1 or k > 100:
            raise InputError("k", "must be between 1 and 100")
        if chars is not None and chars < 1:
            raise InputError("chars", "must be at least 1")
        lib = library(collection)
        hits = await run_in_threadpool(lib.passages, q, chars) if chars else await run_in_threadpool(lib.search, q, k)
        fields = ("article_id", "title", "published", "start", "end", "score", "text")
        return {"passages": [{f: getattr(h, f) for f in fields} for h in hits]}

    @router.get("/articles", dependencies=reader)
    async def articles(collection: str | None = None):
        records = await run_in_threadpool(library(collection).articles)
        return {"articles": [r.__dict__ for r in records]}

    @router.post("/articles", dependencies=editor)
    async def ingest(request: Request, collection: str | None = None, files: list[UploadFile] | None = File(None)):
        lib = library(collection)
        limit = int(app_state.settings.max_file_mb * 1e6)
        upload_dir(app_state.settings).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=upload_dir(app_state.settings), prefix="api-") as tmp:
            paths = []
            if files:
                for n, upload in enumerate(files):
                    data = await upload.read(limit + 1)
                    if len(data) > limit:
                        raise HTTPException(413, f"{upload.filename}: larger than {app_state.settings.max_file_mb:g} MB")
                    # The client's file name is kept only as a name, never as a path.
                    # (one folder per file: the name gives the article id and date, and may repeat)
                    path = Path(tmp) / f"{n:04d}" / Path(upload.filename or "upload.txt").name
                    path.parent.mkdir()
                    path.write_bytes(data)
                    paths.append(path)
            else:
                try:
                    body = Records.model_validate(json.loads(await request.body() or b"null"))
                except (ValueError, TypeError) as exc:
                    raise InputError("body", f"expected JSON {{\"records\": [{{\"text\": ...}}]}} or multipart files ({str(exc).splitlines()[0]})") from None
                path = Path(tmp) / "records.jsonl"
                path.write_text("".join(json.dumps(r) + "\n" for r in body.records), encoding="utf-8")
                paths.append(path)
            report = await run_in_threadpool(lib.ingest, paths)
        return {
            "added": report.added, "replaced": report.replaced, "unchanged": report.unchanged,
            "rejected": [{"source": Path(s).name, "reason": r} for s, r in report.rejected],
            "chunks_added": report.chunks_added, "summary": report.summary(),
        }

    @router.delete("/articles/{article_id}", dependencies=editor)
    async def delete(article_id: str, collection: str | None = None):
        if not await run_in_threadpool(library(collection).delete, article_id):
            raise HTTPException(404, f"no article '{article_id}'")
        return {"deleted": article_id}

    @router.get("/models", dependencies=reader)
    async def models():
        names = app_state.collections()
        return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "articles-qa"} for n in names]}

    @router.post("/chat/completions", dependencies=reader)
    async def chat_completions(body: ChatRequest):
        from .engine import normalise_history

        messages = [m.model_dump() for m in body.messages if m.role in ("user", "assistant")]
        if not messages or messages[-1]["role"] != "user":
            raise InputError("messages", "the last message must be the user's question")
        # The last user turn is the question (paired with an empty reply, normalise_history reads
        # its text the way it reads Gradio's and OpenAI's content parts).
        question = normalise_history(messages + [{"role": "assistant", "content": ""}])[-1][0]
        history = normalise_history(messages[:-1])
        engine = app_state.engine_for(body.model, "", "", "", 0)
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
            from .engine import Answer

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

    @router.get("/health", dependencies=reader)
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
            from .llms import get_llm

            llm = get_llm(app_state.settings)
            await run_in_threadpool(llm.check)
            status["llm"], status["llm_status"] = llm.name, "ok"
        except QAError as exc:
            status["llm_status"] = str(exc)
        ok = status["store"] == "ok" and status["llm_status"] == "ok"
        return JSONResponse(status | {"ok": ok}, status_code=200 if ok else 503)

    return router
