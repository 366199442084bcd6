"""End to end with a real `tensorflow_model_server` (skipped without one):
REST and gRPC answers equal the local adapters' on the same SavedModel."""

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tests import conftest as root_conftest
from tests.serving import conftest
from tf_mtdet.serving import adapters

SERVER = shutil.which('tensorflow_model_server')
pytestmark = pytest.mark.skipif(
    SERVER is None,
    reason='tensorflow_model_server is not on PATH: install TF Serving (the '
    'tensorflow-model-server apt package, or run the tests inside the '
    'tensorflow/serving image) to run the end-to-end serving test')

_START_TIMEOUT_S = 120
_REQUEST_TIMEOUT_S = 60


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _load_client(name: str):
  path = os.path.join(root_conftest.REPO_ROOT, 'export', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'export_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope='module')
def server(exported, tmp_path_factory):
  """(grpc_port, rest_port) of a server on the exported model; always killed."""
  base = exported.base
  grpc_port, rest_port = _free_port(), _free_port()
  flags = [f'--port={grpc_port}', f'--rest_api_port={rest_port}',
           '--model_name=mtdet', f'--model_base_path={os.path.abspath(base)}']
  usage = subprocess.run([SERVER, '--help'], capture_output=True, text=True,
                         timeout=30, check=False)
  if 'rest_api_host' in usage.stdout + usage.stderr:
    flags.append('--rest_api_host=127.0.0.1')
  log_path = tmp_path_factory.mktemp('server') / 'server.log'
  with open(log_path, 'w') as log:
    process = subprocess.Popen([SERVER, *flags], stdout=log,
                               stderr=subprocess.STDOUT)
    try:
      status_url = f'http://127.0.0.1:{rest_port}/v1/models/mtdet'
      deadline = time.monotonic() + _START_TIMEOUT_S
      while True:
        if process.poll() is not None:
          pytest.fail(f'tensorflow_model_server exited '
                      f'{process.returncode}:\n{log_path.read_text()}')
        try:
          with urllib.request.urlopen(status_url, timeout=5) as reply:
            states = [v['state'] for v in
                      json.loads(reply.read())['model_version_status']]
          if 'AVAILABLE' in states:
            break
        except (urllib.error.URLError, OSError, ValueError, KeyError):
          pass
        if time.monotonic() > deadline:
          pytest.fail(f'model not AVAILABLE after {_START_TIMEOUT_S}s:\n'
                      f'{log_path.read_text()}')
        time.sleep(0.5)
      yield grpc_port, rest_port
    finally:
      process.terminate()
      try:
        process.wait(timeout=15)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_rest_matches_local_adapter(server, loaded):
  _, rest_port = server
  rest_client = _load_client('rest_client')
  body = rest_client.build_request(conftest.encode(conftest.sample_image()))
  url = rest_client.predict_url(f'http://127.0.0.1:{rest_port}', 'mtdet')
  served = rest_client.send(url, body, _REQUEST_TIMEOUT_S)
  local = adapters.predict_rest(loaded, body)
  assert 'error' not in served, served
  (got,), (want,) = served['predictions'], local['predictions']
  assert set(got) == set(want)
  for key in want:
    if key == 'detection_class_names':
      assert got[key] == want[key]
    else:
      np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-4,
                                 err_msg=key)
  bad = rest_client.send(url, {'signature_name': 'image_bytes',
                               'instances': [{'b64': 'aGVsbG8='}]},
                         _REQUEST_TIMEOUT_S)
  assert 'not a JPEG, PNG, GIF or BMP' in bad['error']


def test_grpc_matches_local_adapter(server, loaded):
  grpc_port, _ = server
  grpc_client = _load_client('grpc_client')
  request = grpc_client.build_request(
      conftest.encode(conftest.sample_image()), 'mtdet', output_filter=())
  with grpc.insecure_channel(f'127.0.0.1:{grpc_port}') as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    served = stub.Predict(request, timeout=_REQUEST_TIMEOUT_S)
    local = adapters.predict_grpc(loaded, request)
    assert set(served.outputs) == set(local.outputs)
    for key in local.outputs:
      got = tf.make_ndarray(served.outputs[key])
      want = tf.make_ndarray(local.outputs[key])
      if want.dtype == object:
        assert got.tolist() == want.tolist(), key
      else:
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=key)
    # A float image is refused as the local adapter refuses it.
    bad = grpc_client.build_request(b'', 'mtdet', output_filter=())
    bad.model_spec.signature_name = 'serving_default'
    bad.inputs['inputs'].CopyFrom(tf.make_tensor_proto(
        np.zeros((1, 8, 8, 3), np.float32)))
    with pytest.raises(grpc.RpcError) as raised:
      stub.Predict(bad, timeout=_REQUEST_TIMEOUT_S)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # And the server still answers.
    again = stub.Predict(request, timeout=_REQUEST_TIMEOUT_S)
    np.testing.assert_array_equal(
        tf.make_ndarray(again.outputs['detection_boxes']),
        tf.make_ndarray(served.outputs['detection_boxes']))
