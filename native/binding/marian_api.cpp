// The Marian engine through Node-API: the model description (validated field by field, with caps), decoder
// state handles, encode, the decoder step, slot copies.
#include "binding.h"
#include "chimera/cuda.h"

namespace chimera::binding {
namespace {

// ---- Marian engine

const napi_type_tag kModelTag = {0x6368696d65726131ULL, 0x6d617269616e6d6fULL};
const napi_type_tag kStateTag = {0x6368696d65726131ULL, 0x6d617269616e7374ULL};
const napi_type_tag kSubHeadTag = {0x6368696d65726131ULL, 0x6d617269616e7368ULL};

struct ModelBox {
  MarianModel m;
  // An int8 LM head's bytes channel by channel, made at the first sub-head (vocabulary shortlist) and kept:
  // gathering a sub-head from it reads each channel once instead of a cache line per 4 bytes.
  std::vector<uint8_t> head_rows;
  // fp32 / fp16 heads: whether the tied embedding (m.embed / m.embed_half) holds exactly the head's values, so a
  // sub-head can be gathered from its rows (-1: not checked yet).
  int embed_rows_ok = -1;
  Napi::ObjectReference desc;  // keeps every array and packed handle the model points into alive
  size_t bytes = 0;
  // m.device == Cuda: the device copy that encode / step run on (m stays the source of the live layer norms)
  cuda::Model* dev = nullptr;
  ~ModelBox() { cuda::free_model(dev); }
};
// A sub-LM-head and the model it was gathered from (a step checks that they match).
struct SubHeadBox {
  std::unique_ptr<SubHead> h;
  const MarianModel* model = nullptr;
};
struct StateBox {
  MarianState st;
  size_t bytes = 0;    // what AdjustExternalMemory was told
  size_t max_pos = 0;  // the model's max_position_embeddings, the bound on maxLen / maxSrc
  // st.device == Cuda: the KV cache in device memory (st keeps the shape and src_len for the checks here), the
  // model it belongs to, and a reference that keeps that model alive while the state is
  cuda::State* dev = nullptr;
  const cuda::Model* owner = nullptr;
  Napi::ObjectReference model_ref;
  ~StateBox() { cuda::free_state(dev); }
};

// The device a model or state description asks for: opts.device, 'cpu' (default) or 'cuda'.
Device device_option(Napi::Env env, const Napi::Value& opts) {
  if (opts.IsUndefined() || opts.IsNull()) return Device::Cpu;
  if (!opts.IsObject()) throw_code(env, "E_ARG", "marianCreate options must be an object");
  const Napi::Value v = opts.As<Napi::Object>().Get("device");
  if (v.IsUndefined()) return Device::Cpu;
  const std::string d = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (d == "cpu") return Device::Cpu;
  if (d == "cuda") return Device::Cuda;
  throw_code(env, "E_ARG", "device must be 'cpu' or 'cuda'");
}

// A state and a model on different devices, or a device state of another model, cannot step together.
void check_pair(Napi::Env env, const ModelBox* mb, const StateBox* sb) {
  if ((mb->dev != nullptr) != (sb->dev != nullptr) || (sb->dev && sb->owner != mb->dev))
    throw_code(env, "E_ARG", "the decoder state was made for another model (or another device)");
}

Napi::Object obj(Napi::Env env, const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsObject()) throw_code(env, "E_ARG", std::string("model description lacks ") + key);
  return v.As<Napi::Object>();
}

const float* f32_field(Napi::Env env, const Napi::Object& o, const char* key, size_t len, bool nullable) {
  Napi::Value v = o.Get(key);
  if (nullable && (v.IsNull() || v.IsUndefined())) return nullptr;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_code(env, "E_ARG", std::string(key) + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() != len)
    throw_code(env, "E_SHAPE", std::string(key) + " has length " + std::to_string(a.ElementLength()) + ", expected " + std::to_string(len));
  return a.Data();
}

// Caps on a model description, checked before anything is allocated (the TypeScript loaders check the same
// and more; these hold for any caller of the raw binding).
constexpr double kMaxDim = 65536;           // d, heads, FFN width
constexpr double kMaxVocab = 4194304;       // 2^22 tokens
constexpr double kMaxPositions = 65536;     // max_position_embeddings
constexpr double kMaxPositionFloats = 268435456;  // the sinusoid table: 1 GiB of fp32 at most
constexpr uint32_t kMaxLayers = 1024;

size_t num_field(Napi::Env env, const Napi::Object& o, const char* key, double cap = kMaxDim) {
  Napi::Value v = o.Get(key);
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : 0;
  if (!(d >= 1 && d <= cap) || d != std::floor(d))
    throw_code(env, "E_ARG", std::string(key) + " must be an integer in 1.." + std::to_string(static_cast<int64_t>(cap)));
  return static_cast<size_t>(d);
}

LinearW linear_field(Napi::Env env, const Napi::Object& parent, const char* key, size_t n, size_t k) {
  Napi::Object o = obj(env, parent, key);
  LinearW l;
  if (!packed_linear(env, o.Get("w"), &l)) throw_code(env, "E_ARG", std::string(key) + ".w must be a packed weight handle");
  const size_t pn = l.n, pk = l.k;
  if (pn != n || pk != k)
    throw_code(env, "E_SHAPE", std::string(key) + " is " + std::to_string(pn) + "x" + std::to_string(pk) + ", expected " +
                                   std::to_string(n) + "x" + std::to_string(k));
  l.n = n;
  l.k = k;
  l.bias = f32_field(env, o, "bias", n, true);
  return l;
}

NormW norm_field(Napi::Env env, const Napi::Object& parent, const char* key, size_t d) {
  Napi::Object o = obj(env, parent, key);
  NormW n;
  n.gamma = f32_field(env, o, "gamma", d, false);
  n.beta = f32_field(env, o, "beta", d, true);
  return n;
}

// The FFN width of a layer, read off its fc1 bias.
size_t ffn_width(Napi::Env env, const Napi::Object& layer) {
  Napi::Value b = obj(env, layer, "fc1").Get("bias");
  if (!b.IsTypedArray() || b.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array || b.As<Napi::TypedArray>().ElementLength() == 0 ||
      b.As<Napi::TypedArray>().ElementLength() > kMaxDim * 8)
    throw_code(env, "E_ARG", "fc1 needs a Float32Array bias");
  return b.As<Napi::TypedArray>().ElementLength();
}

Napi::Value MarianCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw_code(env, "E_ARG", "expected a model description");
  Napi::Object o = info[0].As<Napi::Object>();
  auto box = std::make_unique<ModelBox>();
  MarianModel& m = box->m;
  m.dims.d = num_field(env, o, "d");
  m.dims.heads = num_field(env, o, "heads");
  m.dims.vocab = num_field(env, o, "vocab", kMaxVocab);
  m.dims.max_pos = num_field(env, o, "maxPos", kMaxPositions);
  if (static_cast<double>(m.dims.max_pos) * static_cast<double>(m.dims.d) > kMaxPositionFloats)
    throw_code(env, "E_ARG", "maxPos x d is too large for a position table");
  Napi::Value es = o.Get("embedScale");
  if (!es.IsNumber() || !std::isfinite(es.As<Napi::Number>().DoubleValue()))
    throw_code(env, "E_ARG", "embedScale must be a finite number");
  m.dims.embed_scale = static_cast<float>(es.As<Napi::Number>().DoubleValue());
  Napi::Value av = o.Get("act");
  m.dims.act = activation(env, av.IsNumber() ? av.As<Napi::Number>().DoubleValue() : -1);
  const size_t d = m.dims.d;
  if (d % m.dims.heads || d % 2) throw_code(env, "E_SHAPE", "d must be even and divisible by heads");
  Napi::Value eh = o.Get("embedHalf");
  if (eh.IsTypedArray() && eh.As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array) {
    auto a = eh.As<Napi::Uint16Array>();
    if (a.ElementLength() != m.dims.vocab * d) throw_code(env, "E_SHAPE", "embedHalf has the wrong length");
    m.embed_half = a.Data();
  } else {
    m.embed = f32_field(env, o, "embed", checked_mul(env, m.dims.vocab, d), false);
  }
  m.lm_head = linear_field(env, o, "lmHead", m.dims.vocab, d);
  Napi::Value enc = o.Get("encoder"), dec = o.Get("decoder");
  if (!enc.IsArray() || !dec.IsArray()) throw_code(env, "E_ARG", "encoder and decoder must be arrays of layers");
  auto ea = enc.As<Napi::Array>(), da = dec.As<Napi::Array>();
  if (ea.Length() > kMaxLayers || da.Length() > kMaxLayers) throw_code(env, "E_ARG", "too many layers");
  auto layer = [&](Napi::Array a, uint32_t i) {
    Napi::Value v = a.Get(i);
    if (!v.IsObject()) throw_code(env, "E_ARG", "each layer must be an object");
    return v.As<Napi::Object>();
  };
  for (uint32_t i = 0; i < ea.Length(); ++i) {
    Napi::Object l = layer(ea, i);
    EncoderLayer e;
    e.qkv = linear_field(env, l, "qkv", 3 * d, d);
    e.out = linear_field(env, l, "out", d, d);
    e.ln_attn = norm_field(env, l, "lnAttn", d);
    const size_t ffn = ffn_width(env, l);
    e.fc1 = linear_field(env, l, "fc1", ffn, d);
    e.fc2 = linear_field(env, l, "fc2", d, ffn);
    e.ln_ffn = norm_field(env, l, "lnFfn", d);
    m.encoder.push_back(e);
  }
  for (uint32_t i = 0; i < da.Length(); ++i) {
    Napi::Object l = layer(da, i);
    DecoderLayer e;
    e.qkv = linear_field(env, l, "qkv", 3 * d, d);
    e.out = linear_field(env, l, "out", d, d);
    e.ln_self = norm_field(env, l, "lnSelf", d);
    e.cross_q = linear_field(env, l, "crossQ", d, d);
    e.cross_kv = linear_field(env, l, "crossKv", 2 * d, d);
    e.cross_out = linear_field(env, l, "crossOut", d, d);
    e.ln_cross = norm_field(env, l, "lnCross", d);
    const size_t ffn = ffn_width(env, l);
    e.fc1 = linear_field(env, l, "fc1", ffn, d);
    e.fc2 = linear_field(env, l, "fc2", d, ffn);
    e.ln_ffn = norm_field(env, l, "lnFfn", d);
    m.decoder.push_back(e);
  }
  if (m.encoder.empty() || m.decoder.empty()) throw_code(env, "E_SHAPE", "the model needs encoder and decoder layers");
  marian_fill_positions(m);
  if (device_option(env, info[1]) == Device::Cuda) {
    m.device = Device::Cuda;
    box->dev = cuda::upload_model(m);  // DeviceError (E_DEVICE) with the reason when CUDA is unavailable
  }
  box->desc = Napi::Persistent(o);
  ModelBox* raw = box.release();
  auto ext = Napi::External<ModelBox>::New(env, raw, [](Napi::Env, ModelBox* b) { delete b; });
  napi_type_tag_object(env, ext, &kModelTag);
  return ext;
}


