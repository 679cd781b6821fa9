"""Seeds with and without random crops on one UEA/UCR set: 6 runs (two vectorised groups of
3), whose ensemble is the most accurate we measured on the 35 UCR sets (docs/results.md).

  python -m experiments.sweep --config=experiments/configs/uea.py:NAME \
      --config.data.path=DIR --sweep=experiments/sweeps/uea_crops.py --workdir=W
  python -m experiments.evaluate --workdir=W --checkpoint=latest    # the 6 runs' ensemble

A crop fails to fit series whose shapes' places matter (spectra, outlines): in the ensemble the
runs without it carry those sets.
"""

from experiments.sweeps import product


def get_sweep():
  return product({'model.crop': [0.0, 0.2], 'seed': [0, 1, 2]})
