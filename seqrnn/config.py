"""The configuration schema: every field with its default, meaning and role, and checks.

Experiment configs (`experiments/configs/*.py`) start from `default_config()`
and change fields; `validate_config` rejects unknown fields, wrong types and
out-of-range values with a message naming the field, before any work starts.

Fields are grouped by what they configure: `model` (the recurrent stack and its
head) with `model.words` (token inputs: embeddings and the character encoder) and
`model.conv` (float inputs: a convolutional front end),
`data` with one group per kind of data set (`treebank`, `ocr`, `uea`, and
`frames` for float series), `optim`, `train`. Each field is declared once, in
`_schema`, beside its role: the values it may take (choices come from the
modules that define them), whether a resumed run may change it (`fixed`), and
whether runs that differ in it train together in one vectorised step
(`vectorised`). Names of fields before the groups still load (`RENAMED`).
"""

import difflib
import functools
import importlib.util
import math
import pathlib
import sys
from typing import Any, NamedTuple

import jax
import ml_collections


class Field(NamedTuple):
  """One config field: its default, its meaning, and its role."""
  default: Any
  doc: str
  choices: tuple = ()       # the values it may take ('' : any)
  bounds: str = ''          # 'positive' (> 0), 'non-negative' (>= 0) or 'unit' (in [0, 1))
  fixed: bool = False       # a resumed run may not change it (shapes of the saved state, which
                            # examples are train/eval/test, the seeded order of batches seen)
  vectorised: bool = False  # runs differing in it train together, as one per-model array


