"""Tests of evaluation/identity_metrics.py."""
import math

import numpy as np
import pytest
from scipy import stats

from unsup3dmm.evaluation import identity_metrics


def unit_vectors_at(degrees):
  """2-D unit vectors at the given angles, scaled by varied lengths."""
  radians = np.radians(np.asarray(degrees, dtype=np.float64))
  lengths = 1.0 + np.arange(radians.size)  # Cosine ignores length.
  return np.stack([np.cos(radians), np.sin(radians)], axis=1) * lengths[:,
                                                                        None]


def test_cosine_similarity_matrix_matches_explicit_loop():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(5, 8)), rng.normal(size=(7, 8)) * 3.0
  expected = np.empty((5, 7))
  for i in range(5):
    for j in range(7):
      expected[i, j] = a[i] @ b[j] / (math.sqrt(a[i] @ a[i]) *
                                      math.sqrt(b[j] @ b[j]))
  np.testing.assert_allclose(
      identity_metrics.cosine_similarity_matrix(a, b), expected, atol=1e-14)
  np.testing.assert_allclose(
      identity_metrics.cosine_similarity_matrix(a, -a).diagonal(), -1.0,
      atol=1e-14)


def test_cosine_similarity_rejects_bad_input():
  with pytest.raises(ValueError, match="same embedding size"):
    identity_metrics.cosine_similarity_matrix(np.ones((2, 3)), np.ones((2, 4)))
  with pytest.raises(ValueError, match="b row 1 is all zeros"):
    identity_metrics.cosine_similarity_matrix(np.ones((2, 3)),
                                              [[1, 0, 0], [0, 0, 0]])
  with pytest.raises(ValueError, match="a must have shape"):
    identity_metrics.cosine_similarity_matrix(np.ones(3), np.ones((2, 3)))


def test_render_photo_similarity_is_rowwise_cosine():
  renders = unit_vectors_at([0.0, 90.0, 45.0])
  photos = unit_vectors_at([60.0, 90.0, 225.0])
  np.testing.assert_allclose(
      identity_metrics.render_photo_similarity(renders, photos),
      [0.5, 1.0, -1.0], atol=1e-12)
  with pytest.raises(ValueError, match="same shape"):
    identity_metrics.render_photo_similarity(renders, photos[:2])


def test_pair_distributions_hand_example():
  # Identities: a at 0 and 60 degrees, b at 90 and 180 degrees.
  embeddings = unit_vectors_at([0.0, 60.0, 90.0, 180.0])
  same, different = identity_metrics.pair_distributions(
      embeddings, np.array(["a", "a", "b", "b"]))
  # Same pairs (0,1) 60 deg, (2,3) 90 deg; different (0,2) 90, (0,3) 180,
  # (1,2) 30, (1,3) 120, in (i, j) order.
  np.testing.assert_allclose(same, [0.5, 0.0], atol=1e-12)
  np.testing.assert_allclose(different,
                             [0.0, -1.0, math.sqrt(3) / 2, -0.5], atol=1e-12)
  with pytest.raises(ValueError, match="no same-person pairs"):
    identity_metrics.pair_distributions(embeddings, [0, 1, 2, 3])
  with pytest.raises(ValueError, match="single identity"):
    identity_metrics.pair_distributions(embeddings, [0, 0, 0, 0])
  with pytest.raises(ValueError, match=r"labels must have shape \[4\]"):
    identity_metrics.pair_distributions(embeddings, [0, 0, 1])


@pytest.mark.parametrize("a, b, expected", [
    ([0.0, 1.0], [1.0, 2.0], 1.0),
    # CDFs 2/3 vs 1/2 on [0, 1): area 1/6.
    ([0.0, 0.0, 1.0], [0.0, 1.0], 1.0 / 6.0),
    ([0.0], [3.0], 3.0),
    ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], 0.0),
    # CDF a: 1/2 on [0, 2), 1 after; b: 0 on [0, 1), 1/3 on [1, 2),
    # 2/3 on [2, 4), 1 after: 1/2 + 1/6 + 2 * 1/3 = 4/3.
    ([0.0, 2.0], [1.0, 2.0, 4.0], 4.0 / 3.0),
])
def test_earth_movers_distance_hand_values(a, b, expected):
  assert identity_metrics.earth_movers_distance(a, b) == pytest.approx(
      expected, abs=1e-12)
  assert identity_metrics.earth_movers_distance(b, a) == pytest.approx(
      expected, abs=1e-12)


def test_earth_movers_distance_shift_and_scipy_cross_check():
  rng = np.random.default_rng(1)
  a = rng.normal(size=37)
  assert identity_metrics.earth_movers_distance(a, a + 0.25) == pytest.approx(
      0.25, abs=1e-12)
  for count_b in (37, 50, 11):
    b = rng.normal(0.3, 2.0, size=count_b)
    assert identity_metrics.earth_movers_distance(a, b) == pytest.approx(
        stats.wasserstein_distance(a, b), abs=1e-12)
  with pytest.raises(ValueError, match="samples_b must be a non-empty"):
    identity_metrics.earth_movers_distance(a, [])
  with pytest.raises(ValueError, match="samples_a contains NaN"):
    identity_metrics.earth_movers_distance([np.nan], a)


def test_identity_recall_hand_example():
  photos = unit_vectors_at([0.0, 10.0, 90.0, 100.0, 180.0])
  photo_labels = np.array(["A", "A", "B", "B", "C"])
  # Render 0 (A) at 5 deg: nearest photo A.  Render 1 (B) at 40 deg: photo
  # order A10, A0, B90 -> first B at rank 3.  Render 2 (C) at 170 deg:
  # nearest C.  Render 3 (A) at 137 deg: order B100 (37 deg away), C180
  # (43), B90 (47), A10 (127) -> first A at rank 4.
  renders = unit_vectors_at([5.0, 40.0, 170.0, 137.0])
  render_labels = np.array(["A", "B", "C", "A"])
  recall = identity_metrics.identity_recall(renders, render_labels, photos,
                                            photo_labels, ks=(1, 2, 3, 4, 5))
  assert recall == {"top1": 0.5, "top2": 0.5, "top3": 0.75, "top4": 1.0,
                    "top5": 1.0}
  assert identity_metrics.identity_recall(renders, render_labels, photos,
                                          photo_labels) == {
                                              "top1": 0.5, "top5": 1.0}


def test_identity_recall_rejects_bad_input():
  photos = unit_vectors_at([0.0, 90.0])
  with pytest.raises(ValueError, match=r"every k in ks must be an int in "
                     r"\[1, 2\]"):
    identity_metrics.identity_recall(photos, [0, 1], photos, [0, 1], ks=(3,))
  with pytest.raises(ValueError, match=r"render_labels \[7\] have no photo"):
    identity_metrics.identity_recall(photos, [0, 7], photos, [0, 1], ks=(1,))
  with pytest.raises(ValueError, match="photo_labels must have shape"):
    identity_metrics.identity_recall(photos, [0, 1], photos, [0], ks=(1,))
