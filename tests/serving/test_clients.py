"""The export/ deployment examples: model config, REST and gRPC clients
(their requests answered by the local adapters)."""

import importlib.util
import os
import subprocess
import sys

from google.protobuf import text_format
import numpy as np
import pytest
from tensorflow_serving.config import model_server_config_pb2

from tests import conftest as root_conftest
from tf_mtdet.serving import adapters

EXPORT_DIR = os.path.join(root_conftest.REPO_ROOT, 'export')


def _load_client(name: str):
  spec = importlib.util.spec_from_file_location(
      f'export_{name}', os.path.join(EXPORT_DIR, f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope='module')
def rest_client():
  return _load_client('rest_client')


@pytest.fixture(scope='module')
def grpc_client():
  return _load_client('grpc_client')


@pytest.fixture(scope='module')
def stub_loaded(stub_exported):
  return adapters.load(stub_exported)


def test_models_config_parses():
  with open(os.path.join(EXPORT_DIR, 'models.config')) as f:
    config = text_format.Parse(f.read(),
                               model_server_config_pb2.ModelServerConfig())
  (model,) = config.model_config_list.config
  assert model.name == 'mtdet' and model.model_platform == 'tensorflow'
  assert model.base_path.startswith('/')
  assert model.model_version_policy.latest.num_versions == 1


def test_rest_client_round_trip(rest_client, stub_loaded, image_file):
  args = rest_client.parse_args(['--image', image_file, '--version', '2'])
  assert args.server == 'http://localhost:8501' and args.version == 2
  assert rest_client.predict_url(args.server, 'mtdet', 2) == (
      'http://localhost:8501/v1/models/mtdet/versions/2:predict')
  assert rest_client.predict_url('http://h:1/', 'm') == (
      'http://h:1/v1/models/m:predict')
  with open(image_file, 'rb') as f:
    body = rest_client.build_request(f.read())
  response = adapters.predict_rest(stub_loaded, body)
  detections = rest_client.parse_response(response, score_threshold=0.3)
  assert [d['class_name'] for d in detections] == ['circle', 'square']
  np.testing.assert_allclose([d['score'] for d in detections], [0.9, 0.6])
  assert 'circle' in rest_client.format_detections(detections)
  with pytest.raises(RuntimeError, match='server error'):
    rest_client.parse_response({'error': 'boom'})


def test_grpc_client_round_trip(grpc_client, rest_client, stub_loaded,
                                image_file):
  args = grpc_client.parse_args(['--image', image_file, '--masks'])
  assert args.server == 'localhost:8500' and args.masks
  with open(image_file, 'rb') as f:
    encoded = f.read()
  request = grpc_client.build_request(
      encoded, 'mtdet', version=1,
      output_filter=grpc_client.DETECTION_OUTPUTS + grpc_client.MASK_OUTPUTS)
  assert request.model_spec.version.value == 1
  response = adapters.predict_grpc(stub_loaded, request)
  detections = grpc_client.parse_response(response, score_threshold=0.3)
  assert [d['class_name'] for d in detections] == ['circle', 'square']
  assert detections[0]['full_mask'].shape == (60, 90)
  assert 'mask area' in grpc_client.format_detections(detections)
  # Both clients read the same detections.
  rest = rest_client.parse_response(adapters.predict_rest(
      stub_loaded, rest_client.build_request(encoded)), 0.3)
  for a, b in zip(rest, detections):
    np.testing.assert_allclose(a['box'], b['box'], rtol=1e-6)
  # The default request leaves the (large) masks out.
  response = adapters.predict_grpc(
      stub_loaded, grpc_client.build_request(encoded))
  assert sorted(response.outputs) == sorted(grpc_client.DETECTION_OUTPUTS)


def test_clients_report_a_missing_image(tmp_path, grpc_client, capsys):
  # The REST client is standard library only: run it as a script.
  script = os.path.join(EXPORT_DIR, 'rest_client.py')
  out = subprocess.run([sys.executable, script, '--help'], capture_output=True,
                       text=True, timeout=60, check=True).stdout
  assert '--image' in out and '--server' in out
  result = subprocess.run(
      [sys.executable, script, '--image', str(tmp_path / 'missing.jpg')],
      capture_output=True, text=True, timeout=60, check=False)
  assert result.returncode == 1 and 'missing.jpg' in result.stderr
  # The gRPC client imports TensorFlow: call its main here.
  assert grpc_client.main(['--image', str(tmp_path / 'gone.png')]) == 1
  assert 'gone.png' in capsys.readouterr().err
