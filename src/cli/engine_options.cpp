#include "cli/engine_options.h"

#include <unistd.h>

#include <filesystem>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/dummy_config.h"
#include "tokenizer/tokenizer_json.h"
#include "util/log.h"

namespace loom::cli {

std::string default_model_path() {
  namespace fs = std::filesystem;
  // The binary lives in <repo>/build*/; the model in <repo>/models/.
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  for (fs::path dir = exe.parent_path(); !ec && !dir.empty() && dir != dir.root_path();
       dir = dir.parent_path()) {
    fs::path candidate = dir / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
    if (fs::exists(candidate)) return candidate.string();
  }
  return "models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

void EngineOptions::add_to(CLI::App& app) {
  model_path = default_model_path();
  app.add_option("--model", model_path, "GGUF file or HF directory")->capture_default_str();
  app.add_option(
      "--chat-template", chat_template,
      "chat format when the model's template is unknown: chatml, llama3, llama2, mistral");
  app.add_option("--kv-cache-memory", kv_cache_mib,
                 "KV cache budget in MiB (default: 1024 on the CPU; on the GPU what "
                 "--gpu-memory-utilization leaves)");
  app.add_option("--kv-cache-dtype", kv_cache_dtype,
                 "KV cache row format (more tokens in the same memory): f16, int8 or int4 on "
                 "cpu; bf16 (also f16, auto), fp8 or int8 on cuda")
      ->capture_default_str();
  app.add_option("--swap-space", swap_space_mib, "host swap pool in MiB")->capture_default_str();
  app.add_option("--block-size", block_size, "tokens per KV block")->capture_default_str();
  app.add_option("--threads", threads, "compute threads (0 = every core)")->capture_default_str();
  app.add_option("--max-num-batched-tokens", max_num_batched_tokens, "token budget per step")
      ->capture_default_str();
  app.add_option("--max-num-seqs", max_num_seqs, "sequences per step")->capture_default_str();
  app.add_option("--max-model-len", max_model_len, "context limit (0 = the model's)");
  app.add_flag("--no-chunked-prefill", no_chunked_prefill, "prefill each prompt whole");
  app.add_flag("--no-prefix-caching", no_prefix_caching, "turn automatic prefix caching off");
  app.add_option("--batching", batching, "continuous, static or dynamic")->capture_default_str();
  app.add_option("--dynamic-window-ms", dynamic_window_ms, "dynamic batching window")
      ->capture_default_str();
  app.add_flag("--static-padding", static_padding,
               "static / dynamic: finished members keep computing until the batch ends, as "
               "padded static batching (HF generate) does");
  app.add_option("--admission", admission, "optimistic, conservative or profiled")
      ->capture_default_str();
  app.add_option("--preemption", preemption, "recompute, swap or auto")->capture_default_str();
  app.add_option("--aging", aging_s, "seconds of waiting that raise priority one level (0 = off)")
      ->capture_default_str();
  app.add_option("--max-waiting-requests", max_waiting_requests, "bound of the waiting queue")
      ->capture_default_str();
  app.add_option("--device", device, "cpu or cuda")->capture_default_str();
  app.add_option("--gpu-memory-utilization", gpu_memory_utilization,
                 "cuda: share of GPU memory for weights, activations and KV cache")
      ->capture_default_str();
  app.add_flag("--enforce-eager", enforce_eager,
               "cuda: launch every decode step's kernels one by one (no CUDA graphs)");
  app.add_flag("--no-overlap", no_overlap,
               "cuda: plan each step after the previous one's tokens are back, instead of "
               "while it runs");
  app.add_option("--tokenizer", tokenizer_path,
                 "with --load-format dummy: a tokenizer.json, or the directory holding it "
                 "(default: the model directory)");
  app.add_option("--load-format", load_format,
                 "auto, or dummy: random weights from the model directory's config.json (cuda)")
      ->capture_default_str();
}

Result<std::unique_ptr<LoadedEngine>> load_engine(const EngineOptions& o) {
  auto loaded = std::make_unique<LoadedEngine>();
  if (o.device != "cpu" && o.device != "cuda")
    return make_error("--device must be cpu or cuda, not %s", o.device.c_str());
  if (o.load_format != "auto" && o.load_format != "dummy")
    return make_error("--load-format must be auto or dummy, not %s", o.load_format.c_str());
  if (o.load_format == "dummy" && o.device != "cuda")
    return make_error("--load-format dummy needs --device cuda");
  // The KV cache dtype, checked before anything is loaded; the names differ by device.
  cpu::KvDtype cpu_kv_dtype = cpu::KvDtype::kF16;
  cuda::KvCacheDtype gpu_kv_dtype = cuda::KvCacheDtype::kBf16;
  if (o.device == "cuda") {
    auto d = cuda::parse_kv_cache_dtype(o.kv_cache_dtype);
    if (!d.ok()) return make_error("--kv-cache-dtype: %s", d.error().c_str());
    gpu_kv_dtype = d.value();
  } else {
    if (o.kv_cache_dtype == "fp8")
      return make_error(
          "--kv-cache-dtype fp8 is GPU only (add --device cuda); the CPU cache takes f16, int8 or "
          "int4");
    auto d = cpu::parse_kv_dtype(o.kv_cache_dtype);
    if (!d.ok()) return Error{d.error()};
    cpu_kv_dtype = d.value();
  }
  // dummy: the config comes from the model directory (or a preset name such as llama-3.2-1b),
  // the tokenizer from --tokenizer or the model directory; the weights are random.
  ModelConfig dummy_config;
  TokenizerSpec tokenizer_spec;
  if (o.load_format == "dummy") {
    auto config = load_dummy_config(o.model_path);
    if (!config.ok()) return Error{config.error()};
    dummy_config = config.value();
    // A directory holding tokenizer.json (and maybe tokenizer_config.json), or the file itself.
    const std::string t = o.tokenizer_path.empty() ? o.model_path : o.tokenizer_path;
    const bool file = t.size() > 5 && t.compare(t.size() - 5, 5, ".json") == 0;
    const std::string dir = file ? t.substr(0, t.find_last_of('/') + 1) : t + "/";
    auto spec =
        load_tokenizer_json(file ? t : dir + "tokenizer.json", dir + "tokenizer_config.json");
    if (!spec.ok()) return make_error("tokenizer: %s", spec.error().c_str());
    tokenizer_spec = std::move(spec).value();
  } else {
    auto model = ModelFile::open(o.model_path);
    if (!model.ok()) return Error{model.error()};
    loaded->model = std::shared_ptr<const ModelFile>(std::move(model).value());
    tokenizer_spec = loaded->model->tokenizer_spec();
  }
  const ModelConfig& mc = loaded->model ? loaded->model->config() : dummy_config;

  auto tokenizer = Tokenizer::create(tokenizer_spec);
  if (!tokenizer.ok()) return make_error("tokenizer: %s", tokenizer.error().c_str());
  loaded->tokenizer = std::shared_ptr<const Tokenizer>(std::move(tokenizer).value());
  auto tmpl = ChatTemplate::from_spec(tokenizer_spec, o.chat_template);
  if (tmpl.ok()) {
    loaded->chat_template = tmpl.value();
  } else {
    if (!o.chat_template.empty()) return make_error("chat template: %s", tmpl.error().c_str());
    loaded->chat_template_error = tmpl.error();
  }

  SchedulerConfig sc;
  auto batching = parse_batching_mode(o.batching);
  if (!batching.ok()) return Error{batching.error()};
  auto admission = parse_admission_policy(o.admission);
  if (!admission.ok()) return Error{admission.error()};
  auto preemption = parse_preemption_mode(o.preemption);
  if (!preemption.ok()) return Error{preemption.error()};
  sc.batching = batching.value();
  sc.admission = admission.value();
  sc.preemption = preemption.value();
  sc.max_num_batched_tokens = o.max_num_batched_tokens;
  sc.max_num_seqs = o.max_num_seqs;
  sc.max_model_len = o.max_model_len > 0 ? o.max_model_len : mc.max_context;
  sc.chunked_prefill = !o.no_chunked_prefill;
  sc.prefix_caching = !o.no_prefix_caching;
  sc.dynamic_window_us = static_cast<int64_t>(o.dynamic_window_ms * 1000);
  sc.static_padding = o.static_padding;
  sc.aging_us_per_level = static_cast<int64_t>(o.aging_s * 1e6);
  sc.max_waiting_requests = o.max_waiting_requests;

  Result<std::unique_ptr<Backend>> backend = make_error("no backend");
  if (o.device == "cuda") {
    CudaBackendOptions co;
    co.block_size = o.block_size;
    co.gpu_memory_utilization = o.gpu_memory_utilization;
    co.swap_space_bytes = static_cast<size_t>(o.swap_space_mib * (1 << 20));
    co.max_num_batched_tokens = o.max_num_batched_tokens;
    co.max_num_seqs = o.max_num_seqs;
    co.kv_cache_dtype = gpu_kv_dtype;
    co.cuda_graphs = !o.enforce_eager;
    if (o.kv_cache_mib > 0) co.kv_cache_bytes = static_cast<size_t>(o.kv_cache_mib * (1 << 20));
    backend = loaded->model ? create_cuda_backend(loaded->model, co)
                            : create_cuda_backend_dummy(dummy_config, co);
  } else {
    cpu::CpuBackendOptions bo;
    bo.block_size = o.block_size;
    bo.kv_cache_bytes =
        static_cast<size_t>((o.kv_cache_mib > 0 ? o.kv_cache_mib : 1024) * (1 << 20));
    bo.swap_space_bytes = static_cast<size_t>(o.swap_space_mib * (1 << 20));
    bo.num_threads = o.threads;
    bo.kv_dtype = cpu_kv_dtype;
    auto cpu_backend = cpu::CpuBackend::create(loaded->model, bo);
    if (cpu_backend.ok())
      backend = std::unique_ptr<Backend>(std::move(cpu_backend).value());
    else
      backend = Error{cpu_backend.error()};
  }
  if (!backend.ok()) return Error{backend.error()};
  const KvPoolInfo pool = backend.value()->kv_pool();
  sc.block_size = pool.block_size;
  sc.num_device_blocks = pool.num_device_blocks;
  sc.num_host_blocks = pool.num_host_blocks;
  if (Status s = sc.validate(); !s.ok()) return Error{s.error()};
  LOOM_LOG_INFO(
      "model %s: %s, %d layers, hidden %d, vocab %d; KV cache %d blocks of %d tokens "
      "(%d tokens, %s), swap pool %d blocks",
      o.model_path.c_str(), arch_name(mc.arch), mc.num_layers, mc.hidden_size, mc.vocab_size,
      pool.num_device_blocks, pool.block_size, pool.num_device_blocks * pool.block_size,
      pool.dtype.c_str(), pool.num_host_blocks);
  EngineConfig ec;
  ec.scheduler = sc;
  ec.overlap_steps = !o.no_overlap;
  loaded->engine = std::make_unique<Engine>(std::move(backend).value(), loaded->tokenizer, mc, ec);
  return loaded;
}

}  // namespace loom::cli
