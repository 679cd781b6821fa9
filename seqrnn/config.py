"""The configuration schema: every field with its default and meaning, and checks.

Experiment configs (`experiments/configs/*.py`) start from `default_config()`
and change fields; `validate_config` rejects unknown fields, wrong types and
out-of-range values with a message naming the field, before any work starts.
"""

import difflib
import importlib.util
import math
import pathlib

import jax
import ml_collections


def default_config():
  c = ml_collections.ConfigDict()
  c.task = 'classification'      # 'classification' (a label per sequence) or 'labelling' (per step)
  c.seed = 0                     # seeds parameters, dropout and data order, in [0, 2**31)

  c.model = ml_collections.ConfigDict()
  c.model.cell = 'gru'           # 'gru', 'lstm', layer-normalised 'ln_gru', 'ln_lstm', a Flax cell ('flax_lstm', 'flax_gru', 'flax_optimized_lstm',
                                 # 'flax_mgu', 'flax_simple'), or a cell class's dotted path ('pkg.module.Cell')
  c.model.impl = 'auto'          # time loop: 'fused' (hand-written backward), 'scan' (nn.scan, any cell), 'auto'
  c.model.hidden_size = 128      # units per layer
  c.model.num_layers = 1         # stacked recurrent layers
  c.model.dropout_rate = 0.0     # dropout on each layer's output during training, a mask per step, in [0, 1)
  c.model.variational_dropout = 0.0  # one mask per sequence on each layer's input, its recurrent state and the top output
  c.model.zoneout_hidden = 0.0   # zoneout: each hidden unit keeps its previous value with this probability
  c.model.zoneout_cell = 0.0     # zoneout of an LSTM's cell state
  c.model.embed_dim = 64         # embedding size, used only when inputs are tokens
  c.model.embed_dropout = 0.0    # tokens: drop whole word types (one draw per type and batch), in [0, 1)
  c.model.word_dropout = 0.0     # tokens: replace each word by the unknown word with this probability
  c.model.char_encoder = 'none'  # tokens: each word's characters through 'lstm' (a BiLSTM) or 'cnn', joined to its embedding
  c.model.char_embed_dim = 32    # character embedding size
  c.model.char_hidden_size = 64  # character encoder units (per direction for 'lstm')
  c.model.dtype = 'float32'      # computation dtype ('float32' or 'bfloat16'); parameters stay float32
  c.model.unroll = 1             # timesteps per iteration of the scanned loop
  c.model.remat_chunk = '0'      # fused loop, long sequences: keep the carry every k steps and recompute
                                 # the rest in the backward pass (the same gradients to rounding, less memory): '0' off, 'k', 'auto' (~sqrt(time))
  c.model.bidirectional = False  # each layer also reads each sequence backwards from its last real step
  c.model.merge = 'concat'       # bidirectional: 'concat' or 'sum' the two directions' outputs
  c.model.residual = False       # add a layer's input to its output where the widths match
  c.model.initial_carry = 'zeros'  # each layer's initial carry: 'zeros' or 'learned'
  c.model.pooling = 'last'       # classification: the last real output, or 'mean' / 'max' over real steps

  c.data = ml_collections.ConfigDict()
  c.data.name = 'digits'         # a name in seqrnn.data.DATASETS
  c.data.path = ''               # file or directory for data sets read from disk
  c.data.batch_size = 64         # global batch size (all devices and hosts together)
  c.data.eval_batch_size = 256   # batch size of evaluation and test
  c.data.num_buckets = 'auto'    # padded lengths per data set (compiled shapes): 'auto' weighs a compile per
                                 # length against the padding it saves over the run; 'k' forces at most k
  c.data.pack = False            # labelling: a training row as long as its bucket also takes shorter sequences
                                 # end to end into what would be padding (each read as if alone); batch_size counts rows
  c.data.lowercase = False       # treebanks: lower-case words before building the vocabulary
  c.data.min_count = 1           # treebanks: words seen fewer times in training are out of vocabulary
  c.data.fold = 0                # ocr: the fold held out for testing (or trained on, below)
  c.data.train_on_one_fold = False  # ocr: train on `fold` and test on the other nine
  c.data.series = 'JapaneseVowels'  # uea: the UEA/UCR data set's name
  c.data.tag_column = 'upos'     # treebanks: CoNLL-U column to predict, 'upos' or 'xpos'
  c.data.max_word_chars = 20     # treebanks: characters kept of each word (longer words are cut)
  c.data.frame_size = 1          # float series: read this many consecutive steps as one step; 0 picks it
                                 # from the lengths (the longest training series in at most 64 steps)
  c.data.frame_stride = 0        # steps between frames' starts; 0 means frame_size (no overlap)
  c.data.eval_fraction = 0.15    # uea: training series held out for eval; 0 evaluates on the training split

  c.optim = ml_collections.ConfigDict()
  c.optim.name = 'adam'          # 'adam', 'adamw' or 'sgd'
  c.optim.learning_rate = 3e-3   # peak learning rate
  c.optim.schedule = 'cosine'    # 'constant' or 'cosine' (decay to 0 over train.num_steps)
  c.optim.warmup_steps = 0       # linear warm-up from 0 to the peak, at most train.num_steps
  c.optim.grad_clip_norm = 1.0   # clip gradients to this global norm; 0 disables
  c.optim.weight_decay = 0.0     # adamw only

  c.train = ml_collections.ConfigDict()
  c.train.num_steps = 1000       # optimiser steps in the whole run
  c.train.log_every_steps = 50   # train metrics to metrics.jsonl / TensorBoard
  c.train.eval_every_steps = 200  # evaluation on the eval split
  c.train.checkpoint_every_steps = 200  # Orbax checkpoint of the train state
  c.train.keep_checkpoints = 2   # most recent checkpoints kept
  c.train.best_metric = 'accuracy'  # eval metric (higher is better) whose best state is kept in WORKDIR/best
  c.train.compilation_cache = '~/.cache/seqrnn/jax'  # JAX's persistent compilation cache, reused by later runs; '' disables
  c.train.skip_nonfinite = False  # on a NaN/Inf loss, gradient or update, or an invalid batch: skip it (True) or stop (False)
  return c


