"""Every path mlpipeline writes under outputs/, named in one place."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class OutputPaths:
    """The files of one outputs folder, as seen from host ``host``."""

    outputs_dir: Path
    host: str

    @property
    def log(self) -> Path:
        return self.outputs_dir / f"log-{self.host}"

    @property
    def output(self) -> Path:
        return self.outputs_dir / f"output-{self.host}"

    @property
    def results(self) -> Path:
        return self.outputs_dir / "results.jsonl"

    @property
    def journal(self) -> Path:
        return self.outputs_dir / "history.jsonl"

    @property
    def heartbeats(self) -> Path:
        """One small file per running daemon, rewritten every few seconds (see heartbeat.py)."""
        return self.outputs_dir / ".heartbeats"

    @property
    def pending(self) -> Path:
        """Records of version ends being written (see record_keeper.py); empty between writes."""
        return self.outputs_dir / ".pending"

    @property
    def listings(self) -> Path:
        """Script listings (versions) by script sha256, kept for ``mlpipeline status``."""
        return self.outputs_dir / ".listings"

    @property
    def progress(self) -> Path:
        """The latest ``report()`` of each running version, by run id, for ``mlpipeline status``."""
        return self.outputs_dir / ".progress"

    @property
    def model_ckpts(self) -> Path:
        return self.outputs_dir / "model_ckpts"

    def model_dir(self, script: str, suffix: Optional[str]) -> Path:
        """``model_ckpts/<script path without .py>[-<MODEL_DIR_SUFFIX>]``."""
        name = script[:-3] if script.endswith(".py") else script
        if suffix:
            name = f"{name}-{suffix}"
        return self.model_ckpts / name

    @staticmethod
    def lock_for(path: Path) -> Path:
        """The lock file guarding appends to ``path``; hidden beside it."""
        return path.parent / f".{path.name}.lock"
