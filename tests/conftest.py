"""Shared pytest fixtures: devices and dtypes to parametrise kernel tests over.

The tests exercise the *installed* pyfaid (``pip install --no-build-isolation .``), as users get it.
A checkout built in place (``pip install -e .`` or ``python setup.py build_ext --inplace``) takes
precedence, so developers test their working copy; the header of the pytest run says which one.
"""

import glob
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(_ROOT, "pyfaid", "_C*.so")) and _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_report_header(config):
    import pyfaid

    where = os.path.dirname(os.path.abspath(pyfaid.__file__))
    return f"pyfaid {pyfaid.__version__} from {where}"

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    """Every device this machine has (CUDA only when a GPU is present)."""
    return torch.device(request.param)


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