// marianState(model, slots, maxLen, sources, maxSrc)
Napi::Value MarianStateNew(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ModelBox* mb = unwrap<ModelBox>(info, 0, kModelTag, "marianCreate");
  auto sb = std::make_unique<StateBox>();
  MarianState& st = sb->st;
  st.layers = mb->m.decoder.size();
  st.d = mb->m.dims.d;
  st.slots = dim(info, 1, "slots");
  st.max_len = dim(info, 2, "maxLen");
  st.sources = dim(info, 3, "sources");
  st.max_src = dim(info, 4, "maxSrc");
  if (st.max_len > mb->m.dims.max_pos || st.max_src > mb->m.dims.max_pos)
    throw_code(env, "E_RANGE", "maxLen and maxSrc cannot exceed the model's max_position_embeddings (" +
                                   std::to_string(mb->m.dims.max_pos) + ")");
  if (kv_state_bytes(st.d, st.layers, st.slots, st.max_len, st.sources, st.max_src) > kMaxNativeBytes)
    throw_code(env, "E_RANGE", "decoder state would need more than 64 GiB");
  sb->max_pos = mb->m.dims.max_pos;
  st.src_len.assign(st.sources, 0);
  if (mb->dev) {  // the cache lives in device memory, which V8's external-memory accounting does not cover
    st.device = Device::Cuda;
    sb->dev = cuda::create_state(*mb->dev, st.slots, st.max_len, st.sources, st.max_src);
    sb->owner = mb->dev;
    sb->model_ref = Napi::Persistent(info[0].ToObject());
  } else {
    st.self_kv.assign(st.slots * st.layers * st.max_len * 2 * st.d, 0.0f);
    st.cross_kv.assign(st.sources * st.layers * st.max_src * 2 * st.d, 0.0f);
  }
  sb->bytes = st.bytes();
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(sb->bytes));
  StateBox* raw = sb.release();
  auto ext = Napi::External<StateBox>::New(env, raw, [](Napi::Env e, StateBox* b) {
    Napi::MemoryManagement::AdjustExternalMemory(e, -static_cast<int64_t>(b->bytes));
    delete b;
  });
  napi_type_tag_object(env, ext, &kStateTag);
  return ext;
}

