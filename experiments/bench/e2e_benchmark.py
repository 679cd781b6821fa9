"""End to end on real data: real (non-padding) timesteps per second of training.

  python -m experiments.bench.e2e_benchmark --steps=300    # the Turkish tagger (turkish_pos.py)
  python -m experiments.bench.e2e_benchmark --steps=300 --baseline=/tmp/old  # and an older commit
  python -m experiments.bench.e2e_benchmark --config=experiments/configs/ocr.py \
      --config.data.path=.../letter.data.gz
  python -m experiments.bench.e2e_benchmark --variant=model.head=crf  # the CRF head's cost

Trains the config's model for `--steps` steps on the batches a run of the config
trains on (its buckets, its batching), and the same model with Flax's stack in
place of seqrnn's: `nn.RNN` layers of `nn.OptimizedLSTMCell` (or `nn.GRUCell`)
given `seq_lengths`, `nn.Bidirectional` where the config reads both ways,
dropout between layers; the same embedding, character encoder, head, loss and
optimiser. Where the config packs rows (`data.pack`), Flax (whose `nn.RNN`
cannot start a new sequence mid-row) gets one sequence a row, and so does a
second seqrnn trainer, to show what packing gives. The JAX trainers train step
by step interleaved, so that machine noise hits them alike: pass 1 includes
compilation (each padded length compiles when it first appears), pass 2
repeats the same steps with everything compiled.

`--variant=FIELD=VALUE` (repeatable) adds the config's model with that model field
changed (e.g. `model.head=crf`) as one more seqrnn trainer, on the same batches.

`--baseline=DIR` adds another seqrnn commit's code, checked out in DIR (e.g.
`git worktree add DIR COMMIT`), to the interleaved trainers: its version of the
config, on its own batches, so that two commits compare in one process.

When torch happens to be importable (never a dependency), the same tagger in
torch, its `nn.LSTM` fed packed sequences (`pack_padded_sequence`: it computes
no padding at all), then trains on the one-sequence-a-row batches in two passes
of its own. Not interleaved: torch's and XLA's thread pools, both awake in one
process, slowed every trainer (seqrnn's real timesteps/s by 14% over 150
steps, docs/speed.md).
Prints, for each: real timesteps/s with and without compilation, compile
seconds, the number of compiled shapes and the padding fraction of its steps;
and what one more compiled shape costs seqrnn's training in padded (sequence,
step) slots, the figure behind `data.num_buckets='auto'`
(`seqrnn.data.batching.COMPILE_COST_SLOTS`; evaluation compiles too, on top).
"""

import importlib
import pathlib
import sys
import time
import types

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from experiments.bench.benchmark import Trainer, flax_model
from seqrnn import run as run_lib
from seqrnn.data import batching
from seqrnn.models import build_model

config_flags.DEFINE_config_file('config', 'experiments/configs/turkish_pos.py',
                                'The config whose model and batches are timed.')
flags.DEFINE_integer('steps', 300, 'Training steps timed in each pass.')
flags.DEFINE_string('baseline', None, 'A checkout of another seqrnn commit (960cae3 or later): '
                    'its code trains its version of the config (with the same overrides) on its '
                    'own batches, interleaved with the others.')
