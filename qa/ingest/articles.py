"""Load articles from files and clean them down to the story text.

Formats: .txt, .md, .html/.htm (main text via trafilatura), .json and .jsonl (records with
`text` plus optional `title`, `url`, `published`, `author`, `source`, `id`).
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from qa.errors import InputError

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
JSON_SUFFIXES = {".json", ".jsonl"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | JSON_SUFFIXES

# Magic numbers of binary formats people drop by mistake, named in the error message.
_BINARY_MAGIC = {
    b"\x89PNG": "PNG image",
    b"\xff\xd8\xff": "JPEG image",
    b"GIF8": "GIF image",
    b"%PDF": "PDF document (not supported yet)",
    b"PK\x03\x04": "ZIP archive (or .docx/.xlsx)",
    b"\x7fELF": "ELF executable",
    b"\x1f\x8b": "gzip archive",
    b"MZ": "Windows executable",
}

# Whole lines of page furniture that are not the story (matched on stripped lines).
_BOILERPLATE_LINES = [
    r"\d+ photos?",
    r"save story",
    r"estimated read time:?.*",
    r"this archived news story is available only for your personal.*",
    r"follow .{1,80} on (twitter|x|facebook|instagram|threads|bluesky)\b.*",
    r"copyright ©.*",
    r"© ?\d{4}.*",
    r".*\ball rights reserved\b.*",
    r"most (recent|popular) .{0,40}stories",
    r"related (topics|stories|articles)",
    r"(get|sign up for) .{0,80}(newsletter|delivered to your inbox).*",
    r".*subscribe to .{0,80}\.?",
    r"by subscribing, you .*",
    r".{0,40}weather forecast",
    r"(advertisement|share this story|share|comments?|read more|listen to this article)",
]
_BOILERPLATE_RE = re.compile(r"^(?:" + "|".join(_BOILERPLATE_LINES) + r")$", re.IGNORECASE)
_FOLLOW_RE = re.compile(r"^follow (.{1,80}?) on (?:twitter|x)\b", re.IGNORECASE)
_BYLINE_RE = re.compile(r"^by ([A-Z][\w.'\- ]{1,80}?)(?:,| and |\s+(?:associated press|ap|reuters)\b|$)", re.IGNORECASE)
_DATELINE_RE = re.compile(r"^([A-Z][A-Z .,'\-]{1,60}?)\s*\((AP|Reuters|AFP|UPI|CNN)\)\s*[—–-]")
_DATE_IN_NAME_RE = re.compile(r"(\d{4}-\d{2}-\d{2})")
# Zero-width and other invisible format characters that break matching and tokenising.
_INVISIBLE_RE = re.compile("[\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\ufeff\u00ad]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class Article:
    """One cleaned article. `text` is the story body; citation offsets index into it."""

    id: str
    text: str
    title: str = ""
    source: str = ""
    url: str | None = None
    published: str | None = None  # ISO date, YYYY-MM-DD
    author: str | None = None
    dateline: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """Changes when anything stored for the article changes: text or metadata."""
        payload = json.dumps([self.title, self.text, self.url, self.published, self.author, self.dateline])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def text_hash(self) -> str:
        """Same story text, whatever the file is called: used to spot duplicates."""
        return hashlib.sha256(" ".join(self.text.split()).encode()).hexdigest()[:16]


@dataclass
class LoadResult:
    articles: list[Article]
    errors: list[InputError]


def slugify(value: str, max_len: int = 80) -> str:
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")
    return slug[:max_len].strip("-")


def decode_bytes(data: bytes, source: str) -> str:
    """Bytes to text, or an InputError saying why not (empty, binary, undecodable)."""
    if not data:
        raise InputError(source, "empty file")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InputError(source, f"invalid UTF-16 text ({exc.reason})") from None
    for magic, kind in _BINARY_MAGIC.items():
        if data.startswith(magic):
            raise InputError(source, f"binary file ({kind}), not text")
    if b"\x00" in data[:8192]:
        raise InputError(source, "binary file (contains NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Legacy encodings. Western news in cp1252/latin-1 is by far the commonest; short texts
    # defeat statistical detection, so try it first and keep it when the result reads as text.
    try:
        text = data.decode("cp1252")
        if sum(ch.isascii() or ch.isalpha() for ch in text) >= 0.97 * len(text):
            return text
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[:200_000]).best()
    if best is None or best.chaos > 0.2:
        raise InputError(source, "not valid UTF-8 text and the encoding could not be detected")
    return str(data.decode(best.encoding, errors="strict"))


def normalise(text: str) -> str:
    """Unicode NFC, Unix newlines, no invisible or control characters, no trailing spaces."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _INVISIBLE_RE.sub("", text)
    text = _CONTROL_RE.sub("", text).replace("\t", " ")
    return "\n".join(line.rstrip() for line in text.split("\n"))