// marianEncode(model, state, ids Int32Array [batch*s], lens Int32Array [batch], s, srcSlots Int32Array [batch], encOut|null)
Napi::Value MarianEncode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ModelBox* mb = unwrap<ModelBox>(info, 0, kModelTag, "marianCreate");
  StateBox* sb = unwrap<StateBox>(info, 1, kStateTag, "marianState");
  const size_t s = dim(info, 4, "s");
  size_t batch = 0;
  const int32_t* lens = arr<int32_t>(info, 3, "lens", 0, false, false, &batch);
  if (batch == 0) throw_code(env, "E_SHAPE", "empty batch");
  const int32_t* ids = arr<int32_t>(info, 2, "ids", checked_mul(env, batch, s));
  const int32_t* slots = arr<int32_t>(info, 5, "srcSlots", batch);
  float* enc_out = arr<float>(info, 6, "encOut", checked_mul(env, batch * s, mb->m.dims.d), true);
  float* taps = arr<float>(info, 7, "taps", checked_mul(env, mb->m.encoder.size() * 2 * batch * s, mb->m.dims.d), true);
  const MarianState& st = sb->st;
  if (s > st.max_src) throw_code(env, "E_INPUT", "source length " + std::to_string(s) + " exceeds the state's maxSrc " + std::to_string(st.max_src));
  for (size_t b = 0; b < batch; ++b) {
    if (lens[b] < 1 || static_cast<size_t>(lens[b]) > s) throw_code(env, "E_INPUT", "source lengths must be in 1..s");
    if (slots[b] < 0 || static_cast<size_t>(slots[b]) >= st.sources) throw_code(env, "E_RANGE", "source slot out of range");
  }
  for (size_t i = 0; i < batch * s; ++i)
    if (ids[i] < 0 || static_cast<size_t>(ids[i]) >= mb->m.dims.vocab)
      throw_code(env, "E_INPUT", "token id " + std::to_string(ids[i]) + " is outside the vocabulary (0.." + std::to_string(mb->m.dims.vocab - 1) + ")");
  check_pair(env, mb, sb);
  if (sb->dev) {
    if (taps) throw_code(env, "E_DEVICE", "layer-norm taps (captureNormInputs) are not available on a cuda model");
    cuda::encode(*mb->dev, *sb->dev, ids, lens, batch, s, slots, enc_out);
    for (size_t b = 0; b < batch; ++b) sb->st.src_len[static_cast<size_t>(slots[b])] = lens[b];
    return env.Undefined();
  }
  marian_encode(mb->m, sb->st, ids, lens, batch, s, slots, enc_out, taps);
  return env.Undefined();
}

