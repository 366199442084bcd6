"""Serving fixtures: a tiny random Mask R-CNN exported once per session, and a
stub model with fixed outputs for exact coordinate and mask checks."""

import dataclasses
import fcntl
import io
import os
import subprocess
import sys
import textwrap
from typing import List

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tf_keras


from tf_mtdet import families
from tf_mtdet.config import experiment
from tf_mtdet.data import parser as parser_lib
from tf_mtdet.serving import adapters
from tf_mtdet.serving import export

LABEL_MAP = {1: 'circle', 2: 'square', 3: 'triangle'}
# The stub's label map lacks class 3, whose name must come out as ''.
STUB_LABEL_MAP = {1: 'circle', 2: 'square'}
INPUT_SIZE = 128
MAX_LEVEL = 5

# A two-stage model (tf_mtdet factory) shrunk until it traces and runs in
# seconds; the eval parser fits images into INPUT_SIZE x INPUT_SIZE.
_TINY_OVERRIDES = [
    'model.type=two_stage',
    'model.two_stage.num_classes=4',
    f'model.two_stage.input_size=[{INPUT_SIZE}, {INPUT_SIZE}, 3]',
    'model.two_stage.min_level=3',
    f'model.two_stage.max_level={MAX_LEVEL}',
    'model.two_stage.include_mask=true',
    'model.two_stage.backbone.type=resnet',
    'model.two_stage.backbone.resnet.model_id=18',
    'model.two_stage.backbone.resnet.depth_multiplier=0.25',
    'model.two_stage.decoder.type=fpn',
    'model.two_stage.decoder.fpn.num_filters=16',
    'model.two_stage.rpn_head.num_filters=16',
    'model.two_stage.detection_head.num_convs=0',
    'model.two_stage.detection_head.num_filters=16',
    'model.two_stage.detection_head.num_fcs=1',
    'model.two_stage.detection_head.fc_dims=32',
    'model.two_stage.roi_generator.pre_nms_top_k=100',
    'model.two_stage.roi_generator.num_proposals=20',
    'model.two_stage.roi_generator.test_pre_nms_top_k=100',
    'model.two_stage.roi_generator.test_num_proposals=20',
    'model.two_stage.detection_generator.max_num_detections=5',
    'model.two_stage.detection_generator.pre_nms_score_threshold=0.0',
    'model.two_stage.mask_head.num_convs=1',
    'model.two_stage.mask_head.num_filters=8',
    'model.two_stage.norm_activation.use_sync_bn=false',
    'schedule.weight_decay=0.0',
    f'eval_data.parser.output_size=[{INPUT_SIZE}, {INPUT_SIZE}]',
]


def tiny_config() -> experiment.ExperimentConfig:
  return experiment.load_config(None, _TINY_OVERRIDES)


def build_tiny_maskrcnn(family: families.Family) -> tf_keras.Model:
  """The tiny two-stage model, unbuilt (its first call creates the weights)."""
  tf_keras.utils.set_random_seed(0)
  return family.build_model()