@functools.lru_cache(maxsize=None)
def _schema():
  """{'group.field': Field}, in the order the config shows them."""
  from seqrnn import layer, models, stack, tasks, train, words
  from seqrnn.data import conllu
  F = Field
  return {
      'task': F('classification', "'classification' (a label per sequence), 'labelling' "
                "(per step) or 'ctc' (a label sequence not aligned to the steps)",
                choices=tuple(tasks.TASKS), fixed=True),
      'seed': F(0, 'seeds parameters, dropout and data order, in [0, 2**31)', fixed=True,
                vectorised=True),
      'adapt': F('', "'' or 'module:function', a rule choosing fields from the training "
                 "split's size once it is loaded: function(config, stats) -> config, stats "
                 "{'sequences', 'steps', 'longest', 'classes', 'smallest_class', 'train' (its "
                 "arrays)}; what it sets "
                 "is said and written to config.json (e.g. experiments.configs.uea:by_data)"),

      'model.cell': F('gru', "'gru', 'lstm', layer-normalised 'ln_gru', 'ln_lstm', a Flax cell "
                      "('flax_lstm', 'flax_gru', 'flax_optimized_lstm', 'flax_mgu', "
                      "'flax_simple'), or a cell class's dotted path ('pkg.module.Cell')",
                      fixed=True),
      'model.impl': F('auto', "time loop: 'fused' (hand-written backward), 'scan' (nn.scan, any "
                      "cell), 'auto', 'parallel' (the trajectory at once: one associative scan "
                      "for min_gru/min_lstm, Newton iterations for the others), 'cudnn' (the "
                      "LSTM by cuDNN, GPUs only)",
                      choices=layer.IMPLS),
      'model.parallel_iterations': F(0, "impl='parallel': Newton iterations at most, then the "
                                     "sequential loop finishes; 0: the number of steps",
                                     bounds='non-negative'),
      'model.parallel_jacobian': F('auto', "impl='parallel', Newton: 'full' (exact Newton, a scan "
                                   "of [S, S] matrices), 'diagonal' (quasi-Newton), 'auto' (full "
                                   "for states of at most 32 units)",
                                   choices=('auto', 'diagonal', 'full')),
      'model.parallel_tol': F(1e-5, "impl='parallel': converged once every step's state is "
                              "within this of the cell applied to the step before",
                              bounds='positive'),
      'model.hidden_size': F(128, 'units per layer', bounds='positive', fixed=True),
      'model.num_layers': F(1, 'stacked recurrent layers', bounds='positive', fixed=True),
      'model.dropout_rate': F(0.0, "dropout on each layer's output during training, a mask per "
                              "step", bounds='unit', vectorised=True),
      'model.variational_dropout': F(0.0, "one mask per sequence on each layer's input, its "
                                     "recurrent state and the top output", bounds='unit',
                                     vectorised=True),
      'model.zoneout_hidden': F(0.0, 'zoneout: each hidden unit keeps its previous value with '
                                'this probability', bounds='unit', vectorised=True),
      'model.zoneout_cell': F(0.0, "zoneout of an LSTM's cell state", bounds='unit',
                              vectorised=True),
      'model.dtype': F('float32', "computation dtype; parameters stay float32",
                       choices=('float32', 'bfloat16')),
      'model.unroll': F(1, 'timesteps per iteration of the scanned loop', bounds='positive'),
      'model.remat_chunk': F('0', "fused loop, long sequences: keep the carry every k steps and "
                             "recompute the rest in the backward pass (the same gradients to "
                             "rounding, less memory): '0' off, 'k', 'auto' (~sqrt(time))"),
      'model.bidirectional': F(False, 'each layer also reads each sequence backwards from its '
                               'last real step', fixed=True),
      'model.merge': F('concat', "bidirectional: 'concat' or 'sum' the two directions' outputs",
                       choices=stack.MERGES, fixed=True),
      'model.residual': F(False, "add a layer's input to its output where the widths match",
                          fixed=True),
      'model.initial_carry': F('zeros', "each layer's initial carry: 'zeros' or 'learned'",
                               choices=('zeros', 'learned'), fixed=True),
      'model.pooling': F('last', "classification: the last real output, or 'mean' / 'max' / "
                         "'attention' (a learned query) over real steps",
                         choices=models.POOLINGS, fixed=True),
      'model.crop': F(0.0, "classification, training only: each sequence cut to a random "
                      "window of at least (1 - crop) of its real steps (window slicing); "
                      "evaluation reads it whole", bounds='unit'),
      'model.head': F('softmax', "labelling: 'softmax' (each step's label on its own) or 'crf' "
                      "(a linear-chain CRF: transition scores, Viterbi decoding)",
                      choices=models.HEADS, fixed=True),

      'model.words.embed_dim': F(64, 'embedding size of token inputs', bounds='positive',
                                 fixed=True),
      'model.words.embed_dropout': F(0.0, 'drop whole word types (one draw per type and batch)',
                                     bounds='unit'),
      'model.words.word_dropout': F(0.0, 'replace each word by the unknown word with this '
                                    'probability', bounds='unit'),
      'model.words.char_encoder': F('none', "each word's characters through 'lstm' (a BiLSTM) "
                                    "or 'cnn', joined to its embedding",
                                    choices=words.CHAR_ENCODERS, fixed=True),
      'model.words.char_embed_dim': F(32, 'character embedding size', bounds='positive',
                                      fixed=True),
      'model.words.char_hidden_size': F(64, "character encoder units (per direction for 'lstm')",
                                        bounds='positive', fixed=True),
      'model.words.suffix_length': F(0, "with a char_encoder: an embedding of each word's last "
                                     '1, ..., this many characters joined to its vector; 0: none',
                                     bounds='non-negative', fixed=True),
      'model.words.suffix_embed_dim': F(32, 'size of each suffix embedding', bounds='positive',
                                        fixed=True),

      'model.conv.channels': F(0, 'float inputs: width of a convolutional front end before the '
                               "stack (seqrnn.ConvFrontEnd); 0: none", bounds='non-negative',
                               fixed=True),
      'model.conv.num_layers': F(2, 'its convolutions, each followed by a ReLU',
                                 bounds='positive', fixed=True),
      'model.conv.kernel_size': F(7, 'steps each convolution reads', bounds='positive',
                                  fixed=True),
      'model.conv.dilation_growth': F(1, "convolution i reads steps this**i apart (2: 1, 2, 4, "
                                      "...; WaveNet's doubling); 1: neighbouring steps",
                                      bounds='positive', fixed=True),
      'model.conv.pool': F(1, 'then the max over windows of this many steps: the stack reads '
                           'ceil(length / pool) steps (above 1: classification only)',
                           bounds='positive', fixed=True),

      'data.name': F('digits', 'a name in seqrnn.data.DATASETS', fixed=True),
      'data.path': F('', 'file or directory for data sets read from disk', fixed=True),
      'data.tag_scheme': F('none', "labelling: 'bio' reads the tags as BIO spans (O, B-TYPE, "
                           "I-TYPE) and adds their F1 (span_f1) to the metrics",
                           choices=('none', 'bio'), fixed=True),
      'data.batch_size': F(64, 'global batch size (all devices and hosts together)',
                           bounds='positive'),
      'data.eval_batch_size': F(256, 'batch size of evaluation and test', bounds='positive'),
      'data.num_buckets': F('auto', "padded lengths per data set (compiled shapes): 'auto' "
                            "weighs a compile per length against the padding it saves over "
                            "the run; 'k' forces at most k"),
      'data.pack': F(False, 'labelling: a training row as long as its bucket also takes shorter '
                     'sequences end to end into what would be padding (each read as if alone); '
                     'batch_size counts rows'),
      'data.balance_classes': F(False, 'classification: each training epoch draws every class as '
                                'often as the largest (smaller ones repeated), so tiny classes '
                                'are seen as often as the rest', fixed=True),
      'data.treebank.lowercase': F(False, 'lower-case words before building the vocabulary',
                                   fixed=True),
      'data.treebank.min_count': F(1, 'words seen fewer times in training are out of '
                                   'vocabulary', bounds='positive', fixed=True),
      'data.treebank.tag_column': F('upos', "CoNLL-U column to predict, 'upos' or 'xpos'",
                                    choices=conllu.TAG_COLUMNS, fixed=True),
      'data.treebank.max_word_chars': F(20, 'characters kept of each word (longer words are '
                                        'cut)', bounds='positive'),
      'data.ocr.fold': F(0, 'the fold held out for testing (or trained on, below)', fixed=True),
      'data.ocr.train_on_one_fold': F(False, 'train on `fold` and test on the other nine',
                                      fixed=True),
      'data.uea.series': F('JapaneseVowels', "the UEA/UCR data set's name", fixed=True),
      'data.uea.impute': F('none', "missing values inside a series: 'none' refuses them, "
                           "'linear' interpolates each channel between its real neighbours, "
                           "'zero' puts the channel's training mean (0 once standardised)",
                           choices=('none', 'linear', 'zero'), fixed=True),
      'data.uea.deviation': F(False, "also read each value minus the training split's mean "
                              'series at its step (a second channel per channel): where a '
                              "value's place carries the class, as in spectra", fixed=True),
      'data.uea.eval_fraction': F(0.15, 'training series held out for eval; 0 evaluates on '
                                  'the training split', bounds='unit', fixed=True),
      'data.frames.size': F(1, 'float series: read this many consecutive steps as one step; 0 '
                            'picks it from the lengths (the longest training series in at most '
                            '64 steps)', bounds='non-negative', fixed=True),
      'data.frames.stride': F(0, "steps between frames' starts, at most the size; 0 means "
                              "size (no overlap)", bounds='non-negative', fixed=True),

      'optim.name': F('adam', "'adam', 'adamw' or 'sgd'", choices=train.OPTIMIZERS, fixed=True),
      'optim.learning_rate': F(3e-3, 'peak learning rate', bounds='positive', vectorised=True),
      'optim.schedule': F('cosine', "'constant' or 'cosine' (decay to 0 over train.num_steps)",
                          choices=train.SCHEDULES),
      'optim.warmup_steps': F(0, 'linear warm-up from 0 to the peak, at most train.num_steps',
                              bounds='non-negative'),
      'optim.warmup_epochs': F(0.0, 'warm-up in epochs of the training split: sets (overrides) '
                               'optim.warmup_steps once the data is loaded; 0: warmup_steps',
                               bounds='non-negative'),
      'optim.grad_clip_norm': F(1.0, 'clip gradients to this global norm; 0 disables',
                                bounds='non-negative', vectorised=True),
      'optim.weight_decay': F(0.0, 'adamw only', bounds='non-negative', vectorised=True),

      'train.num_steps': F(1000, 'optimiser steps in the whole run', bounds='positive'),
      'train.num_epochs': F(0.0, 'length of the run in epochs of the training split: sets '
                            'train.num_steps (rounded up) once the data is loaded, so that the '
                            'schedule follows; 0: train.num_steps', bounds='non-negative'),
      'train.log_every_steps': F(50, 'train metrics to metrics.jsonl / TensorBoard',
                                 bounds='positive'),
      'train.eval_every_steps': F(200, 'evaluation on the eval split', bounds='positive'),
      'train.checkpoint_every_steps': F(200, 'Orbax checkpoint of the train state',
                                        bounds='positive'),
      'train.keep_checkpoints': F(2, 'most recent checkpoints kept', bounds='positive'),
      'train.best_metric': F('accuracy', 'eval metric whose best step is the selected model, '
                             'kept in WORKDIR/best (test_best), and which early stopping watches; '
                             'loss and label_error_rate: lower is better',
                             choices=('accuracy', 'sequence_accuracy', 'span_f1', 'loss',
                                      'label_error_rate')),
      'train.best_loss_margin': F(0.0, 'with a train.best_metric other than loss: a step is '
                                  'the best only while its eval loss is at most (1 + this) '
                                  'times the lowest eval loss so far (accuracy does not choose '
                                  'a step the loss says has overfit); 0: off',
                                  bounds='non-negative'),
      'train.label_smoothing': F(0.0, 'train on targets (1 - this) one-hot + this / classes '
                                 '(classification, softmax labelling); eval loss stays the '
                                 'plain cross-entropy', bounds='unit'),
      'train.refit': F(False, 'then train again from scratch on the whole training split (the '
                       'held-out eval series too) for as many epochs as the selected step had, '
                       'in WORKDIR/refit; needs data.uea.eval_fraction > 0'),
      'train.early_stopping_patience': F(0, 'stop training after this many evaluations in a row '
                                         'without a better train.best_metric; 0: never',
                                         bounds='non-negative'),
      'train.compilation_cache': F('~/.cache/seqrnn/jax', "JAX's persistent compilation cache, "
                                   "reused by later runs; '' disables"),
      'train.compilation_cache_gib': F(2.0, 'its size limit in GiB, kept as each run starts by '
                                       'deleting the least recently used entries; 0: none',
                                       bounds='non-negative'),
      'train.skip_nonfinite': F(False, 'on a NaN/Inf loss, gradient or update, or an invalid '
                                'batch: skip it (True) or stop (False)'),
  }


