"""Whole-file readers: plain text and Markdown, HTML (beautifulsoup4), PDF (pypdf).

Each returns (text, metadata) or raises `SourceError` with the reason. Text is UTF-8, except HTML,
which is decoded as its byte order mark or else its declared charset (`<meta charset>` or
`http-equiv="Content-Type"`, found by bs4's `EncodingDetector`) says, UTF-8 when it declares none.
Whatever pypdf raises on a PDF makes it unreadable, never a crash.
"""

from __future__ import annotations

import codecs
import contextlib
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


def decode_html(data: bytes) -> str:
    """HTML bytes as text: the BOM's encoding, else the declared charset, else UTF-8; strict."""
    from bs4.dammit import EncodingDetector

    data, encoding = EncodingDetector.strip_byte_order_mark(data)
    declared = None if encoding else EncodingDetector.find_declared_encoding(data, is_html=True)
    if declared and declared.startswith(("utf-16", "utf-32")):
        declared = "utf-8"  # a UTF-16 declaration in ASCII-compatible bytes is UTF-8 (WHATWG HTML)
    encoding = encoding or declared or "utf-8"
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise SourceError(f"the file declares the unknown charset {encoding!r}; convert it to UTF-8") from None
    if codec.name == "utf-8":
        return decode(data, "the file")
    if codec.name in ("iso8859-1", "ascii"):  # labels that mean windows-1252 in HTML (WHATWG), as browsers read them
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("cp1252")
        codec = codecs.lookup("iso8859-1")  # bytes cp1252 leaves undefined: Latin-1 decodes every byte
    try:
        return data.decode(codec.name)
    except UnicodeDecodeError as exc:
        raise SourceError(f"the file is not valid {encoding} (its declared charset; byte 0x{data[exc.start]:02x} "
                          f"at offset {exc.start})") from None


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

    soup = BeautifulSoup(decode_html(path.read_bytes()), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    metadata: dict[str, Any] = {"format": "html"}
    if soup.title and soup.title.string and soup.title.string.strip():
        metadata["title"] = soup.title.string.strip()
    lines = (line.strip() for line in soup.get_text(separator="\n").splitlines())
    return "\n".join(line for line in lines if line), metadata


def read_pdf(path: Path) -> tuple[str, dict[str, Any]]:
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(path, strict=False)
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except Exception as exc:  # noqa: BLE001 - pypdf raises anything on a malformed file (RecursionError, IndexError, ...)
        raise SourceError(f"not a readable PDF ({type(exc).__name__}: {exc})") from None
    metadata: dict[str, Any] = {"format": "pdf", "pages": len(pages)}
    if isinstance(title, str) and title.strip():
        metadata["title"] = title.strip()
    return "\n\n".join(pages), metadata
