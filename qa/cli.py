"""Command line: a thin layer over qa.Library. Heavy modules load inside the commands, so
`qa --help` answers at once."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Question answering over news articles.")
_options: dict = {}
_entry = False
LOCAL_MODEL_HELP = "Local backend's model: gemma-3-270m | qwen2.5-coder-1.5b | auto | a .gguf path [env QA_LOCAL_MODEL]."


@app.callback()
def _global(
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Embedded store folder [env QA_DATA_DIR, default ./.qa-data]."),
    chroma_url: Optional[str] = typer.Option(None, "--chroma-url", help="Chroma server, http://host:port [env QA_CHROMA_URL]."),
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="Collection name [env QA_COLLECTION, default articles]."),
):
    _options.update(data_dir=data_dir, chroma_url=chroma_url, collection=collection)


def _fail(message: str, code: int = 2):
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _library(settings=None, reading: bool = False):
    from qa.config import get_settings
    from qa.library import Library

    settings = settings or get_settings(**_options)
    return Library(settings.chroma_url or settings.data_dir, settings.collection, settings=settings, reading=reading)


def _run(fn):
    """Known errors become one red line and exit code 2, never a traceback."""
    from qa.errors import QAError

    try:
        return fn()
    except (QAError, ValueError) as exc:
        _fail(str(exc))


@app.command()
def ingest(paths: list[str] = typer.Argument(..., help="Files or folders (.txt .md .html .json .jsonl), article page URLs or RSS/Atom feed URLs.")):
    """Add articles; unchanged ones are skipped, changed ones replaced. A URL is fetched (an article
    page, or a feed whose items are fetched); addresses inside private networks are refused unless
    allowed by QA_FETCH_ALLOWED_NETS."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    def work():
        lib = _library()
        encoders = getattr(lib.embedder, "encoders", None)
        if encoders is not None and lib.embedder.requested == "auto" and not encoders.ready():
            typer.echo("First use on this machine: exporting the ONNX encoders and timing each (once, ~20 s)…", err=True)
        with Progress(
            TextColumn("{task.description:>6}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            transient=True, disable=not sys.stderr.isatty(), console=None,
        ) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int):
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            return lib.ingest(paths, progress=progress)

    report = _run(work)
    for source, reason in report.rejected:
        typer.secho(f"rejected: {source}: {reason}", fg="yellow", err=True)
    for label, ids in (("added", report.added), ("replaced", report.replaced)):
        for article_id in ids:
            typer.echo(f"{label}: {article_id}")
    for article_id, story in report.copies:
        typer.echo(f"wire copy: {article_id} (of {story})")
    typer.echo(report.summary())
    if report.rejected:
        raise typer.Exit(1)


