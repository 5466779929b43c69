"""The on-demand views' transforms in a feature-store runtime without the torch extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PROBE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.modules["torch"] = None  # as if the torch extra were not installed
    from clicks2intent.errors import ArtifactError
    from clicks2intent.features import transforms as T
    for load in (T.load_models, T.load_next_page_head):
        try:
            load(Path(sys.argv[1]))
        except ArtifactError as error:
            print(error)
    """
)


def test_the_encoder_views_name_the_missing_extra(tmp_path: Path) -> None:
    """Not a ModuleNotFoundError from deep inside Feast's inference at ``feast apply``: one line naming
    the view and the extra (the world file is read first, so one is written)."""
    from clicks2intent.data.simulator import simulator_world
    from clicks2intent.data.world import write_world
    from clicks2intent.names.paths import ArtifactLayout

    layout = ArtifactLayout(tmp_path)
    layout.features_world.parent.mkdir(parents=True)
    write_world(simulator_world(), layout.features_world)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "on-demand view inflight_session_intent",
        "on-demand view session_affinity",
    ]
    assert all("needs torch, which is not installed (the `torch` extra)" in line for line in lines)
