"""Seeds with and without random crops on one UEA/UCR set: 6 runs (two vectorised groups of
3), whose ensemble is the most accurate we measured on the 35 UCR sets (docs/results.md;
measured before uea.py smoothed its targets: add `--config.train.label_smoothing=0` to
reproduce it).

  python -m experiments.sweep --config=experiments/configs/uea.py:NAME \
      --config.data.path=DIR --config.adapt=experiments.configs.uea:by_size \
      --sweep=experiments/sweeps/uea_crops.py --workdir=W
  python -m experiments.evaluate --workdir=W --checkpoint=latest    # the 6 runs' ensemble

A crop fails to fit series whose shapes' places matter (spectra, outlines): in the ensemble the
runs without it carry those sets. `by_size` is uea.py's rule without its own choice of crops
(with `by_data`, the file's default, the runs of crop 0.0 would crop where it gains).
"""

from experiments.sweeps import product


def get_sweep():
  return product({'model.crop': [0.0, 0.2], 'seed': [0, 1, 2]})