flags.DEFINE_multi_string('variant', [], 'model.FIELD=VALUE: also train the config\'s model with '
                          'this field changed, on the same batches (e.g. model.head=crf).')
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
  for variant in FLAGS.variant:
    field, _, value = variant.partition('=')
    changed = config.model.copy_and_resolve_references()
    if not field.startswith('model.') or field[6:] not in changed:
      raise ValueError(f'--variant={variant!r}: expected model.FIELD=VALUE, FIELD one of '
                       f'{sorted(changed)}')
    changed[field[6:]] = type(changed[field[6:]])(value)
    variant_model = build_model(config.task, changed, num_classes=dataset.num_classes,
                                vocab_size=dataset.vocab_size, num_chars=dataset.num_chars)
    runs[f'seqrnn, {variant}'] = Trainer(variant_model, config, ours[0]), ours
  if FLAGS.baseline:
    runs[f'baseline {FLAGS.baseline}'] = baseline_run(FLAGS.baseline)
  print(f'{config.data.name}: {FLAGS.steps} steps of batch {config.data.batch_size}, buckets '
        f'{buckets}; backend {jax.default_backend()}')
  print('| impl | pass | real timesteps/s | compile s | seconds | shapes | padding |\n'
        '|---|---|---|---|---|---|---|')
  passes = time_passes(runs)
  try:  # built and timed after JAX's trainers, on its own: see the module docstring
    torch_run = {'torch, packed sequences': (TorchTrainer(config, dataset), one_a_row)}
  except ImportError:
    torch_run = {}  # torch absent
  passes.update(time_passes(torch_run))
  runs.update(torch_run)
  rate = {impl: real_timesteps(batches) / passes[impl, 'compiled'][0]
          for impl, (_, batches) in runs.items()}
  for impl in runs:
    if impl != 'seqrnn':
      print(f'seqrnn / {impl}, compiled: {rate["seqrnn"] / rate[impl]:.2f}x the real '
            f'timesteps/s')
  per_shape = passes['seqrnn', 'with compilation'][1] / len(runs['seqrnn'][0].compiled)
  per_slot = passes['seqrnn', 'compiled'][0] / slots(ours)
  print(f'seqrnn: a compile {per_shape:.1f} s a shape, a padded slot {1e6 * per_slot:.0f} us '
        f'of training: a shape costs {per_shape / per_slot:,.0f} slots')


def baseline_run(path):
  """(trainer, batches) of the seqrnn checkout at `path`: its `seqrnn` and
  `experiments` packages, imported while this checkout's are out of
  `sys.modules` and put back after, train its version of the config file (the
  same overrides) on the batches its own batching gives."""
  is_ours = lambda name: name.split('.')[0] in ('seqrnn', 'experiments')
  ours = {name: sys.modules.pop(name) for name in list(sys.modules) if is_ours(name)}
  sys.path.insert(0, str(pathlib.Path(path).resolve()))
  try:
    config_file = pathlib.Path(config_flags.get_config_filename(FLAGS['config']))
    module = '.'.join(config_file.resolve().relative_to(pathlib.Path.cwd()).with_suffix('').parts)
    config = importlib.import_module(module).get_config()
    config.update_from_flattened_dict(config_flags.get_override_values(FLAGS['config']))
    config.train.compilation_cache = ''
    lib = types.SimpleNamespace(**{name: importlib.import_module(f'seqrnn.{name}')
                                   for name in ('run', 'train', 'tasks', 'models')})
    batching_lib = importlib.import_module('seqrnn.data.batching')
    dataset, buckets = lib.run.prepare_data(config)
    batches = [jax.device_put(batching_lib.train_batch(
        dataset.splits['train'], s, batch_size=config.data.batch_size, buckets=buckets,
        seed=config.seed, **({'pack': config.data.pack} if 'pack' in config.data else {})))
        for s in range(FLAGS.steps)]
    model = lib.models.build_model(config.task, config.model, num_classes=dataset.num_classes,
                                   vocab_size=dataset.vocab_size, num_chars=dataset.num_chars)
    return Trainer(model, config, batches[0], lib), batches
  finally:
    sys.path.pop(0)
    for name in [name for name in sys.modules if is_ours(name)]:
      del sys.modules[name]
    sys.modules.update(ours)


def real_timesteps(batches):
  return sum(int(b['lengths'].sum()) for b in batches)


def slots(batches):
  return sum(b['lengths'].shape[0] * b['inputs'].shape[1] for b in batches)


def time_passes(runs):
  """Trains each {impl: (trainer, batches)} of `runs` on its batches, step by
  step interleaved, in two passes (the first compiles each new shape) and
  prints a row for each. Returns {(impl, pass): (seconds, compile seconds)}."""
  passes = {}
  for name in ('with compilation', 'compiled'):
    for t, _ in runs.values():
      t.seconds = t.compile_s = 0.0
    for step in range(FLAGS.steps):
      for t, batches in runs.values():
        t.train(batches[step])
    for impl, (t, batches) in runs.items():
      passes[impl, name] = t.seconds, t.compile_s
      real = real_timesteps(batches)
      print(f'| {impl} | {name} | {real / t.seconds:,.0f} | {t.compile_s:.1f} | '
            f'{t.seconds:.1f} | {len(set(b["inputs"].shape for b in batches))} | '
            f'{1 - real / slots(batches):.3f} |', flush=True)
  return passes


