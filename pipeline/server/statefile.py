"""The state file (``state.json``): what runs, written as each part comes up."""

from __future__ import annotations

import json
import os
from typing import Any

from pipeline.errors import PipelineError
from pipeline.server.layout import Layout


def read_state(layout: Layout) -> dict[str, Any]:
    try:
        return json.loads(layout.state.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PipelineError(f"{layout.state}: unreadable server state ({exc}); remove it once nothing runs") from None


def _record(layout: Layout, **values: Any) -> None:
    """Merge ``values`` into the state file (atomically), so a crash mid-start still says what to stop."""
    state = read_state(layout)
    state.update(values)
    tmp = layout.state.with_name(".state.json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, layout.state)