def clean_story(raw: str, detect_title: bool = True) -> tuple[str, dict]:
    """Drop page boilerplate lines; return the story text and metadata found on the way
    (title from a leading headline line, dateline, author from a byline or 'Follow X on Twitter')."""
    meta: dict = {}
    paragraphs: list[str] = []
    for line in normalise(raw).split("\n"):
        stripped = line.strip()
        if not stripped:
            paragraphs.append("")
            continue
        if len(stripped) < 300:
            follow = _FOLLOW_RE.match(stripped)
            if follow:
                meta.setdefault("author", follow.group(1).strip())
            if _BOILERPLATE_RE.match(stripped):
                continue
            byline = _BYLINE_RE.match(stripped)
            # A byline only near the top: 'By ...' deeper in is story text.
            if byline and len(stripped) < 100 and sum(1 for p in paragraphs if p) <= 2:
                meta.setdefault("author", byline.group(1).strip().title())
                continue
        paragraphs.append(" ".join(stripped.split()))
    blocks = [p for p in "\n".join(paragraphs).split("\n\n")]
    blocks = [b.strip() for b in blocks if b.strip()]
    # A short first block without final punctuation is the headline.
    if detect_title and blocks and len(blocks[0]) <= 200 and "\n" not in blocks[0] and not blocks[0].endswith((".", '"', "?", "!")):
        meta["title"] = blocks.pop(0)
    if blocks:
        dateline = _DATELINE_RE.match(blocks[0])
        if dateline:
            meta["dateline"] = dateline.group(1).strip().rstrip(",")
            meta.setdefault("agency", dateline.group(2))
    return "\n\n".join(blocks), meta


def _markdown_to_text(text: str) -> str:
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)  # images
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)  # links keep their words
    text = re.sub(r"^#{1,6}\s+", "", text, flags=re.MULTILINE)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    return text


def _html_to_text(html: str, source: str) -> tuple[str, dict]:
    import trafilatura

    doc = trafilatura.bare_extraction(html, with_metadata=True, include_comments=False, include_tables=False)
    if doc is None:
        raise InputError(source, "no article text found in the HTML")
    data = doc if isinstance(doc, dict) else doc.as_dict()
    meta = {k: data.get(k) for k in ("title", "author", "date", "url", "sitename") if data.get(k)}
    if "date" in meta:
        meta["published"] = meta.pop("date")
    return data.get("text") or "", meta


def _date_from(value) -> str | None:
    if not value:
        return None
    match = re.search(r"\d{4}-\d{2}-\d{2}", str(value))
    return match.group(0) if match else None


def _make_article(text: str, meta: dict, source: str, default_id: str) -> Article:
    body, found = clean_story(text, detect_title=not meta.get("title"))
    if not body.strip():
        raise InputError(source, "no text left after cleaning (empty or only page boilerplate)")
    merged = {**found, **{k: v for k, v in meta.items() if v}}
    known = {"id", "title", "url", "published", "author", "dateline", "source", "text"}
    return Article(
        id=slugify(str(merged.get("id") or default_id)) or "article",
        text=body,
        title=str(merged.get("title") or default_id),
        source=str(merged.get("source") or source),
        url=merged.get("url"),
        published=_date_from(merged.get("published")),
        author=merged.get("author"),
        dateline=merged.get("dateline"),
        extra={k: v for k, v in merged.items() if k not in known and isinstance(v, (str, int, float))},
    )


