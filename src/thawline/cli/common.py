"""Shared CLI helpers: building the runtime, printing JSON, mapping errors to exit codes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import typer
from rich.console import Console

from thawline.domain.errors import ThawlineError
from thawline.oplog.entry import Actor, ActorKind
from thawline.services.runtime import Runtime, build_runtime

console = Console(stderr=True)
CLI_ACTOR = Actor(ActorKind.SYSTEM, "cli")


@contextmanager
def runtime() -> Iterator[Runtime]:
    """Build the runtime from the environment; turn domain errors into exit status 1."""
    rt = build_runtime()
    try:
        yield rt
    except ThawlineError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    finally:
        rt.close()


def print_json(value: Any) -> None:
    """Write JSON to stdout."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