// marianStep(model, state, tokens, slots, pos, srcs, logits, taps|null?)
Napi::Value MarianStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ModelBox* mb = unwrap<ModelBox>(info, 0, kModelTag, "marianCreate");
  StateBox* sb = unwrap<StateBox>(info, 1, kStateTag, "marianState");
  size_t rows = 0;
  const int32_t* tok = arr<int32_t>(info, 2, "tokens", 0, false, false, &rows);
  if (rows == 0) throw_code(env, "E_SHAPE", "no rows to step");
  const int32_t* slot = arr<int32_t>(info, 3, "slots", rows);
  const int32_t* pos = arr<int32_t>(info, 4, "positions", rows);
  const int32_t* src = arr<int32_t>(info, 5, "sources", rows);
  float* taps = arr<float>(info, 7, "taps", checked_mul(env, mb->m.decoder.size() * 3 * rows, mb->m.dims.d), true);
  const LinearW* head = nullptr;  // argument 8: a sub-LM-head (vocabulary shortlist); logits are then [rows, its n]
  if (!info[8].IsUndefined() && !info[8].IsNull()) {
    SubHeadBox* hb = unwrap<SubHeadBox>(info, 8, kSubHeadTag, "marianSubHead");
    if (hb->model != &mb->m || hb->h->w.k != mb->m.dims.d) throw_code(env, "E_ARG", "the sub-head was built for another model");
    head = &hb->h->w;
  }
  float* logits = arr<float>(info, 6, "logits", checked_mul(env, rows, head ? head->n : mb->m.dims.vocab));
  const MarianState& st = sb->st;
  for (size_t r = 0; r < rows; ++r) {
    if (tok[r] < 0 || static_cast<size_t>(tok[r]) >= mb->m.dims.vocab) throw_code(env, "E_INPUT", "token id out of range");
    if (slot[r] < 0 || static_cast<size_t>(slot[r]) >= st.slots) throw_code(env, "E_RANGE", "slot out of range");
    if (pos[r] < 0 || static_cast<size_t>(pos[r]) >= st.max_len) throw_code(env, "E_RANGE", "position past the state's maxLen");
    if (src[r] < 0 || static_cast<size_t>(src[r]) >= st.sources || st.src_len[static_cast<size_t>(src[r])] <= 0)
      throw_code(env, "E_RANGE", "source slot out of range or not encoded");
  }
  check_pair(env, mb, sb);
  if (sb->dev) {
    if (taps) throw_code(env, "E_DEVICE", "layer-norm taps (captureNormInputs) are not available on a cuda model");
    if (head) throw_code(env, "E_DEVICE", "a vocabulary shortlist (sub-LM-head) is not available on a cuda model");
    cuda::step(*mb->dev, *sb->dev, tok, slot, pos, src, rows, logits);
    return env.Undefined();
  }
  marian_step(mb->m, sb->st, tok, slot, pos, src, rows, logits, taps, head);
  return env.Undefined();
}

