"""Training curves from the TensorBoard event files `tf-mtdet train` writes.

A run directory is a `--model-dir` (or its `logs/` folder). Its series are
named as the Keras epoch line names them:
  * `logs/train`: Keras' per-step scalars `batch_<name>` -> `<name>` (e.g.
    `total_loss`, `learning_rate`) and per-epoch `epoch_<name>` kept as is;
  * `logs/evaluation`: the evaluation callback's metrics `<name>` ->
    `val_<name>` (e.g. `val_AP`), at the optimizer step like the losses.
Keras' `logs/validation` copy of the epoch line (indexed by epoch) is not
read. A step logged twice (a resumed run) keeps its last value.
"""

from __future__ import annotations

import json
import math
import os
from typing import Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_mtdet.tools.analysis import outputs

Series = tuple[list[int], list[float]]
DEFAULT_KEYS = ('total_loss', 'val_AP', 'val_mask_AP', 'val_voc07_mAP@0.5',
                'val_mIoU')
_SKIPPED_RUNS = ('validation',)


def _series_name(run: str, tag: str) -> Optional[str]:
  if run == 'train':
    return tag[len('batch_'):] if tag.startswith('batch_') else tag
  if run == 'evaluation':
    return 'val_' + tag
  if run in _SKIPPED_RUNS:
    return None
  return f'{run}/{tag}' if run else tag


def _scalar(value) -> Optional[float]:
  if value.HasField('tensor'):
    array = tf.make_ndarray(value.tensor)
    if array.ndim or not np.issubdtype(array.dtype, np.number):
      return None
    return float(array)
  if value.HasField('simple_value'):
    return float(value.simple_value)
  return None


def _event_files(logs_dir: str) -> list[tuple[str, str]]:
  """(run name, event file) under `logs_dir`, the run being the sub-folder."""
  found = []
  for folder, _, names in sorted(tf.io.gfile.walk(logs_dir)):
    run = os.path.relpath(folder, logs_dir).replace(os.sep, '/')
    run = '' if run == '.' else run
    found += [(run, os.path.join(folder, n)) for n in sorted(names)
              if 'tfevents' in n]
  return found


def read_run(run_dir: str) -> dict[str, Series]:
  """The scalar series of one run, {name: (steps, values)} by step.

  Raises:
    ValueError: the folder is missing or holds no event files.
  """
  if not tf.io.gfile.isdir(run_dir):
    raise ValueError(f'{run_dir}: no such run directory')
  logs_dir = os.path.join(run_dir, 'logs')
  if not tf.io.gfile.isdir(logs_dir):
    logs_dir = run_dir
  points: dict[str, dict[int, float]] = {}
  files = _event_files(logs_dir)
  for run, path in files:
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          name = _series_name(run, value.tag)
          number = _scalar(value) if name else None
          if number is not None:
            points.setdefault(name, {})[int(event.step)] = number
    except tf.errors.DataLossError as e:
      raise ValueError(f'{path}: not a whole TensorBoard event file: '
                       f'{e.message}') from None
  if not files:
    raise ValueError(f'{run_dir}: no TensorBoard event files (train writes '
                     'them under MODEL_DIR/logs)')
  return {name: (sorted(p), [p[s] for s in sorted(p)])
          for name, p in sorted(points.items())}


def select(runs: Mapping[str, Mapping[str, Series]],
           keys: Optional[Sequence[str]]) -> list[str]:
  """The keys to show: those asked for (each must be in some run), or the
  defaults any run has.

  Raises:
    ValueError: an asked key is in no run (the message lists the run's keys).
  """
  logged = sorted({k for series in runs.values() for k in series})
  if not keys:
    chosen = [k for k in DEFAULT_KEYS if k in logged]
    if not chosen:
      raise ValueError(f'none of the default keys {list(DEFAULT_KEYS)} is '
                       f'logged; give --keys from: {", ".join(logged)}')
    return chosen
  for key in keys:
    if key not in logged:
      raise ValueError(f'--keys {key}: not logged in {", ".join(runs)}; '
                       f'logged: {", ".join(logged)}')
  return list(keys)


def to_json(runs: Mapping[str, Mapping[str, Series]],
            keys: Sequence[str]) -> str:
  """{run: {key: [[step, value], ...]}} for the keys a run has."""
  return json.dumps({run: {k: [[s, v] for s, v in zip(*series[k])]
                           for k in keys if k in series}
                     for run, series in runs.items()})


def plot(path: str, runs: Mapping[str, Mapping[str, Series]],
         keys: Sequence[str]) -> None:
  """One panel per key, the runs overlaid, against the optimizer step."""
  cols = min(len(keys), 3)
  rows = math.ceil(len(keys) / cols)
  figure = outputs.new_figure(4.2 * cols, 3.0 * rows)
  for i, key in enumerate(keys):
    axes = figure.add_subplot(rows, cols, i + 1)
    for run, series in runs.items():
      if key in series:
        steps, values = series[key]
        axes.plot(steps, values, marker='o' if len(steps) < 20 else None,
                  markersize=3, label=run)
    axes.set_title(key, fontsize=10)
    axes.set_xlabel('epoch' if key.startswith('epoch_') else 'step',
                    fontsize=8)
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3)
    if len(runs) > 1:
      axes.legend(fontsize=7)
  figure.tight_layout()
  outputs.save_figure(figure, path)


def run_labels(run_dirs: Sequence[str]) -> list[str]:
  """Short distinct labels: the folders' names (their paths if those clash)."""
  names = [os.path.basename(os.path.normpath(d)) or d for d in run_dirs]
  return names if len(set(names)) == len(names) else list(run_dirs)