# Fields by the names they had before the groups: config.json files of earlier runs,
# sweep files and command lines that use them still work (the last two say so).
LOWER_IS_BETTER = ('loss', 'label_error_rate')  # eval metrics; the others: higher is better


def better(metric, value, than):
  """Whether `value` of the eval metric `metric` is better than `than` (None: anything is)."""
  if than is None:
    return True
  return value < than if metric in LOWER_IS_BETTER else value > than


RENAMED = {
    **{f'model.{f}': f'model.words.{f}' for f in (
        'embed_dim', 'embed_dropout', 'word_dropout', 'char_encoder', 'char_embed_dim',
        'char_hidden_size')},
    **{f'data.{f}': f'data.treebank.{f}' for f in (
        'lowercase', 'min_count', 'tag_column', 'max_word_chars')},
    'data.fold': 'data.ocr.fold', 'data.train_on_one_fold': 'data.ocr.train_on_one_fold',
    'data.series': 'data.uea.series', 'data.eval_fraction': 'data.uea.eval_fraction',
    'data.frame_size': 'data.frames.size', 'data.frame_stride': 'data.frames.stride',
}


def fields_with(role):
  """The names of the fields with `role` ('fixed' or 'vectorised'), in schema order."""
  return tuple(name for name, f in _schema().items() if getattr(f, role))


