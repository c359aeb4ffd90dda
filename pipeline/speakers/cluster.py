"""Group voice prints by speaker: spectral clustering; `auto` over-splits, then merges
groups too small or too alike to be two speakers.

Spectral clustering on a refined cosine affinity (as in Wang et al., "Speaker
diarization with LSTM", 2018) separates voices whose prints form long thin clouds
better than k-means on the prints themselves. The eigengap picked too few groups for
four synthetic voices and cannot say "one speaker", so `auto` splits into as many
groups as the speech allows and merges back: first any group with less than
MIN_WINDOWS windows of speech (a speaker needs about 5 s to be counted: on real speech
Resemblyzer's prints of one voice drift as far apart as two synthetic voices), then
any two groups whose mean prints are as alike as one voice's windows are.
"""

from __future__ import annotations

import numpy as np

MAX_SPEAKERS = 10
# Two groups whose mean voice prints are at least this alike are one speaker. Resemblyzer
# puts one voice's windows at cosine 0.8-0.95 to their mean, different voices below 0.75.
SAME_SPEAKER = 0.86
MIN_WINDOWS = 6  # 6 windows 0.8 s apart: about 5 s of speech
_KEEP_SHARE = 0.25  # each row keeps its strongest quarter of links (row-wise thresholding)


def refined_affinity(vectors: np.ndarray) -> np.ndarray:
    similarity = np.clip(vectors @ vectors.T, 0.0, 1.0)
    n = len(similarity)
    keep = max(2, int(np.ceil(n * _KEEP_SHARE)))
    affinity = similarity.copy()
    if n > keep:
        cut = np.partition(affinity, n - keep, axis=1)[:, n - keep][:, None]
        affinity = np.where(affinity >= cut, affinity, affinity * 0.01)
    affinity = np.maximum(affinity, affinity.T)
    affinity = affinity @ affinity.T  # diffusion
    affinity /= affinity.max(axis=1, keepdims=True)
    return affinity


def _spectrum(affinity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors of the normalised affinity."""
    degree = affinity.sum(axis=1)
    scale = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    normalised = affinity * scale[:, None] * scale[None, :]
    values, vectors = np.linalg.eigh(normalised)
    order = np.argsort(values)[::-1]
    return values[order], vectors[:, order]


def _means(vectors: np.ndarray, labels: np.ndarray, groups: list[int]) -> np.ndarray:
    means = np.stack([vectors[labels == g].mean(axis=0) for g in groups])
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def merge_groups(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Merge groups too small to be a speaker, then groups too alike to be two."""
    labels = labels.copy()
    while True:
        groups = sorted(set(labels.tolist()))
        if len(groups) <= 1:
            return labels
        alike = _means(vectors, labels, groups) @ _means(vectors, labels, groups).T
        np.fill_diagonal(alike, -1.0)
        sizes = [int(np.sum(labels == g)) for g in groups]
        smallest = int(np.argmin(sizes))
        if sizes[smallest] < MIN_WINDOWS:
            i, j = int(np.argmax(alike[smallest])), smallest
        else:
            i, j = (int(x) for x in np.unravel_index(int(np.argmax(alike)), alike.shape))
            if alike[i, j] < SAME_SPEAKER:
                return labels
        labels[labels == groups[j]] = groups[i]


def _kmeans(points: np.ndarray, k: int, restarts: int = 10, rounds: int = 100) -> np.ndarray:
    """Lloyd's k-means from k-means++ starts, the best of `restarts`. Written out: the
    points are a few hundred rows of k numbers, and importing scikit-learn took longer
    (seconds on a busy machine) than the clustering."""
    rng = np.random.default_rng(0)
    best, best_cost = np.zeros(len(points), dtype=int), np.inf
    for _ in range(restarts):
        centres = points[[int(rng.integers(len(points)))]]
        while len(centres) < k:
            distance = np.min(((points[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
            total = distance.sum()
            pick = (
                int(rng.choice(len(points), p=distance / total))
                if total > 0
                else int(rng.integers(len(points)))
            )
            centres = np.vstack([centres, points[pick]])
        labels = np.zeros(len(points), dtype=int)
        for _ in range(rounds):
            labels = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
            moved = np.stack(
                [points[labels == j].mean(0) if np.any(labels == j) else centres[j] for j in range(k)]
            )
            if np.allclose(moved, centres):
                break
            centres = moved
        cost = float(((points - centres[labels]) ** 2).sum())
        if cost < best_cost:
            best, best_cost = labels, cost
    return best


def cluster(vectors: np.ndarray, speakers: int | None) -> np.ndarray:
    """A group number per voice print; `speakers` None finds the count (1-10)."""
    n = len(vectors)
    k = min(speakers, n) if speakers else min(MAX_SPEAKERS, n // MIN_WINDOWS)
    if k <= 1:
        return np.zeros(n, dtype=int)
    _, eigenvectors = _spectrum(refined_affinity(vectors))
    embedding = eigenvectors[:, :k]
    embedding = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    labels = _kmeans(embedding, k)
    return refine(vectors, labels if speakers else merge_groups(vectors, labels))


def refine(vectors: np.ndarray, labels: np.ndarray, rounds: int = 10) -> np.ndarray:
    """Move each print to the group whose mean voice it is most like, until none moves.

    The spectral step sees voices through their neighbourhoods; two alike voices (0.8
    apart) can end up partly in one group there, and their own mean prints sort them out.
    """
    labels = labels.copy()
    for _ in range(rounds):
        groups = sorted(set(labels.tolist()))
        moved = np.asarray(groups)[np.argmax(vectors @ _means(vectors, labels, groups).T, axis=1)]
        if np.array_equal(moved, labels) or len(set(moved.tolist())) < len(groups):
            return labels
        labels = moved
    return labels