@app.command()
def search(
    question: str,
    k: int = typer.Option(5, "-k", help="Number of chunks."),
    chars: Optional[int] = typer.Option(None, "--chars", help="Instead of k chunks: the best sentences that fit in this many characters."),
    source: Optional[str] = typer.Option(None, help="Only this source file."),
    date_from: Optional[str] = typer.Option(None, help="Published on or after YYYY-MM-DD."),
    date_to: Optional[str] = typer.Option(None, help="Published on or before YYYY-MM-DD."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
):
    """Show the passages that best match a question."""
    filters = {k_: v for k_, v in dict(source=source, date_from=date_from, date_to=date_to).items() if v}
    if chars is not None and chars < 1:
        typer.secho("error: --chars must be at least 1", fg="red", err=True)
        raise typer.Exit(2)
    if chars:
        hits = _run(lambda: _library().passages(question, chars=chars, filters=filters or None))
    else:
        hits = _run(lambda: _library().search(question, k=k, filters=filters or None))
    if as_json:
        fields = ("article_id", "title", "published", "start", "end", "score", "text")
        typer.echo(json.dumps([{f: getattr(h, f) for f in fields} for h in hits], indent=2))
        return
    if not hits:
        typer.echo("No matching passages.")
    for n, hit in enumerate(hits, start=1):
        typer.secho(f"[{n}] {hit.title} ({hit.published or 'undated'}) {hit.article_id}:{hit.start}-{hit.end}", bold=True)
        typer.echo(f"    {hit.text}\n")


@app.command()
def ask(
    question: str,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    backend: Optional[str] = typer.Option(None, help="local | openai | openai-compatible [env QA_LLM_BACKEND]."),
    model: Optional[str] = typer.Option(None, help="Model name for OpenAI(-compatible) backends [env QA_LLM_MODEL]."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible server URL [env QA_LLM_BASE_URL]."),
    api: Optional[str] = typer.Option(None, help="chat | completions [env QA_LLM_API]."),
    local_model: Optional[str] = typer.Option(None, help=LOCAL_MODEL_HELP),
):
    """Answer a question from the articles, citing the sentences used."""
    _options.update(llm_backend=backend, llm_model=model, llm_base_url=base_url, llm_api=api, local_model=local_model)

    live = not as_json and sys.stdout.isatty()  # stream tokens to a person, not to a pipe

    def work():
        from qa.config import get_settings
        from qa.answer.preload import preload_answering

        settings = get_settings(**_options)
        preload_answering(settings, question)
        from qa.answer.types import Answer

        lib = _library(settings, reading=True)
        answer = None
        for item in lib.stream(question):
            if isinstance(item, Answer):
                answer = item
            elif live:
                typer.echo(item, nl=False)
        return answer

    answer = _run(work)
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), indent=2))
        _finish_read_only()
        return
    # What streamed was the model's raw text; the grounded answer may differ (snapped or refused).
    if live:
        typer.echo("\r\033[K", nl=False)
    typer.secho(answer.text, bold=True)
    if answer.dates:
        typer.echo(f"Searched {answer.dates}.")
    for c in answer.citations:
        where = f"{c.field} of the article" if c.field else f"{c.start}-{c.end}"
        typer.echo(f"[{c.n}] {c.title} ({c.published or 'undated'}) {c.article_id}:{where}\n    \"{c.quote}\"")
        if c.url:
            typer.echo(f"    {c.url}")
        for other in c.also:
            typer.echo(f"    also published by {other['outlet']} ({other.get('published') or 'undated'}) {other.get('url') or ''}".rstrip())
    if answer.closest:
        typer.echo("Closest passages (they do not answer it):")
        for c in answer.closest:
            typer.echo(f"  - {c.title} ({c.published or 'undated'}) {c.article_id}:{c.start}-{c.end}\n    \"{c.quote}\"")
    if not answer.refused:
        typer.echo(f"{answer.kind} · grounded: {answer.grounded:.0%}")
    _finish_read_only()


def _finish_read_only() -> None:
    """End a command that wrote nothing at once: its output flushed and its reader child reaped, the
    interpreter's teardown (freeing spaCy, Chroma and ONNX objects one by one: ~0.35 s of a cold
    `qa ask`) is skipped. Only when this process is the `qa` command itself."""
    if not _entry:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    # No model is closed: os._exit frees them with the process, and a warm-up thread still
    # scoring would make a close wait for it.
    if "qa.answer.reader" in sys.modules:  # a forked reader (qa ask): reaped, not left to init
        sys.modules["qa.answer.reader"].close_process()
    os._exit(0)


