// Autocast kernels of the `pyfaid` ops: under torch.autocast (CPU or CUDA) every op casts its
// reduced-precision floating inputs (bfloat16, float16) to float32 and computes in float32, as
// autocast's "fp32" op list does for ATen ops: the kernels are float32 / float64 code, and the
// renderer's depth test, barycentrics and the Chebyshev recurrence need float32's mantissa.
// float64 inputs stay float64; integer inputs (triangles, CSR indices) are untouched; outputs are
// float32. Only the forward ops need this: autograd hands the backward ops gradients in their
// forward outputs' dtype (float32).
#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

namespace pyfaid {
namespace {

template <c10::DeviceType D>
at::Tensor fp32(const at::Tensor& t) {
  return at::autocast::cached_cast(at::kFloat, t, D);
}

template <c10::DispatchKey K, c10::DeviceType D>
at::Tensor rasterize_autocast(const at::Tensor& pos, const at::Tensor& tri, int64_t height,
                              int64_t width, bool check_indices, std::string_view cpu_path,
                              bool simd) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(K);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("pyfaid::rasterize", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                                         bool, std::string_view, bool)>();
  return op.call(fp32<D>(pos), tri, height, width, check_indices, cpu_path, simd);
}

template <c10::DispatchKey K, c10::DeviceType D>
at::Tensor interpolate_autocast(const at::Tensor& attr, const at::Tensor& rast,
                                const at::Tensor& tri, bool check_indices, bool simd) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(K);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("pyfaid::interpolate", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         bool, bool)>();
  return op.call(fp32<D>(attr), fp32<D>(rast), tri, check_indices, simd);
}

template <c10::DispatchKey K, c10::DeviceType D>
at::Tensor vertex_normals_autocast(const at::Tensor& verts, const at::Tensor& tri,
                                   bool check_indices) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(K);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("pyfaid::vertex_normals", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, bool)>();
  return op.call(fp32<D>(verts), tri, check_indices);
}

template <c10::DispatchKey K, c10::DeviceType D>
at::Tensor sh_shading_autocast(const at::Tensor& normals, const at::Tensor& albedo,
                               const at::Tensor& gamma) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(K);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("pyfaid::sh_shading", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(fp32<D>(normals), fp32<D>(albedo), fp32<D>(gamma));
}

template <c10::DispatchKey K, c10::DeviceType D>
at::Tensor cheb_conv_autocast(const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col,
                              const at::Tensor& val, const at::Tensor& weight,
                              const std::optional<at::Tensor>& bias, bool check_laplacian) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(K);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("pyfaid::cheb_conv", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&, const at::Tensor&,
                                         const std::optional<at::Tensor>&, bool)>();
  return op.call(fp32<D>(x), crow, col, fp32<D>(val), fp32<D>(weight),
                 at::autocast::cached_cast(at::kFloat, bias, D), check_laplacian);
}

template <c10::DispatchKey K, c10::DeviceType D>
at::Tensor cheb_spmm_autocast(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& val,
                              const at::Tensor& x, bool check_laplacian) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(K);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("pyfaid::cheb_spmm", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&, bool)>();
  return op.call(crow, col, fp32<D>(val), fp32<D>(x), check_laplacian);
}

template <c10::DispatchKey K, c10::DeviceType D>
at::Tensor rasterize_db_autocast(const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& rast,
                                 bool check_indices) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(K);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("pyfaid::rasterize_db", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, bool)>();
  return op.call(fp32<D>(pos), tri, fp32<D>(rast), check_indices);
}

template <c10::DispatchKey K, c10::DeviceType D>
at::Tensor interpolate_da_autocast(const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri,
                                   const at::Tensor& rast_db, at::IntArrayRef diff_attrs, bool check_indices) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(K);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("pyfaid::interpolate_da", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&, at::IntArrayRef, bool)>();
  return op.call(fp32<D>(attr), fp32<D>(rast), tri, fp32<D>(rast_db), diff_attrs, check_indices);
}

template <c10::DispatchKey K, c10::DeviceType D>
std::vector<at::Tensor> texture_mip_autocast(const at::Tensor& tex, int64_t max_mip_level) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(K);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("pyfaid::texture_mip", "")
                       .typed<std::vector<at::Tensor>(const at::Tensor&, int64_t)>();
  return op.call(fp32<D>(tex), max_mip_level);
}

template <c10::DispatchKey K, c10::DeviceType D>
at::Tensor texture_autocast(const at::Tensor& tex, at::TensorList mip, const at::Tensor& uv,
                            const std::optional<at::Tensor>& uv_da,
                            const std::optional<at::Tensor>& mip_level_bias, std::string_view filter_mode,
                            std::string_view boundary_mode) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(K);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("pyfaid::texture", "")
                       .typed<at::Tensor(const at::Tensor&, at::TensorList, const at::Tensor&,
                                         const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
                                         std::string_view, std::string_view)>();
  const std::vector<at::Tensor> mip32 = at::autocast::cached_cast(at::kFloat, mip, D);
  return op.call(fp32<D>(tex), mip32, fp32<D>(uv), at::autocast::cached_cast(at::kFloat, uv_da, D),
                 at::autocast::cached_cast(at::kFloat, mip_level_bias, D), filter_mode, boundary_mode);
}

template <c10::DispatchKey K, c10::DeviceType D>
std::tuple<at::Tensor, at::Tensor, at::Tensor> antialias_autocast(const at::Tensor& color, const at::Tensor& rast,
                                                                  const at::Tensor& pos, const at::Tensor& tri,
                                                                  const at::Tensor& neighbors, bool check_indices) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(K);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("pyfaid::antialias", "")
                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                           const at::Tensor&, bool)>();
  return op.call(fp32<D>(color), fp32<D>(rast), fp32<D>(pos), tri, neighbors, check_indices);
}

template <c10::DispatchKey K, c10::DeviceType D>
void register_autocast(torch::Library& m) {
  m.impl("rasterize", &rasterize_autocast<K, D>);
  m.impl("rasterize_db", &rasterize_db_autocast<K, D>);
  m.impl("interpolate", &interpolate_autocast<K, D>);
  m.impl("interpolate_da", &interpolate_da_autocast<K, D>);
  m.impl("texture_mip", &texture_mip_autocast<K, D>);
  m.impl("texture", &texture_autocast<K, D>);
  m.impl("antialias", &antialias_autocast<K, D>);
  m.impl("vertex_normals", &vertex_normals_autocast<K, D>);
  m.impl("sh_shading", &sh_shading_autocast<K, D>);
  m.impl("cheb_conv", &cheb_conv_autocast<K, D>);
  m.impl("cheb_spmm", &cheb_spmm_autocast<K, D>);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, AutocastCPU, m) {
  register_autocast<c10::DispatchKey::AutocastCPU, c10::DeviceType::CPU>(m);
}

TORCH_LIBRARY_IMPL(pyfaid, AutocastCUDA, m) {
  register_autocast<c10::DispatchKey::AutocastCUDA, c10::DeviceType::CUDA>(m);
}

}  // namespace pyfaid