def default_config():
  """Every field at its default, as an ml_collections ConfigDict."""
  c = ml_collections.ConfigDict()
  for name, field in _schema().items():
    *groups, leaf = name.split('.')
    node = c
    for g in groups:
      if g not in node:
        node[g] = ml_collections.ConfigDict()
      node = node[g]
    node[leaf] = field.default
  return c


def upgrade(flat):
  """A flat {'group.field': value} dict with fields of RENAMED under their new names."""
  return {RENAMED.get(k, k): v for k, v in flat.items()}


def upgrade_command_line(argv):
  """`argv` with `--config.<old name>=...` overrides under their new names, each said
  once on stderr (old command lines and scripts keep working)."""
  out = []
  for arg in argv:
    if arg.startswith('--config.'):
      name, sep, value = arg[len('--config.'):].partition('=')
      if name in RENAMED:
        sys.stderr.write(f'--config.{name} is deprecated: it is now --config.{RENAMED[name]}\n')
        arg = f'--config.{RENAMED[name]}{sep}{value}'
    out.append(arg)
  return out


def debug_variant(config):
  """`config` shrunk to a seconds-long smoke run (what `--config=FILE:debug` selects)."""
  config.model.hidden_size = 16
  config.model.words.embed_dim = 16
  config.model.words.char_hidden_size = 16  # a rule for small data would not widen it back
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
  fields = {arg: arg[len('--config.'):].split('=', 1)[0] for arg in argv
            if arg.startswith('--config.')}
  return [f'{arg}: {error}' for arg, field in fields.items()
          if (error := unknown_field(field)) is not None]


