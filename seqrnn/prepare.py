"""What a run prepares before its loop: checked data, padded lengths, models and fresh states."""

import contextlib
import os
import pathlib
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.experimental.compilation_cache import compilation_cache
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from seqrnn import config as config_lib
from seqrnn import data as data_lib
from seqrnn import group
from seqrnn.batch import validate_batch
from seqrnn.data import batching
from seqrnn.models import build_model
from seqrnn.spans import bio_tags
from seqrnn.tasks import get_task
from seqrnn.train import create_train_state, make_optimizer


def load_and_check_data(config):
  """The Dataset of `config.data`, every split validated against the model's needs."""
  dataset = data_lib.load(config.data)
  for name, split in dataset.splits.items():
    if config.model.words.char_encoder == 'none':
      split.pop('chars', None)  # read by nothing: not batched, not sent to the devices
    validate_batch(split, task=config.task, num_classes=dataset.num_classes,
                   num_features=dataset.num_features, vocab_size=dataset.vocab_size,
                   num_chars=dataset.num_chars, name=f'data set {config.data.name!r} split {name!r}')
  return dataset


def use_compilation_cache(directory, max_gib=0):
  """Points JAX's persistent compilation cache at `directory`, so that a second run,
  or a resume, of the same config loads its compiled steps instead of compiling
  them again. '' leaves JAX's own setting as it is. Programs that compile in 0.2 s
  or more are kept (JAX's default: 1 s); a lower threshold already set, as
  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 for the tests, is kept too.
  `max_gib` > 0 first trims the directory to that size (`trim_compilation_cache`)."""
  if not directory:
    return
  path = str(pathlib.Path(directory).expanduser())
  if max_gib > 0:
    trim_compilation_cache(path, int(max_gib * 2**30))
  if jax.config.jax_compilation_cache_dir != path:
    jax.config.update('jax_compilation_cache_dir', path)
    compilation_cache.reset_cache()  # a cache in use would otherwise keep its old directory
  jax.config.update('jax_persistent_cache_min_compile_time_secs',
                    min(jax.config.jax_persistent_cache_min_compile_time_secs, 0.2))


def trim_compilation_cache(directory, max_bytes):
  """Deletes the least recently used entries of the JAX compilation cache in
  `directory` until the rest take at most `max_bytes`; returns how many went.

  Any entry may go: a program JAX does not find there is compiled again. Only files
  named as JAX names its entries (`*-cache`, with the `*-atime` beside each where
  JAX's own limit is on) are counted or deleted, so a cache pointed at a directory
  holding other files leaves those alone. Done here rather than by JAX's own limit
  (`jax_compilation_cache_max_size`), which needs the `filelock` package."""
  if not os.path.isdir(directory):
    return 0
  entries = []
  with os.scandir(directory) as it:
    for entry in it:
      if entry.is_file(follow_symlinks=False) and entry.name.endswith('-cache'):
        stat = entry.stat(follow_symlinks=False)
        entries.append((max(stat.st_atime, stat.st_mtime), stat.st_size, entry.path))
  entries.sort()
  total, removed = sum(size for _, size, _ in entries), 0
  for _, size, path in entries:
    if total <= max_bytes:
      break
    for name in (path, path.removesuffix('-cache') + '-atime'):
      with contextlib.suppress(FileNotFoundError):  # no time file, or another run was first
        os.remove(name)
    total, removed = total - size, removed + 1
  return removed


# Data fields read after the data are loaded (checked again once a config.adapt rule has run):
# a rule that sets any other reads the data again.
BATCH_SIZES = ('data.batch_size', 'data.eval_batch_size')


class Setup(NamedTuple):
  configs: list   # the runs' configs: config.adapt's rule applied, train.num_epochs in steps
  steps_per_epoch: int  # of the training split, whole batches (packed rows with data.pack)
  dataset: Any
  buckets: tuple
  models: list    # each run's model (its evaluation reads its own regularisation rates)
  states: list    # each run's fresh train state, replicated over every device
  mesh: Any       # every device of every process, one axis 'data'
  adapted: dict   # {field: (before, after)} that the first run's config.adapt rule changed


def seed_keys(seed):
  """(parameter initialisation key, dropout key) of a run seeded `seed`."""
  return tuple(jax.random.split(jax.random.key(seed)))


