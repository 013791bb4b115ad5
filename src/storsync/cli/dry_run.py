"""The plan of `storsync sync --dry-run` as a person reads it: one line per action, in the
order a session carries them out, the first SHOWN of them, then the totals. ``--json``
prints the whole plan instead."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

import click

from storsync.engine.reconcile import Transfer
from storsync.model import Side
from storsync.runner.session_plan import SessionPlan
from storsync.units import size

SHOWN = 50


def print_plan(plan: SessionPlan) -> None:
    """Read from the session's plan as it is printed: a large plan is not made whole."""
    for line in islice(_lines(plan), SHOWN):
        click.echo(line)
    count = sum(plan.count(name) for name in _SHOWN_STEPS)
    if count > SHOWN:
        click.echo(f"... and {count - SHOWN} more (--json lists them all)")
    click.echo(_totals_line(plan))


_SHOWN_STEPS = ("renames", "keep_both", "moves", "delete_remote", "push", "delete_local", "pull")


def _totals_line(plan: SessionPlan) -> str:
    return (
        f"dry run, nothing changed: would push {plan.count('push')} "
        f"({size(plan.bytes('push'))}), pull {plan.count('pull')} "
        f"({size(plan.bytes('pull'))}), move {plan.count('moves')}, delete "
        f"{plan.count('delete_local')} local and {plan.count('delete_remote')} remote; "
        f"{len(plan.conflicts)} conflicts"
    )


def _lines(plan: SessionPlan) -> Iterator[str]:
    """Conflict renames and copies first, then the push direction (deletions, moves,
    then transfers), then the pull direction, as runner/execute.py does them."""
    for rename in plan.steps("renames"):
        yield _line(f"rename {rename.side.value}", f"{rename.path} -> {rename.new_path}")
    for kept in plan.steps("keep_both"):
        yield _line("keep both", f"{kept.path} (the remote version as {kept.copy_path})")
    for deleted in plan.steps("delete_remote"):
        yield _line("delete remote", deleted.path)
    yield from _moves(plan, Side.REMOTE)
    for transfer in plan.steps("push"):
        yield _transfer("push", transfer)
    for deleted in plan.steps("delete_local"):
        yield _line("delete local", deleted.path)
    yield from _moves(plan, Side.LOCAL)
    for transfer in plan.steps("pull"):
        yield _transfer("pull", transfer)


def _moves(plan: SessionPlan, side: Side) -> Iterator[str]:
    for move in plan.moves(side):
        yield _line(f"move {side.value}", f"{move.path} -> {move.new_path}")


def _transfer(word: str, transfer: Transfer) -> str:
    conflict = ", conflict" if transfer.conflict else ""
    return _line(word, f"{transfer.path} ({size(transfer.source.size)}{conflict})")


def _line(word: str, what: str) -> str:
    return f"{word:<13} {what}"