def debug_variant(config):
  """`config` shrunk to a seconds-long smoke run (what `--config=FILE:debug` selects)."""
  config.model.hidden_size = 16
  config.model.embed_dim = 16
  config.model.num_layers = 1
  config.train.num_steps = 20
  config.train.log_every_steps = config.train.eval_every_steps = 10
  config.train.checkpoint_every_steps = 10
  return config


def apply_variant(config, arg, variants):
  """`config` changed by `variants[arg]`, the `:arg` of `--config=FILE:arg`.

  No argument keeps `config`; an unknown one is refused, naming the known ones,
  rather than silently running the full default config.
  """
  if arg:
    if arg not in variants:
      raise ValueError(f'unknown config variant {arg!r}; this config knows {sorted(variants)}')
    variants[arg](config)
  return config


_CHOICES = {
    'task': ('classification', 'labelling'),
    'model.impl': ('auto', 'scan', 'fused'),
    'model.merge': ('concat', 'sum'),
    'model.initial_carry': ('zeros', 'learned'),
    'model.pooling': ('last', 'mean', 'max'),
    'model.char_encoder': ('none', 'lstm', 'cnn'),
    'model.dtype': ('float32', 'bfloat16'),
    'data.tag_column': ('upos', 'xpos'),
    'train.best_metric': ('accuracy', 'sequence_accuracy'),
    'optim.name': ('adam', 'adamw', 'sgd'),
    'optim.schedule': ('constant', 'cosine'),
}
_POSITIVE = ('model.hidden_size', 'model.num_layers', 'model.embed_dim', 'model.unroll',
             'model.char_embed_dim', 'model.char_hidden_size', 'data.max_word_chars',
             'data.batch_size', 'data.eval_batch_size', 'data.min_count',
             'optim.learning_rate', 'train.num_steps', 'train.log_every_steps',
             'train.eval_every_steps', 'train.checkpoint_every_steps', 'train.keep_checkpoints')
_NON_NEGATIVE = ('optim.warmup_steps', 'optim.grad_clip_norm', 'optim.weight_decay',
                 'data.frame_size', 'data.frame_stride')