// marianSubHead(model, ids Int32Array) -> handle: the LM-head rows `ids` (each in 0..vocab-1), gathered once.
Napi::Value MarianSubHead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ModelBox* mb = unwrap<ModelBox>(info, 0, kModelTag, "marianCreate");
  size_t n = 0;
  const int32_t* ids = arr<int32_t>(info, 1, "ids", 0, false, false, &n);
  if (n == 0 || n > mb->m.dims.vocab) throw_code(env, "E_SHAPE", "ids must hold 1..vocab token ids");
  for (size_t i = 0; i < n; ++i)
    if (ids[i] < 0 || static_cast<size_t>(ids[i]) >= mb->m.dims.vocab) throw_code(env, "E_INPUT", "token id " + std::to_string(ids[i]) + " is outside the vocabulary");
  auto box = std::make_unique<SubHeadBox>();
  const PackedS8* s8 = mb->m.lm_head.s8;
  if (s8 && mb->head_rows.empty()) {
    mb->head_rows.resize(s8->n * s8->kp);
    s8_rows(*s8, mb->head_rows.data());
  }
  const void* rows = s8 ? static_cast<const void*>(mb->head_rows.data()) : nullptr;
  if (!s8) {
    const PackedF32& f = *mb->m.lm_head.f32;
    const void* embed = f.half ? static_cast<const void*>(mb->m.embed_half) : static_cast<const void*>(mb->m.embed);
    if (mb->embed_rows_ok < 0) mb->embed_rows_ok = embed && rows_match(f, embed) ? 1 : 0;
    if (mb->embed_rows_ok) rows = embed;
  }
  box->h.reset(marian_sub_head(mb->m, ids, n, rows));
  box->model = &mb->m;
  const int64_t bytes = static_cast<int64_t>(box->h->bytes);
  SubHeadBox* raw = box.release();
  auto ext = Napi::External<SubHeadBox>::New(env, raw, [bytes](Napi::Env e, SubHeadBox* b) {
    Napi::MemoryManagement::AdjustExternalMemory(e, -bytes);
    delete b;
  });
  napi_type_tag_object(env, ext, &kSubHeadTag);
  Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
  return ext;
}

