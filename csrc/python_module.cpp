// Python module entry point of pyfaid._C (setup.py builds only). Importing the module loads
// the shared library, whose static initialisers register the ops in torch.ops.pyfaid. The
// CMake build leaves this file out: its library is loaded with torch.ops.load_library.
#include <torch/extension.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "pyfaid compiled operators (registered in torch.ops.pyfaid)";
#ifdef WITH_CUDA
  m.attr("WITH_CUDA") = true;
#else
  m.attr("WITH_CUDA") = false;
#endif
}
