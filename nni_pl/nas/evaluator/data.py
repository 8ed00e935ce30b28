"""Small data factories for examples and tests (import paths an evaluator can carry to a trial)."""

from __future__ import annotations

from typing import Any

__all__ = ["digits_loaders"]


def digits_loaders(
    *,
    batch_size: int = 64,
    flatten: bool = False,
    val_fraction: float = 0.25,
    limit: int | None = None,
    seed: int = 0,
) -> tuple[Any, Any]:
    """scikit-learn's digits (1,797 8x8 images, 10 classes, offline) as ``(train, val)`` DataLoaders.

    Images are scaled to [0, 1] and shaped ``(1, 8, 8)`` (or ``(64,)`` with ``flatten``); the split is
    stratified and seeded. ``limit`` keeps only the first ``limit`` samples (tiny tests).

    Example:
        >>> train, val = digits_loaders(batch_size=32, limit=200)
        >>> next(iter(train))[0].shape
        torch.Size([32, 1, 8, 8])
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        from nni_pl.errors import MissingDependencyError

        raise MissingDependencyError("scikit-learn", "examples", "the digits data factory") from e
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    x, y = load_digits(return_X_y=True)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    x = (x / 16.0).astype("float32")
    xt, xv, yt, yv = train_test_split(x, y, test_size=val_fraction, random_state=seed, stratify=y)
    shape = (-1, 64) if flatten else (-1, 1, 8, 8)

    def loader(a: Any, b: Any, shuffle: bool) -> DataLoader:
        ds = TensorDataset(torch.from_numpy(a).reshape(shape), torch.from_numpy(b).long())
        return DataLoader(
            ds, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed)
        )

    return loader(xt, yt, True), loader(xv, yv, False)
