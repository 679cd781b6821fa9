"""K models in one vectorised train step against K steps of one model.

  python -m experiments.bench.sweep_benchmark --models=1,4,16 --reps=10

What `experiments.sweep` gains by training runs of one shape together
(`seqrnn.group`): the jitted `jax.vmap` of `train_step` over K stacked train
states and K batches, timed interleaved with K calls of the single-model step,
medians of `--reps`. `speedup` is K single steps' time over one vectorised
step's. Config: `experiments/configs/digits.py` (GRU 128, batch 64, 8 steps)
unless `--config` names another.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from seqrnn import run as run_lib
from seqrnn.data import batching
from seqrnn.models import build_model
from seqrnn.tasks import get_task
from seqrnn.train import create_train_state, make_optimizer, train_step

config_flags.DEFINE_config_file('config', 'experiments/configs/digits.py', 'The runs\' config.')
flags.DEFINE_list('models', ['1', '4', '16'], 'Numbers of models K to time.')
flags.DEFINE_integer('reps', 10, 'Timed steps of each (after compilation).')
FLAGS = flags.FLAGS


def _timed(fn):
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def main(argv):
  del argv
  config = FLAGS.config
  dataset, buckets = run_lib.prepare_data(config)
  split = dataset.splits['train']
  model = build_model(config.task, config.model, num_classes=dataset.num_classes,
                      vocab_size=dataset.vocab_size, num_chars=dataset.num_chars)
  batch = batching.train_batch(split, 0, batch_size=config.data.batch_size, buckets=buckets,
                               seed=0, pack=config.data.pack)
  tx = make_optimizer(config.optim, config.train.num_steps)
  single = jax.jit(train_step)
  vectorised = jax.jit(jax.vmap(train_step))
  print(f'backend {jax.default_backend()}, {len(jax.devices())} device(s), config '
        f'{config.model.cell} {config.model.hidden_size}x{config.model.num_layers}, batch '
        f'{config.data.batch_size} x {batch["inputs"].shape[1]} steps, {FLAGS.reps} reps, medians')
  print('| K | K single steps, ms | one vectorised step, ms | speedup |\n|---|---|---|---|')
  for k in (int(m) for m in FLAGS.models):
    states = [create_train_state(jax.random.key(i), model, batch, tx, get_task(config.task))
              for i in range(k)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    batches = jax.tree.map(lambda x: jnp.stack([x] * k), batch)
    rngs = jax.random.split(jax.random.key(1), k)
    run_single = lambda: [single(s, batch, rngs[0])[1]['loss'] for s in states]
    run_vectorised = lambda: vectorised(stacked, batches, rngs)[1]['loss']
    _timed(run_single), _timed(run_vectorised)  # compile
    times = {'single': [], 'vectorised': []}
    for _ in range(FLAGS.reps):
      times['single'].append(_timed(run_single))
      times['vectorised'].append(_timed(run_vectorised))
    t_single, t_vec = (float(np.median(times[n])) for n in ('single', 'vectorised'))
    print(f'| {k} | {1e3 * t_single:.1f} | {1e3 * t_vec:.1f} | {t_single / t_vec:.2f} |',
          flush=True)


if __name__ == '__main__':
  app.run(main)
