"""`lazyreg.types`: one definition of policies and task states, for the API and the CLI."""

from __future__ import annotations

from typing import Any

from lazyreg.api.schemas import RemoteIn, TaskOut
from lazyreg.types import ACTIVE_STATES, FINAL_STATES, POLICIES, TASK_STATES


def enum_of(model: Any, field: str) -> list[str]:
    values: list[str] = model.model_json_schema()["properties"][field]["enum"]
    return values


def test_the_api_documents_the_shared_values() -> None:
    assert enum_of(RemoteIn, "policy") == list(POLICIES)
    assert enum_of(TaskOut, "state") == list(TASK_STATES)


def test_every_state_is_active_or_final() -> None:
    assert set(TASK_STATES) == ACTIVE_STATES | FINAL_STATES
    assert not ACTIVE_STATES & FINAL_STATES
    assert {"completed", "failed", "canceled"} == FINAL_STATES