@app.command()
def articles(as_json: bool = typer.Option(False, "--json")):
    """List stored articles."""
    records = _run(lambda: _library().articles())
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in records], indent=2))
        return
    if not records:
        typer.echo("No articles yet: qa ingest PATH")
    for r in records:
        typer.echo(f"{r.id}\t{r.published or '-'}\t{r.chunks} chunks\t{r.title}")


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
         measure_llm: bool = typer.Option(False, "--measure-llm", help="Time the local model's prompt reading and generation here (cached).")):
    """Versions, CPU features, the encoder and LLM in use, model files, the store."""
    from qa.config import get_settings
    from qa.info import collect

    report = _run(lambda: collect(get_settings(**_options), measure_llm=measure_llm))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for section, values in report.items():
        if not isinstance(values, dict):
            typer.echo(f"{section}: {values}")
            continue
        typer.secho(section, bold=True)
        for key, value in values.items():
            if isinstance(value, dict) and key == "measured":
                for variant, figures in value.items():
                    typer.echo(f"  measured {variant}: {_figures(figures)}")
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                for item in value:
                    typer.echo(f"  {key}: {_figures(item)}")
            else:
                typer.echo(f"  {key}: {_figures(value) if isinstance(value, dict) else (' '.join(value) if isinstance(value, list) else value)}")


def _figures(values: dict) -> str:
    return ", ".join(f"{k} ({_figures(v)})" if isinstance(v, dict) else f"{k} {v:,}" if isinstance(v, int) and not isinstance(v, bool)
                     else f"{k} {v}" for k, v in values.items())


@app.command()
def watch(
    folder: Optional[Path] = typer.Argument(None, help="The folder new article files land in (none: feeds only)."),
    interval: float = typer.Option(2.0, help="Seconds between looks at the folder and the feeds' schedule."),
    settle: float = typer.Option(1.0, help="A file is read once unchanged this many seconds (not while it is written)."),
):
    """Ingest article files as they land in FOLDER (and again when they change), and poll the
    library's feeds when due (`qa feeds add`); Ctrl-C stops. A bad file or feed item is reported
    and skipped; every process serving the library sees new articles at once."""
    from qa.ingest.watch import watch as watch_folder

    lib = _run(_library)
    feeds = len(_run(lib.feeds.list))
    typer.echo(f"watching {folder or 'no folder'} (every {interval:g} s) and {feeds} feed(s); Ctrl-C stops", err=True)
    try:
        _run(lambda: watch_folder(lib, folder, interval=interval, settle=settle, report=lambda line: typer.echo(line, err=line.startswith(("rejected", "error")))))
    except KeyboardInterrupt:
        pass


feeds_app = typer.Typer(no_args_is_help=True, help="RSS/Atom feeds the library follows (polled by `qa watch` and `qa serve`).")
app.add_typer(feeds_app, name="feeds")


@feeds_app.command("add")
def feeds_add(url: str, every: str = typer.Option("15m", help="How often to poll: 90s, 15m, 1h.")):
    """Follow a feed (fetched once now to check it is one); its items arrive at the next poll."""
    feed = _run(lambda: _library().follow(url, every))
    typer.echo(f"following {feed.url}" + (f" ({feed.title})" if feed.title else "") + f", every {_every(feed.every_s)}")


@feeds_app.command("remove")
def feeds_remove(url: str):
    """Stop following a feed (its articles stay)."""
    if not _run(lambda: _library().unfollow(url)):
        _fail(f"{url}: not a followed feed", 1)
    typer.echo(f"no longer following {url}")


@feeds_app.command("list")
def feeds_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """The feeds followed: last poll, items added, last error, next poll."""
    import time

    feeds = _run(lambda: _library().feeds.list())
    if as_json:
        typer.echo(json.dumps([f.to_dict() for f in feeds], indent=2))
        return
    if not feeds:
        typer.echo("No feeds. Add one with: qa feeds add URL")
    for f in feeds:
        last = f"last poll {time.strftime('%Y-%m-%d %H:%M', time.localtime(f.last_poll))}: {f.last_status}" if f.last_poll else "not polled yet"
        typer.echo(f"{f.url}  every {_every(f.every_s)}, {last}, {f.items_added} articles added"
                   + (f", error: {f.last_error}" if f.last_error else ""))


