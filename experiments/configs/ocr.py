"""Stanford OCR handwritten words, labelled letter by letter (26 classes, 16x8 pixels a step).

  python -m experiments.main --config=experiments/configs/ocr.py --workdir=/tmp/ocr \
      --config.data.path=PATH/letter.data.gz

Trains on nine folds and tests on fold `data.ocr.fold` (`data.ocr.train_on_one_fold=True` reverses it).
A bidirectional 2-layer LSTM: 98.9% of letters and 95.1% of words right on fold 0 in about 70 s
on 2 CPU cores (unidirectional, `--config.model.bidirectional=False`: 95.8% and 79.4%).
`:debug` is a seconds-long smoke run.
"""

from seqrnn.config import apply_variant, debug_variant, default_config


def get_config(arg=None):
  c = default_config()
  c.task = 'labelling'
  c.data.name = 'ocr'
  c.data.batch_size = 32
  c.model.cell = 'lstm'
  c.model.hidden_size = 128
  c.model.num_layers = 2
  c.model.bidirectional = True   # a letter is read with the letters after it too
  c.model.dropout_rate = 0.3
  c.optim.learning_rate = 2e-3
  c.train.num_steps = 3000      # about 17 epochs
  c.train.eval_every_steps = 500
  c.train.checkpoint_every_steps = 500
  return apply_variant(c, arg, {'debug': debug_variant})
