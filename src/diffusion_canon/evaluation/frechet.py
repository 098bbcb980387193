"""cFID: the Fréchet distance between two image sets in the glyph classifier's feature space.

It is FID's formula (Heusel et al. 2017) with our own glyph classifier in place of Inception, so its numbers are
comparable only with other cFID numbers — call it cFID, never FID.
"""

from __future__ import annotations

import numpy as np

from .glyph_classifier import GlyphClassifier, load_glyph_classifier
from .images import ImageBatch

__all__ = ["cfid", "frechet_distance", "glyph_features"]


def glyph_features(images: ImageBatch, classifier: GlyphClassifier | None = None) -> np.ndarray:
    """Penultimate-layer features of the glyph classifier, float64 ``(N, feature_dim)``."""
    classifier = classifier or load_glyph_classifier()
    return classifier.run(images)[2].double().numpy()


def cfid(images_a: ImageBatch, images_b: ImageBatch, classifier: GlyphClassifier | None = None) -> float:
    """Fréchet distance between Gaussians fitted to the two sets' glyph-classifier features.

    Both sets need at least 2 images; with fewer images than feature dimensions (64) the covariances are rank
    deficient and the estimate is biased upwards, so compare cFIDs computed from equal set sizes.
    """
    a, b = glyph_features(images_a, classifier), glyph_features(images_b, classifier)
    for name, features in (("images_a", a), ("images_b", b)):
        if len(features) < 2:
            raise ValueError(f"{name} must hold at least 2 images to estimate a covariance, got {len(features)}")
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared 2-Wasserstein distance between N(mu1, sigma1) and N(mu2, sigma2):

        d² = |mu1 - mu2|² + Tr(sigma1 + sigma2 - 2 (sigma1^½ sigma2 sigma1^½)^½)

    ``(sigma1^½ sigma2 sigma1^½)`` is symmetric positive semi-definite and has the eigenvalues of
    ``sigma1 sigma2``, so both square roots come from symmetric eigendecompositions (clipping round-off negatives)
    rather than a general matrix square root of the non-symmetric product. Eigenvalues within round-off of zero
    are set to zero: their square roots (~1e-8) would otherwise add up to a visible bias for rank-deficient
    covariances (fewer samples than feature dimensions).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            f"means and covariances must be (d,) and (d, d) alike, got mu1 {mu1.shape}, mu2 {mu2.shape}, "
            f"sigma1 {sigma1.shape}, sigma2 {sigma2.shape}"
        )
    root1 = _psd_sqrt(sigma1)
    cross = np.sqrt(_psd_eigenvalues(root1 @ sigma2 @ root1)[0]).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * cross)


def _psd_eigenvalues(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a symmetric PSD matrix, with round-off-sized eigenvalues clipped to 0."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    round_off = len(values) * np.finfo(np.float64).eps * max(float(np.abs(values).max()), 1e-300)
    return np.where(values > round_off, values, 0.0), vectors


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = _psd_eigenvalues(matrix)
    return (vectors * np.sqrt(values)) @ vectors.T
