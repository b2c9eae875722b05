"""Whole-file readers: plain text and Markdown, HTML (beautifulsoup4), PDF (pypdf).

Each returns (text, metadata) or raises `SourceError` with the reason.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import SourceError


def decode(data: bytes, what: str) -> str:
    """UTF-8 (a BOM is dropped); undecodable bytes are a `SourceError` naming the offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{what} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def read_text(path: Path) -> tuple[str, dict[str, Any]]:
    text = decode(path.read_bytes(), "the file")
    metadata: dict[str, Any] = {"format": path.suffix.lower().lstrip(".")}
    if metadata["format"] in ("md", "markdown"):
        heading = next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("# ")), None)
        if heading:
            metadata["title"] = heading
    return text, metadata


def read_html(path: Path) -> tuple[str, dict[str, Any]]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode(path.read_bytes(), "the file"), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    metadata: dict[str, Any] = {"format": "html"}
    if soup.title and soup.title.string and soup.title.string.strip():
        metadata["title"] = soup.title.string.strip()
    lines = (line.strip() for line in soup.get_text(separator="\n").splitlines())
    return "\n".join(line for line in lines if line), metadata


def read_pdf(path: Path) -> tuple[str, dict[str, Any]]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(path, strict=False)
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise SourceError(f"not a readable PDF ({type(exc).__name__}: {exc})") from None
    metadata: dict[str, Any] = {"format": "pdf", "pages": len(pages)}
    if isinstance(title, str) and title.strip():
        metadata["title"] = title.strip()
    return "\n\n".join(pages), metadata
