"""Image moderation with NudeNet's local ONNX detector (no network, no API key).

NudeNet 3.4 detects body parts, not "nudity": each detection is a label such as
``FEMALE_BREAST_EXPOSED`` with a confidence. ``LABEL_WEIGHTS`` says how much each label counts
towards the ``sexual`` category; the backend's sexual score is ``max(weight * confidence)`` over all
detections, so one clear exposed detection dominates while many faint covered ones do not add up.

The detector (an onnxruntime session, costly to build: docs/benchmarks.md) is created once per
process on first use, behind a lock, and shared by every backend instance; ``InferenceSession.run``
is thread-safe, so concurrent generation slots can share it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from contentforge.moderation.protocol import CategoryScores, ModerationInput

if TYPE_CHECKING:
    from PIL import Image

LABEL_WEIGHTS: Mapping[str, float] = {
    # Explicit exposure: a confident detection alone reaches the sexual reject threshold (0.90).
    "FEMALE_GENITALIA_EXPOSED": 1.0,
    "MALE_GENITALIA_EXPOSED": 1.0,
    "ANUS_EXPOSED": 1.0,
    "FEMALE_BREAST_EXPOSED": 0.95,
    "BUTTOCKS_EXPOSED": 0.9,
    # Covered intimate areas (swimwear, lingerie, tight sportswear): at most suggestive (0.40-0.70),
    # so such pieces stay off LinkedIn but remain publishable elsewhere.
    "FEMALE_GENITALIA_COVERED": 0.6,
    "ANUS_COVERED": 0.6,
    "FEMALE_BREAST_COVERED": 0.5,
    "BUTTOCKS_COVERED": 0.5,
    # Ordinary skin: stays below the suggestive tier (0.40) even at full confidence.
    "MALE_BREAST_EXPOSED": 0.3,
    "BELLY_EXPOSED": 0.3,
    # Not sexual on their own: faces, feet, armpits, a covered belly.
    "FACE_FEMALE": 0.0,
    "FACE_MALE": 0.0,
    "FEET_EXPOSED": 0.0,
    "FEET_COVERED": 0.0,
    "ARMPITS_EXPOSED": 0.0,
    "ARMPITS_COVERED": 0.0,
    "BELLY_COVERED": 0.0,
}
"""Weight of each NudeNet 3.4 label towards the ``sexual`` score (documented in the module docstring)."""


class Detector(Protocol):
    """The part of ``nudenet.NudeDetector`` this backend uses."""

    def detect(self, image_path: Any) -> list[dict[str, Any]]: ...


_detector: Detector | None = None
_detector_lock = threading.Lock()

DETECTOR_THREADS = 1
"""onnxruntime intra-op threads for the detector, which never spin while idle.

Why: moderation runs in the batch process next to image generation. onnxruntime's defaults (a thread
per core, spin-waiting between runs) took the cores torch was generating on: on 2 cores, tiny-pipeline
generations with a detection every 0.9 s beside them took 43% longer, and as long as alone with one
non-spinning thread (docs/benchmarks.md). One 320x320 detection on one thread takes about 0.1 s, well
within the rate at which images arrive."""


def _quiet_session(model_path: str) -> Any:
    """An onnxruntime session for ``model_path`` that shares the cores instead of claiming them."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = DETECTOR_THREADS
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


def shared_detector() -> Detector:
    """The process-wide NudeNet detector, built on first use (double-checked under a lock)."""
    global _detector
    if _detector is None:
        with _detector_lock:
            if _detector is None:
                # Imported here: nudenet pulls in cv2 and onnxruntime, which text-only users never need.
                import nudenet
                from nudenet import NudeDetector

                detector = NudeDetector()
                # NudeDetector takes no session options: its session is replaced by one built with them
                # from the same bundled model, so inputs and outputs are unchanged.
                detector.onnx_session = _quiet_session(str(Path(nudenet.__file__).parent / "320n.onnx"))
                _detector = detector
    return _detector


def to_bgr_array(image: Image.Image) -> np.ndarray:
    """Convert a PIL image to the uint8 BGR array NudeNet expects (what ``cv2.imread`` would return).

    NudeNet 3.4's ``detect`` accepts a path, bytes or an ndarray; passing the array avoids a temp file.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


class NudeNetBackend:
    """Scores the ``sexual`` category of a piece's image; texts are ignored."""

    name = "nudenet"

    def __init__(self, label_weights: Mapping[str, float] = LABEL_WEIGHTS) -> None:
        self.label_weights = dict(label_weights)

    def scores(self, item: ModerationInput) -> CategoryScores:
        if item.image is None:
            return CategoryScores.zero()
        detections = shared_detector().detect(to_bgr_array(item.image))
        return self.scores_from_detections(detections)

    def scores_from_detections(self, detections: list[dict[str, Any]]) -> CategoryScores:
        """Apply ``label_weights`` to raw NudeNet detections (separate so the mapping is testable)."""
        sexual = 0.0
        reasons: list[str] = []
        for detection in sorted(detections, key=lambda d: -float(d["score"])):
            label, confidence = str(detection["class"]), float(detection["score"])
            weight = self.label_weights.get(label)
            if weight is None:
                # A label from a newer NudeNet: surface it rather than silently treating it as harmless.
                reasons.append(f"{self.name}: unmapped label {label} ({confidence:.2f}) ignored")
                continue
            if weight <= 0.0:
                continue
            weighted = min(1.0, weight * confidence)
            sexual = max(sexual, weighted)
            reasons.append(f"{self.name}: {label} {confidence:.2f} x {weight:.2f} -> sexual {weighted:.2f}")
        return CategoryScores({"sexual": sexual}, reasons)
