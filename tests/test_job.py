"""The unit of work: a ``SyncJob`` survives JSON unchanged, holds no secret in the clear,
and a damaged one is refused with one sentence; the service builds its jobs from a
repository's settings and sealed credentials."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storsync.config import load_settings
from storsync.errors import UsageError
from storsync.model import ConflictPolicy, Mode, SyncSettings, Trigger
from storsync.runner.job import SyncJob
from storsync.service.core import Service
from storsync.service.repositories import RepositorySpec
from storsync.service.vault import Vault
from storsync.state.records import RepositorySettings
from storsync.storage.registry import RemoteSpec
from tests.api_support import service_env

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
numbers = st.floats(min_value=0, max_value=1e6, allow_nan=False) | st.integers(0, 10**6)

sync_settings = st.builds(
    SyncSettings,
    mode=st.sampled_from(Mode),
    policy=st.sampled_from(ConflictPolicy),
    checksum=st.booleans(),
    dry_run=st.booleans(),
    excludes=st.lists(text, max_size=5).map(tuple),
    max_delete_percent=numbers,
    force=st.booleans(),
    transfers=st.integers(1, 256),
    trash_days=numbers,
)
remotes = st.builds(
    RemoteSpec,
    url=text,
    options=st.dictionaries(text, text, max_size=4),
    sealed_credentials=st.none() | text,
    private_endpoint_allowed=st.booleans(),
)
jobs = st.builds(
    SyncJob,
    local_root=text.map(lambda t: Path("/") / t.replace("\x00", "")),
    remote=remotes,
    settings=sync_settings,
    state_url=text,
    repository_id=st.none() | text,
    session_id=st.none() | text,
)


@settings(max_examples=500, deadline=None)
@given(jobs)
def test_a_job_round_trips_through_json(job: SyncJob) -> None:
    again = SyncJob.from_json(job.to_json())
    assert again == job
    assert again.to_json() == job.to_json()


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: "not json",
        lambda raw: "[]",
        lambda raw: json.dumps({**raw, "format": 99}),
        lambda raw: json.dumps({k: v for k, v in raw.items() if k != "remote"}),
        lambda raw: json.dumps({**raw, "settings": {**raw["settings"], "transfers": "8"}}),
        lambda raw: json.dumps({**raw, "settings": {**raw["settings"], "checksum": 1}}),
        lambda raw: json.dumps({**raw, "settings": {**raw["settings"], "mode": "sideways"}}),
        lambda raw: json.dumps({**raw, "settings": {**raw["settings"], "trash_days": True}}),
        lambda raw: json.dumps({**raw, "remote": {**raw["remote"], "options": {"a": 1}}}),
        lambda raw: json.dumps({**raw, "local_root": None}),
    ],
)
def test_a_damaged_job_is_refused_in_one_sentence(damage: object) -> None:
    job = SyncJob(Path("/l"), RemoteSpec("file:///r"), SyncSettings(), "sqlite:////s.db")
    raw = json.loads(job.to_json())
    with pytest.raises(UsageError) as refused:
        SyncJob.from_json(damage(raw))  # type: ignore[operator]
    assert refused.value.message.startswith("not a sync job: ")
    assert "\n" not in refused.value.message


def test_the_service_job_carries_settings_and_only_sealed_credentials(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    env = service_env(tmp_path / "data", root, None)
    secret, key_id = "s3-secret-" + uuid.uuid4().hex, "AKIA" + uuid.uuid4().hex[:12]
    service = Service.open(load_settings({}, env))
    try:
        spec = RepositorySpec(
            name="s3",
            local_path=str(root / "s3"),
            remote="s3://bucket/prefix",
            settings=RepositorySettings(
                policy=ConflictPolicy.LOCAL, checksum=True, trash_days=0, transfers=3
            ),
            remote_fields={
                "access_key_id": key_id,
                "secret_access_key": secret,
                "endpoint": "http://127.0.0.1:9",
                "region": "eu-west-3",
            },
        )
        repository = service.repositories.create(spec).repository
        session = service.catalog.sessions.create(repository.id, trigger=Trigger.API, now_ns=1)
        job = service.sessions._job(repository, session)
        text = job.to_json()
        assert secret not in text and key_id not in text
        assert job.settings == SyncSettings(
            policy=ConflictPolicy.LOCAL, checksum=True, trash_days=0.0, transfers=3
        )
        assert job.remote.options == {"endpoint": "http://127.0.0.1:9", "region": "eu-west-3"}
        assert job.remote.private_endpoint_allowed  # the test service allows them
        assert job.repository_id == repository.id and job.session_id == session.id
        # The worker unseals them with the key it is handed, apart from the job.
        sealed = SyncJob.from_json(text).remote.sealed_credentials
        assert sealed is not None
        vault = Vault(service.vault.export_key().encode())
        assert vault.unseal(sealed) == {"access_key_id": key_id, "secret_access_key": secret}
    finally:
        service.close()
