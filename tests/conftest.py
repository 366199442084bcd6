"""Shared test fixtures: paths of ../shared/data and a tiny COCO dataset factory."""

import json
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
from PIL import Image  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'data')


# Seconds per file on the 2-core machine, roughly (for ordering only; this
# run shared the CPU with two quickstarts, about twice the idle time).
# xdist hands whole files (`--dist loadfile`) to the two workers in
# collection order (`--no-loadscope-reorder`): longest first, so the workers
# finish together instead of one running a long training file alone at the
# end. A file not listed runs after these, in collection order.
_FILE_SECONDS = {
    'tests/test_quickstart.py': 301,
    'tests/training/test_training.py': 271,
    'tests/training/test_comask.py': 203,
    'tests/training/test_datnet.py': 199,
    'tests/training/test_fault_tolerance.py': 184,
    'tests/training/test_sa_fpn_ej_head.py': 158,
    'tests/training/test_model.py': 139,
    'tests/training/test_training_cli.py': 137,
    'tests/training/test_ivanet_training.py': 124,
    'tests/serving/test_image_limits.py': 101,
    'tests/modeling/test_collaborative_head.py': 93,
    'tests/training/test_replicas.py': 92,
    'tests/serving/test_tflite.py': 90,
    'tests/serving/test_export.py': 83,
    'tests/data/test_pipeline.py': 73,
    'tests/training/test_init_checkpoint.py': 61,
    'tests/tools/test_profiling.py': 59,
    'tests/training/test_ivanet_model.py': 55,
    'tests/training/test_replica_division.py': 48,
    'tests/utils/test_quiet.py': 48,
    'tests/modeling/test_norm_switches.py': 37,
    'tests/training/test_checkpoint_precedence.py': 34,
    'tests/config/test_zoo.py': 32,
    'tests/modeling/test_necks.py': 30,
    'tests/serving/test_warmup_static_shapes.py': 29,
    'tests/modeling/test_msfem.py': 28,
    'tests/data/test_builder.py': 28,
    'tests/serving/test_predict_folder.py': 24,
    'tests/serving/test_adapters.py': 23,
    'tests/evaluation/test_coco.py': 22,
    'tests/tools/test_convert_weights.py': 21,
}


def pytest_collection_modifyitems(config, items):
  del config
  seconds = lambda item: _FILE_SECONDS.get(
      os.path.relpath(str(item.fspath), REPO_ROOT), 0)
  items.sort(key=lambda item: -seconds(item))  # stable: file order kept


def shared_path(*parts: str) -> str:
  path = os.path.join(SHARED_DATA, *parts)
  if not os.path.exists(path):
    pytest.skip(f'{path} is absent: the shared test data sets live in '
                '../shared/data beside the repository')
  return path


@pytest.fixture
def coco128_dir() -> str:
  return shared_path('coco128')


@pytest.fixture
def raccoon_dir() -> str:
  return shared_path('raccoon')


def write_tiny_coco(root: str, num_images: int = 4, height: int = 40,
                    width: int = 60, seed: int = 0) -> dict:
  """Writes `root/images/*.jpg` and returns a COCO dict (not yet saved).

  Each image has a square (category 1) and a triangle (category 2).
  """
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(root, 'images'), exist_ok=True)
  images, annotations = [], []
  for i in range(num_images):
    name = f'img_{i}.jpg'
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(os.path.join(root, 'images', name),
                                 quality=90)
    images.append({'id': i + 1, 'file_name': name, 'height': height,
                   'width': width})
    x, y = 5 + i, 4
    annotations.append({
        'id': 2 * i + 1, 'image_id': i + 1, 'category_id': 1,
        'bbox': [x, y, 20, 16], 'area': 320.0, 'iscrowd': 0,
        'segmentation': [[x, y, x + 20, y, x + 20, y + 16, x, y + 16]]})
    annotations.append({
        'id': 2 * i + 2, 'image_id': i + 1, 'category_id': 2,
        'bbox': [30, 10, 20, 20], 'area': 200.0, 'iscrowd': 0,
        'segmentation': [[30, 10, 50, 30, 30, 30]]})
  return {'images': images, 'annotations': annotations,
          'categories': [{'id': 1, 'name': 'square'},
                         {'id': 2, 'name': 'triangle'}]}


def save_json(obj: dict, path: str) -> str:
  with open(path, 'w') as f:
    json.dump(obj, f)
  return path
