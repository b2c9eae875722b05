"""`llm2vec_config.json`: the encoder settings stored next to a model or its last adapter.

Same file and keys as the reference `llm2vec` library, so released checkpoints load unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

CONFIG_NAME = "llm2vec_config.json"
POOLING_MODES = ("mean", "weighted_mean", "eos_token", "last_token", "bos_token")


def check_positive_ints(settings: object, names: tuple[str, ...]) -> None:
    """Raise ValueError naming the first of `names` on `settings` that is not a positive integer."""
    for name in names:
        value = getattr(settings, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class LLM2VecConfig:
    """Pooling and length settings of an encoder.

    `doc_max_length` caps the tokens of the text part (instruction excluded), cut on word
    boundaries as the reference does; `max_length` caps the whole sequence fed to the model.
    """

    pooling_mode: str = "mean"
    max_length: int = 512
    doc_max_length: int = 400
    skip_instruction: bool = True

    def __post_init__(self) -> None:
        if self.pooling_mode not in POOLING_MODES:
            raise ValueError(
                f"unknown pooling mode {self.pooling_mode!r}; choose one of {', '.join(POOLING_MODES)}"
            )
        check_positive_ints(self, ("max_length", "doc_max_length"))

    @classmethod
    def read(cls, directory: str | Path) -> dict:
        """The settings stored in `directory`, as a dict of known keys ({} when there is no file)."""
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            return {}
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        known = {f.name for f in fields(cls)}
        return {key: value for key, value in raw.items() if key in known}

    def write(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_NAME
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path
