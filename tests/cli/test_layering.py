"""The CLI knows the server only through REST: it loads no server module until `serve` runs."""

from __future__ import annotations

import json
import subprocess
import sys

PRINT_LOADED = ("import json, sys, {module}; print(json.dumps(sorted("
                "m for m in sys.modules if m == 'lazyreg' or m.startswith('lazyreg.'))))")


def loaded_by(module: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PRINT_LOADED.format(module=module)],
                          capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(done.stdout))


def test_the_cli_loads_only_itself_and_the_shared_types() -> None:
    loaded = loaded_by("lazyreg.cli")
    assert "lazyreg.cli.remotes" in loaded and "lazyreg.cli.serve" in loaded
    assert {m for m in loaded if not m.startswith("lazyreg.cli")} == {"lazyreg",
                                                                      "lazyreg.types"}


def test_the_shared_types_are_a_leaf() -> None:
    assert loaded_by("lazyreg.types") == {"lazyreg", "lazyreg.types"}
