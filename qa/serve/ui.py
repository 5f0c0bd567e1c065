"""Gradio chat over the Library: streaming answers with a sources panel, a library tab for
uploads and deletes, and settings. `/ask` is the named HTTP API endpoint (gradio_client)."""

from __future__ import annotations

import html
import os
import threading
import time
from pathlib import Path

import gradio as gr
from gradio import FileData

from qa.serve.auth import User
from qa.serve.state import ServerState
from qa.config import Settings, upload_dir
from qa.answer.types import Answer
from qa.answer.conversation import recent_history
from qa.errors import InputError, QAError
from qa.library import Library

SEED_QUESTION = "Who said GSOMIA scrapping was a misjudgment?"
UPLOAD_TYPES = [".txt", ".md", ".html", ".htm", ".json", ".jsonl"]
CSS = """
#sources mark { background: #fde68a; padding: 0 2px; }
#sources .source { border-left: 3px solid #f59e0b; padding: 4px 10px; margin-bottom: 12px; }
#sources .meta { color: #6b7280; font-size: 0.9em; }
"""


class App(ServerState):
    """The chat page's handlers over the server's state; every one goes through the Python API."""

    def user(self, request: gr.Request | None) -> User:
        """Who is asking: the logged-in token's user, or — without tokens configured — an admin
        (the page is then guarded by QA_UI_AUTH or by binding loopback)."""
        if not self.tokens:
            return User("local", "admin")
        user = self.tokens.by_name(getattr(request, "username", None))
        return user or User("anonymous", "reader")

    def require(self, request: gr.Request | None, role: str, what: str) -> None:
        user = self.user(request)
        if not user.can(role):
            raise gr.Error(f"{user.name} ({user.role}) may not {what}: it needs the {role} role")

    # --- chat --------------------------------------------------------------------------------
    def respond(self, message: str, history: list, collection: str, backend: str, model: str, base_url: str, top_k: int,
                request: gr.Request = None):
        if not self.user(request).can("editor"):  # a reader's page has no Settings tab: the server's own
            backend, model, base_url, top_k = "", "", "", 0
        history = list(history or [])
        message = (message or "").strip()
        if not message:
            yield history, "", gr.update()
            return
        prior = recent_history(history, self.settings.max_history_turns, self.settings.max_history_chars)
        history = history + [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        try:
            engine = self.engine_for(collection, backend=backend, model=model, base_url=base_url, top_k=top_k)
            lib = engine.evidence
            streamed = ""
            for item in engine.stream(message, history=prior):
                if isinstance(item, Answer):
                    history[-1]["content"] = item.cited_text()
                    yield history, "", sources_html(lib, item)
                else:
                    streamed += item
                    history[-1]["content"] = streamed
                    yield history, "", gr.update()
        except (QAError, ValueError) as exc:
            history[-1]["content"] = f"⚠️ {exc}"
            yield history, "", gr.update()

    def ask_api(self, question: str) -> str:
        """The HTTP API: the answer text, its numbered sources (or the closest passages of a
        refusal), then the answer's kind."""
        answer = self.library().ask(question)
        lines = [answer.text] + ([f"dates: {answer.dates}"] if answer.dates else [])
        for c in answer.citations:
            lines.append(f"[{c.n}] {c.title} ({c.published or 'undated'}): \"{c.quote}\"")
        for c in answer.closest:
            lines.append(f"closest: {c.title} ({c.published or 'undated'}): \"{c.quote}\"")
        return "\n".join(lines + [f"kind: {answer.kind}"])

    def ingest_api(self, files: list[FileData], request: gr.Request = None) -> str:
        """The HTTP API for adding articles: one line per added/replaced/unchanged article and
        per rejected file, then the summary."""
        self.require(request, "editor", "add articles")
        report = self.library().ingest([Path(f["path"] if isinstance(f, dict) else f.path) for f in files or []])
        lines = [f"{label}: {article_id}" for label, ids in (("added", report.added), ("replaced", report.replaced), ("unchanged", report.unchanged)) for article_id in ids]
        lines += [f"rejected: {Path(source).name}: {reason}" for source, reason in report.rejected]
        return "\n".join(lines + [report.summary()])

    # --- library -----------------------------------------------------------------------------
    def article_rows(self, collection: str) -> list[list]:
        return [[a.id, a.title + (f" (wire copy of {a.story})" if a.story else ""), a.published or "",
                 a.url or Path(a.source).name, a.chunks] for a in self.library(collection).articles()]

    def upload(self, files, collection: str, request: gr.Request = None, progress=gr.Progress()):
        self.require(request, "editor", "add articles")
        rows = []
        lib = self.library(collection)
        for path in progress.tqdm(files or [], desc="Ingesting"):
            path = Path(path if isinstance(path, str) else path.name)
            report = lib.ingest([path])
            for label, ids in (("added", report.added), ("replaced", report.replaced), ("unchanged", report.unchanged)):
                rows += [[path.name, label, article_id] for article_id in ids]
            rows += [[path.name, "rejected", reason] for _source, reason in report.rejected]
        message = ", ".join(f"{sum(r[1] == k for r in rows)} {k}" for k in ("added", "replaced", "unchanged", "rejected"))
        if any(r[1] == "rejected" for r in rows):
            gr.Warning("Some files were rejected: " + "; ".join(f"{r[0]}: {r[2]}" for r in rows if r[1] == "rejected"))
        return (rows, message, *self.library_view(collection))

    def library_view(self, collection: str, **choice) -> tuple[list[list], dict]:
        """The article table and the delete choices, from one listing of the registry."""
        rows = self.article_rows(collection)
        return rows, gr.update(choices=[row[0] for row in rows], **choice)

    def delete(self, article_id: str, collection: str, request: gr.Request = None):
        self.require(request, "editor", "delete articles")
        if not article_id:
            return "Choose an article to delete.", self.article_rows(collection), gr.update()
        done = self.library(collection).delete(article_id)
        message = f"Deleted {article_id}." if done else f"No article '{article_id}'."
        return (message, *self.library_view(collection, value=None))

    def controls(self, request: gr.Request = None):
        """The signed-in line and the visibility of the editor's controls, for this visitor."""
        user = self.user(request)
        editor = gr.update(visible=user.can("editor"))
        line = f"Signed in as **{user.name}** ({user.role})." if self.tokens else ""
        return line, editor, editor, editor, editor, editor

    # --- feeds and URLs ----------------------------------------------------------------------------
    def feed_rows(self, collection: str) -> list[list]:
        def when(stamp):
            return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else ""

        return [[f.url, f.title, f"{f.every_s / 60:g} min", when(f.last_poll), f.last_status or "not polled yet",
                 f.items_added, f.last_error or "", when(f.next_poll) or "now"] for f in self.library(collection).feeds.list()]

    def follow(self, url: str, every: str, collection: str, request: gr.Request = None):
        """Follow a feed, or add one article page: a feed's items come with the next poll (within
        a minute: `qa serve` polls), a page is ingested now."""
        from qa.ingest.web import is_url

        self.require(request, "editor", "add feeds")
        url = (url or "").strip()
        if not is_url(url):
            gr.Warning("Enter a feed's or an article's URL (http:// or https://).")
            return "Enter a feed's or an article's URL.", self.feed_rows(collection), *self.library_view(collection)
        lib = self.library(collection)
        try:
            feed = lib.follow(url, every or "15m")
            message = f"Following **{feed.title or feed.url}**: its articles arrive with the next poll."
        except InputError as exc:
            if "not an RSS or Atom feed" not in exc.reason:
                gr.Warning(str(exc))
                return f"Not added: {exc}", self.feed_rows(collection), *self.library_view(collection)
            report = lib.ingest([url])  # an article page
            if report.rejected:
                gr.Warning("; ".join(f"{s}: {r}" for s, r in report.rejected))
            message = report.summary() + "".join(f"\n\nrejected: {s}: {r}" for s, r in report.rejected)
        return message, self.feed_rows(collection), *self.library_view(collection)

    def poll_now(self, collection: str, request: gr.Request = None):
        from qa.ingest.feeds import poll_lines

        self.require(request, "editor", "poll feeds")
        lib = self.library(collection)
        lines = poll_lines(lib.poll_feeds(only=[f.url for f in lib.feeds.list()]))
        return "\n\n".join(lines) or "No feeds to poll.", self.feed_rows(collection), *self.library_view(collection)

    def unfollow(self, url: str, collection: str, request: gr.Request = None):
        self.require(request, "editor", "remove feeds")
        done = self.library(collection).unfollow((url or "").strip())
        return ("No longer following it (its articles stay)." if done else "Not a followed feed."), self.feed_rows(collection)

    def examples(self) -> list[str]:
        """Example questions: the seed question when the seed is stored, then one per article title."""
        questions = []
        records = self.library().articles()
        seed = any("gsomia" in r.id for r in records)
        if seed:
            questions.append(SEED_QUESTION)
        questions += [f"What is \"{r.title}\" about?" for r in records[:2] if r.title]
        if records:  # the whole-article and over-time questions a news chat gets first
            questions += ["Give me the key points of the article."] + (["What's the latest on GSOMIA?"] if seed else [])
        return questions or [SEED_QUESTION]


def _link(url: str | None, text: str) -> str:
    """A link for an http(s) URL (a record's URL is whatever a file said: no javascript: links),
    else the text alone."""
    if url and url.lower().startswith(("http://", "https://")):
        return f"<a href='{html.escape(url)}' target='_blank' rel='noopener noreferrer'>{html.escape(text)}</a>"
    return html.escape(text)


def _passage_html(lib: Library, c, head: str) -> str:
    """One source: its title line, then the sentence highlighted inside its surrounding text."""
    meta = f"{html.escape(c.published or 'undated')} · {html.escape(c.article_id)} · "
    if c.field:  # a fact from the article record: no sentence to highlight
        return (f"<div class='source'><div><b>{head} {html.escape(c.title)}</b> <span class='meta'>{meta}"
                f"article record</span></div><div>{html.escape(c.quote)}</div></div>")
    text = lib.article_text(c.article_id)
    before = text[max(0, c.start - 240) : c.start]
    after = text[c.end : c.end + 240]
    lead = "…" if c.start > len(before) else ""
    tail = "…" if c.end + len(after) < len(text) else ""
    passage = f"{lead}{html.escape(before)}<mark>{html.escape(text[c.start:c.end])}</mark>{html.escape(after)}{tail}"
    link = f" · {_link(c.url, c.url)}" if c.url else ""
    also = ""
    if c.also:
        outlets = ", ".join(_link(a.get("url"), a.get("outlet") or a.get("url") or "another outlet")
                            + (f" ({html.escape(a['published'])})" if a.get("published") else "") for a in c.also)
        also = f"<div class='meta also'>Also published by {outlets}</div>"
    return (f"<div class='source'><div><b>{head} {html.escape(c.title)}</b> <span class='meta'>{meta}"
            f"chars {c.start}–{c.end}{link}</span></div><div>{passage}</div>{also}</div>")


KIND_WORDS = {
    "span": "a short answer copied from the cited sentence",
    "quote": "the cited sentences, quoted as they stand",
    "fact": "from the article's record",
    "summary": "the article's lede and most central sentences, cited",
    "timeline": "the matching articles, newest first, each with the sentence that matters",
}


def sources_html(lib: Library, answer: Answer) -> str:
    """Each citation: title, date, and its sentence highlighted inside the surrounding passage.
    A refusal shows the closest passages instead, marked as such."""
    dates = [f"<p class='meta dates'>Searched {html.escape(answer.dates)}.</p>"] if answer.dates else []
    if answer.refused:
        if not answer.closest:
            return "\n".join(dates + ["<p class='meta'>No sources: the articles don't answer this.</p>"])
        parts = dates + ["<p class='meta'>The articles don't answer this. <b>Closest passages</b> (not citations), to check for yourself:</p>"]
        return "\n".join(parts + [_passage_html(lib, c, "closest:") for c in answer.closest])
    parts = dates + [f"<p class='meta'>Answer: {KIND_WORDS.get(answer.kind, answer.kind)}. Grounded: <b>{answer.grounded:.0%}</b> "
                     "of the answer's words are in the cited text.</p>"]
    return "\n".join(parts + [_passage_html(lib, c, f"[{c.n}]") for c in answer.citations])


def build(settings: Settings, app: App | None = None) -> gr.Blocks:
    app = app or App(settings)
    collection_default = settings.collection
    initial_rows = app.article_rows(collection_default)
    with gr.Blocks(title="articles-qa") as demo:
        gr.Markdown("## articles-qa — ask the news articles, get answers with their sources")
        collection = gr.State(collection_default)
        with gr.Tab("Chat"):
            with gr.Row():
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(label="Chat", height=460, elem_id="chat")
                    question = gr.Textbox(placeholder="Ask a question about the articles…", show_label=False, elem_id="question")
                    with gr.Row():
                        ask = gr.Button("Ask", variant="primary", elem_id="ask")
                        clear = gr.Button("New chat", elem_id="clear")
                    gr.Examples(app.examples(), inputs=question, label="Examples")
                with gr.Column(scale=2):
                    gr.Markdown("### Sources")
                    sources = gr.HTML("<p class='meta'>Sources of the latest answer appear here.</p>", elem_id="sources")
        with gr.Tab("Library"):
            collection_box = gr.Dropdown(app.collections(), value=collection_default, label="Collection", elem_id="collection")
            articles = gr.Dataframe(
                headers=["id", "title", "date", "source", "chunks"], value=initial_rows,
                interactive=False, elem_id="articles",
            )
            uploads = gr.File(file_count="multiple", file_types=UPLOAD_TYPES, label="Add articles", elem_id="upload")
            upload_summary = gr.Markdown(elem_id="upload-summary")
            upload_results = gr.Dataframe(headers=["file", "result", "article / reason"], interactive=False, elem_id="upload-results")
            with gr.Row():
                to_delete = gr.Dropdown(choices=[row[0] for row in initial_rows], label="Article", elem_id="delete-choice")
                delete = gr.Button("Delete article", variant="stop", elem_id="delete")
            delete_message = gr.Markdown()
            gr.Markdown("### Feeds and article URLs")
            with gr.Row(elem_id="feed-controls") as feed_controls:  # hidden for a reader
                feed_url = gr.Textbox(label="RSS/Atom feed or article URL", scale=3, elem_id="feed-url")
                feed_every = gr.Textbox(value="15m", label="Poll every", scale=1, elem_id="feed-every")
                follow = gr.Button("Add", variant="primary", scale=1, elem_id="feed-add")
                poll = gr.Button("Poll now", scale=1, elem_id="feed-poll")
                unfollow = gr.Button("Stop following", scale=1, elem_id="feed-remove")
            feed_message = gr.Markdown(elem_id="feed-message")
            feeds = gr.Dataframe(
                headers=["feed", "title", "every", "last poll", "status", "articles added", "last error", "next poll"],
                value=app.feed_rows(collection_default), interactive=False, elem_id="feeds",
            )
        with gr.Tab("Settings"):
            with gr.Column(elem_id="settings") as settings_box:  # hidden for a reader
                backend = gr.Dropdown(["local", "openai", "openai-compatible"], value=settings.llm_backend, label="LLM backend", elem_id="backend")
                model = gr.Textbox(value=settings.llm_model or "", label="Model (server backends)")
                base_url = gr.Textbox(value=settings.llm_base_url or "", label="Base URL (openai-compatible)", elem_id="base-url")
                top_k = gr.Slider(1, 50, value=settings.answer_k, step=1, label="Passages searched for evidence")
                gr.Markdown("Your choices here apply to your session only. API keys are read from the server's environment "
                            "(`QA_LLM_API_KEY`, `OPENAI_API_KEY`), never shown here, and sent only to the server's configured "
                            "base URL; another base URL must be allowed by the operator (`QA_ALLOWED_BASE_URLS`) and gets no key.")

        chat_inputs = [question, chatbot, collection, backend, model, base_url, top_k]
        question.submit(app.respond, chat_inputs, [chatbot, question, sources], api_visibility="private")
        ask.click(app.respond, chat_inputs, [chatbot, question, sources], api_visibility="private")
        clear.click(lambda: ([], ""), None, [chatbot, sources], api_visibility="private")
        collection_box.change(
            lambda c: (c, *app.library_view(c), app.feed_rows(c)),
            collection_box, [collection, articles, to_delete, feeds], api_visibility="private",
        )
        uploads.upload(app.upload, [uploads, collection], [upload_results, upload_summary, articles, to_delete], api_visibility="private")
        delete.click(app.delete, [to_delete, collection], [delete_message, articles, to_delete], api_visibility="private")
        follow.click(app.follow, [feed_url, feed_every, collection], [feed_message, feeds, articles, to_delete], api_visibility="private")
        poll.click(app.poll_now, [collection], [feed_message, feeds, articles, to_delete], api_visibility="private")
        unfollow.click(app.unfollow, [feed_url, collection], [feed_message, feeds], api_visibility="private")
        # What this visitor's role may see: a reader gets no upload, delete or settings controls
        # (and the handlers refuse those calls anyway).
        signed_in = gr.Markdown(elem_id="signed-in")
        demo.load(app.controls, None, [signed_in, uploads, to_delete, delete, settings_box, feed_controls], api_visibility="private")
        gr.api(app.ask_api, api_name="ask")
        gr.api(app.ingest_api, api_name="ingest")
    return demo


def auth_from_env(value: str | None):
    if not value:
        return None
    user, _, password = value.partition(":")
    if not user or not password:
        raise QAError("QA_UI_AUTH must look like user:password")
    return (user, password)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 7860, concurrency: int = 2) -> None:
    """One server, two faces: the chat page at / and the REST API under /v1 (OpenAPI at /docs)."""
    import uvicorn
    from fastapi import FastAPI

    from qa.serve.api import access, build_router, install_error_handlers, truthful_schema

    # Gradio keeps uploads under GRADIO_TEMP_DIR with sanitised names; pin it inside the data dir.
    os.environ["GRADIO_TEMP_DIR"] = str(upload_dir(settings))
    upload_dir(settings).mkdir(parents=True, exist_ok=True)
    auth = auth_from_env(os.environ.get("QA_UI_AUTH"))
    state = App(settings)
    threading.Thread(target=state.warm_up, name="qa-warm-up", daemon=True).start()
    threading.Thread(target=state.poll_feeds_forever, name="qa-feeds", daemon=True).start()
    demo = build(settings, state)
    # One local model serves one answer at a time; the queue keeps others waiting, not failing.
    demo.queue(default_concurrency_limit=concurrency, max_size=200)
    # With tokens or a password configured nothing is served unauthenticated: the OpenAPI schema
    # is then only at /v1/openapi.json (with credentials), and /docs is off.
    open_docs = not (state.tokens or auth)
    server = FastAPI(title="articles-qa", description="Question answering over news articles, with cited sentences.",
                     docs_url="/docs" if open_docs else None, openapi_url="/openapi.json" if open_docs else None)
    install_error_handlers(server)
    server.include_router(build_router(state, access(state.tokens, auth), lambda: server.openapi()))
    server.openapi = lambda: truthful_schema(server, bearer=bool(state.tokens))
    server = gr.mount_gradio_app(
        server, demo, path="/", auth=state.tokens.login if state.tokens else auth, css=CSS, footer_links=["api"], show_error=True,
        max_file_size=f"{settings.max_file_mb:g}mb", allowed_paths=[],
        blocked_paths=[str(Path(settings.data_dir).resolve() / "chroma.sqlite3")],
    )
    docs = "docs at /docs" if open_docs else "schema at /v1/openapi.json with credentials"
    print(f"articles-qa chat on http://{host}:{port} (REST API under /v1, {docs})", flush=True)
    uvicorn.run(server, host=host, port=port, log_level="warning")
