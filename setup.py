"""Build script for pyfaid's C++/CUDA operators.

The ops are always compiled for the CPU. CUDA kernels are added when torch was built with CUDA and
``nvcc`` is found (or ``FORCE_CUDA=1``); ``PYFAID_CPU_ONLY=1`` opts out. Install with
``pip install --no-build-isolation .`` so the build sees the installed torch.
"""

import glob
import importlib.util
import os
import re
import shutil
import sys
import sysconfig

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _env_flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def _find_cuda_home():
    """Return a CUDA root that has both nvcc and the runtime headers, or None."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for c in candidates:
        if c and os.path.exists(os.path.join(c, "bin", "nvcc")) and os.path.exists(
            os.path.join(c, "include", "cuda_runtime.h")
        ):
            return c
    return None


def _nvidia_wheel_dirs():
    """Include/lib folders of torch's nvidia-* wheels (cusparse.h etc. live there): beside the torch
    that builds the ops, which in a ``venv --system-site-packages`` is not this environment's own
    site-packages."""
    sites = [sysconfig.get_paths()["purelib"]]
    spec = importlib.util.find_spec("torch")
    if spec is not None and spec.origin:
        sites.insert(0, os.path.dirname(os.path.dirname(spec.origin)))
    inc, lib = [], []
    roots = []
    for site in dict.fromkeys(sites):
        roots += sorted(glob.glob(os.path.join(site, "nvidia", "cu*"))) + [os.path.join(site, "nvidia")]
    for root in roots:
        if os.path.isdir(os.path.join(root, "include")):
            inc.append(os.path.join(root, "include"))
        if os.path.isdir(os.path.join(root, "lib")):
            lib.append(os.path.join(root, "lib"))
    return inc, lib


CPU_ONLY = _env_flag("PYFAID_CPU_ONLY")
CUDA_HOME = None if CPU_ONLY else _find_cuda_home()
if CUDA_HOME:
    # torch.utils.cpp_extension reads CUDA_HOME once, at import.
    os.environ["CUDA_HOME"] = CUDA_HOME
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "7.5;8.0;9.0+PTX")

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _want_cuda():
    if CPU_ONLY:
        return False
    if _env_flag("FORCE_CUDA"):
        if CUDA_HOME is None:
            sys.exit("FORCE_CUDA=1 but no CUDA toolkit (nvcc + cuda_runtime.h) was found; set CUDA_HOME")
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None


def _cudart_link_dir(lib_dirs):
    """A folder holding an unversioned libcudart.so for the linker.

    CUDA wheels ship only ``libcudart.so.<major>``; when no toolkit folder provides the
    unversioned name, link against a symlink made in the build tree.
    """
    for d in [os.path.join(CUDA_HOME, "lib64"), os.path.join(CUDA_HOME, "lib")] + lib_dirs:
        if os.path.exists(os.path.join(d, "libcudart.so")):
            return d
    for d in lib_dirs:
        versioned = sorted(glob.glob(os.path.join(d, "libcudart.so.*")))
        if versioned:
            link_dir = os.path.join(ROOT, "build", "cudart_link")
            os.makedirs(link_dir, exist_ok=True)
            link = os.path.join(link_dir, "libcudart.so")
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(versioned[0], link)
            return link_dir
    return None


def get_extensions():
    cpp_sources = sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    cu_sources = sorted(glob.glob(os.path.join("csrc", "**", "*.cu"), recursive=True))
    define_macros = []
    # No floating-point contraction: the rasterizer's CPU paths (scalar, AVX2) and its CUDA
    # kernels round every product and sum the same way (on FMA-by-default targets too).
    cxx_flags = ["-O3", "-std=c++20", "-fopenmp", "-ffp-contract=off"]
    extra_link = ["-fopenmp"]
    kwargs = dict(include_dirs=[os.path.join(ROOT, "csrc")])
    if _want_cuda():
        inc, lib = _nvidia_wheel_dirs()
        link_dir = _cudart_link_dir(lib)
        kwargs["include_dirs"] += inc
        kwargs["library_dirs"] = ([link_dir] if link_dir else []) + lib
        define_macros.append(("WITH_CUDA", None))
        # IEEE arithmetic without contraction, like the C++ side (-ffp-contract=off): no
        # --use_fast_math (it flushes denormals, approximates division/sqrt and fuses multiply-adds),
        # so the CUDA kernels round every product and sum the way the CPU kernels do.
        nvcc_flags = ["-O3", "-std=c++20", "--fmad=false", "--expt-relaxed-constexpr", "-lineinfo"]
        print(f"pyfaid: building CPU + CUDA ops (CUDA_HOME={CUDA_HOME}, "
              f"arch={os.environ['TORCH_CUDA_ARCH_LIST']})")
        return [
            CUDAExtension(
                "pyfaid._C",
                cpp_sources + cu_sources,
                define_macros=define_macros,
                extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
                extra_link_args=extra_link,
                **kwargs,
            )
        ]
    print("pyfaid: building CPU-only ops")
    return [
        CppExtension(
            "pyfaid._C",
            cpp_sources,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=extra_link,
            **kwargs,
        )
    ]


def _version():
    with open(os.path.join(ROOT, "pyfaid", "__init__.py")) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


setup(
    name="pyfaid",
    version=_version(),
    description="Robust monocular 3D face reconstruction (FAID) with fast differentiable rendering ops",
    # The configs live at the repository root (configs/) and ship inside the package as
    # pyfaid/configs, so `python -m pyfaid.train --config NAME` finds them once installed.
    packages=find_packages(include=["pyfaid", "pyfaid.*"]) + ["pyfaid.configs"],
    package_dir={"pyfaid.configs": "configs"},
    package_data={"pyfaid": ["assets/*", "assets/pretrained/*"], "pyfaid.synth": ["assets/*.json"],
                  "pyfaid.configs": ["*.yaml"]},
    python_requires=">=3.10",
    ext_modules=get_extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    zip_safe=False,
)
