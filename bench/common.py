"""Shared bench helpers: generated data, configs mirrored into Model Garden's
(its `MaskRCNN` for two-stage configs, its `RetinaNet` for single-shot ones),
and running one measurement per subprocess (so peak memory is per
implementation)."""

import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
from typing import Any, Optional

from official.modeling import hyperparams
from official.vision.configs import backbones as backbones_cfg
from official.vision.configs import decoders as decoders_cfg
from official.vision.configs import maskrcnn as maskrcnn_cfg
from official.vision.configs import retinanet as retinanet_cfg

from tf_mtdet import cli
from tf_mtdet import families
from tf_mtdet.config import experiment
from tf_mtdet.config import zoo
from tf_mtdet.config import two_stage as two_stage_cfg

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


def family_type(config_path: str, overrides: list[str]) -> str:
  """`model.type` of a config with its overrides.

  Loaded with a class count for every family, so a config that takes it from
  a label map that is absent here still loads.
  """
  counts = [f'model.{name}.num_classes=4' for name in families.names()]
  return experiment.load_config(config_path, [*counts, *overrides]).model.type


def bench_config(config_path: str, overrides: list[str], pattern: str,
                 size: int, batch: int, model_id: Optional[int] = None
                 ) -> experiment.ExperimentConfig:
  """The config on generated shapes (4 classes, `size` x `size`, no
  augmentation), whatever its family; `model_id` sets a ResNet backbone's
  depth."""
  model = f'model.{family_type(config_path, overrides)}'
  model_overrides = [
      f'{model}.num_classes=4',
      f'{model}.input_size=[{size}, {size}, 3]',
      f'{model}.norm_activation.use_sync_bn=false',
  ]
  if model_id is not None:
    model_overrides.append(f'{model}.backbone.resnet.model_id={model_id}')
  return experiment.load_config(config_path, [
      *model_overrides,
      f'train_data.input_path={pattern}',
      f'train_data.global_batch_size={batch}',
      'train_data.shuffle_buffer_size=1',
      'train_data.parser.resize_mode=fixed',
      f'train_data.parser.output_size=[{size}, {size}]',
      'train_data.parser.aug_rand_hflip=false',
      f'eval_data.input_path={pattern}',
      'eval_data.parser.resize_mode=fixed',
      f'eval_data.parser.output_size=[{size}, {size}]',
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


def _mirror(ours: hyperparams.Config,
            reference: hyperparams.Config) -> hyperparams.Config:
  """`reference` with every field it shares with `ours` set to ours."""
  reference.override(_filter(ours.as_dict(), reference.as_dict()),
                     is_strict=True)
  return reference


def _parts_model_garden_lacks(config: experiment.ExperimentConfig
                              ) -> list[str]:
  """`field=value` of every part of ours that Model Garden's model lacks."""
  model, kind = config.family_model, config.model.type
  lacks = []
  necks = {f.name for f in dataclasses.fields(decoders_cfg.Decoder)} - {'type'}
  if model.decoder.type not in necks:
    lacks.append(f'decoder.type={model.decoder.type}')
  backbones = {f.name for f in dataclasses.fields(backbones_cfg.Backbone)}
  if model.backbone.type not in backbones - {'type'}:
    lacks.append(f'backbone.type={model.backbone.type}')
  if kind == 'two_stage':
    if model.dense_aux_heads:
      lacks.append('dense_aux_heads=' +
                   ','.join(part.type for part in model.dense_aux_heads))
    standard = {'detection_head.type': 'fc', 'mask_head.type': 'fcn',
                'roi_aligner.type': 'level_assigned',
                'mask_roi_aligner.type': 'level_assigned'}
    for field, value in standard.items():
      part, key = field.split('.')
      if getattr(getattr(model, part), key) != value:
        lacks.append(f'{field}={getattr(getattr(model, part), key)}')
    if model.feature_fusion.type:
      lacks.append(f'feature_fusion.type={model.feature_fusion.type}')
    if model.ej_head != two_stage_cfg.EJHead():
      lacks.append('ej_head (EJ-Head switches on)')
    if model.roi_box_refiner.type:
      lacks.append(f'roi_box_refiner.type={model.roi_box_refiner.type}')
  elif kind == 'single_shot':
    if model.head.type != 'retinanet':
      lacks.append(f'head.type={model.head.type}')
    seg_head = getattr(model, 'seg_head', None)
    if seg_head is not None and seg_head.type:
      lacks.append(f'seg_head.type={seg_head.type}')
  return [f'model.{kind}.{item}' for item in lacks]


def model_garden_model_config(config: experiment.ExperimentConfig
                              ) -> hyperparams.Config:
  """The same architecture as Model Garden's own model config: `MaskRCNN`
  for a two-stage config, `RetinaNet` for a single-shot one.

  Raises:
    ValueError: a family, or a part, Model Garden has no model of.
  """
  references = {'two_stage': maskrcnn_cfg.MaskRCNN,
                'single_shot': retinanet_cfg.RetinaNet}
  if config.model.type not in references:
    raise ValueError(f'model.type {config.model.type!r}: no Model Garden '
                     'reference; compare with --against instead')
  lacks = _parts_model_garden_lacks(config)
  if lacks:
    raise ValueError(f'Model Garden has no model with {", ".join(lacks)}; '
                     'compare with --against instead')
  return _mirror(config.family_model, references[config.model.type]())


def model_garden_task_config(config: experiment.ExperimentConfig
                             ) -> hyperparams.Config:
  """Model Garden's task config with the mirrored model and our losses:
  `MaskRCNNTask` (two-stage) or `RetinaNetTask` (single-shot)."""
  model = model_garden_model_config(config)
  # Model Garden's L2 penalty is l2_weight_decay / 2 * |w|^2, as ours.
  weight_decay = config.schedule.weight_decay
  if isinstance(model, maskrcnn_cfg.MaskRCNN):
    losses = _mirror(config.family_model.losses, maskrcnn_cfg.Losses())
    losses.l2_weight_decay = weight_decay
    return maskrcnn_cfg.MaskRCNNTask(model=model, losses=losses)
  ours = config.family_model
  loss = ours.head.loss
  return retinanet_cfg.RetinaNetTask(model=model, losses=retinanet_cfg.Losses(
      loss_weight=ours.loss_weight, focal_loss_alpha=loss.alpha,
      focal_loss_gamma=loss.gamma, huber_loss_delta=loss.huber_delta,
      box_loss_weight=loss.box_weight, l2_weight_decay=weight_decay))


def model_garden_task(config: experiment.ExperimentConfig):
  """Model Garden's `MaskRCNNTask` or `RetinaNetTask` for the config."""
  # pylint: disable=g-import-not-at-top
  from official.vision.tasks import maskrcnn as maskrcnn_task
  from official.vision.tasks import retinanet as retinanet_task
  # pylint: enable=g-import-not-at-top
  task_config = model_garden_task_config(config)
  if isinstance(task_config, maskrcnn_cfg.MaskRCNNTask):
    return maskrcnn_task.MaskRCNNTask(task_config)
  return retinanet_task.RetinaNetTask(task_config)


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


def inference_flops(model, size: int) -> int:
  """FLOPs of one inference of `model` on a [1, size, size, 3] image (TF's
  profiler: 2 per multiply-add). Works for Model Garden's and our models
  (both take `image_shape` and `training`)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf_mtdet.tools import profiling  # pylint: disable=g-import-not-at-top
  shape = tf.constant([[float(size), float(size)]])
  fn = lambda images: model(images, image_shape=shape, training=False)
  spec = tf.TensorSpec([1, size, size, 3], tf.float32)
  return int(profiling.count_flops(fn, spec, [])['flops'])


def ratio_line(names: dict, results: dict, reference: str, what: str,
               key: str = 'median_s') -> str:
  """`ratio A / B: <what> 1.23x, FLOPs 1.10x`: time beside architecture."""
  ours, ref = results['ours'], results[reference]
  line = (f'ratio {names["ours"]} / {names[reference]}: {what} '
          f'{ours[key] / ref[key]:.2f}x')
  if ours.get('flops') and ref.get('flops'):
    line += (f', inference FLOPs {ours["flops"] / ref["flops"]:.2f}x '
             f'({ours["flops"] / 1e9:.1f} vs {ref["flops"] / 1e9:.1f} GFLOPs)')
  return line


def resolve_configs(parser, args) -> None:
  """Resolves `--config` / `--against` names to paths; without `--against`,
  fails before any work if Model Garden has no such model."""
  try:
    args.config = zoo.resolve(args.config)
    if args.against:
      args.against = zoo.resolve(args.against)
    else:
      model_garden_model_config(bench_config(
          args.config, args.set, '', args.size, 1, args.model_id))
  except ValueError as e:
    parser.error(str(e))
