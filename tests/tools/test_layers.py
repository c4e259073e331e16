"""tools/layers.py: the import graph from the code's imports, and the imports it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import layers


def tree(root: Path, files: dict[str, str]) -> Path:
    """A repository whose lazyreg/ holds `files` (path under lazyreg/ -> source)."""
    for name, source in {"__init__.py": "", **files}.items():
        path = root / "lazyreg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


def run(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    code = layers.main(["--root", str(root)])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def test_downward_imports_pass_and_the_graph_is_printed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tree(tmp_path, {
        "oci/__init__.py": "",
        "db/__init__.py": "from lazyreg.oci import x\n",
        "sync/__init__.py": "",
        "sync/pipeline.py": "import lazyreg.db\nfrom lazyreg import errors, taskcontext\n"
                            "from . import other\nfrom .other import y\n",
        "sync/other.py": "",
        "errors.py": "", "taskcontext.py": "",
    })
    code, out, err = run(root, capsys)
    assert (code, err) == (0, [])
    assert " 6 sync         -> errors, taskcontext, db" in out
    assert " 2 db           -> oci" in out
    assert out.rstrip().endswith("no upward import")


def test_each_upward_import_is_one_line_and_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tree(tmp_path, {
        "sync/__init__.py": "",
        "sync/pipeline.py": "import json\n\ndef f():\n    from lazyreg.tasks.runner import X\n",
        "tasks/__init__.py": "",
        "tasks/runner.py": "from ..sync import pipeline\n",  # relative: down, allowed
        "db/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                          "    from lazyreg.storage import base\n",  # same layer
        "storage/__init__.py": "",
        "worker.py": "from lazyreg import oci\n",  # a leaf imports nothing
        "oci/__init__.py": "",
    })
    code, _, err = run(root, capsys)
    tasks = layers.layer_of()["tasks"]  # layers are added above sync now and then
    assert code == 1
    assert err == [
        "lazyreg/db/__init__.py:3: db imports storage: upward (layer 2 imports layer 2)",
        f"lazyreg/sync/pipeline.py:4: sync imports tasks: upward (layer 6 imports layer {tasks})",
        "lazyreg/worker.py:1: worker imports oci: upward (layer 0 imports layer 1)",
    ]


def test_the_cli_imports_leaves_only_and_serve_from_serve_py(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tree(tmp_path, {
        "cli/__init__.py": "",
        "cli/serve.py": "def run():\n    from lazyreg.serve import serve\n",
        "cli/remotes.py": "from lazyreg.types import Policy\nfrom lazyreg.db import models\n",
        "cli/status.py": "from lazyreg.serve import serve\n",
        "serve.py": "", "types.py": "", "db/__init__.py": "",
    })
    code, _, err = run(root, capsys)
    assert code == 1
    assert err == [
        "lazyreg/cli/remotes.py:2: cli imports db: the CLI talks to the server only over REST",
        "lazyreg/cli/status.py:1: cli imports serve: the CLI talks to the server only over REST",
    ]


def test_a_unit_in_no_layer_is_reported(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    root = tree(tmp_path, {"newthing/__init__.py": "", "oci/__init__.py": ""})
    code, _, err = run(root, capsys)
    assert code == 1
    assert err == ["lazyreg/newthing: unit 'newthing' is in no layer of tools/layers.py"]


def test_this_repository_has_no_upward_import(capsys: pytest.CaptureFixture[str]) -> None:
    assert layers.main(["--quiet"]) == 0
    assert capsys.readouterr().err == ""
