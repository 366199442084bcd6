"""Benchmark: training input pipeline throughput on coco128 shards.

Builds coco128 shards (masks + semantic) with our builder, then times training
batches from (a) our pipeline (decoder + TwoStageParser through Model Garden's
InputReader) and (b) Model Garden's own `TfExampleDecoder` + `maskrcnn_input.
Parser` through the same reader, with the same output size, augmentation and
batch size. Prints batches/s and images/s of each and the ratio.

  python bench/input_pipeline.py [--batch 2] [--size 640] [--batches 60]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tensorflow as tf  # pylint: disable=g-import-not-at-top

from official.core import input_reader  # pylint: disable=g-import-not-at-top
from official.vision.dataloaders import maskrcnn_input  # pylint: disable=g-import-not-at-top
from official.vision.dataloaders import tf_example_decoder  # pylint: disable=g-import-not-at-top
from tf_mtdet import cli  # pylint: disable=g-import-not-at-top
from tf_mtdet.config import data as data_config  # pylint: disable=g-import-not-at-top
from tf_mtdet.data import pipeline  # pylint: disable=g-import-not-at-top

_HERE = os.path.dirname(os.path.abspath(__file__))


def _model_garden_dataset(cfg: data_config.DataConfig,
                          anchor: data_config.AnchorConfig) -> tf.data.Dataset:
  p = cfg.parser
  parser = maskrcnn_input.Parser(
      output_size=p.output_size, min_level=anchor.min_level,
      max_level=anchor.max_level, num_scales=anchor.num_scales,
      aspect_ratios=anchor.aspect_ratios, anchor_size=anchor.anchor_size,
      aug_rand_hflip=p.aug_rand_hflip, aug_scale_min=p.aug_scale_min,
      aug_scale_max=p.aug_scale_max, include_mask=p.include_mask,
      mask_crop_size=p.mask_crop_size, dtype='float32')
  decoder = tf_example_decoder.TfExampleDecoder(include_mask=p.include_mask)
  return input_reader.InputReader(
      params=cfg, dataset_fn=tf.data.TFRecordDataset,
      decoder_fn=decoder.decode, parser_fn=parser.parse_fn(True)).read()


def _rate(dataset: tf.data.Dataset, batches: int, warmup: int = 5):
  it = iter(dataset)
  for _ in range(warmup):
    next(it)
  times = []
  for _ in range(batches):
    start = time.perf_counter()
    next(it)
    times.append(time.perf_counter() - start)
  total = sum(times)
  return batches / total, statistics.median(times)


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--data', default=os.path.join(
      _HERE, '..', '..', 'shared', 'data', 'coco128'))
  p.add_argument('--batch', type=int, default=2)
  p.add_argument('--size', type=int, default=640)
  p.add_argument('--batches', type=int, default=60)
  args = p.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    prefix = os.path.join(tmp, 'coco128')
    if cli.main(['build-tfrecord', '--quiet', '--format', 'coco',
                 '--annotations', os.path.join(args.data, 'annotations',
                                               'instances.json'),
                 '--images', os.path.join(args.data, 'images'), '--output',
                 prefix, '--num-shards', '4', '--include-masks',
                 '--semantic']):
      return 1
    cfg = data_config.DataConfig(input_path=prefix + '-*.tfrecord',
                                 global_batch_size=args.batch,
                                 is_training=True)
    cfg.parser.output_size = [args.size, args.size]
    cfg.parser.aug_scale_min, cfg.parser.aug_scale_max = 0.8, 1.25
    anchor = data_config.AnchorConfig()
    results = {
        'model_garden': _rate(_model_garden_dataset(cfg, anchor),
                              args.batches),
        'tf_mtdet': _rate(pipeline.two_stage_dataset(cfg, anchor),
                          args.batches),
    }
    cfg.parser.include_semantic = True
    results['tf_mtdet+semantic'] = _rate(
        pipeline.two_stage_dataset(cfg, anchor), args.batches)
  print(f'coco128 shards, training parse with masks, {args.size}x{args.size}, '
        f'batch {args.batch}, hflip + scale jitter 0.8-1.25, '
        f'{args.batches} timed batches, {os.cpu_count()} CPUs')
  for name, (rate, median) in results.items():
    print(f'{name:>18}: {rate:6.2f} batches/s, {rate * args.batch:6.1f} '
          f'images/s (median batch {1000 * median:.0f} ms)')
  ratio = results['tf_mtdet'][0] / results['model_garden'][0]
  print(f'ratio tf_mtdet / model_garden batches/s: {ratio:.2f}x')
  return 0


if __name__ == '__main__':
  sys.exit(main())