// marianCopySlot(state, from, to, len)
Napi::Value MarianCopySlot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  StateBox* sb = unwrap<StateBox>(info, 0, kStateTag, "marianState");
  const double from = num(info, 1), to = num(info, 2), len = num(info, 3);
  const MarianState& st = sb->st;
  if (!(from >= 0 && from < st.slots && to >= 0 && to < st.slots && len >= 0 && len <= st.max_len))
    throw_code(env, "E_RANGE", "copySlot arguments out of range");
  if (sb->dev)
    cuda::copy_slot(*sb->dev, static_cast<size_t>(from), static_cast<size_t>(to), static_cast<size_t>(len));
  else
    marian_copy_slot(sb->st, static_cast<size_t>(from), static_cast<size_t>(to), static_cast<size_t>(len));
  return env.Undefined();
}

// marianStateResize(state, slots, maxLen, sources, maxSrc): in place; the handle stays valid.
Napi::Value MarianStateResize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  StateBox* sb = unwrap<StateBox>(info, 0, kStateTag, "marianState");
  MarianState& st = sb->st;
  const size_t slots = dim(info, 1, "slots"), max_len = dim(info, 2, "maxLen");
  const size_t sources = dim(info, 3, "sources"), max_src = dim(info, 4, "maxSrc");
  if (max_len > sb->max_pos || max_src > sb->max_pos)
    throw_code(env, "E_RANGE", "maxLen and maxSrc cannot exceed the model's max_position_embeddings (" + std::to_string(sb->max_pos) + ")");
  for (size_t s = 0; s < std::min(sources, st.sources); ++s)
    if (static_cast<size_t>(st.src_len[s]) > max_src)
      throw_code(env, "E_RANGE", "source slot " + std::to_string(s) + " holds " + std::to_string(st.src_len[s]) +
                                     " positions, more than maxSrc " + std::to_string(max_src) + "; release it first");
  if (kv_state_bytes(st.d, st.layers, slots, max_len, sources, max_src) > kMaxNativeBytes)
    throw_code(env, "E_RANGE", "decoder state would need more than 64 GiB");
  if (sb->dev) {  // DeviceError (E_DEVICE) when device memory runs out; the state is kept as it was
    cuda::resize_state(*sb->dev, slots, max_len, sources, max_src);
    st.src_len.resize(sources, 0);
    st.slots = slots;
    st.max_len = max_len;
    st.sources = sources;
    st.max_src = max_src;
    return env.Undefined();
  }
  try {
    marian_state_resize(st, slots, max_len, sources, max_src);
  } catch (const std::bad_alloc&) {
    throw_code(env, "E_RANGE", "out of memory for a decoder state of that size (the old state is kept)");
  }
  const size_t bytes = st.bytes();
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes) - static_cast<int64_t>(sb->bytes));
  sb->bytes = bytes;
  return env.Undefined();
}

