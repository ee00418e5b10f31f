"""nt_gp: infinite-width neural networks (NNGP/NTK) for TensorFlow 2."""
import pathlib
import re

from setuptools import find_packages, setup

ROOT = pathlib.Path(__file__).parent
VERSION = re.search(r"__version__ = '([^']+)'",
                    (ROOT / 'nt_gp' / '__init__.py').read_text()).group(1)

# Version ranges (see README, "Dependencies"):
# * TensorFlow 2.16-2.21: Keras 3 era; tf.nest's __tf_flatten__ protocol.
# * tensorflow-probability 0.24-0.25 needs tf-keras beside Keras 3.
# * gpflow 2.9.x: the newest release that installs beside numpy 2
#   (gpflow 2.11 pins numpy<2).
# scikit-learn and matplotlib are extras (`demo`, `plots`), not requirements:
# Keras 3 imports both whenever they are installed, so every
# `import tensorflow` of the environment would take about 1 s and 90 MB more
# (docs/performance.md), and the kernels need neither.
INSTALL_REQUIRES = [
    'numpy>=1.26',
    'scipy>=1.11',
    'tensorflow>=2.16,<2.22',
    'tf-keras>=2.16,<2.22',
    'tensorflow-probability>=0.24,<0.26',
    'gpflow>=2.9.2,<2.10',
    'h5py>=3.9',
    'tqdm>=4.60',
]
PLOTS = ['matplotlib>=3.7']
# `nt-gp demo` and examples/: scikit-learn's bundled data sets and figures.
DEMO = ['scikit-learn>=1.3'] + PLOTS

DOCS = ['mkdocs>=1.6,<2', 'mkdocs-material>=9.5,<10',
        'mkdocstrings[python]>=0.26']
EXTRAS = {
    # The tests build the documentation (tests/test_docs_build.py).
    'test': ['pytest>=7.4', 'pytest-xdist>=3.3'] + DOCS + DEMO,
    'docs': DOCS,
    'demo': DEMO,
    'plots': PLOTS,
}
EXTRAS['dev'] = sorted({r for v in EXTRAS.values() for r in v})

setup(
    name='nt_gp',
    version=VERSION,
    description='Infinite-width neural networks (NNGP and NTK kernels) as a '
                'Gaussian-process backend for TensorFlow 2, TFP and GPflow.',
    long_description=(ROOT / 'README.md').read_text(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['nt_gp', 'nt_gp.*']),
    python_requires='>=3.10',
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={'console_scripts': ['nt-gp=nt_gp.cli:main']},
    license='Apache-2.0',
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
