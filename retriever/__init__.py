"""Retriever: open an index, encode queries with task instructions, search, return documents."""
