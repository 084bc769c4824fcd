"""The single-file loader path for real: an original-layout SD1.5 checkpoint through ``from_single_file``.

The tiny random-weight SD1.5 pipeline is written as one ``.safetensors`` file in the original Stable
Diffusion (LDM) layout, then loaded with ``load_pipeline`` and a local config folder, so diffusers'
own conversion back to diffusers names runs, offline. Every weight must come back bit for bit and both
pipelines must draw the same image: a dropped, misnamed or transposed tensor fails one or the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from support.original_layout import sd15_pipeline_to_original

from contentforge.images.loading import detect_family, load_pipeline
from contentforge.images.tiny import build_tiny_sd15_pipeline

pytestmark = pytest.mark.slow
SEED = 0


@pytest.fixture(scope="module")
def original() -> Any:
    return build_tiny_sd15_pipeline(SEED)


@pytest.fixture(scope="module")
def config_folder(original: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The diffusers folder whose component configs (and tokenizer, scheduler) the single file uses."""
    folder = tmp_path_factory.mktemp("config") / "sd15"
    original.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def checkpoint(original: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("single") / "tiny-sd15.safetensors"
    save_file(sd15_pipeline_to_original(original), str(path))
    return path


@pytest.fixture(scope="module")
def loaded(checkpoint: Path, config_folder: Path) -> Any:
    pipe = load_pipeline(
        str(checkpoint), "sd15", torch.float32, allow_pickle=False, single_file_config=str(config_folder)
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_checkpoint_is_in_the_original_layout(checkpoint: Path, config_folder: Path) -> None:
    with safe_open(str(checkpoint), framework="pt") as handle:
        keys = set(handle.keys())
    assert {key.split(".")[0] for key in keys} == {"model", "first_stage_model", "cond_stage_model"}
    assert not any("down_blocks" in key or "resnets" in key for key in keys)
    # Names real SD1.5 checkpoints carry, at the tiny model's block positions.
    for key in (
        "model.diffusion_model.input_blocks.3.1.proj_in.weight",
        "model.diffusion_model.input_blocks.2.0.op.weight",
        "model.diffusion_model.output_blocks.1.2.conv.weight",
        "model.diffusion_model.middle_block.2.out_layers.3.weight",
        "first_stage_model.encoder.down.0.block.0.conv1.weight",
        "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight",
        "first_stage_model.decoder.up.3.upsample.conv.weight",
        "first_stage_model.decoder.mid.attn_1.q.weight",
        "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
    ):
        assert key in keys, key
    # Without the config folder the file alone still reads as SD1.5 by its tensor names.
    assert detect_family(str(checkpoint), "auto")[0] == "sd15"


@pytest.mark.parametrize("component", ["unet", "vae", "text_encoder"])
def test_every_weight_survives_the_round_trip(original: Any, loaded: Any, component: str) -> None:
    expected = getattr(original, component).state_dict()
    actual = getattr(loaded, component).state_dict()
    assert set(actual) == set(expected)
    differing = [name for name, tensor in expected.items() if not torch.equal(actual[name], tensor)]
    assert differing == []


def test_same_seed_gives_the_same_image(original: Any, loaded: Any) -> None:
    def draw(pipe: Any) -> np.ndarray:
        result = pipe(
            "a portrait photo of a woman in a cafe",
            num_inference_steps=3,
            guidance_scale=5.0,
            width=64,
            height=64,
            generator=torch.Generator("cpu").manual_seed(7),
            output_type="np",
        )
        return np.asarray(result.images[0])

    assert type(loaded) is type(original)
    assert type(loaded.scheduler) is type(original.scheduler)
    first, second = draw(original), draw(loaded)
    assert first.std() > 0.01  # a real picture of noise, not a blank that would trivially match
    np.testing.assert_allclose(second, first, rtol=0, atol=1e-6)
