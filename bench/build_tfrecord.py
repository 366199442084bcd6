"""Benchmark: our TFRecord builder vs Model Garden's create_coco_tf_record.

Both convert the same COCO data set with instance masks, in this process, with
the same number of worker processes, and are timed over repeated runs (best
and median of --repeats). Prints wall-clock images/s of each and their ratio,
and CPU milliseconds per image (this process plus its workers), which is
steadier than wall time on a shared 2-core machine.

  python bench/build_tfrecord.py [--data ../shared/data/coco128] [--workers 2]

`--copies K` lists every image K times (new ids, same files) so fixed costs
(pool start, JSON loading) do not dominate a 128-image run.
"""

import argparse
import json
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


def _cpu_seconds():
  t = os.times()
  return t.user + t.system + t.children_user + t.children_system


def _time(fn, repeats, *args):
  """Best and median wall seconds, and median CPU seconds of one run."""
  times, cpu = [], []
  for _ in range(repeats):
    cpu_start, start = _cpu_seconds(), time.perf_counter()
    fn(*args)
    times.append(time.perf_counter() - start)
    cpu.append(_cpu_seconds() - cpu_start)
  return min(times), statistics.median(times), statistics.median(cpu)


def _size(prefix):
  d = os.path.dirname(prefix)
  base = os.path.basename(prefix)
  return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
             if f.startswith(base) and f.endswith('.tfrecord'))


def _replicate(ann: str, copies: int, out: str) -> int:
  """Writes `ann` with every image listed `copies` times; returns image count."""
  with open(ann) as f:
    data = json.load(f)
  step_img = max(i['id'] for i in data['images']) + 1
  step_ann = max(a['id'] for a in data['annotations']) + 1
  images, annotations = [], []
  for k in range(copies):
    images += [dict(i, id=i['id'] + k * step_img) for i in data['images']]
    annotations += [dict(a, id=a['id'] + k * step_ann,
                         image_id=a['image_id'] + k * step_img)
                    for a in data['annotations']]
  with open(out, 'w') as f:
    json.dump(dict(data, images=images, annotations=annotations), f)
  return len(images)


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--data', default=os.path.join(
      _HERE, '..', '..', 'shared', 'data', 'coco128'))
  p.add_argument('--workers', type=int, default=2)
  p.add_argument('--shards', type=int, default=4)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--copies', type=int, default=4)
  args = p.parse_args()
  ann = os.path.join(args.data, 'annotations', 'instances.json')
  images = os.path.join(args.data, 'images')
  if not os.path.exists(ann):
    print(f'no data set at {args.data}', file=sys.stderr)
    return 1
  # Model Garden reads its process count from an absl flag.
  flags.FLAGS(['bench', f'--num_processes={args.workers}'])
  absl_logging.set_verbosity(absl_logging.WARNING)
  with tempfile.TemporaryDirectory() as tmp:
    num_images = _replicate(ann, args.copies, os.path.join(tmp, 'ann.json'))
    ann = os.path.join(tmp, 'ann.json')
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
  print(f'data: {args.data} x{args.copies} ({num_images} images, masks), '
        f'{args.workers} worker processes, {args.shards} shards, '
        f'{args.repeats} timed runs each')
  for name, (best, median, cpu), mb in (('tf_mtdet', ours, ours_mb),
                                        ('model_garden', mg, mg_mb)):
    print(f'{name:>13}: best {num_images / best:7.1f} img/s '
          f'({best:.2f} s), median {num_images / median:7.1f} img/s, '
          f'{1000 * cpu / num_images:5.2f} CPU ms/img, shards {mb:.1f} MiB')
  print(f'ratio tf_mtdet / model_garden, images/s: best {mg[0] / ours[0]:.2f}x, '
        f'median {mg[1] / ours[1]:.2f}x; CPU per image: '
        f'{ours[2] / mg[2]:.2f}x')
  return 0


if __name__ == '__main__':
  sys.exit(main())
