"""Shared bench helpers: generated data, configs mirrored into Model Garden's,
and running one measurement per subprocess (so peak memory is per
implementation)."""

import json
import os
import resource
import subprocess
import sys
import tempfile
from typing import Any

from official.vision.configs import maskrcnn as maskrcnn_cfg

from tf_mtdet import cli
from tf_mtdet.config import experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = os.path.join(REPO, 'configs', 'mask_rcnn',
                        'mask_rcnn_r50_fpn_1x_coco.yaml')


def make_shapes_records(workdir: str, num_images: int = 16) -> str:
  """Generated shapes data as TFRecords; returns the shard pattern."""
  src = os.path.join(workdir, 'shapes')
  if not os.path.exists(src):
    cli.main(['make-shapes', '--out', src, '--num-images', str(num_images),
              '--seed', '0'])
    cli.main(['build-tfrecord', '--quiet', '--format', 'coco', '--annotations',
              os.path.join(src, 'annotations.json'), '--images',
              os.path.join(src, 'images'), '--output',
              os.path.join(workdir, 'records', 'shapes'), '--include-masks',
              '--num-workers', '1'])
  return os.path.join(workdir, 'records', 'shapes-*.tfrecord')


def bench_config(config_path: str, overrides: list[str], pattern: str,
                 size: int, batch: int) -> experiment.ExperimentConfig:
  return experiment.load_config(config_path, [
      'model.num_classes=4',
      f'model.input_size=[{size}, {size}, 3]',
      f'train_data.input_path={pattern}',
      f'train_data.global_batch_size={batch}',
      'train_data.shuffle_buffer_size=1',
      'train_data.parser.resize_mode=fixed',
      f'train_data.parser.output_size=[{size}, {size}]',
      'train_data.parser.aug_rand_hflip=false',
      f'eval_data.input_path={pattern}',
      'eval_data.parser.resize_mode=fixed',
      f'eval_data.parser.output_size=[{size}, {size}]',
      'model.norm_activation.use_sync_bn=false',
      *overrides])


def _filter(ours: dict, reference: dict) -> dict:
  out = {}
  for key, value in ours.items():
    if key not in reference:
      continue
    if isinstance(value, dict) and isinstance(reference[key], dict):
      out[key] = _filter(value, reference[key])
    else:
      out[key] = value
  return out


def model_garden_model_config(config: experiment.ExperimentConfig
                              ) -> maskrcnn_cfg.MaskRCNN:
  """The same architecture as Model Garden's own `MaskRCNN` config."""
  mg = maskrcnn_cfg.MaskRCNN()
  mg.override(_filter(config.model.as_dict(), mg.as_dict()), is_strict=True)
  return mg


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_child(script: str, args: list[str]) -> dict[str, Any]:
  """Runs `script --child ...` and returns the JSON it prints last."""
  with tempfile.NamedTemporaryFile(suffix='.json', delete=False) as f:
    out_path = f.name
  try:
    env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2',
           'PYTHONPATH': REPO + os.pathsep + os.environ.get('PYTHONPATH', '')}
    proc = subprocess.run([sys.executable, script, '--child', out_path, *args],
                          env=env, capture_output=True, text=True)
    if proc.returncode:
      raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-4000:])
    with open(out_path) as f:
      return json.load(f)
  finally:
    os.remove(out_path)