def _records(text: str, path: Path) -> tuple[list[tuple[dict, str]], list[InputError]]:
    """JSON/JSONL to (record, where) pairs; bad lines become errors naming the line."""
    records, errors = [], []
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                records.append((json.loads(line), f"{path}:{number}"))
            except json.JSONDecodeError as exc:
                errors.append(InputError(f"{path}:{number}", f"invalid JSON ({exc.msg})"))
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(str(path), f"invalid JSON at line {exc.lineno} ({exc.msg})") from None
        items = data if isinstance(data, list) else data.get("articles", [data]) if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise InputError(str(path), "JSON must be an object with 'text' or a list of such objects")
        records = [(item, f"{path}[{i}]") for i, item in enumerate(items)]
    return records, errors


def load_file(path: Path, max_bytes: int | None = None) -> LoadResult:
    """Articles in one file. File-level problems raise InputError; in JSON(L) files each bad
    record becomes an error of its own and the good records are kept."""
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(source, f"unsupported file type '{suffix or '(none)'}' (use .txt, .md, .html, .json, .jsonl)")
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
            raise InputError(source, "not a regular file (a folder, FIFO, socket or device)")
        size = info.st_size
        if max_bytes is not None and size > max_bytes:
            raise InputError(source, f"file is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB limit")
        with path.open("rb") as handle:  # never more than the limit, even if the file grows
            data = handle.read(max_bytes + 1) if max_bytes is not None else handle.read()
        if max_bytes is not None and len(data) > max_bytes:
            raise InputError(source, f"file grew over the {max_bytes / 1e6:.0f} MB limit while being read")
    except OSError as exc:
        raise InputError(source, f"cannot read file ({exc.strerror or exc})") from None
    text = decode_bytes(data, source)
    if not text.strip():
        raise InputError(source, "file has only whitespace")
    stem = path.stem
    base_meta = {"published": _date_from(stem)}

    if suffix in JSON_SUFFIXES:
        records, errors = _records(text, path)
        articles = []
        for index, (record, where) in enumerate(records):
            try:
                if not isinstance(record, dict):
                    raise InputError(where, "record is not a JSON object")
                body = record.get("text")
                if body is not None and not isinstance(body, str):
                    raise InputError(where, f"field 'text' must be a string, not {type(body).__name__}")
                if not body or not body.strip():
                    raise InputError(where, "field 'text' is missing or empty")
                meta = {k: record.get(k) for k in ("id", "title", "url", "published", "author", "source")}
                default_id = record.get("id") or record.get("url") or record.get("title") or f"{stem}-{index + 1}"
                articles.append(_make_article(body, {**base_meta, **meta}, where, str(default_id)))
            except InputError as exc:
                errors.append(exc)
        if not records and not errors:
            errors.append(InputError(source, "no records"))
        return LoadResult(articles, errors)

    if suffix in HTML_SUFFIXES:
        body, meta = _html_to_text(text, source)
        return LoadResult([_make_article(body, {**base_meta, **meta}, source, stem)], [])
    if suffix in {".md", ".markdown"}:
        text = _markdown_to_text(text)
    return LoadResult([_make_article(text, base_meta, source, stem)], [])


def iter_files(paths: list[Path]) -> tuple[list[Path], list[InputError]]:
    """Expand folders (recursively, supported types only, symlink loops skipped). A library's
    own data folder met on the way (it holds chroma.sqlite3; its lexical index has .json files)
    is not articles: it is skipped whole."""
    files, errors, seen = [], [], set()
    for path in paths:
        if not path.exists():
            errors.append(InputError(str(path), "no such file or folder"))
        elif path.is_dir():
            libraries = [store.parent for store in path.rglob("chroma.sqlite3")]
            for child in sorted(path.rglob("*")):
                if any(library == child or library in child.parents for library in libraries):
                    continue
                try:
                    real = child.resolve(strict=True)
                except (OSError, RuntimeError):
                    errors.append(InputError(str(child), "broken link or symlink loop"))
                    continue
                if child.suffix.lower() not in SUPPORTED_SUFFIXES or real in seen or child.is_dir():
                    continue
                seen.add(real)
                if child.is_file():
                    files.append(child)
                else:
                    errors.append(InputError(str(child), "not a regular file (a FIFO, socket or device)"))
        else:
            files.append(path)
    return files, errors
