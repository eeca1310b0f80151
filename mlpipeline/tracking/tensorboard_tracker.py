"""TensorBoard: event files written with the tensorboard package's record format and protos
(its EventFileWriter would import TensorFlow: seconds and hundreds of MB in the daemon).

A run is a folder: ``<model_dir>/tensorboard/<version>/<run id>`` by default, or
``<tracking_dir>/<script without .py>/<version>/<run id>``, so ``tensorboard --logdir`` on
either shows each version's runs side by side, a fresh rerun as a run of its own. A resumed
version writes a new event file in its first part's folder, which TensorBoard reads as the
same run.
"""
from __future__ import annotations

import importlib
import os
import re
import socket
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from mlpipeline.records.files import json_text
from mlpipeline.tracking.bridge import TrackedRun, Tracker, evaluations, final_step


_SAFE = re.compile(r"[^\w.,=+-]")
"""What a version name may keep in a folder name: no separators, so it stays inside the folder."""


class TensorBoardTracker(Tracker):
    name = "TensorBoard"

    def __init__(self, tracking_dir: Optional[Path] = None) -> None:
        # Imported here, so a wrong install is a message at start, not a failure per run.
        importlib.import_module("tensorboard.summary.writer.record_writer")
        if tracking_dir is not None:
            tracking_dir.mkdir(parents=True, exist_ok=True)  # a file in its place is an error at start
            if not os.access(tracking_dir, os.W_OK):
                raise PermissionError(f"{tracking_dir} cannot be written")
        self.tracking_dir = tracking_dir
        self._folders: Dict[str, Path] = {}
        self._writers: Dict[str, Any] = {}
        self._parameters_written: set = set()

    def run_dir(self, run: TrackedRun) -> Path:
        """A fresh run's folder: one per version and run, so that a fresh rerun is a run of
        its own; a resumed run goes on in the folder its first part wrote to."""
        earlier = run.earlier()
        if earlier.get("tracker") == "tensorboard" and earlier.get("run_dir"):
            return Path(earlier["run_dir"])
        version = _SAFE.sub("_", run.version).strip(".") or "_"
        if self.tracking_dir is None:
            return run.model_dir / "tensorboard" / version / run.run_id
        return self.tracking_dir / str(Path(run.script).with_suffix("")) / version / run.run_id

    def start(self, run: TrackedRun) -> None:
        self._folders[run.run_id] = self.run_dir(run)

    def _writer(self, run: TrackedRun) -> Any:
        """The run's event file, opened at its first use: after the version's own
        clean_model_dir, which may empty the model_dir it lives in."""
        writer = self._writers.get(run.run_id)
        if writer is None:
            folder = self._folders[run.run_id]
            writer = self._writers[run.run_id] = EventFile(folder, run.run_id)
            run.remember({"tracker": "tensorboard", "run_dir": str(folder)})
            lines = [f"run {run.run_id}" + (" (resumed)" if run.resumed else "")]
            if run.git and run.git.get("commit"):
                lines.append(f"git commit {run.git['commit']}" + (" (dirty)" if run.git.get("dirty") else ""))
            self._text(writer, "mlpipeline/run", "  \n".join(lines), 0)
        return writer

    def metrics(self, run: TrackedRun, reports: List[Tuple[float, Any, Dict[str, float]]]) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        writer = self._writer(run)
        self._write_parameters(run, writer)
        for when, step, values in reports:
            at = int(step) if isinstance(step, (int, float)) else 0
            summary = Summary(value=[Summary.Value(tag=name, simple_value=value) for name, value in values.items()])
            writer.add_event(Event(wall_time=when, step=at, summary=summary))
        writer.flush()

    def end(self, run: TrackedRun, record: Dict[str, Any]) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        if run.run_id not in self._folders:
            return
        writer = self._writer(run)
        del self._writers[run.run_id], self._folders[run.run_id]
        self._write_parameters(run, writer, record)
        final = final_step(record)
        values = [Summary.Value(tag=name, simple_value=value) for name, value in evaluations(record, "/").items()]
        if values:
            writer.add_event(Event(wall_time=time.time(), step=final, summary=Summary(value=values)))
        ended = f"{record.get('status')}" + (f": {record['reason']}" if record.get("reason") else "")
        self._text(writer, "mlpipeline/state", ended, final)
        copy = run.script_copy()
        if copy is not None:
            source = copy.read_text(encoding="utf-8", errors="replace")
            self._text(writer, "mlpipeline/script", f"{run.script}\n\n" + "\n".join("    " + line for line in source.splitlines()), final)
        writer.close()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def _write_parameters(self, run: TrackedRun, writer: Any, record: Optional[Dict[str, Any]] = None) -> None:
        if run.run_id in self._parameters_written:
            return
        parameters = run.parameters(record)
        if not parameters:
            return
        rows = ["| parameter | value |", "| --- | --- |"]
        rows += [f"| {key} | {json_text(value)} |" for key, value in parameters.items()]
        self._text(writer, "mlpipeline/parameters", "\n".join(rows), 0)
        self._parameters_written.add(run.run_id)

    @staticmethod
    def _text(writer: Any, tag: str, text: str, step: int) -> None:
        """A text summary (TensorBoard's Text tab), as its text plugin stores one."""
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto

        metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
        tensor = TensorProto(
            dtype=7,  # DT_STRING
            string_val=[text.encode("utf-8")],
            tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]),
        )
        summary = Summary(value=[Summary.Value(tag=tag, metadata=metadata, tensor=tensor)])
        writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))
        writer.flush()


class EventFile:
    """One event file of a run's folder, as TensorBoard reads them: a record per event."""

    def __init__(self, folder: Path, run_id: str) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.summary.writer.record_writer import RecordWriter

        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{run_id}"
        self._file = open(folder / name, "wb")  # noqa: SIM115 - closed by close()
        self._records = RecordWriter(self._file)
        self.add_event(Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def add_event(self, event: Any) -> None:
        self._records.write(event.SerializeToString())

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
