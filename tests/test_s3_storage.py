"""S3 storage against moto's S3 server over real HTTP on 127.0.0.1 (the same wire protocol as AWS/R2)."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from PIL import Image
from pydantic import SecretStr

from contentforge.batch import piece_id_for, store_piece
from contentforge.config import Settings
from contentforge.db import PlannedPiece, Repository, make_engine, migrate
from contentforge.domain import GenerationRecord, Persona, Platform
from contentforge.errors import InvalidInput
from contentforge.images.protocol import GeneratedImage
from contentforge.images.provenance import DIGITAL_SOURCE_TYPE, png_with_provenance, read_provenance
from contentforge.storage import S3Storage, StorageError, build_storage, content_key

SECRET = "sk-test-" + "Z9" * 16
KEY_ID = "AKIATESTKEYID0000001"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real AWS profile or credentials may leak into these tests."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


@pytest.fixture
def bucket(endpoint: str) -> str:
    name = f"cf-{uuid.uuid4().hex[:12]}"
    admin = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="admin",
        aws_secret_access_key="admin",
    )
    admin.create_bucket(Bucket=name)
    return name


def make_storage(endpoint: str, bucket: str, **overrides: object) -> S3Storage:
    options: dict = {
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "addressing_style": "path",
        "access_key_id": SecretStr(KEY_ID),
        "secret_access_key": SecretStr(SECRET),
    } | overrides
    return S3Storage(bucket, **options)


def count_requests(storage: S3Storage, operation: str) -> list[str]:
    """Record every request of ``operation`` the client really sends over the wire."""
    sent: list[str] = []

    def on_send(request: object, **_: object) -> None:
        sent.append(getattr(request, "url", ""))

    storage.client.meta.events.register(f"before-send.s3.{operation}", on_send)
    return sent


def test_put_get_roundtrip_keeps_metadata_and_content_type(endpoint: str, bucket: str) -> None:
    storage = make_storage(endpoint, bucket, prefix="prod")
    stored = storage.put(
        "content/mia/b1-000.png",
        b"\x89PNG-bytes",
        "image/png",
        metadata={"persona": "mia", "batch_index": "3"},
    )
    assert stored.written and stored.size == 10 and stored.key == "content/mia/b1-000.png"
    assert storage.get("content/mia/b1-000.png") == b"\x89PNG-bytes"
    assert storage.exists("content/mia/b1-000.png") and not storage.exists("content/mia/nope.png")

    raw = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    head = raw.head_object(Bucket=bucket, Key="prod/content/mia/b1-000.png")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"] == {"persona": "mia", "batch-index": "3", "sha256": stored.sha256}
    with pytest.raises(FileNotFoundError):
        storage.get("content/mia/nope.png")


def test_second_put_of_the_same_bytes_sends_no_upload(endpoint: str, bucket: str) -> None:
    storage = make_storage(endpoint, bucket)
    puts = count_requests(storage, "PutObject")
    first = storage.put("content/p/one.png", b"image-bytes", "image/png")
    modified = storage.head("content/p/one.png")["LastModified"]  # type: ignore[index]
    again = storage.put("content/p/one.png", b"image-bytes", "image/png")
    assert (first.written, again.written, len(puts)) == (True, False, 1)
    assert storage.head("content/p/one.png")["LastModified"] == modified  # type: ignore[index]

    changed = storage.put("content/p/one.png", b"other-bytes", "image/png")
    assert changed.written and len(puts) == 2 and changed.sha256 != first.sha256
    assert storage.get("content/p/one.png") == b"other-bytes"


def test_an_object_without_our_sha256_is_overwritten(endpoint: str, bucket: str) -> None:
    storage = make_storage(endpoint, bucket)
    storage.client.put_object(Bucket=bucket, Key="content/p/foreign.png", Body=b"same")
    assert storage.put("content/p/foreign.png", b"same", "image/png").written
    assert (
        storage.metadata("content/p/foreign.png")["sha256"]
        == storage.put("content/p/foreign.png", b"same", "image/png").sha256
    )


def test_presigned_url_serves_the_bytes_and_cdn_urls_use_the_base(endpoint: str, bucket: str) -> None:
    storage = make_storage(endpoint, bucket, prefix="prod/", presign_expiry_s=120)
    stored = storage.put("content/p/x.png", b"presigned-bytes", "image/png")
    assert "X-Amz-Signature=" in stored.url and "X-Amz-Expires=120" in stored.url
    assert SECRET not in stored.url
    response = httpx.get(stored.url)
    assert response.status_code == 200
    assert response.content == b"presigned-bytes"
    assert response.headers["content-type"] == "image/png"
    # (moto does not verify signatures, so a tampered URL cannot be tested here; AWS/R2 return 403.)

    cdn = make_storage(endpoint, bucket, prefix="prod", public_base_url="https://cdn.example.com/")
    assert cdn.url_for("content/p/x.png") == "https://cdn.example.com/prod/content/p/x.png"
    assert cdn.put("content/p/x.png", b"presigned-bytes", "image/png").url == cdn.url_for("content/p/x.png")


def test_put_many_uploads_concurrently_in_order(endpoint: str, bucket: str) -> None:
    storage = make_storage(endpoint, bucket)
    threads: set[str] = set()
    lock = threading.Lock()

    def on_send(**_: object) -> None:
        with lock:
            threads.add(threading.current_thread().name)

    storage.client.meta.events.register("before-send.s3.PutObject", on_send)
    items = [
        (f"content/p/piece-{i:03d}.png", f"bytes {i}".encode(), "image/png", {"piece": str(i)})
        for i in range(20)
    ]
    results = storage.put_many(items, max_workers=6)
    assert [r.key for r in results] == [item[0] for item in items]
    assert all(r.written for r in results)
    assert 1 < len(threads) <= 6, threads
    assert storage.get("content/p/piece-013.png") == b"bytes 13"
    assert storage.metadata("content/p/piece-013.png")["piece"] == "13"
    # A rerun of the whole batch uploads nothing.
    assert not any(r.written for r in storage.put_many(items))


def test_put_many_validates_everything_before_the_first_upload(endpoint: str, bucket: str) -> None:
    storage = make_storage(endpoint, bucket)
    puts = count_requests(storage, "PutObject")
    with pytest.raises(InvalidInput, match="unsafe segment"):
        storage.put_many(
            [("content/p/ok.png", b"x", "image/png"), ("content/../evil.png", b"x", "image/png")]
        )
    with pytest.raises(InvalidInput, match="twice"):
        storage.put_many([("content/p/a.png", b"x", "image/png"), ("content/p/a.png", b"y", "image/png")])
    with pytest.raises(InvalidInput, match="metadata value"):
        storage.put_many([("content/p/a.png", b"x", "image/png", {"persona": "naïve"})])
    assert puts == []


def test_copy_and_download(endpoint: str, bucket: str, tmp_path: Path) -> None:
    storage = make_storage(endpoint, bucket, prefix="p1")
    original = storage.put("content/p/a.png", b"copy me", "image/png", metadata={"persona": "p"})
    copied = storage.copy("content/p/a.png", "archive/p/a.png")
    assert copied.written and copied.sha256 == original.sha256 and copied.size == 7
    assert storage.get("archive/p/a.png") == b"copy me"
    assert storage.metadata("archive/p/a.png") == {"persona": "p", "sha256": original.sha256}
    assert storage.head("archive/p/a.png")["ContentType"] == "image/png"  # type: ignore[index]
    assert not storage.copy("content/p/a.png", "archive/p/a.png").written
    with pytest.raises(FileNotFoundError):
        storage.copy("content/p/missing.png", "archive/p/missing.png")

    target = storage.download("archive/p/a.png", tmp_path / "deep" / "a.png")
    assert target.read_bytes() == b"copy me"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.png"]


def test_download_refuses_bytes_that_do_not_match_the_recorded_sha256(
    endpoint: str, bucket: str, tmp_path: Path
) -> None:
    storage = make_storage(endpoint, bucket)
    storage.client.put_object(
        Bucket=bucket, Key="content/p/bad.png", Body=b"tampered", Metadata={"sha256": "0" * 64}
    )
    with pytest.raises(StorageError, match="sha256"):
        storage.download("content/p/bad.png", tmp_path / "bad.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "key",
    [
        "../outside.png",
        "/etc/passwd",
        "content/../../x.png",
        "content//x.png",
        "content/./x",
        "a\\b.png",
        "content/x y.png",
        "content/.hidden",
        "",
    ],
)
def test_unsafe_keys_are_refused_before_any_request(endpoint: str, bucket: str, key: str) -> None:
    storage = make_storage(endpoint, bucket)
    heads, puts = count_requests(storage, "HeadObject"), count_requests(storage, "PutObject")
    with pytest.raises(InvalidInput):
        storage.put(key, b"x", "image/png")
    with pytest.raises(InvalidInput):
        storage.url_for(key)
    assert heads == [] and puts == []


def test_build_storage_picks_s3_and_refuses_a_missing_bucket_before_any_network(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, bucket: str, tmp_path: Path
) -> None:
    def no_session(*_: object, **__: object) -> None:
        raise AssertionError("a boto3 session was created before the settings were validated")

    base = {"data_dir": tmp_path, "storage_backend": "s3", "s3_endpoint_url": endpoint}
    with monkeypatch.context() as patch:
        patch.setattr(boto3.session, "Session", no_session)
        with pytest.raises(InvalidInput, match="CONTENTFORGE_S3_BUCKET"):
            build_storage(Settings(_env_file=None, **base))  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="CONTENTFORGE_S3_SECRET_ACCESS_KEY"):
            build_storage(
                Settings(_env_file=None, s3_bucket=bucket, s3_access_key_id=SecretStr(KEY_ID), **base)  # type: ignore[arg-type]
            )
        with pytest.raises(InvalidInput, match="ENDPOINT_URL"):
            build_storage(
                Settings(_env_file=None, **(base | {"s3_bucket": bucket, "s3_endpoint_url": "ftp://x"}))
            )  # type: ignore[arg-type]

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        s3_bucket=bucket,
        s3_region="us-east-1",
        s3_addressing_style="path",
        s3_prefix="env",
        **base,
    )
    # Credentials from boto3's default chain (AWS_* variables) when the settings carry none.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env-secret")
    storage = build_storage(settings)
    assert isinstance(storage, S3Storage) and storage.prefix == "env/"
    assert build_storage(settings).client is storage.client, "one boto3 client per configuration"
    assert storage.put("content/p/x.png", b"x", "image/png").written
    assert build_storage(Settings(_env_file=None, data_dir=tmp_path)).name == "local"  # type: ignore[call-arg]


def test_secrets_never_appear_in_reprs_or_errors(endpoint: str, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        storage_backend="s3",
        s3_bucket="no-such-bucket-here",
        s3_endpoint_url=endpoint,
        s3_region="us-east-1",
        s3_addressing_style="path",
        s3_access_key_id=SecretStr(KEY_ID),
        s3_secret_access_key=SecretStr(SECRET),
    )
    storage = build_storage(settings)
    assert SECRET not in repr(storage) and KEY_ID not in repr(storage)
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    with pytest.raises(StorageError) as caught:
        storage.put("content/p/x.png", b"x", "image/png")
    message = str(caught.value)
    assert "NoSuchBucket" in message and "no-such-bucket-here" in message
    assert SECRET not in message and KEY_ID not in message
    assert caught.value.__suppress_context__, "the botocore error (and its request) stays out of tracebacks"


def test_half_credentials_error_does_not_echo_the_secret() -> None:
    with pytest.raises(InvalidInput) as caught:
        S3Storage("bucket-a", secret_access_key=SecretStr(SECRET))
    assert "CONTENTFORGE_S3_ACCESS_KEY_ID" in str(caught.value) and SECRET not in str(caught.value)


def test_batch_store_step_uploads_to_s3_with_metadata_and_provenance(
    endpoint: str, bucket: str, tmp_path: Path
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        storage_backend="s3",
        s3_bucket=bucket,
        s3_endpoint_url=endpoint,
        s3_region="us-east-1",
        s3_addressing_style="path",
        s3_access_key_id=SecretStr(KEY_ID),
        s3_secret_access_key=SecretStr(SECRET),
        public_base_url="https://cdn.example.com",
    )
    migrate(settings.resolved_database_url)
    repo = Repository(make_engine(settings.resolved_database_url))
    persona = Persona(
        id="mia",
        name="Mia",
        niche="Fitness",
        appearance="athletic woman",
        personality_traits=["upbeat"],
        interests=["running"],
        tone="warm",
        platforms=[Platform.instagram],
    )
    repo.upsert_persona(persona)
    batch_id = uuid.uuid4().hex
    repo.create_batch(
        batch_id=batch_id,
        persona_id="mia",
        platform="instagram",
        num_pieces=1,
        tier_mix={"safe": 1.0},
        seed=1,
        params={},
        flow_run_id=None,
    )
    piece_id = piece_id_for(batch_id, 4)
    repo.add_planned_pieces(
        batch_id,
        [PlannedPiece(piece_id, 4, "FIT-001", "suggestive", "a runner at dawn", "blurry", 7)],
    )
    piece = repo.get_piece(piece_id)
    assert piece is not None
    record = GenerationRecord(
        backend="tiny",
        model="tiny-sdxl",
        prompt="a runner at dawn",
        seed=7,
        steps=4,
        guidance_scale=5.0,
        width=64,
        height=64,
    )
    from contentforge.batch import TimedImage

    now = datetime.now(UTC)
    timed = TimedImage(GeneratedImage(Image.new("RGB", (64, 64), "teal"), record, 0.1, 0.0), now, now, 0.1)
    storage = build_storage(settings)
    assert isinstance(storage, S3Storage)
    puts = count_requests(storage, "PutObject")

    outcome = store_piece(piece, persona, timed, storage, repo, now)
    assert outcome.written and outcome.storage_key == content_key("mia", piece_id, "png")
    assert outcome.url == f"https://cdn.example.com/content/mia/{piece_id}.png"
    meta = storage.metadata(outcome.storage_key)
    row = repo.get_piece(piece_id)
    assert row is not None and row.storage_key == outcome.storage_key
    assert meta == {
        "persona": "mia",
        "piece": piece_id,
        "batch": batch_id,
        "batch-index": "4",
        "template": "FIT-001",
        "template-tier": "suggestive",
        "digital-source-type": "trainedAlgorithmicMedia",
        "sha256": row.content_sha256,
    }
    provenance = read_provenance(storage.get(outcome.storage_key))
    assert provenance.digital_source_type == DIGITAL_SOURCE_TYPE and provenance.record is not None
    # The record regenerates the image; besides it, the file names the generation its charge is keyed by.
    assert provenance.record.model_copy(update={"extra": {}}) == record
    assert provenance.record.extra == {"generation_id": timed.generation_id}
    with Image.open(io.BytesIO(storage.get(outcome.storage_key))) as image:
        assert image.size == (64, 64)

    # A rerun of the store step (crash after upload) uploads nothing.
    again = store_piece(piece, persona, timed, storage, repo, now)
    assert not again.written and len(puts) == 1


def test_platform_renditions_are_stored_next_to_the_original_in_s3(endpoint: str, bucket: str) -> None:
    from contentforge.storage.renditions import store_renditions

    record = GenerationRecord(
        backend="tiny",
        model="tiny-sdxl",
        prompt="p",
        seed=1,
        steps=4,
        guidance_scale=5.0,
        width=64,
        height=192,
    )
    png = png_with_provenance(Image.new("RGB", (64, 192), "teal"), record)
    storage = make_storage(endpoint, bucket)
    stored = store_renditions(storage, "mia", "b1-000", png, ["instagram", "x"], metadata={"persona": "mia"})
    assert stored["instagram"].key == "content/mia/b1-000.instagram.jpg"
    head = storage.head("content/mia/b1-000.instagram.jpg")
    assert head is not None and head["ContentType"] == "image/jpeg"
    assert head["Metadata"]["platform"] == "instagram" and head["Metadata"]["rendition-of"] == "b1-000"
    data = storage.get("content/mia/b1-000.instagram.jpg")
    assert read_provenance(data).record == record
    with Image.open(io.BytesIO(data)) as image:
        assert image.width / image.height == pytest.approx(0.8, abs=0.01)
    puts = count_requests(storage, "PutObject")
    assert not any(
        o.written for o in store_renditions(storage, "mia", "b1-000", png, ["instagram", "x"]).values()
    )
    assert puts == []
