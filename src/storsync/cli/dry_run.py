"""The plan of `storsync sync --dry-run` as a person reads it: one line per action, in the
order a session carries them out, the first SHOWN of them, then the totals. ``--json``
prints the whole plan instead."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

import click

from storsync.engine.reconcile import Plan, Transfer
from storsync.model import Side
from storsync.units import size

SHOWN = 50


def print_plan(plan: Plan) -> None:
    for line in islice(_lines(plan), SHOWN):
        click.echo(line)
    count = _count(plan)
    if count > SHOWN:
        click.echo(f"... and {count - SHOWN} more (--json lists them all)")
    click.echo(_totals_line(plan))


def _totals_line(plan: Plan) -> str:
    pushed = sum(t.source.size for t in plan.push)
    pulled = sum(t.source.size for t in plan.pull)
    return (
        f"dry run, nothing changed: would push {len(plan.push)} ({size(pushed)}), "
        f"pull {len(plan.pull)} ({size(pulled)}), move {len(plan.moves)}, delete "
        f"{len(plan.delete_local)} local and {len(plan.delete_remote)} remote; "
        f"{len(plan.conflicts)} conflicts"
    )


def _count(plan: Plan) -> int:
    return sum(
        len(actions)
        for actions in (
            plan.renames,
            plan.keep_both,
            plan.moves,
            plan.delete_remote,
            plan.push,
            plan.delete_local,
            plan.pull,
        )
    )


def _lines(plan: Plan) -> Iterator[str]:
    """Conflict renames and copies first, then the push direction (deletions, moves,
    then transfers), then the pull direction, as runner/execute.py does them."""
    for rename in plan.renames:
        yield _line(f"rename {rename.side.value}", f"{rename.path} -> {rename.new_path}")
    for kept in plan.keep_both:
        yield _line("keep both", f"{kept.path} (the remote version as {kept.copy_path})")
    for deleted in plan.delete_remote:
        yield _line("delete remote", deleted.path)
    yield from _moves(plan, Side.REMOTE)
    for transfer in plan.push:
        yield _transfer("push", transfer)
    for deleted in plan.delete_local:
        yield _line("delete local", deleted.path)
    yield from _moves(plan, Side.LOCAL)
    for transfer in plan.pull:
        yield _transfer("pull", transfer)


def _moves(plan: Plan, side: Side) -> Iterator[str]:
    for move in plan.moves:
        if move.side is side:
            yield _line(f"move {side.value}", f"{move.path} -> {move.new_path}")


def _transfer(word: str, transfer: Transfer) -> str:
    conflict = ", conflict" if transfer.conflict else ""
    return _line(word, f"{transfer.path} ({size(transfer.source.size)}{conflict})")


def _line(word: str, what: str) -> str:
    return f"{word:<13} {what}"
