"""Options from one model: a dataclass's fields become a command's options.

A resource's settable fields are written once, as a dataclass whose fields
carry their typer annotations and whose names are the request body's keys.
`options_from` gives a command one option per field and hands it one value of
the dataclass; `given` turns that value into a request body of the fields the
user set. Adding a field to the dataclass adds the option to every command
built from it and the key to every body.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Collection
from typing import Annotated, Any

import typer

Name = Annotated[str, typer.Argument(help="Name of the resource")]
Limit = Annotated[int, typer.Option(help="Page size (at most 1000)")]
Offset = Annotated[int, typer.Option(help="Skip this many results")]

Command = Callable[..., None]


def options_from(model: type[Any], *, required: Collection[str] = ()
                 ) -> Callable[[Command], Command]:
    """Replace the command's parameter typed `model` by one option per field of `model`.

    Fields named in `required` lose their default, so typer insists on them.
    """
    fields = dataclasses.fields(model)
    hints = typing.get_type_hints(model, include_extras=True)
    unknown = set(required) - {f.name for f in fields}
    if unknown:
        raise TypeError(f"{model.__name__} has no field {', '.join(sorted(unknown))}")

    def decorate(command: Command) -> Command:
        own = typing.get_type_hints(command, include_extras=True)
        [target] = [name for name, hint in own.items() if hint is model]
        # Typer passes every value by keyword, so keyword-only parameters keep the
        # command's order whatever their defaults.
        parameters: list[inspect.Parameter] = []
        for param in inspect.signature(command).parameters.values():
            if param.name != target:
                parameters.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY,
                                                annotation=own.get(param.name, param.annotation)))
                continue
            parameters.extend(inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
                default=_default(f, required)) for f in fields)

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> None:
            value = model(**{f.name: kwargs.pop(f.name) for f in fields})
            command(*args, **kwargs, **{target: value})

        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run
    return decorate


def _default(field: dataclasses.Field[Any], required: Collection[str]) -> Any:
    if field.name in required or field.default is dataclasses.MISSING:
        return inspect.Parameter.empty
    return field.default


def given(value: Any) -> dict[str, Any]:
    """The fields of a dataclass value that were set: neither None nor an empty list."""
    pairs = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
    return {name: v for name, v in pairs if v is not None and v != []}