class TorchTrainer:
  """The config's tagger in torch, timed like `Trainer`: word embedding (with
  word-type dropout) joined to the character CNN, `nn.LSTM` over packed
  sequences with dropout after each layer, the head, the cross-entropy over real
  words, gradient clipping and Adam on the config's cosine schedule."""

  def __init__(self, config, dataset):
    import torch  # only when present: never a dependency
    m, optim = config.model, config.optim
    if (config.task != 'labelling' or m.cell != 'lstm' or m.words.char_encoder not in ('cnn', 'none')
        or m.merge != 'concat' or m.residual or m.words.word_dropout or m.variational_dropout
        or m.zoneout_hidden or m.zoneout_cell or m.initial_carry != 'zeros'
        or optim.name != 'adam' or optim.schedule != 'cosine' or optim.warmup_steps):
      raise ValueError('the torch tagger stands in for a plain LSTM tagger (cosine Adam)')
    nn = torch.nn
    torch.manual_seed(config.seed)
    self.torch, self.config = torch, config
    self.embed = nn.Embedding(dataset.vocab_size, m.words.embed_dim)
    width = m.words.embed_dim
    if m.words.char_encoder == 'cnn':
      self.char_embed = nn.Embedding(dataset.num_chars, m.words.char_embed_dim)
      self.char_conv = nn.Conv1d(m.words.char_embed_dim, m.words.char_hidden_size, 3, padding=1)
      width += m.words.char_hidden_size
    self.lstm = nn.LSTM(width, m.hidden_size, m.num_layers, batch_first=True,
                        dropout=m.dropout_rate, bidirectional=m.bidirectional)
    self.drop = nn.Dropout(m.dropout_rate)  # nn.LSTM drops between layers; this, the top's
    self.head = nn.Linear(m.hidden_size * (2 if m.bidirectional else 1), dataset.num_classes)
    modules = [self.embed, self.lstm, self.head] + (
        [self.char_embed, self.char_conv] if m.words.char_encoder == 'cnn' else [])
    for module in modules + [self.drop]:
      module.train(True)
    self.params = [p for module in modules for p in module.parameters()]
    self.opt = torch.optim.Adam(self.params, lr=optim.learning_rate)
    self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt,
                                                                config.train.num_steps)
    self.tensors = {}  # id(batch) -> its arrays as torch tensors, made once, untimed
    self.compile_s = self.seconds = 0.0

  def _words(self, tokens_bt, chars_btc):
    torch, m = self.torch, self.config.model
    x = self.embed(tokens_bt)
    keep = 1.0 - m.words.embed_dropout
    if keep < 1:  # whole word types dropped, one draw per type per batch
      kept_v = torch.rand(self.embed.num_embeddings) < keep
      x = torch.where(kept_v[tokens_bt][..., None], x / keep, 0.0)
    if m.words.char_encoder == 'none':
      return x
    rows, steps, width = chars_btc.shape
    chars_nc = chars_btc.reshape(rows * steps, width)
    real_nc = chars_nc > 0
    c = torch.where(real_nc[..., None], self.char_embed(chars_nc), 0.0)
    y = torch.relu(self.char_conv(c.transpose(1, 2))).transpose(1, 2)
    out = torch.where(real_nc[..., None], y, -torch.inf).amax(1)
    out = torch.where(real_nc.any(1)[:, None], out, 0.0)
    return torch.cat([x, out.reshape(rows, steps, -1)], -1)

  def train(self, batch):
    torch = self.torch
    if id(batch) not in self.tensors:
      arrays = (batch['inputs'], batch['lengths'], batch['labels'], batch.get('chars'))
      self.tensors[id(batch)] = [None if a is None else torch.from_numpy(np.array(a)).long()
                                 for a in arrays]
    tokens, lengths, labels, chars = self.tensors[id(batch)]
    start = time.perf_counter()
    pack = lambda x: torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                             enforce_sorted=False)
    self.opt.zero_grad()
    outputs, _ = self.lstm(pack(self._words(tokens, chars)))
    logits = self.head(self.drop(outputs.data))  # [real words, classes]
    loss = torch.nn.functional.cross_entropy(logits, pack(labels).data)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(self.params, self.config.optim.grad_clip_norm)
    self.opt.step()
    self.schedule.step()
    self.seconds += time.perf_counter() - start
    return {'loss': (loss.item(), 1.0)}


if __name__ == '__main__':
  app.run(main)
