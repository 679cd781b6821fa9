"""The CRF's log-partition two ways: the forward algorithm as a sequential `lax.scan`
(`seqrnn.crf.log_partition`, what the CRF head uses) against a tree reduction of the
steps' transfer matrices in the (logsumexp, +) semiring (log2(time) levels of
[batch, C, C] x [C, C] products: more arithmetic, fewer sequential steps).

  python -m experiments.bench.crf_benchmark --reps=20

Each is jitted with its gradient (what a train step runs); timed interleaved, medians
of `--reps`; by default the Turkish tagger's batch and padded lengths (32 rows, 13 to
88 steps) and UD's 17 UPOS tags. The two agree to float rounding (checked before timing).
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from seqrnn import crf

flags.DEFINE_integer('batch', 32, 'Rows.')
flags.DEFINE_list('steps', ['13', '41', '88'], 'Time axes to time.')
flags.DEFINE_integer('tags', 17, 'Labels C.')
flags.DEFINE_integer('reps', 20, 'Timed calls of each (after compilation).')
FLAGS = flags.FLAGS


def tree_log_partition(scores, lengths_b, segments_bt=None):
  """log Z [batch] as `crf.log_partition`, by a tree of semiring matrix products: step t's
  matrix is trans + e_t, a packed sequence's first step the rank-one end + start + e_t
  (closing the sequence before it), a padded step the identity."""
  real, first, _ = crf.boundaries(lengths_b, scores.emissions.shape[1], segments_bt)
  e = scores.emissions
  c = e.shape[-1]
  restart = scores.end[:, None] + scores.start[None, :]
  m = jnp.where(first[..., None, None], restart + e[:, :, None, :],
                scores.transitions + e[:, :, None, :])
  identity = jnp.where(jnp.eye(c, dtype=bool), 0.0, -jnp.inf)
  m = jnp.where(real[..., None, None], m, identity)
  m = m[:, 1:]  # step 0 starts the row: alpha_0 = start + e_0

  def product(x, y):  # [..., i, k] (x) [..., k, j] in the semiring
    return jax.nn.logsumexp(x[..., :, :, None] + y[..., None, :, :], axis=-2)

  while m.shape[1] > 1:
    if m.shape[1] % 2:
      m = jnp.concatenate([m, jnp.broadcast_to(identity, m[:, :1].shape)], 1)
    m = product(m[:, 0::2], m[:, 1::2])
  alpha = scores.start + e[:, 0]
  if m.shape[1]:
    alpha = jax.nn.logsumexp(alpha[:, :, None] + m[:, 0], axis=1)
  return jax.nn.logsumexp(alpha + scores.end, -1)


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  c = FLAGS.tags
  print(f'batch {FLAGS.batch}, {c} tags, {FLAGS.reps} reps; backend {jax.default_backend()}')
  print('| steps | scan ms | tree ms | tree / scan |\n|---|---|---|---|')
  for num_steps in map(int, FLAGS.steps):
    scores = crf.CRFScores(*(jnp.asarray(rng.normal(size=s), jnp.float32) for s in (
        (FLAGS.batch, num_steps, c), (c, c), (c,), (c,))))
    lengths = jnp.asarray(rng.integers(1, num_steps + 1, FLAGS.batch), jnp.int32)
    runs = {name: jax.jit(jax.value_and_grad(lambda s, f=f: f(s, lengths).sum()))
            for name, f in (('scan', crf.log_partition), ('tree', tree_log_partition))}
    values = {name: fn(scores) for name, fn in runs.items()}
    np.testing.assert_allclose(values['tree'][0], values['scan'][0], rtol=1e-4)
    times = {name: [] for name in runs}
    for _ in range(FLAGS.reps):
      for name, fn in runs.items():
        start = time.perf_counter()
        jax.block_until_ready(fn(scores))
        times[name].append(time.perf_counter() - start)
    scan, tree = (1e3 * np.median(times[n]) for n in ('scan', 'tree'))
    print(f'| {num_steps} | {scan:.2f} | {tree:.2f} | {tree / scan:.2f} |')


if __name__ == '__main__':
  app.run(main)