def _stub_masks(size: int = 28) -> np.ndarray:
  yy, xx = np.mgrid[:size, :size]
  disk = (yy - size / 2 + 0.5)**2 + (xx - size / 2 + 0.5)**2 < (size / 3)**2
  return np.stack([
      np.ones((size, size)),                         # the whole box
      (xx < size // 2).astype(float),                # left half
      disk.astype(float),
      np.zeros((size, size)),                        # padding row
  ]).astype(np.float32)


class StubDetector(tf_keras.Model):
  """A model with known outputs, called as `model(images, image_shape)`.

  Boxes are fixed fractions of `image_shape` (resized-image pixels), so the
  serving module's conversion to original pixels can be checked exactly.
  """

  # y fractions stay below 0.6: a 2:3 image fills ~2/3 of the square input.
  FRACTIONS = np.array([[0.10, 0.20, 0.50, 0.70],
                        [0.20, 0.10, 0.60, 0.50],
                        [0.00, 0.00, 0.30, 0.30],
                        [0.00, 0.00, 0.00, 0.00]], np.float32)
  SCORES = np.array([0.9, 0.6, 0.2, 0.0], np.float32)
  CLASSES = np.array([1, 2, 3, 0], np.int32)
  NUM_DETECTIONS = 3
  MASKS = _stub_masks()

  def call(self, images, image_shape, anchor_boxes=None, training=None):
    del anchor_boxes, training
    batch = tf.shape(images)[0]
    size = tf.tile(tf.cast(image_shape, tf.float32), [1, 2])[:, tf.newaxis]
    tile = lambda x: tf.tile(tf.constant(x)[tf.newaxis],
                             [batch] + [1] * x.ndim)
    return {
        'detection_boxes': tf.constant(self.FRACTIONS)[tf.newaxis] * size,
        'detection_scores': tile(self.SCORES),
        'detection_classes': tile(self.CLASSES),
        'num_detections': tf.fill([batch], self.NUM_DETECTIONS),
        'detection_masks': tile(self.MASKS),
    }


class StubFamily:
  """Runs `StubDetector` for the serving module, as a family runs its model.

  `call_inference` and `detections` are the two questions `ServingModule`
  asks a family; the stub's outputs already are the detections.
  """

  def call_inference(self, model, images, image_info):
    return model(images, image_shape=image_info[:, 1, :], training=False)

  def detections(self, outputs):
    return dict(outputs)


def stub_serving_module(parser, label_map=None,
                        **kwargs) -> export.ServingModule:
  return export.ServingModule(StubDetector(), StubFamily(), parser, label_map,
                              **kwargs)


def encode(image: np.ndarray, fmt: str = 'PNG') -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, fmt)
  return buffer.getvalue()


def sample_image(height: int = 60, width: int = 90,
                 seed: int = 0) -> np.ndarray:
  """A smooth picture with a few shapes (random noise makes JPEG lossy)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:height, :width]
  image = np.stack([xx * 255 // max(width - 1, 1),
                    yy * 255 // max(height - 1, 1),
                    np.full_like(xx, 90)], axis=-1).astype(np.uint8)
  for _ in range(3):
    y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
    image[y0:y0 + height // 3, x0:x0 + width // 3] = rng.integers(0, 255, 3)
  return image


@pytest.fixture(scope='session')
def family() -> families.Family:
  return families.get(tiny_config())


@pytest.fixture(scope='session')
def parser(family) -> parser_lib.DetectionParser:
  """The tiny config's eval parser (its `preprocess_image` is serving's)."""
  return family.build_parser(family.config.eval_data)


@pytest.fixture(scope='session')
def tiny_model(family) -> tf_keras.Model:
  return build_tiny_maskrcnn(family)


# Reloads the SavedModel in a fresh process and runs the three signatures on
# one image (as .npy for serving_default, PNG for the others).
_RELOAD_SCRIPT = textwrap.dedent('''
    import sys
    import numpy as np
    import tensorflow as tf
    version_dir, image_path, png_path, out_path = sys.argv[1:]
    model = tf.saved_model.load(version_dir)
    image = np.load(image_path)
    with open(png_path, 'rb') as f:
      encoded = f.read()
    example = tf.train.Example(features=tf.train.Features(feature={
        'image/encoded': tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[encoded]))}))
    calls = {
        'tensor': ('serving_default', tf.constant(image[None])),
        'bytes': ('image_bytes', tf.constant([encoded])),
        'example': ('tf_example', tf.constant([example.SerializeToString()])),
    }
    arrays = {}
    for prefix, (name, inputs) in calls.items():
      for key, value in model.signatures[name](inputs=inputs).items():
        arrays[prefix + '/' + key] = value.numpy()
    np.savez(out_path, **arrays)
''')
RELOAD_IMAGE_SIZE = (60, 90)


class BackgroundJob:
  """A subprocess started early so it overlaps the in-process tests."""

  def __init__(self, command: List[str], timeout: float = 300):
    self._timeout = timeout
    self._process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
    self._output = None

  def result(self) -> str:
    """Waits (bounded) and returns stdout; fails the test on an error."""
    if self._output is None:
      try:
        stdout, stderr = self._process.communicate(timeout=self._timeout)
      except subprocess.TimeoutExpired:
        self.kill()
        pytest.fail(f'{self._process.args} ran over {self._timeout}s')
      if self._process.returncode:
        pytest.fail(f'{self._process.args} exited '
                    f'{self._process.returncode}:\n{stderr[-3000:]}')
      self._output = stdout
    return self._output

  def kill(self) -> None:
    if self._process.poll() is None:
      self._process.kill()
      self._process.communicate()


@dataclasses.dataclass
class Exported:
  """The tiny model's export and the out-of-process checks running on it."""
  base: str
  version_dir: str
  saved_model_cli: BackgroundJob  # stdout of `saved_model_cli show --all`.
  reload: BackgroundJob           # writes `reload_outputs` (npz).
  reload_outputs: str


