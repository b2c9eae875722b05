"""Exceptions raised by the encoder: each names the problem and what to do about it."""

from __future__ import annotations


class LLM2VecError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(LLM2VecError, ValueError):
    """Bad input to `encode` (empty text, wrong types, mismatched instruction list)."""


class ModelLoadError(LLM2VecError, OSError):
    """A model, GGUF file or adapter could not be found or does not fit the model."""


class UnsupportedArchitectureError(LLM2VecError, ValueError):
    """The model's architecture has no bidirectional-attention support here."""