def check_batch_sizes(config):
  """Refuses batch sizes the devices cannot share evenly."""
  num_devices = jax.device_count()
  for field in ('batch_size', 'eval_batch_size'):
    if config.data[field] % num_devices:
      raise ValueError(f'config.data.{field}={config.data[field]} is not divisible by the '
                       f'{num_devices} devices the batch is sharded over')


def prepare_data(config):
  """(dataset, buckets) of `config`, checked; with the compilation cache in place."""
  use_compilation_cache(config.train.compilation_cache, config.train.compilation_cache_gib)
  dataset = load_and_check_data(config)
  check_batch_sizes(config)
  all_lengths = np.concatenate([s['lengths'] for s in dataset.splits.values()])
  if config.data.num_buckets == 'auto':
    trained = (config.train.num_epochs * len(dataset.splits['train']['lengths'])
               or config.train.num_steps * config.data.batch_size)
    return dataset, batching.auto_bucket_lengths(all_lengths, trained_sequences=trained)
  return dataset, batching.bucket_lengths(all_lengths, int(config.data.num_buckets))


def setup(configs, started=None):
  """Data, buckets, models and fresh train states of `configs` (one group), on every device.
  `started`: per config, the flat config its workdir's run began with, or None (a new run):
  config.adapt's rule keeps what that run began with where a resume may not change it."""
  dataset, buckets = prepare_data(configs[0])
  train = dataset.splits['train']
  stats = {'sequences': len(train['lengths']), 'steps': int(np.sum(train['lengths'])),
           'longest': int(np.max(train['lengths'])), 'classes': dataset.num_classes,
           # the fewest training sequences of a class (classification); 0 when labels are per step
           'smallest_class': (int(np.bincount(train['labels'],
                                              minlength=dataset.num_classes).min())
                              if train['labels'].ndim == 1 else 0),
           'train': train}  # the arrays themselves, for a rule that measures the series
  configs, changes = map(list, zip(*(config_lib.adapted(c, stats, s)
                                      for c, s in zip(configs, started or [None] * len(configs)))))
  if len({group.group_key(c) for c in configs}) > 1:  # as train_runs checks before the rule:
    flat = [config_lib.to_flat_dict(c) for c in configs]  # one model, one reading of the data
    differ = sorted({k for f in flat[1:] for k in f if f[k] != flat[0][k]} - set(group.VECTORISED))
    raise ValueError(f'the runs\' workdirs began with different {", ".join(differ)} (which '
                     f'config.adapt keeps as each run began): train them one by one')
  if any(k.startswith('data.') and k not in BATCH_SIZES for k in changes[0]):
    dataset, buckets = prepare_data(configs[0])  # the rule chose how the data are read
    train = dataset.splits['train']
  check_batch_sizes(configs[0])  # as the rule set them
  per_epoch = batching.steps_per_epoch(train, configs[0].data.batch_size, buckets,
                                       configs[0].data.pack, configs[0].data.balance_classes)
  configs = [config_lib.in_steps(c, per_epoch) for c in configs]
  base = configs[0]
  models = [build_model(c.task, c.model, num_classes=dataset.num_classes,
                        vocab_size=dataset.vocab_size, num_chars=dataset.num_chars)
            for c in configs]
  example = batching.train_batch(train, 0, batch_size=base.data.batch_size,
                                 buckets=buckets, seed=base.seed, pack=base.data.pack,
                                 balance=base.data.balance_classes)
  spans = bio_tags(dataset.class_names) if base.data.tag_scheme == 'bio' else None
  # Every device of every process holds the whole state; batches are split by rows.
  mesh = Mesh(jax.devices(), ('data',))
  # The first model trains them all (a vectorised step gives each run its own rates).
  states = [jax.device_put(create_train_state(
      seed_keys(c.seed)[0], models[0], example, make_optimizer(c.optim, c.train.num_steps),
      get_task(c.task, spans=spans, label_smoothing=c.train.label_smoothing)),
      NamedSharding(mesh, P())) for c in configs]
  return Setup(configs, per_epoch, dataset, buckets, models, states, mesh, changes[0])


def put_sharded(mesh, spec):
  """A process's share of a global batch -> global arrays sharded as `spec`."""
  sharding = NamedSharding(mesh, spec)
  return lambda batch: {k: jax.make_array_from_process_local_data(sharding, v)
                        for k, v in batch.items()}


def packing_line(split, buckets):
  """How full packed rows are, for the data line."""
  rows = batching.steps_per_epoch(split, 1, buckets, pack=True)
  return f', packed {len(split["lengths"]) / rows:.2f} a row ({rows} rows an epoch)'
