"""The newer baselines: ProbCover, CCS, moderate coresets, GraNd and the uncertainty scores."""

import numpy as np
import pytest
import torch

from mnist_pruning.model import LeNet5
from mnist_pruning.scores import gradient_norms, uncertainty
from mnist_pruning.selectors import Options, select
from mnist_pruning.selectors.coverage import purity_delta
from mnist_pruning.selectors.scored import strata_counts


def toy(n=300, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    x = (rng.normal(size=(n, 3)) + labels[:, None]).astype(np.float32)
    return x, labels, rng.random(n)


@pytest.mark.parametrize("name", ["probcover", "ccs", "moderate", "grand", "uncertainty"])
@pytest.mark.parametrize("k", [10, 37])
def test_exactly_k_and_balanced(name, k):
    x, labels, scores = toy()
    picked = select(name, x, labels, k, 0, Options(balance=True, scores=scores, strata=5))
    assert len(picked) == k == len(np.unique(picked))
    counts = np.bincount(labels[picked], minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == k


def test_probcover_first_picks_the_image_whose_ball_covers_the_most():
    """A dense blob of 30 images among 70 scattered ones: the first pick is the blob image whose
    ball holds the most images, the one greedy maximum coverage must start from."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.05, (30, 2)), rng.uniform(-20, 20, (70, 2))]).astype(np.float32)
    labels = np.zeros(100, dtype=int)
    delta = 0.08
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    ball = (d < delta).sum(axis=1)
    (first,) = select("probcover", x, labels, 1, 0, Options(neighbors=40, delta=delta))
    assert ball[first] == ball.max() and first < 30
    # the second pick covers the most of what the first left uncovered
    two = select("probcover", x, labels, 2, 0, Options(neighbors=40, delta=delta))
    (second,) = set(two) - {first}
    left = d[first] >= delta
    assert ((d[second] < delta) & left).sum() == max(((d[i] < delta) & left).sum() for i in range(100))


def test_probcover_delta_keeps_the_purity_asked_for():
    from mnist_pruning.neighbors import knn_graph

    x, labels, _ = toy()
    idx, dist = knn_graph(x, 30)
    delta = purity_delta(idx, dist, labels, 0.9)
    pure = [(labels[idx[i][dist[i] < delta]] == labels[i]).all() for i in range(len(x))]
    assert np.mean(pure) >= 0.9
    bigger = [(labels[idx[i][dist[i] < delta * 1.5]] == labels[i]).all() for i in range(len(x))]
    assert np.mean(bigger) < np.mean(pure)


def test_ccs_never_keeps_a_pruned_hard_image_and_its_strata_are_even():
    x, labels, scores = toy(1000)
    picked = select("ccs", x, labels, 100, 0, Options(scores=scores, prune_hard=0.3, strata=10))
    hardest = np.argsort(-scores)[:300]
    assert not set(picked) & set(hardest)
    kept = np.setdiff1d(np.arange(1000), hardest)
    edges = np.linspace(scores[kept].min(), scores[kept].max(), 11)
    per = np.bincount(np.clip(np.searchsorted(edges, scores[picked], side="right") - 1, 0, 9), minlength=10)
    assert per.tolist() == [10] * 10
    assert strata_counts(np.array([3, 50, 50]), 20).tolist() == [3, 8, 9]
    assert strata_counts(np.array([2, 2]), 10).tolist() == [2, 2]  # the caller fills the rest


def test_moderate_keeps_the_images_nearest_the_median_distance():
    x = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]], dtype=np.float32)  # centre 3.2, median 2.2
    (one,) = select("moderate", x, np.zeros(5, dtype=int), 1, 0, Options())
    assert one == 1  # distance 2.2, the median itself


def test_grand_is_zero_for_an_image_the_model_fits_perfectly():
    """A model whose output saturates on class 0: an image labelled 0 has no gradient at all,
    one labelled 1 a large one; per-sample norms match autograd's one image at a time."""
    torch.manual_seed(0)
    model = LeNet5().eval()
    with torch.no_grad():
        model.classifier[-1].weight.zero_()
        model.classifier[-1].bias.copy_(torch.tensor([200.0] + [0.0] * 9))
    x = torch.randn(4, 1, 28, 28)
    y = torch.tensor([0, 0, 1, 1])
    g = gradient_norms(model, x, y)
    assert g[:2].tolist() == [0.0, 0.0] and (g[2:] > 1).all()
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x[2:3]), y[2:3]).backward()
    direct = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
    assert float(g[2]) == pytest.approx(float(direct), rel=1e-5)


def test_uncertainty_measures():
    p = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.3, 0.2]])
    assert uncertainty(p, "least_confidence").tolist() == pytest.approx([0.0, 0.5])
    assert uncertainty(p, "margin").tolist() == pytest.approx([0.0, 0.8])
    expected = -(0.5 * np.log(0.5) + 0.3 * np.log(0.3) + 0.2 * np.log(0.2))
    assert uncertainty(p, "entropy").tolist() == pytest.approx([0.0, expected], abs=1e-6)


def test_the_contrastive_embedding_is_seeded_and_puts_two_views_of_an_image_together():
    """On toy digits (a bar and a blob at random places): the same seed gives the same features,
    another seed others; and two augmented views of an image it did not train on are closer
    (cosine) than two different such images, on average."""
    from mnist_pruning.embed import Views, contrastive
    from mnist_pruning.training import augment

    rng = np.random.default_rng(0)
    images = np.zeros((260, 28, 28), dtype=np.float32)
    for i in range(260):
        r, c = rng.integers(6, 22, size=2)
        images[i, r - 1 : r + 2, 4:24] = 1.0
        images[i, c - 3 : c + 3, c - 3 : c + 3] = 1.0
    x = images.reshape(260, -1)
    rows = np.arange(200)  # trained on these; the last 60 are unseen
    maps = dict(aug_rotate=10.0, aug_translate=0.05, aug_scale=0.1, elastic_alpha=0.0)
    settings = dict(epochs=3, batch_size=50, **maps)

    gen = torch.Generator().manual_seed(0)
    unseen = torch.from_numpy(x[200:]).view(-1, 1, 28, 28)
    pair = augment(torch.cat([unseen, unseen]), Views(**maps, elastic_sigma=4.0), gen).clamp(0, 1)
    both = np.concatenate([x, pair.reshape(120, -1).numpy()]).astype(np.float32)
    f = contrastive(both, 84, rows, seed=0, **settings)
    np.testing.assert_array_equal(f, contrastive(both, 84, rows, seed=0, **settings))
    assert f.shape == (380, 84) and not np.array_equal(f, contrastive(both, 84, rows, seed=1, **settings))

    unit = torch.nn.functional.normalize(torch.from_numpy(f), dim=1)
    originals, first, second = unit[200:260], unit[260:320], unit[320:]
    different = ((originals @ originals.T).sum() - 60) / (60 * 59)
    same = (first * second).sum(1).mean()
    assert same > different