def unknown_field(name):
  """'config.NAME is not a config field; did you mean ...?' for a name the schema does not
  have (its name before the groups, RENAMED, it has), else None."""
  known = _flatten(default_config())
  if RENAMED.get(name, name) in known:
    return None
  close = difflib.get_close_matches(name, known, n=1)
  return f'config.{name} is not a config field' + (
      f'; did you mean config.{close[0]}?' if close else '')


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
  for name, field in _schema().items():
    value = fields[name]
    if field.choices and value not in field.choices:
      raise ValueError(f'config.{name}={value!r} is not one of {list(field.choices)}')
    if field.bounds == 'positive' and not value > 0:
      raise ValueError(f'config.{name}={value!r} must be > 0')
    if field.bounds == 'non-negative' and not value >= 0:
      raise ValueError(f'config.{name}={value!r} must be >= 0')
    if field.bounds == 'unit' and not 0.0 <= value < 1.0:
      raise ValueError(f'config.{name}={value!r} must be in [0, 1)')
  if fields['train.best_metric'] == 'span_f1' and fields['data.tag_scheme'] != 'bio':
    raise ValueError("config.train.best_metric='span_f1' needs config.data.tag_scheme='bio'")
  if fields['train.best_metric'] == 'sequence_accuracy' and fields['task'] == 'classification':
    raise ValueError("config.train.best_metric='sequence_accuracy' needs task='labelling' or "
                     "'ctc'")
  from seqrnn.cells import make_cell  # imports a cell named by its dotted path
  try:
    cell = make_cell(fields['model.cell'], 1)
  except ValueError as e:
    raise ValueError(f'config.model.cell={fields["model.cell"]!r}: {e}') from None
  from seqrnn.layer import Zoneout, loop_for  # every capability the cell needs, checked once
  try:
    loop_for(cell, cell.initialize_carry(jax.random.key(0), (1, 1)), fields['model.impl'],
             fields['model.variational_dropout'],
             Zoneout(fields['model.zoneout_hidden'], fields['model.zoneout_cell']),
             fields['model.remat_chunk'] if fields['model.remat_chunk'].isdigit() else 'auto')
  except ValueError as e:
    raise ValueError(f'config.model.cell={fields["model.cell"]!r}: {e}') from None
  if not (fields['model.remat_chunk'] == 'auto' or fields['model.remat_chunk'].isdigit()):
    raise ValueError(f"config.model.remat_chunk={fields['model.remat_chunk']!r} must be 'auto' "
                     f"or a number of steps ('0': off)")
  buckets = fields['data.num_buckets']
  if not (buckets == 'auto' or (buckets.isdigit() and int(buckets) > 0)):
    raise ValueError(f"config.data.num_buckets={buckets!r} must be 'auto' or a number of padded "
                     f"lengths > 0")
  if (fields['model.residual'] and fields['model.bidirectional'] and fields['model.merge'] == 'sum'
      and fields['task'] == 'classification' and fields['model.num_layers'] > 1):
    raise ValueError("config.model.residual=True with a bidirectional merge='sum' classifier: "
                     "its top layer's directions stay concatenated (each is pooled on its own), "
                     "twice as wide as its input, which cannot be added; set one of them off")
  if fields['task'] == 'ctc' and fields['train.best_metric'] in ('accuracy', 'span_f1'):
    raise ValueError("config.task='ctc' has no per-step accuracy (its labels are not aligned to "
                     "the steps): set config.train.best_metric='sequence_accuracy' (or "
                     "'label_error_rate' or 'loss')")
  if fields['train.best_metric'] == 'label_error_rate' and fields['task'] != 'ctc':
    raise ValueError(f"config.train.best_metric='label_error_rate' is task='ctc''s; "
                     f"config.task={fields['task']!r}")
  if fields['data.tag_scheme'] != 'none' and fields['task'] != 'labelling':
    raise ValueError(f"config.data.tag_scheme={fields['data.tag_scheme']!r} reads tags of "
                     f"steps; config.task={fields['task']!r} has none")
  if fields['task'] == 'ctc' and fields['data.pack']:
    raise ValueError("config.data.pack=True joins sequences in a row; CTC's labels are not "
                     "aligned to steps, so a row's could not be told apart: set it False")
  if fields['model.head'] != 'softmax' and fields['task'] != 'labelling':
    raise ValueError(f"config.model.head={fields['model.head']!r} labels every step, for "
                     f"task='labelling'; config.task={fields['task']!r} does not")
  if fields['train.label_smoothing'] and (fields['task'] == 'ctc'
                                          or fields['model.head'] != 'softmax'):
    raise ValueError(f"config.train.label_smoothing={fields['train.label_smoothing']} smooths a "
                     f"softmax's per-label target: task={fields['task']!r} with "
                     f"model.head={fields['model.head']!r} has none (set it 0)")
  if fields['model.crop'] and fields['task'] != 'classification':
    raise ValueError(f"config.model.crop={fields['model.crop']} cuts each sequence to a window; "
                     f"task={fields['task']!r} has a label for every step: set it 0")
  if fields['model.conv.pool'] > 1 and fields['task'] != 'classification':
    raise ValueError(f"config.model.conv.pool={fields['model.conv.pool']} shortens each sequence; "
                     f"task={fields['task']!r} needs an output a step: set it 1")
  if fields['model.conv.channels'] and fields['data.pack']:
    raise ValueError('config.model.conv.channels: a convolutional front end would read across '
                     'the sequences of a packed row; set config.data.pack=False')
  if fields['data.balance_classes'] and fields['task'] != 'classification':
    raise ValueError(f"config.data.balance_classes=True draws by each sequence's one label: it "
                     f"needs task='classification', not {fields['task']!r}")
  if fields['data.pack'] and fields['task'] != 'labelling':
    raise ValueError(f"config.data.pack=True packs several sequences into a row, for the "
                     f"labelling task; config.task={fields['task']!r} has one label per row")
  if fields['data.pack'] and fields['model.variational_dropout'] > 0:
    raise ValueError('config.data.pack=True: variational dropout draws one mask per row, which '
                     'the sequences of a packed row would share; set one of them off')
  if fields['data.uea.deviation'] and fields['data.name'] != 'uea':
    raise ValueError(f"config.data.uea.deviation=True is read by data set 'uea' alone; "
                     f"data.name={fields['data.name']!r} would ignore it: set it False")
  if fields['model.words.suffix_length'] and fields['model.words.char_encoder'] == 'none':
    raise ValueError(f"config.model.words.suffix_length={fields['model.words.suffix_length']} "
                     f"reads the last characters of each word, which only a char_encoder's data "
                     f"carry; set config.model.words.char_encoder to 'lstm' or 'cnn', or "
                     f"suffix_length=0")
  if fields['data.frames.size'] and fields['data.frames.stride'] > fields['data.frames.size']:
    raise ValueError(f"config.data.frames.stride={fields['data.frames.stride']} is more than "
                     f"config.data.frames.size={fields['data.frames.size']}: frames would skip "
                     f"the steps between them and could end on a frame of padding alone")
  if not 0 <= fields['seed'] < 2**31:
    raise ValueError(f'config.seed={fields["seed"]!r} must be in [0, 2**31)')
  if fields['optim.weight_decay'] and fields['optim.name'] != 'adamw':
    raise ValueError(f"config.optim.weight_decay={fields['optim.weight_decay']} is used by "
                     f"optim.name='adamw' alone; optim.name={fields['optim.name']!r} would ignore "
                     f"it: set optim.name='adamw', or optim.weight_decay=0")
  if 0 < fields['train.num_epochs'] < fields['optim.warmup_epochs']:
    raise ValueError(f"config.optim.warmup_epochs={fields['optim.warmup_epochs']} is more than "
                     f"config.train.num_epochs={fields['train.num_epochs']}: the learning rate "
                     f"would never reach its peak")
  if fields['adapt']:
    adapt_rule(fields['adapt'])  # names what cannot be imported, before any data is read
  if fields['train.refit'] and not (fields['data.name'] == 'uea'
                                   and fields['data.uea.eval_fraction'] > 0):
    raise ValueError('config.train.refit=True chooses the length of training on series held out '
                     'of the training split, then trains on all of it: it needs '
                     "config.data.name='uea' with config.data.uea.eval_fraction > 0")
  if fields['train.num_epochs']:
    return  # num_steps and warmup_steps are set from the data (in_steps), and checked then
  if fields['optim.warmup_steps'] > fields['train.num_steps']:
    raise ValueError(f'config.optim.warmup_steps={fields["optim.warmup_steps"]} is more than '
                     f'config.train.num_steps={fields["train.num_steps"]}: the learning rate '
                     f'would never reach its peak')


