"""End to end on real data: real (non-padding) timesteps per second of training.

  python -m experiments.e2e_benchmark --steps=300    # the Turkish tagger (turkish_pos.py)
  python -m experiments.e2e_benchmark --config=experiments/configs/ocr.py \
      --config.data.path=.../letter.data.gz

Trains the config's model for `--steps` steps on the batches a run of the config
trains on (its buckets, its batching), and the same model with Flax's stack in
place of seqrnn's: `nn.RNN` layers of `nn.OptimizedLSTMCell` (or `nn.GRUCell`)
given `seq_lengths`, `nn.Bidirectional` where the config reads both ways,
dropout between layers; the same embedding, character encoder, head, loss and
optimiser. Where the config packs rows (`data.pack`), Flax (whose `nn.RNN`
cannot start a new sequence mid-row) gets one sequence a row, and so does a
second seqrnn trainer, to show what packing gives. All train step by step
interleaved, so that machine noise hits them alike. Pass 1 includes compilation (each padded length compiles when it
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
  def stream(pack):
    return [jax.device_put(batching.train_batch(split, s, batch_size=config.data.batch_size,
                                                buckets=buckets, seed=config.seed, pack=pack))
            for s in range(FLAGS.steps)]
  ours = stream(config.data.pack)
  one_a_row = stream(False) if config.data.pack else ours
  model = build_model(config.task, config.model, num_classes=dataset.num_classes,
                      vocab_size=dataset.vocab_size, num_chars=dataset.num_chars)
  runs = {'seqrnn': (Trainer(model, config, ours[0]), ours)}  # name -> (trainer, batches)
  if config.data.pack:
    runs['seqrnn, one sequence a row'] = Trainer(model, config, one_a_row[0]), one_a_row
  runs['flax'] = Trainer(flax_model(config, dataset), config, one_a_row[0]), one_a_row
  real, slots = {}, {}
  print(f'{config.data.name}: {FLAGS.steps} steps of batch {config.data.batch_size}, buckets '
        f'{buckets}; backend {jax.default_backend()}')
  for name, (_, batches) in runs.items():
    real[name] = sum(int(b['lengths'].sum()) for b in batches)
    slots[name] = sum(b['lengths'].shape[0] * b['inputs'].shape[1] for b in batches)
    print(f'  {name}: {len(set(b["inputs"].shape for b in batches))} shapes, padding '
          f'{1 - real[name] / slots[name]:.3f}, {real[name]:,} real timesteps')
  print('| impl | pass | real timesteps/s | compile s | seconds |\n|---|---|---|---|---|')
  passes = {}  # (impl, pass) -> (seconds, compile seconds)
  for name in ('with compilation', 'compiled'):
    for t, _ in runs.values():
      t.seconds = t.compile_s = 0.0
    for step in range(FLAGS.steps):
      for t, batches in runs.values():
        t.train(batches[step])
    for impl, (t, _) in runs.items():
      passes[impl, name] = t.seconds, t.compile_s
      print(f'| {impl} | {name} | {real[impl] / t.seconds:,.0f} | {t.compile_s:.1f} | '
            f'{t.seconds:.1f} |', flush=True)
  rate = {impl: real[impl] / passes[impl, 'compiled'][0] for impl in runs}
  for impl in runs:
    if impl != 'seqrnn':
      print(f'seqrnn / {impl}, compiled: {rate["seqrnn"] / rate[impl]:.2f}x the real '
            f'timesteps/s')
  per_shape = passes['seqrnn', 'with compilation'][1] / len(runs['seqrnn'][0].compiled)
  per_slot = passes['seqrnn', 'compiled'][0] / slots['seqrnn']
  print(f'seqrnn: a compile {per_shape:.1f} s a shape, a padded slot {1e6 * per_slot:.0f} us '
        f'of training: a shape costs {per_shape / per_slot:,.0f} slots')

if __name__ == '__main__':
  app.run(main)