@feeds_app.command("poll")
def feeds_poll(urls: Optional[list[str]] = typer.Argument(None, help="Feeds to poll now (default: those due).")):
    """Poll feeds now (those due, or the ones named)."""
    from qa.ingest.feeds import poll_lines

    results = _run(lambda: _library().poll_feeds(only=urls or None))
    for line in poll_lines(results):
        typer.echo(line)


def _every(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


@app.command()
def check(repair: bool = typer.Option(False, "--repair", help="Delete orphan chunks and incomplete articles; re-index what the lexical index lacks.")):
    """Report (and repair) drift: orphan chunks, articles missing chunks, a lexical index behind the store."""
    def work():
        from rich.progress import Progress

        with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("re-indexing chunks", total=None)
            return _library().check(repair=repair, progress=lambda done, total: bar.update(task, completed=done, total=total))

    result = _run(work)
    typer.echo(
        f"{result['articles']} articles, {result['chunks']} chunks, {result['orphan_chunks']} orphan chunks, "
        f"{len(result['incomplete_articles'])} incomplete articles"
        + (f" ({', '.join(result['incomplete_articles'])})" if result["incomplete_articles"] else "")
        + f", {len(result['index_lagging_articles'])} articles behind in the lexical index"
    )
    if result["repaired"]:
        typer.echo("repaired: orphans deleted, incomplete articles removed (ingest them again), lexical index caught up")
    elif result["orphan_chunks"] or result["incomplete_articles"] or result["index_lagging_articles"]:
        raise typer.Exit(1)


@app.command()
def delete(article_id: str):
    """Remove an article and its chunks."""
    if not _run(lambda: _library().delete(article_id)):
        _fail(f"no article '{article_id}'", code=1)
    typer.echo(f"deleted: {article_id}")


@app.command("eval")
def eval_(
    dataset: Optional[Path] = typer.Argument(None, help="Our .jsonl or a SQuAD .json file."),
    limit: Optional[int] = typer.Option(None, help="Evaluate a random sample of N questions."),
    seed: int = typer.Option(0, help="Sampling seed."),
    stories: Optional[int] = typer.Option(None, help="SQuAD-format files: a library of N sampled stories (e.g. NewsQA)."),
    out_of_library: int = typer.Option(0, help="With --stories: M questions about stories left out, to be refused."),
    out: Optional[Path] = typer.Option(None, help="Run folder [default evals/runs/NAME-TIME]."),
    corpus: Optional[Path] = typer.Option(None, help="Articles to ingest, overriding the dataset's own."),
    backend: Optional[str] = typer.Option(None, help="LLM backend for the answers [env QA_LLM_BACKEND]."),
    model: Optional[str] = typer.Option(None, help="Model for a server backend."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible server URL."),
    api: Optional[str] = typer.Option(None, help="chat | completions, for a server backend [env QA_LLM_API]."),
    local_model: Optional[str] = typer.Option(None, help=LOCAL_MODEL_HELP),
    judge_url: Optional[str] = typer.Option(None, help="Optional LLM judge: an OpenAI-compatible chat server."),
    judge_model: str = typer.Option("default", help="Model name of the judge."),
    min_f1: Optional[float] = typer.Option(None, help="Exit 1 when token F1 is below this."),
    min_recall: Optional[float] = typer.Option(None, help="Exit 1 when retrieval recall@5 is below this."),
    compare: Optional[tuple[Path, Path]] = typer.Option(None, help="Print the deltas of two run folders: RUN_A RUN_B."),
):
    """Evaluate answers and retrieval on a dataset, in a fresh temporary collection."""
    if compare:
        from evals.run import compare as compare_runs

        rows = _run(lambda: compare_runs(*compare))
        typer.echo(f"{'metric':<24}{'A':>10}{'B':>10}{'B-A':>10}")
        for name, a, b, delta in rows:
            show = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
            typer.echo(f"{name:<24}{show(a):>10}{show(b):>10}{('+' if (delta or 0) > 0 else '') + show(delta):>10}")
        return
    if dataset is None:
        _fail("give a DATASET file, or --compare RUN_A RUN_B")
    _options.update(llm_backend=backend, llm_model=model, llm_base_url=base_url, llm_api=api, local_model=local_model)

    def work():
        from rich.progress import Progress

        from evals.run import run_eval

        from qa.config import get_settings

        judge = None
        if judge_url:
            from qa.models.llms import OpenAILLM

            judge = OpenAILLM(judge_model, judge_url, None, "chat", timeout=60, retries=1)
        with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("questions", total=None)
            return run_eval(
                dataset, out, limit=limit, seed=seed, corpus=corpus, settings=get_settings(**_options), judge=judge,
                stories=stories, out_of_library=out_of_library,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )

    run, summary = _run(work)
    typer.echo((run / "report.md").read_text())
    typer.echo(f"run folder: {run}")
    failures = []
    if min_f1 is not None and (summary["f1"] or 0.0) < min_f1:
        failures.append(f"token F1 {summary['f1'] or 0:.3f} < {min_f1}")
    if min_recall is not None and (summary["recall_at_k"]["5"] or 0.0) < min_recall:
        failures.append(f"recall@5 {summary['recall_at_k']['5'] or 0:.3f} < {min_recall}")
    if failures:
        _fail("regression gate: " + "; ".join(failures), code=1)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 127.0.0.1 keeps the chat local."),
    port: int = typer.Option(7860, help="Port of the chat page and its API."),
    concurrency: int = typer.Option(2, help="Answers computed at once; the rest wait in the queue."),
):
    """Start the chat web UI (and its /ask HTTP API) on the store of the current directory."""

    def work():
        from qa.config import get_settings
        from qa.serve.ui import serve as run_ui

        run_ui(get_settings(**_options), host=host, port=port, concurrency=concurrency)

    _run(work)


def main():
    global _entry
    _entry = True  # this process is the `qa` command (not a caller of app())
    _preload_ask(sys.argv[1:])
    app()


def _preload_ask(args: list[str]) -> None:
    """For `qa ask`, start loading what answering needs before typer reads the command line
    (~0.1 s): spaCy's child at once, and the local model where no option on the line chooses
    another (its settings then come from the environment alone, as the command's will)."""
    question, chooses_model = _asked(args)
    if question is None:
        return
    from qa.answer.preload import preload_answering, preload_reader

    # numpy and pydantic (the settings) are imported before the fork: the child then has them
    # too, instead of importing them again (~0.1 s of CPU both processes would spend).
    import numpy  # noqa: F401

    try:
        from qa.config import get_settings

        settings = None if chooses_model else get_settings()
    except Exception:  # noqa: BLE001 - the command reports bad settings itself, as one line
        settings = None
    if settings is None:
        preload_reader(question)
    else:
        preload_answering(settings, question)  # forks the reader first, then starts the model's thread


MODEL_OPTIONS = {"--backend", "--model", "--base-url", "--api", "--local-model"}


def _asked(args: list[str]) -> tuple[str | None, bool]:
    """The question of a `qa ask` command line, read ahead of typer (None for any other command
    or where the line is unclear: typer still parses it, this only starts work early), and
    whether the line names a model option."""
    takes_value = {"--data-dir", "--chroma-url", "--collection", "-c"} | MODEL_OPTIONS
    chooses_model = any(word.split("=")[0] in MODEL_OPTIONS for word in args)
    words = iter(args)
    command = None
    for word in words:
        if word in ("--help", "-h"):
            return None, chooses_model
        if word in takes_value:
            next(words, None)
        elif not word.startswith("-"):
            if command is None:
                command = word
                if command != "ask":
                    return None, chooses_model
            else:
                return word, chooses_model
    return None, chooses_model


if __name__ == "__main__":
    main()