// marianStateInfo(state) -> { slots, maxLen, sources, maxSrc, bytes, device } (bytes: device memory for cuda)
Napi::Value MarianStateInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const StateBox* sb = unwrap<StateBox>(info, 0, kStateTag, "marianState");
  const MarianState& st = sb->st;
  Napi::Object o = Napi::Object::New(env);
  o.Set("slots", static_cast<double>(st.slots));
  o.Set("maxLen", static_cast<double>(st.max_len));
  o.Set("sources", static_cast<double>(st.sources));
  o.Set("maxSrc", static_cast<double>(st.max_src));
  o.Set("bytes", static_cast<double>(sb->dev ? cuda::state_bytes(*sb->dev) : st.bytes()));
  o.Set("device", device_name(st.device));
  return o;
}

// marianReleaseSource(state, src): marks the source slot as not encoded, so no step can attend to it.
Napi::Value MarianReleaseSource(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MarianState& st = unwrap<StateBox>(info, 0, kStateTag, "marianState")->st;
  if (!info[1].IsNumber()) throw_code(env, "E_ARG", "src must be a number");
  const double src = info[1].As<Napi::Number>().DoubleValue();
  if (!(src >= 0 && src < static_cast<double>(st.sources)) || src != std::floor(src))
    throw_code(env, "E_RANGE", "source slot out of range");
  st.src_len[static_cast<size_t>(src)] = 0;
  StateBox* sb = unwrap<StateBox>(info, 0, kStateTag, "marianState");
  if (sb->dev) cuda::release_source(*sb->dev, static_cast<size_t>(src));
  return env.Undefined();
}

// marianSyncNorms(model): a cuda model re-reads every layer norm's gamma/beta from the live host arrays (the CPU
// reads them live; the device keeps copies). A no-op on the CPU.
Napi::Value MarianSyncNorms(const Napi::CallbackInfo& info) {
  ModelBox* mb = unwrap<ModelBox>(info, 0, kModelTag, "marianCreate");
  if (mb->dev) cuda::sync_norms(*mb->dev, mb->m);
  return info.Env().Undefined();
}

// marianDevice(model) -> 'cpu' | 'cuda'
Napi::Value MarianDevice(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), device_name(unwrap<ModelBox>(info, 0, kModelTag, "marianCreate")->m.device));
}

}  // namespace

void register_marian(Napi::Env env, Napi::Object exports) {
  exports.Set("marianCreate", Napi::Function::New(env, guarded<MarianCreate>));
  exports.Set("marianState", Napi::Function::New(env, guarded<MarianStateNew>));
  exports.Set("marianEncode", Napi::Function::New(env, guarded<MarianEncode>));
  exports.Set("marianStep", Napi::Function::New(env, guarded<MarianStep>));
  exports.Set("marianSubHead", Napi::Function::New(env, guarded<MarianSubHead>));
  exports.Set("marianCopySlot", Napi::Function::New(env, guarded<MarianCopySlot>));
  exports.Set("marianStateResize", Napi::Function::New(env, guarded<MarianStateResize>));
  exports.Set("marianStateInfo", Napi::Function::New(env, guarded<MarianStateInfo>));
  exports.Set("marianReleaseSource", Napi::Function::New(env, guarded<MarianReleaseSource>));
  exports.Set("marianSyncNorms", Napi::Function::New(env, guarded<MarianSyncNorms>));
  exports.Set("marianDevice", Napi::Function::New(env, guarded<MarianDevice>));
}

}  // namespace chimera::binding