def adapt_rule(spec):
  """The function `spec` ('module:function', config.adapt) names, or a ValueError saying why
  there is none."""
  module, sep, name = spec.partition(':')
  try:
    rule = getattr(importlib.import_module(module), name) if sep and name else None
  except (ImportError, AttributeError) as e:
    raise ValueError(f'config.adapt={spec!r} cannot be imported: {e}') from None
  if not callable(rule):
    raise ValueError(f"config.adapt={spec!r} does not name a function as 'module:function'")
  return rule


def adapted(config, stats, started=None):
  """(`config` as its config.adapt rule sets it for a training split of `stats`, the
  {field: (before, after)} it changed). A rule may not change config.adapt itself.

  `started` is the flat config of a workdir's run (`workdir.saved_config`): where
  the rule now sets a field a resume may not change (`Field.fixed`) to another value than
  that run's, the run's value is kept, so a rule that chooses differently since (a newer
  config file) leaves the workdir resumable. A field the researcher set is not the rule's."""
  if not config.adapt:
    return config, {}
  new = adapt_rule(config.adapt)(config.copy_and_resolve_references(), dict(stats))
  before, after = _flatten(config), _flatten(new)
  if started:
    began = upgrade(started)
    for k in fields_with('fixed'):
      if before[k] != after[k] and k in began:
        set_field(new, k, began[k])
    after = _flatten(new)
  changed = {k: (before[k], after[k]) for k in before if before[k] != after.get(k)}
  if 'adapt' in changed:
    raise ValueError(f'config.adapt={config.adapt!r} changed config.adapt itself')
  validate_config(new)
  return new, changed


