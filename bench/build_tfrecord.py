"""Benchmark: our TFRecord builder vs Model Garden's create_coco_tf_record.

Both convert the same COCO data set with instance masks, in this process, with
the same number of worker processes, and are timed over repeated runs (best
and median of --repeats). Prints images/s of each and the ratio.

  python bench/build_tfrecord.py [--data ../shared/data/coco128] [--workers 2]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import flags  # pylint: disable=g-import-not-at-top
from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top

from official.vision.data import create_coco_tf_record  # pylint: disable=g-import-not-at-top
from tf_mtdet.data import builder  # pylint: disable=g-import-not-at-top

_HERE = os.path.dirname(os.path.abspath(__file__))


def _ours(ann, images, prefix, shards, workers):
  log = builder.ProblemLog(strict=False)
  source = builder.read_coco(ann, images, log, need_segmentation=True)
  options = builder.EncodeOptions(
      include_masks=True,
      category_names={c.id: c.name for c in source.categories})
  builder.build_tfrecords(source, prefix, shards, options, log,
                          num_workers=workers, progress_stream=None)


def _model_garden(ann, images, prefix, shards, workers):
  create_coco_tf_record._create_tf_record_from_coco_annotations(  # pylint: disable=protected-access
      ann, [images], prefix, shards, object_annotations_file=ann,
      include_masks=True)


def _time(fn, repeats, *args):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(*args)
    times.append(time.perf_counter() - start)
  return min(times), statistics.median(times)


def _size(prefix):
  d = os.path.dirname(prefix)
  base = os.path.basename(prefix)
  return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
             if f.startswith(base) and f.endswith('.tfrecord'))


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--data', default=os.path.join(
      _HERE, '..', '..', 'shared', 'data', 'coco128'))
  p.add_argument('--workers', type=int, default=2)
  p.add_argument('--shards', type=int, default=4)
  p.add_argument('--repeats', type=int, default=3)
  args = p.parse_args()
  ann = os.path.join(args.data, 'annotations', 'instances.json')
  images = os.path.join(args.data, 'images')
  if not os.path.exists(ann):
    print(f'no data set at {args.data}', file=sys.stderr)
    return 1
  num_images = len(os.listdir(images))
  # Model Garden reads its process count from an absl flag.
  flags.FLAGS(['bench', f'--num_processes={args.workers}'])
  absl_logging.set_verbosity(absl_logging.WARNING)
  with tempfile.TemporaryDirectory() as tmp:
    ours_prefix = os.path.join(tmp, 'ours', 'train')
    mg_prefix = os.path.join(tmp, 'mg', 'train')
    os.makedirs(os.path.dirname(mg_prefix))
    # One untimed run each warms the page cache and imports.
    _ours(ann, images, ours_prefix, args.shards, args.workers)
    _model_garden(ann, images, mg_prefix, args.shards, args.workers)
    ours = _time(_ours, args.repeats, ann, images, ours_prefix, args.shards,
                 args.workers)
    mg = _time(_model_garden, args.repeats, ann, images, mg_prefix,
               args.shards, args.workers)
    ours_mb, mg_mb = _size(ours_prefix) / 2**20, _size(mg_prefix) / 2**20
  print(f'data: {args.data} ({num_images} images, masks), '
        f'{args.workers} worker processes, {args.shards} shards, '
        f'{args.repeats} timed runs each')
  for name, (best, median), mb in (('tf_mtdet', ours, ours_mb),
                                   ('model_garden', mg, mg_mb)):
    print(f'{name:>13}: best {num_images / best:7.1f} img/s '
          f'({best:.2f} s), median {num_images / median:7.1f} img/s, '
          f'shards {mb:.1f} MiB')
  print(f'ratio (tf_mtdet / model_garden images/s, best): '
        f'{mg[0] / ours[0]:.2f}x; median: {mg[1] / ours[1]:.2f}x')
  return 0


if __name__ == '__main__':
  sys.exit(main())
