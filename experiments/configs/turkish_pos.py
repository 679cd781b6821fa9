"""Part-of-speech tagging (14 UPOS tags) of the Turkish web + wiki treebanks.

  python -m experiments.main --config=experiments/configs/turkish_pos.py --workdir=/tmp/pos

The treebanks ship in the PyPI package `turkish-treebanks` (`pip install 'seqrnn[treebanks]'`),
split 80/10/10 here; the model is `ud_pos.py`'s reference tagger.
`--config=...turkish_pos.py:debug` is a seconds-long smoke run.
"""

from experiments.configs import ud_pos
from seqrnn.config import apply_variant, debug_variant


def get_config(arg=None):
  c = ud_pos.get_config()
  c.data.name = 'turkish_pos'
  return apply_variant(c, arg, {'debug': debug_variant})
