"""A run that dies mid-load, as the loader sees a SIGKILL: some units committed, the rest never started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from migration_pipeline.core import stage
from migration_pipeline.core.spec import StoreSpec


def stage_killed_after(units: int, monkeypatch: pytest.MonkeyPatch, database_url: str, spec: StoreSpec,
                       source_root: Path, run_id: str, secret: str | None) -> list[int]:
    """Stage with one worker until `units` units are committed, then die; return the committed unit numbers."""
    real_load_unit = stage.load_unit
    committed: list[int] = []

    def load_unit_then_die(*args: Any) -> dict[str, int]:
        if len(committed) == units:
            raise KeyboardInterrupt
        seen = real_load_unit(*args)
        committed.append(args[4].number)
        return seen

    with monkeypatch.context() as patched:
        patched.setattr(stage, "load_unit", load_unit_then_die)
        with pytest.raises(KeyboardInterrupt):
            stage.stage_store(database_url, spec, source_root, run_id, secret, workers=1)
    return committed
