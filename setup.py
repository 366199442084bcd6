"""tf_mtdet: multi-task detection and segmentation models on TensorFlow Model Garden."""

import setuptools

# The three TensorFlow packages must move together: Model Garden 2.20 is built
# against TF 2.20 and its tf_keras (Keras 2) release.
INSTALL_REQUIRES = [
    'tensorflow~=2.20.0',
    'tf-models-official~=2.20.0',
    'tf-keras~=2.20.0',
    'pycocotools>=2.0.7',
    'numpy>=1.26',
    'pillow>=10.0',
    'opencv-python-headless>=4.8',
    'pyyaml>=6.0',
    'scipy>=1.11',
    # convert-weights reads .safetensors ImageNet weights (numpy API).
    'safetensors>=0.4',
]

EXTRAS_REQUIRE = {
    'dev': [
        'pytest>=8.0',
        'pytest-xdist>=3.5',
        # Request formats of TF Serving (REST JSON and gRPC PredictRequest).
        'tensorflow-serving-api~=2.20.0',
    ],
}

# The experiment configs ship inside the package as `tf_mtdet/model_zoo/`
# (as detectron2 ships its model-zoo configs); the top-level `configs/` folder
# stays the single source of truth and `tf_mtdet.config.zoo` finds either.
# `**` globs need setuptools >= 62.3.
PACKAGES = setuptools.find_packages(include=['tf_mtdet', 'tf_mtdet.*'])
PACKAGE_DIR = {'tf_mtdet.model_zoo': 'configs'}
PACKAGE_DATA = {'tf_mtdet.model_zoo': ['**/*.yaml', '**/*.md']}

setuptools.setup(
    name='tf_mtdet',
    version='0.1.0',
    description=('Multi-task detection and segmentation models (SA-FPN/EJ-Head, '
                 'DATNet, IvaNet, CoMask) on TensorFlow Model Garden'),
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.11,<3.12',
    packages=[*PACKAGES, 'tf_mtdet.model_zoo'],
    package_dir=PACKAGE_DIR,
    package_data=PACKAGE_DATA,
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={'console_scripts': ['tf-mtdet = tf_mtdet.cli:main']},
)
