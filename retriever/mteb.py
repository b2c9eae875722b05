"""Run MTEB on an `LLM2VecEncoder`: queries get the task's LLM2Vec instruction, documents none.

    import mteb
    from retriever.mteb import LLM2VecMTEB

    model = LLM2VecMTEB.from_pretrained("smollm2-135m")
    results = mteb.evaluate(model, mteb.get_tasks(tasks=["SciFact"]))

`mteb` is an optional extra (`pip install 'llm2vec-retriever[mteb]'`; tested with mteb 2.26). The
instruction for a task is, in order: one given in `instructions=`, the official LLM2Vec table
(`LLM2VEC_TASK_INSTRUCTIONS`, the reference library's `task_to_instructions.json`, with its
trailing colons), then the task's own query prompt in MTEB. Documents are encoded without one,
as LLM2Vec does; tasks without queries and documents (STS, classification) get the instruction
on every input, as the reference evaluation does.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

try:
    from mteb.models import ModelMeta
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ScoringFunction
    from mteb.types import PromptType
except ImportError as exc:  # the optional extra
    raise ImportError(f"retriever.mteb needs the mteb package ({exc}): pip install 'llm2vec-retriever[mteb]'") from exc

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from indexer.llm2vec import LLM2VecEncoder

_CQADUPSTACK = ("Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to "
                "the given question:")
LLM2VEC_TASK_INSTRUCTIONS: dict[str, str] = {
    "ClimateFEVER": "Given a claim about climate change, retrieve documents that support or refute the claim:",
    "HotpotQA": "Given a multi-hop question, retrieve documents that can help answer the question:",
    "FEVER": "Given a claim, retrieve documents that support or refute the claim:",
    "MSMARCO": "Given a web search query, retrieve relevant passages that answer the query:",
    "DBPedia": "Given a query, retrieve relevant entity descriptions from DBPedia:",
    "NQ": "Given a question, retrieve Wikipedia passages that answer the question:",
    "QuoraRetrieval": "Given a question, retrieve questions that are semantically equivalent to the given question:",
    "SCIDOCS": "Given a scientific paper title, retrieve paper abstracts that are cited by the given paper:",
    "TRECCOVID": "Given a query on COVID-19, retrieve documents that answer the query:",
    "Touche2020": "Given a question, retrieve detailed and persuasive arguments that answer the question:",
    "SciFact": "Given a scientific claim, retrieve documents that support or refute the claim:",
    "NFCorpus": "Given a question, retrieve relevant documents that best answer the question:",
    "ArguAna": "Given a claim, find documents that refute the claim:",
    "FiQA2018": "Given a financial question, retrieve user replies that best answer the question:",
    "STS16": "Retrieve semantically similar text:",
    **{f"CQADupstack{forum}Retrieval": _CQADUPSTACK
       for forum in ("Tex", "Webmasters", "English", "Gaming", "Gis", "Unix", "Mathematica", "Stats", "Physics",
                     "Programmers", "Android", "Wordpress")},
}
"""MTEB task name -> query instruction, as McGill-NLP/llm2vec's test_configs/mteb/task_to_instructions.json."""


class LLM2VecMTEB(AbsEncoder):
    """An MTEB encoder (`mteb.models.EncoderProtocol`) around an `LLM2VecEncoder`."""

    def __init__(
        self,
        encoder: "LLM2VecEncoder",
        *,
        instructions: Mapping[str, str] | None = None,
        name: str | None = None,
        normalize: bool = True,
        batch_size: int = 32,
    ) -> None:
        self.model = encoder
        self.instructions = {**LLM2VEC_TASK_INSTRUCTIONS, **(instructions or {})}
        self.normalize = normalize
        self.batch_size = batch_size
        source = str(encoder.provenance.get("model", "model"))
        self.mteb_model_meta = ModelMeta.create_empty({
            "name": name or f"llm2vec-retriever/{os.path.basename(source.rstrip('/')) or 'model'}",
            # results are cached per revision: the fingerprint changes whenever the vectors would
            "revision": encoder.fingerprint(),
            "embed_dim": encoder.dim,
            "max_tokens": encoder.config.max_length,
            "similarity_fn_name": ScoringFunction.COSINE,
            "use_instructions": True,
            "framework": ["PyTorch"],
        })

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike, adapters: Sequence[str | os.PathLike] = (),
                        *, instructions: Mapping[str, str] | None = None, **encoder_kwargs: Any) -> "LLM2VecMTEB":
        """Load an encoder as `LLM2VecEncoder.from_pretrained` does and wrap it."""
        from indexer.llm2vec import LLM2VecEncoder

        return cls(LLM2VecEncoder.from_pretrained(model, adapters, **encoder_kwargs), instructions=instructions)

    def instruction_for(self, task_metadata: Any, prompt_type: PromptType | None) -> str | None:
        """The instruction put before inputs of `prompt_type` for this task (None for documents)."""
        if prompt_type == PromptType.document:
            return None
        if task_metadata.name in self.instructions:
            return self.instructions[task_metadata.name]
        return self.get_instruction(task_metadata, prompt_type) or None

    def encode(
        self,
        inputs: "DataLoader",
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Vectors for every text in `inputs`; an empty text gets a zero vector (it scores 0)."""
        texts = [text for batch in inputs for text in batch["text"]]
        instruction = self.instruction_for(task_metadata, prompt_type)
        vectors = np.zeros((len(texts), self.model.dim), dtype=np.float32)
        rows = [i for i, text in enumerate(texts) if text and text.strip()]
        if rows:
            vectors[rows] = self.model.encode(
                [texts[i] for i in rows], instruction=instruction, normalize=self.normalize,
                batch_size=kwargs.get("batch_size", self.batch_size),
                show_progress_bar=kwargs.get("show_progress_bar"),
            )
        return vectors
