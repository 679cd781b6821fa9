"""An ensemble of saved runs (seqrnn.ensemble, `experiments.evaluate --workdir=A,B`): the
log of the mean of the runs' softmax probabilities, scored by the task; checked against
numpy from each run's own outputs."""

import numpy as np
import pytest

from helpers import digits_config
from seqrnn import train_and_evaluate
from seqrnn.data import batching
from seqrnn.ensemble import evaluate_ensemble
from seqrnn.run import evaluate_checkpoint, restore_run
from seqrnn.train import predict


@pytest.fixture(scope='module')
def two_seeds(tmp_path_factory):
  root = tmp_path_factory.mktemp('ensemble')
  for seed in (0, 1):
    config = digits_config(20)
    config.seed = seed
    train_and_evaluate(config, root / f's{seed}')
  return [str(root / 's0'), str(root / 's1')]


def _probabilities(workdir):
  """[test examples, classes] softmax of one run, and the labels, in split order."""
  config, setup, state = restore_run(workdir, 'latest')
  split = setup.dataset.splits['test']
  order = np.argsort(split['lengths'], kind='stable')  # eval_batches' order
  logits = np.concatenate([np.asarray(predict(state, b), np.float64)[b['weights'] > 0]
                           for b in batching.eval_batches(split, batch_size=64,
                                                          buckets=setup.buckets)])
  p = np.exp(logits - logits.max(-1, keepdims=True))
  return p / p.sum(-1, keepdims=True), split['labels'][order]


def test_an_ensemble_scores_the_mean_of_its_runs_probabilities(two_seeds):
  (p0, labels), (p1, _) = map(_probabilities, two_seeds)
  mean = (p0 + p1) / 2
  steps, metrics = evaluate_ensemble(two_seeds, 'latest')
  assert steps == [20, 20]
  np.testing.assert_allclose(metrics['accuracy'], np.mean(mean.argmax(-1) == labels), atol=1e-6)
  np.testing.assert_allclose(metrics['loss'], -np.mean(np.log(mean[np.arange(len(labels)),
                                                                   labels])), rtol=1e-5)
  # The runs differ, so the ensemble is neither of them.
  assert not np.array_equal(p0.argmax(-1), p1.argmax(-1))


def test_an_ensemble_of_one_run_twice_is_that_run(two_seeds):
  _, alone = evaluate_checkpoint(two_seeds[0], 'latest')
  _, twice = evaluate_ensemble([two_seeds[0]] * 2, 'latest')
  assert twice['accuracy'] == alone['accuracy']
  np.testing.assert_allclose(twice['loss'], alone['loss'], rtol=1e-6)


def test_runs_on_other_data_are_refused(two_seeds, tmp_path):
  from experiments.configs import turkish_pos
  config = turkish_pos.get_config('debug')
  config.train.num_steps = 2
  train_and_evaluate(config, tmp_path / 'tagger')
  with pytest.raises(ValueError, match='does not predict the same test split'):
    evaluate_ensemble([two_seeds[0], str(tmp_path / 'tagger')], 'latest')


def test_a_sweeps_workdir_stands_for_its_runs_whose_names_hold_commas(two_seeds, tmp_path):
  import shutil

  from experiments.evaluate import runs_in
  for seed, run in enumerate(two_seeds):  # as experiments.sweep names them
    shutil.copytree(run, tmp_path / 'runs' / f'model.crop=0.2,seed={seed}')
  (tmp_path / 'runs' / 'not_a_run').mkdir()
  runs = runs_in(str(tmp_path))
  assert [r.rsplit('/', 1)[1] for r in runs] == ['model.crop=0.2,seed=0', 'model.crop=0.2,seed=1']
  assert evaluate_ensemble(runs, 'latest') == evaluate_ensemble(two_seeds, 'latest')
  assert runs_in(two_seeds[0]) == [two_seeds[0]]  # a run's own workdir is itself
