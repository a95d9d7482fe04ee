#include "btx/model/layers.h"

#include <cmath>
#include <limits>
#include <string>

namespace btx {

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  auto xf = x.to(torch::kFloat32);
  auto y = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * y.to(x.scalar_type());
}

RopeSpec RopeSpec::of(const ModelConfig& c) {
  return {c.head_dim(),
          c.rope_theta,
          c.rope_scaling_type,
          c.rope_scaling_factor,
          c.rope_low_freq_factor,
          c.rope_high_freq_factor,
          c.rope_original_max_position_embeddings};
}

torch::Tensor RopeSpec::inv_freq() const {
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  auto f = torch::pow(base, -torch::arange(0, dim, 2, opts) / static_cast<double>(dim));
  if (scaling == "linear") return f / factor;
  if (scaling != "llama3") return f;
  // Wavelengths longer than the original context / low_freq_factor are slowed by `factor`,
  // those shorter than original / high_freq_factor kept, and the ones between interpolated.
  const double original = static_cast<double>(original_context);
  const auto wavelen = 2 * M_PI / f;
  const auto smooth = (original / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
  const auto ramp = (1 - smooth) * f / factor + smooth * f;
  return torch::where(wavelen > original / low_freq_factor, f / factor,
                      torch::where(wavelen < original / high_freq_factor, f, ramp));
}

namespace {
// cos and sin (..., D) of positions t (any shape, float64).
RopeTables tables_of(const torch::Tensor& t, const RopeSpec& spec, torch::Device device) {
  auto freqs = t.unsqueeze(-1) * spec.inv_freq();  // (..., D/2)
  auto emb = torch::cat({freqs, freqs}, -1);       // (..., D)
  return {emb.cos().to(torch::kFloat32).to(device), emb.sin().to(torch::kFloat32).to(device)};
}
}  // namespace

RopeTables rope_tables(int64_t T, const RopeSpec& spec, int64_t offset, torch::Device device) {
  auto t = torch::arange(offset, offset + T, torch::TensorOptions().dtype(torch::kFloat64));
  return tables_of(t, spec, device);
}

RopeTables rope_tables_at(const torch::Tensor& positions, const RopeSpec& spec) {
  auto r = tables_of(positions.to(torch::kCPU, torch::kFloat64), spec, positions.device());
  return {r.cos.unsqueeze(1), r.sin.unsqueeze(1)};
}

torch::Tensor apply_rope(const torch::Tensor& x, const RopeTables& rope) {
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, half);
  auto rotated = torch::cat({-x2, x1}, -1);
  return x * rope.cos.to(x.scalar_type()) + rotated * rope.sin.to(x.scalar_type());
}

torch::Tensor causal_mask(int64_t T, torch::Device device) {
  // Cached per (T, device): the same mask serves every layer and step.
  static thread_local torch::Tensor cached;
  if (!cached.defined() || cached.size(0) != T || cached.device() != device) {
    cached = torch::full({T, T}, -std::numeric_limits<float>::infinity(),
                         torch::TensorOptions().device(device))
                 .triu(1);
  }
  return cached;
}

namespace {
// softmax(q k^T / sqrt(D) + causal mask) v for q, k, v (B, H, T, D) of the same T positions.
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0,
                                          /*is_causal=*/true);
#else
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3);
  // One pass for scale, causal mask and QK^T: baddbmm(mask, q, k^T) with an additive mask.
  const int64_t BH = B * H;
  auto att = torch::baddbmm(causal_mask(T, q.device()), q.reshape({BH, T, D}),
                            k.reshape({BH, T, D}).transpose(1, 2), /*beta=*/1.0,
                            /*alpha=*/1.0 / std::sqrt(static_cast<double>(D)));  // (BH, T, T)
  // The softmax in fp32 also under bf16 autocast (a no-op otherwise).
  return torch::bmm(torch::softmax(att, -1, torch::kFloat32), v.reshape({BH, T, D}))
      .view({B, H, T, D});
#endif
}

