"""Conflicts as objects (API.md section 7), on a directory remote and on S3, through each
backend of the service:

- a conflict kept both ways is listed open, with both versions and its copy;
- each decision (`keep` local, remote, both) runs as a session and leaves the two sides
  equal, the losing versions in a trash on each side, and nothing lost;
- a decision is refused (409) once the path or its copy changed locally, or a later
  session saw either change on the remote; and once the conflict is resolved;
- conflicts a policy settled are recorded as resolved (by the policy); each resolution is
  announced by a ``conflict.resolved`` event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.api_support import Api, s3_remote
from tests.conftest import trash, tree, write
from tests.s3_server import SeaweedS3
from tests.test_service_lifecycle import SetClock, in_process

OWN = ".storsync/"
FILLER = 6  # files nobody touches, so that a decision's deletion is no mass deletion


@dataclass
class Remote:
    """The repository's remote as a test reads and writes it: a directory or a prefix."""

    url: str
    fields: dict[str, Any]
    directory: Path | None = None
    s3: SeaweedS3 | None = None
    prefix: str = ""

    def put(self, path: str, data: bytes) -> None:
        if self.directory is not None:
            write(self.directory, path, data)
        else:
            assert self.s3 is not None
            client = self.s3.boto3_client()
            client.put_object(Bucket=self.s3.bucket, Key=f"{self.prefix}/{path}", Body=data)

    def trashed(self) -> set[bytes]:
        """Every version kept in the remote's trash."""
        if self.directory is not None:
            return {data for kept in trash(self.directory).values() for data in kept}
        found = self.everything()
        return {data for path, data in found.items() if path.startswith(f"{OWN}trash/")}

    def everything(self) -> dict[str, bytes]:
        """Every file, storsync's own included."""
        if self.directory is not None:
            return tree(self.directory)
        assert self.s3 is not None
        client = self.s3.boto3_client()
        found = {}
        for key in self.s3.objects(prefix=f"{self.prefix}/"):
            body = client.get_object(Bucket=self.s3.bucket, Key=key)["Body"].read()
            found[key[len(self.prefix) + 1 :]] = body
        return found

    def files(self) -> dict[str, bytes]:
        return {p: d for p, d in self.everything().items() if not p.startswith(OWN)}


@pytest.fixture(params=["directory", "s3"])
def remote_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


def _repository(
    api: Api, kind: str, request: pytest.FixtureRequest, **settings: Any
) -> tuple[str, Path, Remote]:
    if kind == "directory":
        repository = api.new_repository(**settings)
        directory = Path(repository["remote"])
        remote = Remote(repository["remote"], {}, directory=directory)
    else:
        s3: SeaweedS3 = request.getfixturevalue("s3_server")
        prefix = f"conflicts-{uuid.uuid4().hex[:12]}"
        repository = api.new_repository(**s3_remote(s3, prefix), **settings)
        remote = Remote(repository["remote"], {}, s3=s3, prefix=prefix)
    return repository["id"], Path(repository["localPath"]), remote


def _conflicted(
    api: Api, rid: str, local: Path, remote: Remote, names: list[str]
) -> dict[str, Any]:
    """Each of ``names`` edited on both sides after a first sync; the session that met them."""
    for i in range(FILLER):
        write(local, f"filler/{i}.txt", f"filler {i}")
    for name in names:
        write(local, name, f"base {name}")
    first = api.sync(rid)
    assert first["state"] == "completed", first
    for name in names:
        write(local, name, f"local {name}")
        remote.put(name, f"remote {name}".encode())
    found = api.sync(rid)
    assert found["state"] == "completed", found
    assert found["conflicts"] == len(names), found
    return found


def _conflicts(api: Api, rid: str, state: str | None = None) -> list[dict[str, Any]]:
    query = f"?repositoryId={rid}" + (f"&state={state}" if state else "")
    answer = api.get(f"/api/v1/conflicts{query}")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def _resolve(api: Api, conflict_id: str, keep: str) -> Any:
    return api.post(f"/api/v1/conflicts/{conflict_id}/resolve", json={"keep": keep})


def _events(api: Api, rid: str, type_: str) -> list[dict[str, Any]]:
    page = api.get(f"/api/v1/events?since=0&limit=1000&repositoryId={rid}").json()
    return [e for e in page["items"] if e["type"] == type_]


def test_each_decision_leaves_the_sides_equal_and_the_losers_in_a_trash(
    api: Api, remote_kind: str, request: pytest.FixtureRequest
) -> None:
    rid, local, remote = _repository(api, remote_kind, request)
    found = _conflicted(api, rid, local, remote, ["a.txt", "b.txt", "c.txt"])
    conflicts = {c["path"]: c for c in _conflicts(api, rid, "open")}
    assert sorted(conflicts) == ["a.txt", "b.txt", "c.txt"]
    a = conflicts["a.txt"]
    assert a["foundBySessionId"] == found["id"] and a["policy"] == "keep-both"
    assert (a["local"]["size"], a["remote"]["size"]) == (len("local a.txt"), len("remote a.txt"))
    assert tree(local)[a["copyPath"]] == b"remote a.txt"
    assert remote.files()[a["copyPath"]] == b"remote a.txt"

    sessions = []
    for path, keep in (("a.txt", "local"), ("b.txt", "remote"), ("c.txt", "both")):
        answer = _resolve(api, conflicts[path]["id"], keep)
        assert answer.status_code == 202, answer.text
        assert answer.json()["trigger"] == "resolve"
        sessions.append(answer.json()["id"])
    for session_id in dict.fromkeys(sessions):  # a waiting session carries several
        ended = api.wait(session_id)
        assert ended["state"] == "completed", ended

    expected = {
        "a.txt": b"local a.txt",
        "b.txt": b"remote b.txt",
        "c.txt": b"local c.txt",
        conflicts["c.txt"]["copyPath"]: b"remote c.txt",
    }
    assert {p: d for p, d in tree(local).items() if not p.startswith("filler/")} == expected
    assert tree(local) == remote.files()
    # The losers: a's copy (remote a) and b's local version, in a trash on each side
    # where that side held them; nothing lost.
    local_trash = {data for kept in trash(local).values() for data in kept}
    remote_trash = remote.trashed()
    assert {b"remote a.txt", b"local b.txt"} <= local_trash
    assert {b"remote a.txt", b"local b.txt"} <= remote_trash
    resolved = {c["path"]: c for c in _conflicts(api, rid, "resolved")}
    assert {p: (c["resolution"]["keep"], c["resolution"]["by"]) for p, c in resolved.items()} == {
        "a.txt": ("local", "person"),
        "b.txt": ("remote", "person"),
        "c.txt": ("both", "person"),
    }
    assert _conflicts(api, rid, "open") == []
    announced = {
        e["data"]["path"]: e["data"]["keep"] for e in _events(api, rid, "conflict.resolved")
    }
    assert announced == {"a.txt": "local", "b.txt": "remote", "c.txt": "both"}


