"""What the command line shows a person (issue 12): sizes in human units in the summaries
(``--json`` keeps the exact integers), the plan of ``sync --dry-run``, and a session a
client command waits for: its id at once on stderr, its progress (files, bytes, rate,
time left) only on a terminal, one summary line at the end. A real `storsync serve`
over loopback where the command talks to a server."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storsync.cli import control, manage
from storsync.units import duration, size
from tests.api_support import Api, serving
from tests.conftest import Pair, run_cli, tree, write

ROOT = Path(__file__).resolve().parent.parent
KiB, MiB = 1024, 1024 * 1024
# What a session did, after its state: the time it took, then files and sizes each way.
DID = (
    r"in [\d.]+ s: pushed (\d+) \(([^)]+)\), pulled (\d+) \(([^)]+)\), "
    r"deleted 0 local and 0 remote, 0 conflicts, 0 errors"
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (MiB - 1, "1.0 MiB"),
        (int(1.2 * MiB), "1.2 MiB"),
        (5 * 1024**5, "5.0 PiB"),
        (3 * 1024**6, "3072.0 PiB"),
    ],
)
def test_sizes_are_in_binary_units(n: int, shown: str) -> None:
    assert size(n) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.42, "0.4 s"), (42.4, "42 s"), (185, "3 min 05 s"), (7620, "2 h 07 min")],
)
def test_durations(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


def test_the_sync_summary_shows_sizes_for_people_and_json_the_bytes(pair: Pair) -> None:
    write(pair.local, "big.bin", b"x" * (3 * MiB // 2))
    write(pair.remote, "small.txt", "remote")
    result = pair.cli()
    assert result.returncode == 0, result.stderr
    done = re.fullmatch(rf"completed {DID}\n", result.stdout)
    assert done is not None, result.stdout
    assert done.groups() == ("1", "1.5 MiB", "1", "6 B")
    write(pair.local, "more.bin", b"y" * 2 * KiB)
    summary = json.loads(pair.cli("--json").stdout)
    assert (summary["pushed"], summary["bytes_pushed"]) == (1, 2 * KiB)


def test_dry_run_prints_a_plan_a_person_reads(pair: Pair) -> None:
    write(pair.local, "a.txt", "local")
    write(pair.local, "big.bin", b"x" * (3 * MiB // 2))
    write(pair.remote, "r.txt", "remote")
    result = pair.cli("--dry-run")
    assert result.returncode == 0, result.stderr
    *pushes, pull, totals = result.stdout.splitlines()
    assert sorted(pushes) == ["push          a.txt (5 B)", "push          big.bin (1.5 MiB)"]
    assert pull == "pull          r.txt (6 B)"
    assert totals == (
        "dry run, nothing changed: would push 2 (1.5 MiB), pull 1 (6 B), move 0, "
        "delete 0 local and 0 remote; 0 conflicts"
    )
    assert tree(pair.remote) == {"r.txt": b"remote"}
    assert sorted(tree(pair.local)) == ["a.txt", "big.bin"]


def test_a_long_dry_run_plan_is_cut_and_json_lists_it_all(pair: Pair) -> None:
    for i in range(60):
        write(pair.local, f"f{i:02}.txt", "12345")
    result = pair.cli("--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 52
    assert all(line.startswith("push          f") for line in lines[:50])
    assert lines[50] == "... and 10 more (--json lists them all)"
    assert lines[51].startswith("dry run, nothing changed: would push 60 (300 B), pull 0 (0 B)")
    as_json = pair.cli("--dry-run", "--json")
    assert as_json.stdout.count("\n") == 1  # one JSON object, on one line
    assert len(json.loads(as_json.stdout)["plan"]["push"]) == 60
    assert tree(pair.remote) == {}


def test_sync_on_a_terminal_shows_files_bytes_and_rate(pair: Pair) -> None:
    write(pair.local, "a.bin", b"a" * 300 * KiB)
    write(pair.local, "b.bin", b"b" * 300 * KiB)
    code, out, screen = _with_terminal_stderr(
        "sync", str(pair.local), str(pair.remote), "--state-dir", str(pair.state)
    )
    assert code == 0, screen
    assert re.search(r"2/2 files +600\.0 KiB/600\.0 KiB +[\d.]+ [KMG]?i?B/s +ETA", screen), screen
    assert re.fullmatch(rf"completed {DID}\n", out), out


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, str]]:
    with serving(tmp_path_factory.mktemp("output")) as (server, api):
        yield api, server.url


def _client_args(served: tuple[Api, str], *args: str) -> list[str]:
    api, url = served
    return [*args, "--server", url, "--token", api.token]


def _filled(api: Api, files: int, each: int, **settings: Any) -> dict[str, Any]:
    repository = api.new_repository(**settings)
    for i in range(files):
        write(Path(repository["localPath"]), f"f{i:02}.bin", os.urandom(each))
    return repository


def test_trigger_wait_names_the_session_at_once_and_ends_with_a_summary(
    served: tuple[Api, str],
) -> None:
    api, _ = served
    # Slow on purpose (512 B/s, one file at a time): the session runs while it is named.
    repository = _filled(api, 40, 512, transfers=1, bwlimitBytesPerSecond=KiB)
    args = _client_args(served, "trigger", repository["id"], "--wait")
    with subprocess.Popen(
        [sys.executable, "-m", "storsync", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        ready, _, _ = select.select([process.stderr], [], [], 15)
        assert ready, "nothing on stderr while the session runs"
        named = re.fullmatch(r"session (\S+) (queued|running)\n", process.stderr.readline())
        assert named is not None
        session_id = named.group(1)
        assert api.session(session_id)["state"] in ("queued", "running")
        lifted = api.request(
            "PATCH",
            f"/api/v1/repositories/{repository['id']}",
            json={"bwlimitBytesPerSecond": None},
        )
        assert lifted.status_code == 200, lifted.text
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    done = re.fullmatch(rf"{session_id} completed {DID}\n", out)
    assert done is not None, out
    assert done.groups() == ("40", "20.0 KiB", "0", "0 B")
    assert err == ""  # no terminal: no progress, nothing noisy


def test_json_output_keeps_its_shape_and_watch_sums_up(served: tuple[Api, str]) -> None:
    api, _ = served
    repository = _filled(api, 2, 3 * KiB)
    done = run_cli(*_client_args(served, "trigger", repository["id"], "--wait", "--json"))
    assert done.returncode == 0, done.stderr
    session = json.loads(done.stdout)  # one JSON object on stdout, the session as before
    assert session["state"] == "completed" and session["push"]["bytesDone"] == 6 * KiB
    assert re.fullmatch(rf"session {session['id']} (queued|running)\n", done.stderr)
    watched = run_cli(*_client_args(served, "watch", session["id"]))
    assert watched.returncode == 0, watched.stderr
    assert re.fullmatch(rf"{session['id']} completed {DID}\n", watched.stdout), watched.stdout
    assert watched.stderr == ""
    started = run_cli(*_client_args(served, "trigger", repository["id"]))  # no --wait
    assert re.fullmatch(r"\S+ (queued|running)\n", started.stdout), started.stdout


def test_trigger_wait_on_a_terminal_shows_files_bytes_rate_and_time_left(
    served: tuple[Api, str],
) -> None:
    api, _ = served
    repository = _filled(api, 3, 300 * KiB)
    code, out, screen = _with_terminal_stderr(
        *_client_args(served, "trigger", repository["id"], "--wait")
    )
    assert code == 0, screen
    assert re.search(r"3/3 files +900\.0 KiB/900\.0 KiB +[\d.]+ [KMG]?i?B/s +ETA", screen), screen
    assert re.fullmatch(rf"\S+ completed {DID}\n", out), out


def test_the_readme_describes_every_client_command() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in (*control.COMMANDS, *manage.COMMANDS):
        name = re.escape(command.name or "")
        row = re.search(rf"^\| `storsync {name}\b[^`]*` \| (.+) \|$", readme, re.M)
        assert row is not None, f"README.md does not describe `storsync {command.name}`"


def _with_terminal_stderr(*args: str) -> tuple[int, str, str]:
    """Run storsync with stderr on a pseudo-terminal, as in a person's shell; its exit
    status, its stdout, and what the terminal showed (escape sequences left out)."""
    main, secondary = pty.openpty()
    shown: list[bytes] = []

    def drain() -> None:  # the terminal's buffer is small: read while the command runs
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the command ended and closed the terminal
                return
            if not data:
                return
            shown.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "storsync", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=secondary,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "COLUMNS": "200", "TERM": "xterm"},
        )
    finally:
        os.close(secondary)
    reader.join(10)
    os.close(main)
    screen = ANSI.sub("", b"".join(shown).decode("utf-8", "replace"))
    return result.returncode, result.stdout, screen
