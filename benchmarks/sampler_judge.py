"""The judge of benchmarks.sampler_quality: trained once, deterministically, cached on disk.

The judge is benchmarks.quality_classifier's CNN with a 128-wide hidden layer before its
head: class accuracy comes from its argmax, sprite-FID from that layer's activations
(`embed`). It trains on make_sprites(seed=TRAIN_SEED) with a fixed seed, and is checked on
TEST_SEED sprites; the real sprites FID compares against come from REAL_SEEDS, which
neither its training nor its check draws from. Training takes ~15 s on 2 quiet cores (160
s measured at load average 7-13), so the weights are cached in spritegen's cache
directory (outside the repository) under a key of everything that decides them: the
training settings, the classifier's source and torch's version. Any change there trains a new judge; --retrain-judge forces it.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks import quality_classifier
from benchmarks.quality_classifier import SpriteClassifier, train_classifier
from spritegen.files import write_bytes_atomic

REAL_SEEDS = (3_000, 4_000)  # two disjoint real sets: generated vs REAL_SEEDS[0], floor vs [1]
JUDGE_TARGET = 0.98  # held-out accuracy below this: the judge is not fit to judge


@dataclass(frozen=True)
class JudgeSettings:
    """What decides the judge's weights (with the classifier's code and torch's version)."""

    train_size: int = 10_000
    test_size: int = 3_000
    epochs: int = 2
    seed: int = 0
    hidden: int = 128

    def key(self) -> str:
        source = Path(quality_classifier.__file__).read_bytes()
        text = json.dumps({**asdict(self), "torch": torch.__version__}, sort_keys=True).encode()
        return hashlib.sha256(text + source).hexdigest()[:16]


def judge_cache_dir() -> Path:
    from spritegen.cache import cache_dir

    return cache_dir() / "bench-judges"


def load_judge(settings: JudgeSettings, retrain: bool = False,
               cache: Path | None = None) -> tuple[SpriteClassifier, dict]:
    """The judge for `settings` and its report (held-out accuracy, train time, whether it
    came from the cache and the cache file), trained and cached unless a cached one exists."""
    path = (cache or judge_cache_dir()) / f"judge-{settings.key()}.pt"
    if path.is_file() and not retrain:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = SpriteClassifier(hidden=settings.hidden)
        model.load_state_dict(saved["state_dict"])
        model.eval()
        return model, {**json.loads(saved["report"]), "cached": True, "cache_file": str(path)}
    torch_threads = torch.get_num_threads()
    model, report = train_classifier(settings.train_size, settings.test_size, settings.epochs, settings.seed,
                                     hidden=settings.hidden)
    record = {**asdict(report), "settings": asdict(settings), "torch_threads": torch_threads}
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "report": json.dumps(record)}, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())
    return model, {**record, "cached": False, "cache_file": str(path)}


@torch.no_grad()
def judge(model: SpriteClassifier, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class (N,), penultimate features (N, hidden) float64) of sprites in [-1, 1]."""
    predicted, features = [], []
    for chunk in torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).split(500):
        embedded = model.embed(chunk)
        features.append(embedded.double().numpy())
        predicted.append(model.head(embedded).argmax(-1).numpy())
    return np.concatenate(predicted), np.concatenate(features)