_UNIT_INTERVAL = ('model.dropout_rate', 'model.variational_dropout', 'model.zoneout_hidden',
                  'model.zoneout_cell', 'model.embed_dropout', 'model.word_dropout',
                  'data.eval_fraction')  # in [0, 1)


def _flatten(config, prefix=''):
  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_flatten(value, f'{prefix}{key}.'))
    else:
      out[prefix + key] = value
  return out


def command_line_errors(argv):
  """Messages for a `--config=FILE[:VARIANT]` that cannot be loaded and for unknown
  `--config.<field>` overrides, checked before absl parses the flags (whose own
  error is the last line of a traceback)."""
  return _config_file_errors(argv) + unknown_overrides(argv)


def _config_file_errors(argv):
  values = [a.split('=', 1)[1] for a in argv if a.startswith('--config=')]
  values += [b for a, b in zip(argv, argv[1:]) if a == '--config']
  errors = []
  for value in values:
    path, _, variant = value.partition(':')
    if not pathlib.Path(path).is_file():
      errors.append(f'--config={value}: {path} is not a file')
      continue
    spec = importlib.util.spec_from_file_location(f'_seqrnn_config_{pathlib.Path(path).stem}', path)
    module = importlib.util.module_from_spec(spec)
    try:
      spec.loader.exec_module(module)
      module.get_config(*([variant] if variant else []))
    except Exception as e:  # noqa: BLE001 - said in one line, as absl would not
      errors.append(f'--config={value}: {e if isinstance(e, ValueError) else repr(e)}')
  return errors


def unknown_overrides(argv):
  """Messages for `--config.<field>=...` arguments naming no field of the schema."""
  known = _flatten(default_config())
  errors = []
  for arg in argv:
    if arg.startswith('--config.'):
      field = arg[len('--config.'):].split('=', 1)[0]
      if field not in known:
        close = difflib.get_close_matches(field, known, n=1)
        hint = f'; did you mean config.{close[0]}?' if close else ''
        errors.append(f'{arg}: config.{field} is not a config field{hint}')
  return errors


def validate_config(config):
  """Raises ValueError/TypeError naming the first bad field of `config`."""
  reference = _flatten(default_config())
  fields = _flatten(config)
  unknown = sorted(set(fields) - set(reference))
  if unknown:
    raise ValueError(f'unknown config field(s) {unknown}; known fields: {sorted(reference)}')
  missing = sorted(set(reference) - set(fields))
  if missing:
    raise ValueError(f'config is missing field(s) {missing}')
  for name, value in fields.items():
    expected = type(reference[name])
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
      ok = True
    if not ok:
      raise TypeError(f'config.{name}={value!r} has type {type(value).__name__}; '
                      f'expected {expected.__name__}')
  for name, value in fields.items():
    if isinstance(value, float) and not math.isfinite(value):
      raise ValueError(f'config.{name}={value!r} must be a finite number')
  for name, choices in _CHOICES.items():
    if fields[name] not in choices:
      raise ValueError(f'config.{name}={fields[name]!r} is not one of {list(choices)}')
  for name in _POSITIVE:
    if not fields[name] > 0:
      raise ValueError(f'config.{name}={fields[name]!r} must be > 0')
  for name in _NON_NEGATIVE:
    if not fields[name] >= 0:
      raise ValueError(f'config.{name}={fields[name]!r} must be >= 0')
  if fields['train.best_metric'] == 'sequence_accuracy' and fields['task'] != 'labelling':
    raise ValueError("config.train.best_metric='sequence_accuracy' needs task='labelling'")
  for name in _UNIT_INTERVAL:
    if not 0.0 <= fields[name] < 1.0:
      raise ValueError(f'config.{name}={fields[name]!r} must be in [0, 1)')
  from seqrnn.cells import make_cell  # imports a cell named by its dotted path
  try:
    cell = make_cell(fields['model.cell'], 1)
  except ValueError as e:
    raise ValueError(f'config.model.cell={fields["model.cell"]!r}: {e}') from None
  from seqrnn.layer import Zoneout, loop_for  # every capability the cell needs, checked once
  try:
    loop_for(cell, cell.initialize_carry(jax.random.key(0), (1, 1)), fields['model.impl'],
             fields['model.variational_dropout'],
             Zoneout(fields['model.zoneout_hidden'], fields['model.zoneout_cell']))
  except ValueError as e:
    raise ValueError(f'config.model.cell={fields["model.cell"]!r}: {e}') from None
  if not (fields['model.remat_chunk'] == 'auto' or fields['model.remat_chunk'].isdigit()):
    raise ValueError(f"config.model.remat_chunk={fields['model.remat_chunk']!r} must be 'auto' "
                     f"or a number of steps ('0': off)")
  buckets = fields['data.num_buckets']
  if not (buckets == 'auto' or (buckets.isdigit() and int(buckets) > 0)):
    raise ValueError(f"config.data.num_buckets={buckets!r} must be 'auto' or a number of padded "
                     f"lengths > 0")
  if fields['data.pack'] and fields['task'] != 'labelling':
    raise ValueError(f"config.data.pack=True packs several sequences into a row, for the "
                     f"labelling task; config.task={fields['task']!r} has one label per row")
  if fields['data.pack'] and fields['model.variational_dropout'] > 0:
    raise ValueError('config.data.pack=True: variational dropout draws one mask per row, which '
                     'the sequences of a packed row would share; set one of them off')
  if fields['data.frame_size'] and fields['data.frame_stride'] > fields['data.frame_size']:
    raise ValueError(f"config.data.frame_stride={fields['data.frame_stride']} is more than "
                     f"config.data.frame_size={fields['data.frame_size']}: frames would skip "
                     f"the steps between them and could end on a frame of padding alone")
  if not 0 <= fields['seed'] < 2**31:
    raise ValueError(f'config.seed={fields["seed"]!r} must be in [0, 2**31)')
  if fields['optim.warmup_steps'] > fields['train.num_steps']:
    raise ValueError(f'config.optim.warmup_steps={fields["optim.warmup_steps"]} is more than '
                     f'config.train.num_steps={fields["train.num_steps"]}: the learning rate '
                     f'would never reach its peak')


