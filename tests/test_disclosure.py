"""AI disclosure per platform, provenance read back from PNG/JPEG/WebP, and `contentforge verify`."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from contentforge.config import Settings
from contentforge.domain.models import GenerationRecord, LoraRef
from contentforge.errors import InvalidInput
from contentforge.images.provenance import (
    DIGITAL_SOURCE_TYPE,
    build_xmp,
    png_with_provenance,
    read_image_provenance,
)
from contentforge.moderation.disclosure import Disclosure, disclosure_for
from contentforge_cli.main import app

RECORD = GenerationRecord(
    backend="diffusers",
    model="stabilityai/sdxl-base-1.0",
    prompt="a runner at dawn",
    seed=123456789,
    steps=30,
    guidance_scale=6.5,
    width=1024,
    height=1024,
    scheduler="euler",
    loras=(LoraRef(source="mia.safetensors", scale=0.8),),
)


def test_default_disclosure_sends_flags_and_label() -> None:
    settings = Settings(_env_file=None)
    assert disclosure_for("instagram", settings) == Disclosure({"is_ai_generated": True}, "#AIgenerated")
    assert disclosure_for("tiktok", settings).flags == {"post_info.is_aigc": True}
    assert disclosure_for("youtube", settings).flags == {"status.containsSyntheticMedia": True}
    assert disclosure_for("x", settings) == Disclosure({}, "#AIgenerated")


def test_modes_per_platform_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTENTFORGE_AI_DISCLOSURE", '{"instagram": "flag", "tiktok": "off", "x": "flag"}')
    monkeypatch.setenv("CONTENTFORGE_AI_DISCLOSURE_LABEL", "#madewithAI")
    settings = Settings(_env_file=None)
    assert disclosure_for("instagram", settings) == Disclosure({"is_ai_generated": True}, "")
    assert disclosure_for("tiktok", settings) == Disclosure()
    # X has no API field, so "flag" falls back to the caption label rather than disclosing nothing.
    assert disclosure_for("x", settings) == Disclosure({}, "#madewithAI")
    assert disclosure_for("linkedin", settings).caption_suffix == "#madewithAI"


def test_caption_label_is_appended_once() -> None:
    disclosure = Disclosure({}, "#AIgenerated")
    once = disclosure.apply_caption("Leg day done ")
    assert once == "Leg day done #AIgenerated"
    assert disclosure.apply_caption(once) == once
    assert Disclosure().apply_caption("plain") == "plain"


def test_bad_disclosure_config_fails_clearly() -> None:
    with pytest.raises(InvalidInput, match="must be one of"):
        disclosure_for("x", Settings(_env_file=None, ai_disclosure={"x": "sometimes"}))
    with pytest.raises(InvalidInput, match="unknown platforms"):
        disclosure_for("x", Settings(_env_file=None, ai_disclosure={"myspace": "label"}))
    with pytest.raises(InvalidInput, match="no AI disclosure rules"):
        disclosure_for("myspace", Settings(_env_file=None))


def _jpeg_with_xmp(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, xmp=build_xmp(RECORD).encode())
    return buffer.getvalue()


def _webp_with_xmp(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=80, xmp=build_xmp(RECORD).encode())
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("encode", "fmt"),
    [
        (lambda im: png_with_provenance(im, RECORD), "PNG"),
        (_jpeg_with_xmp, "JPEG"),
        (_webp_with_xmp, "WEBP"),
    ],
)
def test_provenance_reads_back_from_every_format(encode, fmt: str) -> None:  # type: ignore[no-untyped-def]
    data = encode(Image.new("RGB", (48, 32), (10, 200, 30)))
    provenance = read_image_provenance(data)
    assert provenance.format == fmt
    assert provenance.digital_source_type == DIGITAL_SOURCE_TYPE
    assert provenance.record == RECORD


def test_unlabelled_and_unsupported_files() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG")
    bare = read_image_provenance(buffer.getvalue())
    assert bare.digital_source_type is None and bare.record is None
    gif = io.BytesIO()
    Image.new("P", (8, 8)).save(gif, format="GIF")
    with pytest.raises(InvalidInput, match="PNG, JPEG and WebP"):
        read_image_provenance(gif.getvalue())
    with pytest.raises(InvalidInput, match="not a readable image"):
        read_image_provenance(b"not an image")


def test_verify_command_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    labelled = tmp_path / "ok.jpg"
    labelled.write_bytes(_jpeg_with_xmp(Image.new("RGB", (16, 16), (1, 2, 3))))
    result = runner.invoke(app, ["verify", str(labelled)])
    assert result.exit_code == 0, result.output
    for expected in (
        "trainedAlgorithmicMedia",
        "stabilityai/sdxl-base-1.0",
        "mia.safetensors@0.8",
        "123456789",
    ):
        assert expected in result.output
    assert "steps=30" in result.output and "guidance=6.5" in result.output

    png = tmp_path / "ok.png"
    png.write_bytes(png_with_provenance(Image.new("RGB", (16, 16)), RECORD))
    assert runner.invoke(app, ["verify", str(png)]).exit_code == 0

    bare = tmp_path / "bare.png"
    Image.new("RGB", (16, 16)).save(bare)
    unlabelled = runner.invoke(app, ["verify", str(bare)])
    assert unlabelled.exit_code == 1 and "absent" in unlabelled.output

    assert runner.invoke(app, ["verify", str(tmp_path / "missing.png")]).exit_code == 2
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert runner.invoke(app, ["verify", str(text)]).exit_code == 2


def _test_ca_and_signer(tmp_path: Path) -> tuple[Path, Path]:
    """A self-made CA and an ES256 signing certificate (what c2pa-rs expects of a signer)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CF")]
        )

    def builder(subject: str, public_key) -> x509.CertificateBuilder:  # type: ignore[no-untyped-def]
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name("ContentForge test CA"))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
        )

    ca = (
        builder("ContentForge test CA", ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        builder("ContentForge test signer", key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "chain.pem", tmp_path / "signer.key"
    cert_path.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_c2pa_signing_offline_with_a_self_made_certificate(tmp_path: Path) -> None:
    import json

    c2pa = pytest.importorskip("c2pa")
    from contentforge.images.provenance import sign_c2pa

    cert_path, key_path = _test_ca_and_signer(tmp_path)
    png = png_with_provenance(Image.new("RGB", (32, 32), (5, 6, 7)), RECORD)
    signed = sign_c2pa(png, "image/png", cert_path, key_path)
    with c2pa.Reader("image/png", io.BytesIO(signed)) as reader:
        store = json.loads(reader.json())
    assert store["validation_state"] == "Valid"
    manifest = store["manifests"][store["active_manifest"]]
    actions = next(a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions"))
    assert actions["data"]["actions"][0]["digitalSourceType"] == DIGITAL_SOURCE_TYPE
    # The XMP label and generation record survive signing, and verify reports the manifest.
    provenance = read_image_provenance(signed)
    assert provenance.record == RECORD and provenance.c2pa_manifest == store["active_manifest"]
    with pytest.raises(InvalidInput, match="unreadable"):
        sign_c2pa(png, "image/png", tmp_path / "missing.pem", key_path)


def test_stored_pieces_are_c2pa_signed_when_credentials_are_configured(tmp_path: Path) -> None:
    import uuid
    from datetime import UTC, datetime

    pytest.importorskip("c2pa")
    from contentforge.batch import TimedImage, piece_id_for, store_piece
    from contentforge.db import PlannedPiece, Repository, make_engine, migrate
    from contentforge.images.protocol import GeneratedImage
    from contentforge.personas import sample_persona
    from contentforge.storage import LocalStorage

    url = f"sqlite:///{tmp_path / 'cf.db'}"
    migrate(url)
    repo = Repository(make_engine(url))
    persona = sample_persona()
    repo.upsert_persona(persona)
    batch_id = uuid.uuid4().hex
    repo.create_batch(
        batch_id=batch_id, persona_id=persona.id, platform="instagram", num_pieces=1,
        tier_mix={"safe": 1.0}, seed=1, params={}, flow_run_id=None,
    )  # fmt: skip
    piece_id = piece_id_for(batch_id, 0)
    repo.add_planned_pieces(batch_id, [PlannedPiece(piece_id, 0, "FIT-001", "safe", "p", "n", 7)])
    piece = repo.get_piece(piece_id)
    assert piece is not None
    now = datetime.now(UTC)
    timed = TimedImage(GeneratedImage(Image.new("RGB", (32, 32), "teal"), RECORD, 0.1, 0.0), now, now, 0.1)
    storage = LocalStorage(tmp_path / "data")

    outcome = store_piece(
        piece, persona, timed, storage, repo, now, c2pa_credentials=_test_ca_and_signer(tmp_path)
    )
    provenance = read_image_provenance(storage.get(outcome.storage_key))
    assert provenance.c2pa_manifest is not None and provenance.record is not None
    # The record regenerates the image; besides it, the file names the generation its charge is keyed by.
    assert provenance.record.model_copy(update={"extra": {}}) == RECORD
    assert provenance.record.extra == {"generation_id": timed.generation_id}
