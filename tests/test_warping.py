"""seqrnn.data.warping: DTW distances, leave-one-out nearest neighbours, and the rule of
experiments/configs/uea.py that trains on random crops where warping helps."""

import jax.numpy as jnp
import numpy as np

import reference
from seqrnn import config as config_lib
from seqrnn.data import warping
from seqrnn.data.dataset import pad_sequences


def test_dtw_lets_a_series_wait_and_sums_the_squared_gaps_of_the_best_path():
  a, b = np.array([[0.], [1.], [2.]]), np.array([[0.], [0.], [1.], [2.]])
  c = np.array([[0.], [3.]])  # best path from a: 0-0 (0), 1-0 (1), 2-3 (1)
  x, lengths = pad_sequences([a, b, c], np.float32)
  got = warping.dtw(jnp.asarray(x[[0, 0, 1]]), jnp.asarray(lengths[[0, 0, 1]]),
                    jnp.asarray(x[[1, 2, 2]]), jnp.asarray(lengths[[1, 2, 2]]))
  np.testing.assert_allclose(got, [0.0, 2.0, 2.0], rtol=1e-6)  # b: 0-0, 0-0, 1-0, 2-3


def test_dtw_equals_the_textbook_recursion_on_random_series_of_any_lengths_and_channels():
  rng = np.random.default_rng(0)
  series = [rng.normal(size=(n, 3)).astype(np.float32) for n in (1, 2, 5, 9, 16, 16)]
  x, lengths = pad_sequences(series, np.float32)
  pairs = [(i, j) for i in range(len(series)) for j in range(len(series))]
  i, j = map(np.array, zip(*pairs))
  got = warping.dtw(jnp.asarray(x[i]), jnp.asarray(lengths[i]), jnp.asarray(x[j]),
                    jnp.asarray(lengths[j]))
  want = [reference.dtw(series[p], series[q]) for p, q in pairs]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _bumps(rng, n, moving):
  """Two classes of 40-step series, a little noise on each: 4 steps of 1 (class 0) or -1
  (class 1) anywhere (`moving`: warping aligns them), or 4 steps of 1 from step 10 (class 0)
  or from step 14 (class 1) (warping aligns the classes with each other)."""
  x, labels = np.zeros((n, 40, 1), np.float32), np.arange(n) % 2
  for k, label in enumerate(labels):
    if moving:
      start = rng.integers(0, 36)
      x[k, start:start + 4, 0] = 1.0 - 2 * label
    else:
      x[k, 10 + 4 * label:14 + 4 * label, 0] = 1.0
  return x + 0.05 * rng.normal(size=x.shape).astype(np.float32), np.full(n, 40), labels


def test_warping_helps_shapes_that_move_and_hurts_places_that_matter():
  rng = np.random.default_rng(0)
  x, lengths, labels = _bumps(rng, 16, moving=True)
  assert warping.nearest_neighbour_accuracy(x, lengths, labels, 'euclidean') < 0.8
  assert warping.nearest_neighbour_accuracy(x, lengths, labels, 'dtw') == 1.0
  moving = warping.warping_gain({'inputs': x, 'lengths': lengths, 'labels': labels})
  x, lengths, labels = _bumps(rng, 16, moving=False)
  assert warping.nearest_neighbour_accuracy(x, lengths, labels, 'euclidean') == 1.0
  fixed = warping.warping_gain({'inputs': x, 'lengths': lengths, 'labels': labels})
  assert moving > 0.2 and fixed < 0


def test_leave_one_out_leaves_the_series_itself_out_and_ties_go_to_the_first():
  x = np.array([[[0.]], [[0.]], [[1.]], [[5.]]], np.float32)  # series 0 and 1 are twins
  lengths, labels = np.ones(4, int), np.array([0, 0, 1, 1])
  # 0 <-> 1 (right), 2 -> 0 and 1 at distance 1: the first, 0 (wrong), 3 -> 2 (right)
  assert warping.nearest_neighbour_accuracy(x, lengths, labels, 'euclidean', block=3) == 0.75


def test_a_split_is_measured_once_however_many_runs_of_a_group_ask(monkeypatch):
  x, lengths, labels = _bumps(np.random.default_rng(2), 16, moving=True)
  calls = []
  measure = warping.nearest_neighbour_accuracy
  monkeypatch.setattr(warping, 'nearest_neighbour_accuracy',
                      lambda *args: calls.append(args[-1]) or measure(*args))
  split = {'inputs': x, 'lengths': lengths, 'labels': labels}
  gains = [warping.warping_gain(dict(split)) for _ in range(3)]
  assert calls == ['dtw', 'euclidean'] and len(set(gains)) == 1
  x[0, 0, 0] += 1.0  # other series: measured again
  warping.warping_gain(split)
  assert calls == ['dtw', 'euclidean'] * 2


def test_uea_crops_where_warping_helps_unless_told_otherwise():
  from experiments.configs import uea
  rng = np.random.default_rng(1)
  stats = {'sequences': 16, 'longest': 40}
  for moving, crop in ((True, uea.CROP), (False, 0.0)):
    x, lengths, labels = _bumps(rng, 16, moving)
    train = {'inputs': x, 'lengths': lengths, 'labels': labels}
    adapted, changed = config_lib.adapted(uea.get_config('Bumps'), {**stats, 'train': train})
    assert adapted.model.crop == crop and ('model.crop' in changed) == moving
    given = uea.get_config('Bumps')
    given.model.crop = 0.1  # as --config.model.crop=0.1 would
    assert config_lib.adapted(given, {**stats, 'train': train})[0].model.crop == 0.1
    before = uea.get_config('Bumps')
    before.adapt = 'experiments.configs.uea:by_size'  # the rule before crops
    assert config_lib.adapted(before, {**stats, 'train': train})[0].model.crop == 0.0