def _shared_export(tmp_path_factory, tiny_model, family, parser):
  """Exports the tiny model once per test session, not once per xdist
  worker: the first worker to get here exports it and checkpoints its
  weights; the others restore those weights into their own `tiny_model`, so
  every worker's in-process model matches the SavedModel. Returns (base,
  version_dir)."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent  # this session's dir, shared by its workers
  shared = root / 'tiny_serving_export'
  shared.mkdir(exist_ok=True)
  base = str(shared / 'mtdet')
  weights = str(shared / 'weights' / 'ckpt')
  checkpoint = tf.train.Checkpoint(model=tiny_model)
  with open(shared / 'lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if (shared / 'done').exists():
      # Weights first exist after a call.
      family.call_inference(tiny_model, tf.zeros([1, INPUT_SIZE, INPUT_SIZE, 3]),
                            tf.constant([[[INPUT_SIZE] * 2, [INPUT_SIZE] * 2,
                                          [1.0, 1.0], [0.0, 0.0]]]))
      checkpoint.read(weights).assert_existing_objects_matched()
      version_dir = (shared / 'done').read_text()
    else:
      module = export.ServingModule(tiny_model, family, parser, LABEL_MAP,
                                    full_image_masks=True)
      version_dir = export.export_saved_model(module, base)
      checkpoint.write(weights)
      (shared / 'done').write_text(version_dir)
  return base, version_dir


@pytest.fixture(scope='session')
def exported(tmp_path_factory, tiny_model, family, parser):
  """Exports the tiny model once, then starts the subprocess checks."""
  work = tmp_path_factory.mktemp('export')
  base, version_dir = _shared_export(tmp_path_factory, tiny_model, family,
                                     parser)

  binary = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
  command = ([binary] if os.path.exists(binary) else
             [sys.executable, '-m', 'tensorflow.python.tools.saved_model_cli'])
  cli = BackgroundJob(command + ['show', '--dir', version_dir, '--all'])
  image = sample_image(*RELOAD_IMAGE_SIZE)
  np.save(work / 'image.npy', image)
  (work / 'image.png').write_bytes(encode(image))
  (work / 'reload.py').write_text(_RELOAD_SCRIPT)
  outputs = str(work / 'reload.npz')
  reload = BackgroundJob([sys.executable, str(work / 'reload.py'),
                          version_dir, str(work / 'image.npy'),
                          str(work / 'image.png'), outputs])
  yield Exported(base, version_dir, cli, reload, outputs)
  cli.kill()
  reload.kill()


@pytest.fixture(scope='session')
def loaded(exported):
  return adapters.load(exported.base)


@pytest.fixture(scope='session')
def stub_module(parser) -> export.ServingModule:
  return stub_serving_module(parser, STUB_LABEL_MAP, full_image_masks=True)


@pytest.fixture(scope='session')
def stub_exported(tmp_path_factory, stub_module) -> str:
  base = str(tmp_path_factory.mktemp('stub_export') / 'stub')
  export.export_saved_model(stub_module, base)
  return base


@pytest.fixture
def image_file(tmp_path) -> str:
  path = os.path.join(tmp_path, 'image.png')
  Image.fromarray(sample_image()).save(path)
  return path
