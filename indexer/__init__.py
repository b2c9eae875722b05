"""Indexer: documents to LLM2Vec vectors in a FAISS index with SQLite metadata."""

from .llm2vec import LLM2VecEncoder

__all__ = ["LLM2VecEncoder"]