# Fields a resumed run may not change: they alter the shapes or meaning of the saved
# train state, or which examples are train, eval and test (a model would be tested
# on data it trained on), or the seeded order of the batches already seen.
FIXED_FIELDS = ('task', 'seed', 'model.cell', 'model.hidden_size', 'model.num_layers',
                'model.embed_dim', 'model.char_encoder', 'model.char_embed_dim',
                'model.char_hidden_size', 'data.frame_size', 'data.frame_stride',
                'data.eval_fraction', 'model.bidirectional', 'model.merge', 'model.residual',
                'model.initial_carry', 'model.pooling', 'data.name', 'data.path', 'data.lowercase',
                'data.min_count', 'data.tag_column', 'data.fold', 'data.train_on_one_fold',
                'data.series', 'optim.name')


def resume_conflicts(saved, config):
  """Fields of FIXED_FIELDS where the flat dict `saved` and `config` differ."""
  new = _flatten(config)
  return {f: (saved.get(f), new[f]) for f in FIXED_FIELDS if saved.get(f) != new[f]}


def set_field(config, name, value):
  """Sets field `name` ('group.field') of `config` to `value` (a list for a tuple
  field); a name that is no field raises ValueError naming it."""
  *groups, field = name.split('.')
  node = config
  try:
    for g in groups:
      node = node[g]
    current = node[field]
  except (KeyError, AttributeError):
    raise ValueError(f'config.{name} is not a config field') from None
  if isinstance(current, tuple) or (isinstance(current, str) and isinstance(value, int)):
    value = type(current)(value)  # a list; a count given to a field like num_buckets='auto'
  node[field] = value


def from_flat_dict(flat):
  """The config of a flat {'group.field': value} dict (e.g. a run's config.json);
  fields the schema has gained since keep their defaults."""
  config = default_config()
  for name, value in flat.items():
    set_field(config, name, value)
  return config


def to_flat_dict(config):
  """`config` as a flat {'group.field': value} dict of plain JSON values."""
  return {k: list(v) if isinstance(v, tuple) else v for k, v in _flatten(config).items()}
