// CudaBackend: device, stream, memory, cuBLASLt handle and CUDA graphs. The ops live in their own files.
#include <fstream>
#include <limits>

#include "backend/cuda/cuda_backend_impl.h"

namespace lamina {

size_t cublaslt_workspace_bytes();  // matmul.cu

int cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

namespace {
// LAMINA_KERNEL_TRACE=path.csv: which graph replay to record (LAMINA_KERNEL_TRACE_REPLAY, default 100), 0 when
// unset; *path the file. A build without the recorder refuses the variable rather than ignoring it.
int64_t kernel_trace_replay(std::string* path) {
    const char* env = std::getenv("LAMINA_KERNEL_TRACE");
    if (env == nullptr || *env == '\0') return 0;
    *path = env;
#ifdef LAMINA_KERNEL_TRACE
    return env_int("LAMINA_KERNEL_TRACE_REPLAY", 100);
#else
    throw Error("LAMINA_KERNEL_TRACE is set, but this build records no kernel trace (configure with -DLAMINA_KERNEL_TRACE=ON)");
#endif
}

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(DType activation_dtype, int device) {
    const int n = cuda_device_count();
    if (n == 0) throw Error("--device cuda: no CUDA device is visible");
    if (device < 0 || device >= n)
        throw Error("CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(n) + " visible)");
    return std::make_unique<CudaBackend>(activation_dtype, device);
}

CudaBackend::CudaBackend(DType activation_dtype, int device) : act_(activation_dtype), device_(device) {
    CUDA_CHECK(cudaSetDevice(device_));
    trace_replay_ = kernel_trace_replay(&trace_path_);
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    if (cublasLtCreate(&lt_) != CUBLAS_STATUS_SUCCESS) throw Error("cuBLASLt: cannot create a handle");
    lt_workspace_bytes_ = cublaslt_workspace_bytes();
    lt_workspace_ = alloc(lt_workspace_bytes_);
}

CudaBackend::~CudaBackend() {
    cudaSetDevice(device_);
    for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
    for (cudaEvent_t e : events_)
        if (e) cudaEventDestroy(e);
    for (void* p : retired_) cudaFree(p);
    if (attn_partials_) cudaFree(attn_partials_);
    if (attn_counters_) cudaFree(attn_counters_);
    if (sample_args_) cudaFree(sample_args_);
    if (sample_scratch_) cudaFree(sample_scratch_);
    if (scratch_) cudaFree(scratch_);
    if (lt_workspace_) cudaFree(lt_workspace_);
    if (lt_) cublasLtDestroy(lt_);
    if (stream_) cudaStreamDestroy(stream_);
}

void* CudaBackend::alloc(size_t bytes) {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 1));
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t free_bytes = 0, total = 0;
        cudaMemGetInfo(&free_bytes, &total);
        throw Error("cuda: out of memory allocating " + std::to_string(bytes >> 20) + " MiB (" +
                    std::to_string(free_bytes >> 20) + " MiB free of " + std::to_string(total >> 20) +
                    " MiB); lower the engine's limits or --kv_cache_bytes");
    }
    return p;
}

void CudaBackend::free(void* p) { CUDA_CHECK(cudaFree(p)); }

