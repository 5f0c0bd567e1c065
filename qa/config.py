"""All settings in one place: environment variables QA_* and a .env file in the working directory."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_", env_file=".env", extra="ignore")

    # Store: an embedded Chroma in data_dir, or a Chroma server when chroma_url is set.
    data_dir: Path = Path(".qa-data")
    chroma_url: str | None = None
    collection: str = "articles"
    # The collections a server offers, comma-separated (the default one always): any other name
    # is an error, never a new collection.
    collections: str = ""

    # Embedder: "minilm" (packaged, offline), "openai", or "openai-compatible".
    embedder: str = "minilm"
    embed_model: str | None = None
    embed_base_url: str | None = None
    embed_api_key: SecretStr | None = None
    embed_batch_size: int = 64  # texts per request to an embeddings server (the local encoders size their own work)
    # MiniLM encoder: auto (measured once per machine, see qa/models/encoders.py) | torch-fp32 | torch-bf16
    # | onnx-fp32 | onnx-int8 (fp32, bf16, int8 for short).
    embed_precision: str = "auto"
    # Exported ONNX files and the per-machine encoder choice; default $XDG_CACHE_HOME/articles-qa.
    cache_dir: Path | None = None

    # Chunking, in characters of cleaned article text; defaults chosen by benchmarks/retrieval.py.
    chunk_size: int = 320
    chunk_overlap: int = 0

    # Retrieval.
    top_k: int = 5
    context_chars: int = 2500  # budget of Library.passages()
    max_question_chars: int = 2000
    # A conversation's history beyond these limits is refused (400 on the API): only its last
    # turns are read anyway, and a huge one costs parsing and memory on a shared server.
    max_history_turns: int = 50
    max_history_chars: int = 20000

    # Answering (qa/models/llms.py, qa/answer/chain.py).
    llm_backend: str = "local"  # local | openai | openai-compatible
    # The local backend's model (qa/models/local_models.py): gemma-3-270m | qwen2.5-coder-1.5b | auto | a GGUF path.
    # auto: the instruct model where its measured answer time here is within the budget, else Gemma.
    local_model: str = "gemma-3-270m"
    local_model_budget_s: float = 6.0
    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_api: str | None = None  # chat | completions; default: completions for local, chat otherwise
    # Base URLs a visitor may type on the chat page (comma-separated), besides the configured one.
    # They never get the server's API key: it only goes to llm_base_url (or to OpenAI itself).
    allowed_base_urls: str = ""
    # Tokens with roles for `qa serve` (qa/serve/auth.py): "name:token:role,…" and/or a file of such lines.
    tokens: str = ""
    tokens_file: Path | None = None
    llm_timeout: float = 60.0
    llm_retries: int = 1
    llm_threads: int | None = None
    answer_k: int = 30  # best chunks whose sentences compete to be an answer's evidence
    # What a chat model reads: the best passages within this many characters, each sentence numbered
    # for citing (chosen with benchmarks/answers.py on natural questions, see the README).
    chat_context_chars: int = 1500
    # Answer or refuse ("The articles don't say."): the fitted answerability rule (evals/reader_fit.py,
    # qa/answer/answerability.json) against these thresholds, chosen with it (most useful answers while
    # refusing 0.85 of questions about stories not in the library); and a chat model's answer must
    # be this grounded in what it cites.
    min_answerability: float | None = None  # local model: evidence + the reader with its scores; None: the rule's own
    min_answerability_chat: float | None = None  # chat models: evidence + the reader without a model (the model also refuses itself)
    # A chat model that says "The articles don't say." while the evidence scores at least this gets
    # the best sentences quoted instead (small models miss paraphrased answers); None: the fitted value.
    min_answerability_quote_chat: float | None = None
    min_grounded: float = 0.5  # share of the answer's words found in the cited sentence
    closest_passages: int = 3  # shown with a refusal, marked as closest, not as citations
    max_file_mb: float = Field(20.0, description="Files above this size are rejected.")

    # Fetching URLs and feeds (qa/ingest/fetch.py). A URL a client gives is untrusted: loopback,
    # private, link-local (cloud metadata) and other non-public addresses are refused unless their
    # network is listed here (comma-separated CIDRs, e.g. 127.0.0.0/8 for a feed on this host).
    fetch_allowed_nets: str = ""
    fetch_timeout: float = 10.0  # seconds to connect and between bytes; a whole page gets 3x
    fetch_max_mb: float = 5.0  # pages and feeds above this are refused
    fetch_host_delay: float = 0.5  # seconds between two requests to one host


def get_settings(**overrides) -> Settings:
    """Settings from env/.env with explicit (non-None) overrides applied on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def upload_dir(settings: Settings) -> Path:
    """Where uploaded files land (page or API): inside the data dir, never a shared /tmp."""
    return (Path(settings.data_dir) / "uploads").resolve()
