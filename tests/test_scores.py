"""Per-image scores: exact forgetting counts, EL2N finds a mislabelled image, pool-only trainings."""

import numpy as np
import pytest
import torch

from mnist_pruning import scores
from mnist_pruning.embed import embed
from mnist_pruning.scores import ScoreSettings, forgetting_events, pool_scores
from mnist_pruning.training import normalize

SETTINGS = ScoreSettings(epochs=4, inits=2, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4, seed=0)


def bars(n: int = 120, seed: int = 0):
    """uint8 digits whose class is the row of a bright bar: learnable in an epoch."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    images = torch.randint(0, 30, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, c in enumerate(y.tolist()):
        images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 255
    return images, y


def test_forgetting_events_count_correct_to_wrong_transitions_exactly():
    history = np.array(
        [
            # image: 0  1  2  3  4
            [1, 0, 1, 0, 1],
            [0, 0, 1, 1, 1],
            [1, 0, 0, 0, 1],
            [0, 0, 1, 1, 1],
            [1, 0, 0, 1, 1],
        ],
        dtype=bool,
    )
    # 0: 1>0 three times... 1,0,1,0,1 -> two events; 1: never correct -> 5; 2: 1,1,0,1,0 -> two;
    # 3: 0,1,0,1,1 -> one; 4: never forgotten -> 0
    assert forgetting_events(history).tolist() == [2, 5, 2, 1, 0]


def test_el2n_ranks_a_mislabelled_image_hardest():
    images, y = bars()
    y = y.clone()
    y[7] = (y[7] + 5) % 10  # one wrong label
    s = pool_scores("el2n", images, y, np.arange(len(y)), SETTINGS, 0.1307, 0.3081)
    assert s.shape == (len(y),) and np.all((s >= 0) & (s <= np.sqrt(2) + 1e-6))
    assert int(np.argmax(s)) == 7
    again = pool_scores("el2n", images, y, np.arange(len(y)), SETTINGS, 0.1307, 0.3081)
    assert np.array_equal(s, again)  # seeded


def test_forgetting_scores_a_mislabelled_image_among_the_most_forgotten():
    images, y = bars()
    y = y.clone()
    y[3] = (y[3] + 4) % 10
    s = pool_scores("forgetting", images, y, np.arange(len(y)), SETTINGS, 0.1307, 0.3081)
    assert s.dtype == np.float64 and s[3] == s.max() and s[3] >= SETTINGS.epochs  # never learned
    assert np.median(s) == 0


def test_score_trainings_see_only_the_rows_they_are_given(monkeypatch):
    images, y = bars(60)
    rows = np.array([3, 10, 11, 25, 40, 59])
    seen = []

    real = scores.fit_models

    def spy(x, labels, s):
        seen.append((x.clone(), labels.clone()))
        return real(x, labels, s)

    monkeypatch.setattr(scores, "fit_models", spy)
    out = pool_scores("el2n", images, y, rows, SETTINGS, 0.1307, 0.3081)
    assert len(out) == len(rows)
    ((x, labels),) = seen
    assert torch.equal(labels, y[rows])
    assert torch.equal(x, normalize(images[rows], 0.1307, 0.3081))


def test_classifier_embedding_is_fitted_on_the_pool_rows_only(monkeypatch):
    images, y = bars(50)
    flat = images.reshape(50, -1).numpy().astype(np.float32) / 255
    rows = np.arange(0, 50, 2)
    seen = []
    real = scores.fit_epochs

    def spy(x, labels, s, seed, on_batch=None):
        seen.append(labels.clone())
        return real(x, labels, s, seed, on_batch)

    monkeypatch.setattr(scores, "fit_epochs", spy)
    feats = embed(flat, "classifier", 84, labels=y.numpy(), rows=rows, epochs=1, batch_size=10)
    assert feats.shape == (50, 84) and feats.dtype == np.float32
    assert [t.tolist() for t in seen] == [y[rows].tolist()]
    with pytest.raises(ValueError, match="84"):
        embed(flat, "classifier", 10, labels=y.numpy(), rows=rows)