void CudaBackend::to_device(void* dst, const void* src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::to_host(void* dst, const void* src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copy_device(void* dst, const void* src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackend::synchronize() { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

void* CudaBackend::alloc_host(size_t bytes) {
    void* p = nullptr;
    if (cudaMallocHost(&p, bytes) != cudaSuccess) {
        cudaGetLastError();
        throw Error("cuda: cannot allocate " + std::to_string(bytes) + " bytes of page-locked host memory");
    }
    return p;
}

void CudaBackend::free_host(void* p) {
    if (p) cudaFreeHost(p);
}

void CudaBackend::to_device_async(void* dst, const void* src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::to_host_async(void* dst, const void* src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
}

uint64_t CudaBackend::fence() {
    cudaEvent_t& e = events_[fences_ % events_.size()];
    if (!e) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(e, stream_));
    return ++fences_;
}

void CudaBackend::wait(uint64_t fence) {
    if (fence == 0) return;
    LAMINA_CHECK(fence <= fences_, "wait: fence " + std::to_string(fence) + " was never made");
    CUDA_CHECK(cudaEventSynchronize(events_[(fence - 1) % events_.size()]));
}

float* CudaBackend::scratch_f32(size_t n) {
    if (n > scratch_n_) {
        if (scratch_) retired_.push_back(scratch_);
        CUDA_CHECK(cudaMalloc(&scratch_, n * sizeof(float)));
        scratch_n_ = n;
    }
    return scratch_;
}

bool CudaBackend::graph_replay(const void* owner, int64_t key) {
    auto it = graphs_.find({owner, key});
    if (it == graphs_.end()) return false;
    if (trace_replay_ > 0 && ++replays_ == trace_replay_) traced_graph_launch(it->second);
    else CUDA_CHECK(cudaGraphLaunch(it->second, stream_));
    return true;
}

#ifdef LAMINA_KERNEL_TRACE
namespace cuda {
std::vector<TraceArm>& trace_arms() {
    static std::vector<TraceArm> arms;
    return arms;
}
}  // namespace cuda
#endif

// One replay with every translation unit's kernels recording their blocks, written as CSV to
// $LAMINA_KERNEL_TRACE (start in ns from the replay's first block; bench/trace_summary.py reads it).
void CudaBackend::traced_graph_launch(cudaGraphExec_t exec) {
#ifdef LAMINA_KERNEL_TRACE
    constexpr unsigned long long kCapacity = 4ull << 20;  // records: 160 MB, several LLaMA-7B steps' worth
    const std::string& path = trace_path_;
    std::ofstream csv(path);
    if (!csv) throw Error("LAMINA_KERNEL_TRACE: cannot write " + path);
    cuda::TraceRecord* records = nullptr;
    cuda::TraceBuffer* buffer = nullptr;
    CUDA_CHECK(cudaMalloc(&records, kCapacity * sizeof(cuda::TraceRecord)));
    CUDA_CHECK(cudaMalloc(&buffer, sizeof(cuda::TraceBuffer)));
    const cuda::TraceBuffer empty{0, kCapacity, records};
    CUDA_CHECK(cudaMemcpy(buffer, &empty, sizeof empty, cudaMemcpyHostToDevice));
    // The copies that arm and disarm go through the legacy stream from pageable memory, which stream_ (non-blocking)
    // does not wait for: the device is synchronized around them.
    CUDA_CHECK(cudaDeviceSynchronize());
    for (const cuda::TraceArm arm : cuda::trace_arms()) arm(buffer);
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaGraphLaunch(exec, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    for (const cuda::TraceArm arm : cuda::trace_arms()) arm(nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    cuda::TraceBuffer filled{};
    CUDA_CHECK(cudaMemcpy(&filled, buffer, sizeof filled, cudaMemcpyDeviceToHost));
    std::vector<cuda::TraceRecord> got(std::min(filled.count, kCapacity));
    CUDA_CHECK(cudaMemcpy(got.data(), records, got.size() * sizeof(cuda::TraceRecord), cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaFree(records));
    CUDA_CHECK(cudaFree(buffer));
    uint64_t t0 = UINT64_MAX;
    for (const auto& r : got) t0 = std::min(t0, r.start);
    csv << "tag,launch,block,grid,sm,start_ns,waited_ns,end_ns\n";
    for (const auto& r : got)
        csv << r.tag << ',' << r.launch << ',' << r.block << ',' << r.grid << ',' << r.sm << ',' << r.start - t0 << ','
            << (r.waited == UINT32_MAX ? -1 : static_cast<int64_t>(r.waited)) << ',' << r.end << '\n';
    std::fprintf(stderr, "lamina: kernel trace of graph replay %lld: %zu blocks%s -> %s\n", static_cast<long long>(replays_),
                 got.size(), filled.count > kCapacity ? " (buffer full: the rest dropped)" : "", path.c_str());
#else
    (void)exec;
#endif
}

void CudaBackend::graph_begin() {
    // Relaxed: a first use of a scratch buffer may cudaMalloc while the step is being captured.
    CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
}

void CudaBackend::graph_end(const void* owner, int64_t key) {
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    cudaGraphExec_t exec = nullptr;
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    CUDA_CHECK(cudaGraphDestroy(graph));
    cudaGraphExec_t& slot = graphs_[{owner, key}];
    if (slot) CUDA_CHECK(cudaGraphExecDestroy(slot));
    slot = exec;
}

void CudaBackend::graph_release(const void* owner) {
    // An executable graph still running is freed when it completes (cudaGraphExecDestroy).
    for (auto it = graphs_.lower_bound({owner, std::numeric_limits<int64_t>::min()});
         it != graphs_.end() && it->first.first == owner;) {
        CUDA_CHECK(cudaGraphExecDestroy(it->second));
        it = graphs_.erase(it);
    }
}

}  // namespace lamina