// The same for T new positions after S cached ones: q (B, H, T, D), k and v (B, H, S+T, D).
// New position i (absolute S + i) sees keys 0 .. S + i, or what `mask` (additive, broadcastable
// to (B, H, T, S+T)) allows when it is given.
torch::Tensor masked_attention(const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, const torch::Tensor& mask, int64_t S) {
  const int64_t T = q.size(2), total = k.size(2);
  auto m = mask.defined() ? mask
                          : torch::full({T, total}, -std::numeric_limits<float>::infinity(),
                                        torch::TensorOptions().device(q.device()))
                                .triu(S + 1);
  auto att = torch::matmul(q, k.transpose(2, 3)) / std::sqrt(static_cast<double>(q.size(3))) +
             m;                                                       // (B, H, T, S+T)
  return torch::matmul(torch::softmax(att, -1, torch::kFloat32), v);  // (B, H, T, D)
}
}  // namespace

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : n_head(c.num_attention_heads), n_kv_head(c.num_key_value_heads), head_dim(c.head_dim()) {
  auto lin = [](int64_t in, int64_t out, bool bias) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
  };
  q_proj = register_module("q_proj", lin(c.hidden_size, n_head * head_dim, c.qkv_bias()));
  k_proj = register_module("k_proj", lin(c.hidden_size, n_kv_head * head_dim, c.qkv_bias()));
  v_proj = register_module("v_proj", lin(c.hidden_size, n_kv_head * head_dim, c.qkv_bias()));
  o_proj = register_module("o_proj", lin(n_head * head_dim, c.hidden_size, c.o_bias()));
  if (c.qk_norm()) {
    q_norm = register_module("q_norm", RMSNorm(head_dim, c.rms_norm_eps));
    k_norm = register_module("k_norm", RMSNorm(head_dim, c.rms_norm_eps));
  }
}

torch::Tensor attend(torch::Tensor q, torch::Tensor k, torch::Tensor v, const RopeTables& rope,
                     LayerCache* cache, const torch::Tensor& mask) {
  const int64_t T = q.size(2), n_head = q.size(1), n_kv_head = k.size(1);
  q = apply_rope(q, rope);
  k = apply_rope(k, rope);
  if (cache != nullptr) {  // after the S cached positions: (B, G, S+T, D)
    cache->k = cache->k.defined() ? torch::cat({cache->k, k}, 2) : k;
    cache->v = cache->v.defined() ? torch::cat({cache->v, v}, 2) : v;
    k = cache->k;
    v = cache->v;
  }
  if (n_kv_head != n_head) {  // each key/value head serves H/G query heads, as HF's repeat_kv
    k = k.repeat_interleave(n_head / n_kv_head, 1);  // (B, H, S+T, D)
    v = v.repeat_interleave(n_head / n_kv_head, 1);
  }
  const int64_t S = k.size(2) - T;
  return S == 0 && !mask.defined() ? causal_attention(q, k, v)
                                   : masked_attention(q, k, v, mask, S);  // (B, H, T, D)
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const RopeTables& rope,
                                     LayerCache* cache, const torch::Tensor& mask) {
  const int64_t B = x.size(0), T = x.size(1);
  auto q = q_proj(x).view({B, T, n_head, head_dim});     // (B, T, H, D)
  auto k = k_proj(x).view({B, T, n_kv_head, head_dim});  // (B, T, G, D)
  if (q_norm) {  // qwen3: each head's query and key normalised, before RoPE
    q = q_norm(q);
    k = k_norm(k);
  }
  auto v = v_proj(x).view({B, T, n_kv_head, head_dim}).transpose(1, 2);  // (B, G, T, D)
  const auto y =
      attend(q.transpose(1, 2), k.transpose(1, 2), v, rope, cache, mask);  // (B, H, T, D)
  return o_proj(y.transpose(1, 2).reshape({B, T, n_head * head_dim}));
}

int64_t count_params(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

int64_t FeedForwardImpl::active_params() const {
  return count_params(*this);
}

SwiGluMlpImpl::SwiGluMlpImpl(int64_t hidden, int64_t inner) {
  auto lin = [](int64_t in, int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  gate_proj = register_module("gate_proj", lin(hidden, inner));
  up_proj = register_module("up_proj", lin(hidden, inner));
  down_proj = register_module("down_proj", lin(inner, hidden));
}

torch::Tensor SwiGluMlpImpl::forward(const torch::Tensor& x, const FfnContext& /*ctx*/) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

}  // namespace btx
