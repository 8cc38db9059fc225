"""The files of a model version on disk: its model file, checkpoint directory and training curve.

Deleted by retention after the rows are gone (a row never points at a missing file; a file
left behind by a crash in between is only disk space).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from domain.ports import ModelRecord


def delete_model_files(records: Iterable[ModelRecord]) -> None:
    for record in records:
        Path(record.path).unlink(missing_ok=True)
        Path(record.training_chart).unlink(missing_ok=True)
        shutil.rmtree(record.checkpoint_dir, ignore_errors=True)
