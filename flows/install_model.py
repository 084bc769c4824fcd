"""Install a model or LoRA from CivitAI or the Hugging Face Hub into the model registry.

The API's ``POST /api/v1/models/install`` starts this flow on the ``install-model`` deployment, so a
download never runs inside a request. The request is checked first (one-line refusal), then the task
downloads with a size cap and resume, verifies SHA-256, probes the family and records the model.

    python flows/install_model.py civitai 128713 [NAME]
    python flows/install_model.py huggingface owner/repo [NAME]
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from contentforge.models.service import InstallRequest
from tasks.models import install_model_files


@flow(name="install-model")
def install_model(hub: str, ref: str, name: str | None = None, kind: str | None = None) -> dict[str, Any]:
    """Install ``ref`` from ``hub`` (``civitai``: a model version id; ``huggingface``: a repo id)."""
    InstallRequest.checked(hub, ref, name, kind)  # bad input fails here, before any task or download
    installed = install_model_files(hub, ref, name, kind)
    get_run_logger().info("installed %s (%s, %s)", installed["name"], installed["kind"], installed["family"])
    create_markdown_artifact(
        key="installed-model",
        markdown=(
            f"# Installed `{installed['name']}`\n\n"
            f"{installed['kind']} from {installed['source']}, family **{installed['family']}** "
            f"({installed['family_reason']}), {installed['size_bytes'] / 2**20:.1f} MB, "
            f"sha256 `{installed['sha256']}`"
        ),
    )
    return installed


if __name__ == "__main__":
    install_model(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
