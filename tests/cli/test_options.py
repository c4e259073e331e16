"""Options from one model: a dataclass field is an option of every command built from it."""

from __future__ import annotations

import io
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer

from lazyreg.cli import remotes
from lazyreg.cli.client import CliError
from lazyreg.cli.main import app
from lazyreg.cli.options import given, options_from
from lazyreg.cli.remotes import RemoteFields


def command(*path: str) -> typer.core.TyperCommand:
    found: Any = typer.main.get_command(app)
    for name in path:
        found = found.commands[name]
    cmd: typer.core.TyperCommand = found
    return cmd


def test_create_and_update_take_every_field_of_a_remote() -> None:
    create, update = command("remote", "create"), command("remote", "update")
    for field in fields(RemoteFields):
        assert field.name in {p.name for p in create.params}
        assert field.name in {p.name for p in update.params}
    assert {p.name for p in create.params if p.required} == {"name", "url"}
    assert {p.name for p in update.params if p.required} == {"name"}


@dataclass
class Toy:
    colour: Annotated[str | None, typer.Option(help="A colour")] = None
    sizes: Annotated[list[int] | None, typer.Option()] = None
    shiny: Annotated[bool | None, typer.Option("--shiny/--dull")] = None
    count: Annotated[int, typer.Option()] = 1


def run_toy(args: list[str], required: tuple[str, ...] = ()) -> list[Toy]:
    got: list[Toy] = []
    toy = typer.Typer()

    @toy.command()
    @options_from(Toy, required=required)
    def make(name: Annotated[str, typer.Argument()], toy: Toy,
             loud: Annotated[bool, typer.Option()] = False) -> None:
        assert (name, loud) == ("n", "--loud" in args)
        got.append(toy)
    typer.main.get_command(toy).main(args=["n", *args], standalone_mode=False)
    return got


def test_a_field_is_an_option_and_the_command_gets_the_model() -> None:
    assert run_toy([]) == [Toy()]
    assert run_toy(["--colour", "red", "--sizes", "1", "--sizes", "2", "--dull",
                    "--count", "3", "--loud"]) == [Toy("red", [1, 2], False, 3)]
    with pytest.raises(typer.TyperException, match="colour"):
        run_toy([], required=("colour",))
    assert run_toy(["--colour", "red"], required=("colour",)) == [Toy(colour="red")]


def test_unknown_required_field_is_refused_at_import() -> None:
    with pytest.raises(TypeError, match="Toy has no field hue"):
        options_from(Toy, required=("hue",))


def test_given_drops_what_was_not_set_but_keeps_false_and_zero() -> None:
    assert given(Toy()) == {"count": 1}
    assert given(Toy(sizes=[], shiny=False, count=0)) == {"shiny": False, "count": 0}


def test_remote_body(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert remotes.body(RemoteFields()) == {}
    assert remotes.body(RemoteFields(policy="streamed", include_tags=[], tls_verify=False,
                                     download_concurrency=4)) == {
        "policy": "streamed", "tls_verify": False, "download_concurrency": 4}
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\r\nsecond line\n"))
    assert remotes.body(RemoteFields(password="typed", password_stdin=True)) == {
        "password": "from stdin"}
    pem = tmp_path / "ca.pem"
    pem.write_text("PEM TEXT")
    assert remotes.body(RemoteFields(ca_cert=pem)) == {"ca_cert": "PEM TEXT"}
    with pytest.raises(CliError, match=r"^cannot read --ca-cert .*none\.pem: No such file"):
        remotes.body(RemoteFields(ca_cert=tmp_path / "none.pem"))