def test_a_decision_on_a_changed_conflict_is_refused(
    api: Api, remote_kind: str, request: pytest.FixtureRequest
) -> None:
    rid, local, remote = _repository(api, remote_kind, request)
    _conflicted(api, rid, local, remote, ["edited.txt", "copy.txt", "remote.txt"])
    conflicts = {c["path"]: c for c in _conflicts(api, rid, "open")}

    write(local, "edited.txt", "edited again after the conflict")
    answer = _resolve(api, conflicts["edited.txt"]["id"], "remote")
    assert answer.status_code == 409, answer.text
    assert "changed locally" in answer.json()["error"]["message"]

    (local / conflicts["copy.txt"]["copyPath"]).unlink()
    assert _resolve(api, conflicts["copy.txt"]["id"], "local").status_code == 409

    # A change on the remote, once a session has seen it.
    remote.put(conflicts["remote.txt"]["copyPath"], b"the copy edited on the remote")
    assert api.sync(rid)["state"] == "completed"
    answer = _resolve(api, conflicts["remote.txt"]["id"], "local")
    assert answer.status_code == 409, answer.text
    assert "changed on a side" in answer.json()["error"]["message"]
    assert tree(local)[conflicts["remote.txt"]["copyPath"]] == b"the copy edited on the remote"
    assert {c["path"] for c in _conflicts(api, rid, "open")} >= {"edited.txt", "remote.txt"}


def test_a_resolved_conflict_and_bad_decisions_are_refused(
    api: Api, request: pytest.FixtureRequest
) -> None:
    rid, local, remote = _repository(api, "directory", request)
    _conflicted(api, rid, local, remote, ["a.txt"])
    [conflict] = _conflicts(api, rid, "open")
    assert api.get(f"/api/v1/conflicts/{conflict['id']}").json() == conflict
    for body in ({"keep": "mine"}, {"keep": True}, {}, {"keep": "both", "extra": 1}):
        answer = api.post(f"/api/v1/conflicts/{conflict['id']}/resolve", json=body)
        assert answer.status_code == 400, (body, answer.text)
    assert _resolve(api, str(uuid.uuid4()), "both").status_code == 404
    session = _resolve(api, conflict["id"], "both").json()
    again = _resolve(api, conflict["id"], "local")
    assert again.status_code == 409, again.text
    assert api.wait(session["id"])["state"] == "completed"
    assert _resolve(api, conflict["id"], "local").status_code == 409
    assert api.get("/api/v1/conflicts?state=bogus").status_code == 400


@pytest.mark.parametrize("policy", ["newer", "local", "remote"])
def test_conflicts_a_policy_settled_are_recorded_resolved(
    api: Api, policy: str, request: pytest.FixtureRequest
) -> None:
    rid, local, remote = _repository(api, "directory", request, conflictPolicy=policy)
    found = _conflicted(api, rid, local, remote, ["a.txt"])
    [conflict] = _conflicts(api, rid)
    kept = "local" if policy == "local" else "remote"  # the remote was written last
    assert conflict["state"] == "resolved" and conflict["copyPath"] is None
    assert conflict["resolution"]["keep"] == kept
    assert conflict["resolution"]["by"] == "policy"
    assert conflict["resolution"]["sessionId"] == found["id"]
    assert tree(local)["a.txt"] == f"{kept} a.txt".encode()
    [event] = _events(api, rid, "conflict.resolved")
    assert event["sessionId"] == found["id"]
    assert {k: v for k, v in event["data"].items() if k != "session"} == {
        "conflictId": conflict["id"],
        "path": "a.txt",
        "keep": kept,
        "by": "policy",
    }


def test_resolved_conflicts_go_with_the_history_and_open_ones_stay(tmp_path: Path) -> None:
    clock = SetClock()
    settings = {"STORSYNC_RETENTION_DAYS": "1", "STORSYNC_TOKEN_TTL_S": str(10**9)}
    with in_process(tmp_path, None, clock, **settings) as (service, api):
        by_policy = api.new_repository(conflictPolicy="local")
        kept_both = api.new_repository()
        for repository in (by_policy, kept_both):
            directory = Path(repository["remote"])
            remote = Remote(repository["remote"], {}, directory=directory)
            _conflicted(api, repository["id"], Path(repository["localPath"]), remote, ["a.txt"])
        clock.advance(2)
        service.sessions.prune()
        assert _conflicts(api, by_policy["id"]) == []
        assert [c["state"] for c in _conflicts(api, kept_both["id"])] == ["open"]
