"""The procedural sprite set: the bundled checkpoint's training data must be reproducible
and its classes genuinely different, or the generated-sample accuracy means nothing."""

from __future__ import annotations

import numpy as np
import pytest

from spritegen.contract import CLASS_NAMES
from spritegen.training.sprites import make_sprites

K = len(CLASS_NAMES)


@pytest.fixture(scope="module")
def sprites() -> tuple[np.ndarray, np.ndarray]:
    return make_sprites(1000, seed=7)


@pytest.mark.fast
def test_shapes_dtypes_and_range(sprites: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = sprites
    assert images.shape == (1000, 3, 16, 16) and images.dtype == np.float32
    assert labels.shape == (1000,) and labels.dtype == np.int64
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert images.min() < -0.8 and images.max() > 0.8  # uses the whole [-1, 1] range
    assert np.array_equal(np.bincount(labels, minlength=K), np.full(K, 200))  # balanced


def test_deterministic_by_seed(sprites: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = make_sprites(1000, seed=7)
    assert np.array_equal(images, sprites[0]) and np.array_equal(labels, sprites[1])


def test_different_seeds_differ(sprites: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = make_sprites(1000, seed=8)
    assert not np.array_equal(labels, sprites[1])
    assert np.abs(images - sprites[0]).mean() > 0.1


def test_small_and_empty_counts() -> None:
    images, labels = make_sprites(3, seed=0)
    assert images.shape == (3, 3, 16, 16) and len(set(labels.tolist())) == 3
    assert make_sprites(0, seed=0)[0].shape == (0, 3, 16, 16)
    with pytest.raises(ValueError):
        make_sprites(-1, seed=0)


def test_sprites_within_a_class_vary(sprites: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = sprites
    for k in range(K):
        flat = images[labels == k].reshape(-1, 3 * 16 * 16)
        unique = len(np.unique(flat.round(3), axis=0))
        assert unique == len(flat), f"{CLASS_NAMES[k]}: {len(flat) - unique} duplicate sprites"
        assert flat.std(axis=0).mean() > 0.2, f"{CLASS_NAMES[k]} sprites look alike"


def test_nearest_class_mean_separates_classes(sprites: tuple[np.ndarray, np.ndarray]) -> None:
    """A nearest-centroid rule on simple features (mean image + left/right asymmetry),
    fitted on one seed and scored on another, must beat chance (20%) by far."""
    def features(images: np.ndarray) -> np.ndarray:
        asym = np.abs(images - images[..., ::-1]).mean(axis=(1, 2, 3))  # profile vs frontal
        return np.concatenate([images.reshape(len(images), -1), 20 * asym[:, None]], axis=1)

    images, labels = sprites
    centroids = np.stack([features(images[labels == k]).mean(0) for k in range(K)])
    test_images, test_labels = make_sprites(500, seed=99)
    f = features(test_images)
    predicted = np.argmin(((f[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = (predicted == test_labels).mean()
    assert accuracy > 0.6, f"nearest-centroid accuracy {accuracy:.2f}: classes barely differ"


def test_heroes_are_frontal_and_side_facing_are_profile(sprites: tuple[np.ndarray, np.ndarray]) -> None:
    """Heroes face the viewer (nearly mirror-symmetric), side-facing sprites do not."""
    images, labels = sprites
    mirrored = images[..., ::-1]
    # mirror about the sprite's own axis: the best of a few horizontal shifts
    asym = np.min([np.abs(images[..., 2:-2] - np.roll(mirrored, s, axis=-1)[..., 2:-2]).mean(axis=(1, 2, 3))
                   for s in range(-2, 3)], axis=0)
    hero, side = asym[labels == CLASS_NAMES.index("hero")], asym[labels == CLASS_NAMES.index("side-facing")]
    assert np.median(hero) < 0.5 * np.median(side), (np.median(hero), np.median(side))
