"""Every path mlpipeline writes under outputs/, named in one place."""
from __future__ import annotations

import os

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


MAX_NAME_BYTES = 255
"""The longest file or folder name most file systems take."""


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
        """Records of version ends being written (see ends.py); empty between writes."""
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

    @staticmethod
    def model_dir_problem(label: str, script: str, suffix: Optional[str]) -> Optional[str]:
        """Why ``script`` with MODEL_DIR_SUFFIX ``suffix`` cannot name a model_dir, or None."""
        if suffix is None:
            return None
        shown = repr(suffix if len(suffix) <= 40 else suffix[:40] + "...")
        if any(ord(char) < 32 or char == "\x7f" for char in suffix):
            return f"{label}: MODEL_DIR_SUFFIX {shown} holds a control character; use a plain folder name"
        if set(suffix) & {"/", "\\"} or suffix in (".", ".."):
            return f"{label}: MODEL_DIR_SUFFIX {shown} must be a plain name, not a path"
        name = Path(script).name[:-3] if script.endswith(".py") else Path(script).name
        size = len(f"{name}-{suffix}".encode("utf-8", "surrogateescape"))
        if size > MAX_NAME_BYTES:
            return (
                f"{label}: MODEL_DIR_SUFFIX {shown} makes its model_dir's name {size} bytes long; "
                f"a folder name holds at most {MAX_NAME_BYTES}"
            )
        return None

    def model_dir(self, script: str, suffix: Optional[str]) -> Path:
        """``model_ckpts/<script path without .py>[-<MODEL_DIR_SUFFIX>]``."""
        name = script[:-3] if script.endswith(".py") else script
        if suffix:
            name = f"{name}-{suffix}"
        return self.model_ckpts / name

    def in_outputs(self, path: Path) -> str:
        """``path`` as the records name it for every host: relative to outputs_dir, which hosts
        sharing the folder may mount at different places."""
        return os.path.relpath(path, self.outputs_dir)

    def of_outputs(self, relative: str) -> str:
        """The path of what in_outputs() named, on this host."""
        return str(self.outputs_dir / relative)

    @staticmethod
    def lock_for(path: Path) -> Path:
        """The lock file guarding appends to ``path``; hidden beside it."""
        return path.parent / f".{path.name}.lock"
