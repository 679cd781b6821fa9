"""End to end on real data: real (non-padding) timesteps per second of training.

  python -m experiments.e2e_benchmark --steps=300    # the Turkish tagger (turkish_pos.py)
  python -m experiments.e2e_benchmark --config=experiments/configs/ocr.py \
      --config.data.path=.../letter.data.gz

Trains the config's model for `--steps` steps on the batches a run of the config
trains on (its buckets, its batching), and the same model with Flax's stack in
place of seqrnn's: `nn.RNN` layers of `nn.OptimizedLSTMCell` (or `nn.GRUCell`)
given `seq_lengths`, `nn.Bidirectional` where the config reads both ways,
dropout between layers; the same embedding, character encoder, head, loss and
optimiser. The two train step by step interleaved, so that machine noise hits
both alike. Pass 1 includes compilation (each padded length compiles when it
first appears), pass 2 repeats the same steps with everything compiled.
Prints, for each: real timesteps/s with and without compilation, compile
seconds, the number of compiled shapes and the padding fraction of the steps;
and what one more compiled shape costs seqrnn's training in padded (sequence,
step) slots, the figure behind `data.num_buckets='auto'`
(`seqrnn.data.batching.COMPILE_COST_SLOTS`; evaluation compiles too, on top).
"""

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments.benchmark import Trainer, flax_model
from seqrnn import run as run_lib
from seqrnn.data import batching
from seqrnn.models import build_model

config_flags.DEFINE_config_file('config', 'experiments/configs/turkish_pos.py',
                                'The config whose model and batches are timed.')
flags.DEFINE_integer('steps', 300, 'Training steps timed in each pass.')
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = FLAGS.config
  config.train.compilation_cache = ''  # every compile is timed here, none loaded
  dataset, buckets = run_lib.prepare_data(config)
  split = dataset.splits['train']
  batches = [jax.device_put(batching.train_batch(split, s, batch_size=config.data.batch_size,
                                                 buckets=buckets, seed=config.seed))
             for s in range(FLAGS.steps)]
  real = sum(int(b['lengths'].sum()) for b in batches)
  slots = sum(b['lengths'].shape[0] * b['inputs'].shape[1] for b in batches)
  model = build_model(config.task, config.model, num_classes=dataset.num_classes,
                      vocab_size=dataset.vocab_size, num_chars=dataset.num_chars)
  trainers = {'seqrnn': Trainer(model, config, batches[0]),
              'flax': Trainer(flax_model(config, dataset), config, batches[0])}
  print(f'{config.data.name}: {FLAGS.steps} steps of batch {config.data.batch_size}, '
        f'{len(set(b["inputs"].shape for b in batches))} shapes of buckets {buckets}, '
        f'padding {1 - real / slots:.3f}; backend {jax.default_backend()}')
  print('| impl | pass | real timesteps/s | compile s | seconds |\n|---|---|---|---|---|')
  passes = {}  # (impl, pass) -> (seconds, compile seconds)
  for name in ('with compilation', 'compiled'):
    for t in trainers.values():
      t.seconds = t.compile_s = 0.0
    for batch in batches:
      for t in trainers.values():
        t.train(batch)
    for impl, t in trainers.items():
      passes[impl, name] = t.seconds, t.compile_s
      print(f'| {impl} | {name} | {real / t.seconds:,.0f} | {t.compile_s:.1f} | '
            f'{t.seconds:.1f} |', flush=True)
  ratio = passes['flax', 'compiled'][0] / passes['seqrnn', 'compiled'][0]
  print(f'seqrnn / flax, compiled: {ratio:.2f}x the real timesteps/s')
  per_shape = passes['seqrnn', 'with compilation'][1] / len(trainers['seqrnn'].compiled)
  per_slot = passes['seqrnn', 'compiled'][0] / slots
  print(f'seqrnn: a compile {per_shape:.1f} s a shape, a padded slot {1e6 * per_slot:.0f} us '
        f'of training: a shape costs {per_shape / per_slot:,.0f} slots')

if __name__ == '__main__':
  app.run(main)
