"""Stanford OCR words by CTC: each word one image, read two pixel columns a step, its letters
the target with no per-column labels (27 classes: CTC's blank and a-z).

  python -m experiments.main --config=experiments/configs/ocr_ctc.py --workdir=/tmp/ocr_ctc \
      --config.data.path=PATH/letter.data.gz

The same folds as `ocr.py` (test fold `data.ocr.fold`), whose letters come segmented and
labelled one a step; here the model must find the letters in the pixel columns itself.
Metrics: label (letter) error rate, by edit distance, and word accuracy (`sequence_accuracy`).
`:debug` is a seconds-long smoke run.
"""

from seqrnn.config import apply_variant, debug_variant, default_config


def get_config(arg=None):
  c = default_config()
  c.task = 'ctc'
  c.data.name = 'ocr_unsegmented'
  c.data.frames.size = 2          # two 16-pixel columns a step: 4 steps a letter
  c.data.batch_size = 32
  c.model.cell = 'lstm'
  c.model.hidden_size = 128
  c.model.num_layers = 2
  c.model.bidirectional = True
  c.model.dropout_rate = 0.3
  c.optim.learning_rate = 2e-3
  c.train.num_steps = 3000
  c.train.eval_every_steps = 500
  c.train.checkpoint_every_steps = 500
  c.train.best_metric = 'sequence_accuracy'
  return apply_variant(c, arg, {'debug': debug_variant})