def in_steps(config, steps_per_epoch):
  """A copy of `config` with train.num_epochs and optim.warmup_epochs turned into
  train.num_steps and optim.warmup_steps, at `steps_per_epoch` training steps an epoch
  (both kept, so config.json records what ran); `config` itself if it gives neither."""
  if not (config.train.num_epochs or config.optim.warmup_epochs):
    return config
  config = config.copy_and_resolve_references()
  if config.train.num_epochs:
    config.train.num_steps = max(1, math.ceil(config.train.num_epochs * steps_per_epoch))
  if config.optim.warmup_epochs:
    config.optim.warmup_steps = min(config.train.num_steps,
                                    round(config.optim.warmup_epochs * steps_per_epoch))
  return config


def resume_conflicts(saved, config):
  """The fields a resumed run may not change (`Field.fixed`) where the flat dict
  `saved` (a run's config.json, old names upgraded) and `config` differ."""
  saved, new = upgrade(saved), _flatten(config)
  return {f: (saved.get(f), new[f]) for f in fields_with('fixed') if saved.get(f) != new[f]}


def set_field(config, name, value):
  """Sets field `name` ('group.field', or its name before the groups: RENAMED) of
  `config` to `value` (a list for a tuple field); a name that is no field raises
  ValueError naming it."""
  *groups, field = RENAMED.get(name, name).split('.')
  node = config
  try:
    for g in groups:
      node = node[g]
    current = node[field]
  except (KeyError, AttributeError):
    raise ValueError(unknown_field(name)) from None
  if isinstance(current, tuple) or (isinstance(current, str) and isinstance(value, int)):
    value = type(current)(value)  # a list; a count given to a field like num_buckets='auto'
  node[field] = value


def from_flat_dict(flat):
  """The config of a flat {'group.field': value} dict (e.g. a run's config.json);
  fields the schema has gained since keep their defaults."""
  config = default_config()
  for name, value in upgrade(flat).items():
    set_field(config, name, value)
  return config


def to_flat_dict(config):
  """`config` as a flat {'group.field': value} dict of plain JSON values."""
  return {k: list(v) if isinstance(v, tuple) else v for k, v in _flatten(config).items()}
