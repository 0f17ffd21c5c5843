// CUDA sample_rows against the CPU reference (backend/cpu/cpu_sampling.h) on random logits: odd vocabulary
// sizes up to 256k, ties (also across the top-k cut), every kind of setting in one batch, f32/f16/bf16
// logits, a strided batch, many uniforms. Skipped without a GPU.
//
// The candidates, the top-k cut and their order are exact on both sides (the scaled logits are
// bit-identical); the probabilities are not: the GPU's expf and its summation order move a cumulative
// boundary by a few f32 ulp of the kept mass (2 ulp of expf + the f32 rounding of p, ~6e-7 relative at
// worst). So a draw must match exactly unless u * mass lies within kBoundaryTol * mass of a boundary
// (or top_p within kBoundaryTol of the cumulative mass at the cut); then the GPU may pick a neighbour.
#ifdef LAMINA_HAS_CUDA

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "../test_util.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_sampling.h"
#include "backend/cuda/cuda_backend.h"

namespace lamina {
namespace {

constexpr double kBoundaryTol = 3e-6;  // relative to the kept mass; 5x the worst f32 drift above

std::vector<float> rounded(const std::vector<float>& v, DType t) {
    if (t == DType::F32) return v;
    std::vector<uint16_t> h(v.size());
    std::vector<float> out(v.size());
    convert_from_f32(t, v.data(), h.data(), v.size());
    convert_to_f32(t, h.data(), out.data(), v.size());
    return out;
}

struct Row {
    std::vector<float> logits;  // as the dtype holds them
    std::vector<int32_t> history;
    SampleRowParams params;
    std::vector<double> uniforms;
};

// The CPU's view of a row: its penalized logits, the candidates a draw walks, their cumulative mass.
struct Reference {
    bool greedy = false;
    int32_t argmax = -1;
    std::vector<std::pair<float, int32_t>> kept;
    std::vector<double> cum;  // cum[j] = sum of kept[0..j] probabilities, as the CPU walk accumulates them
    double mass = 1.0;
    bool nucleus_ambiguous = false;  // top_p lies within tolerance of the cumulative mass at the cut
    std::vector<std::pair<float, int32_t>> uncut;  // the candidates before the top-p cut (ambiguous rows only)
};

Reference reference(const Row& row) {
    Reference ref;
    std::vector<float> pen = row.logits;
    apply_repetition_penalty(pen, row.history, row.params.repetition_penalty);
    if (row.params.greedy()) {
        ref.greedy = true;
        ref.argmax = argmax(pen);
        return ref;
    }
    ref.mass = sample_candidates(pen, row.params, ref.kept);
    double c = 0.0;
    for (const auto& k : ref.kept) ref.cum.push_back(c += k.first);
    const float top_p = row.params.top_p;
    if (top_p > 0.0f && top_p < 1.0f) {
        const size_t last = ref.cum.size() - 1;
        ref.nucleus_ambiguous = std::fabs(ref.cum[last] - top_p) <= kBoundaryTol ||
                                (last > 0 && std::fabs(ref.cum[last - 1] - top_p) <= kBoundaryTol);
        if (ref.nucleus_ambiguous) {
            SampleRowParams no_cut = row.params;
            no_cut.top_p = 1.0f;
            sample_candidates(pen, no_cut, ref.uncut);
        }
    }
    return ref;
}

// Uniforms for a row: the edges, the middle of chosen candidates' intervals (wide enough to be decisive;
// the last kept one too, deep in the tail when top_k is off), and seeded random ones.
std::vector<double> uniforms_for(const Reference& ref, std::mt19937_64& rng, int n_uniforms) {
    std::vector<double> u = {0.0, 1.0 - 1e-12, 0.5};
    if (!ref.greedy) {
        const size_t k = ref.kept.size();
        for (size_t j : {size_t{0}, size_t{1}, k / 3, k / 2, k - 2, k - 1}) {
            if (j >= k) continue;
            const double lo = j == 0 ? 0.0 : ref.cum[j - 1], hi = ref.cum[j];
            if (hi - lo > 4 * kBoundaryTol * ref.mass) u.push_back((lo + hi) / 2 / ref.mass);
        }
    }
    while (static_cast<int>(u.size()) < n_uniforms) u.push_back(std::generate_canonical<double, 53>(rng));
    for (double& x : u) x = std::min(x, 1.0 - 1e-12);
    u.resize(static_cast<size_t>(n_uniforms));
    return u;
}

struct Tally {
    int64_t exact = 0;      // decisive draws, GPU == CPU
    int64_t boundary = 0;   // draws within tolerance of a boundary (GPU checked to be a neighbour)
    int64_t greedy = 0;
};

// Checks the GPU's id for one (row, u) against the CPU.
void check_draw(const Reference& ref, double u, int32_t got, Tally& tally, const std::string& where) {
    if (ref.greedy) {
        ASSERT_EQ(got, ref.argmax) << where << " (greedy)";
        ++tally.greedy;
        return;
    }
    if (ref.nucleus_ambiguous) {
        // The GPU may cut one candidate earlier or later: its pick lies within the first kept + 1 candidates.
        const auto it = std::find_if(ref.uncut.begin(), ref.uncut.end(), [&](const auto& c) { return c.second == got; });
        ASSERT_TRUE(it != ref.uncut.end() && static_cast<size_t>(it - ref.uncut.begin()) <= ref.kept.size())
            << where << ": id " << got << " outside the nucleus (top_p at a boundary)";
        ++tally.boundary;
        return;
    }
    const int32_t want = draw_candidate(ref.kept, ref.mass, u);
    const double r = u * ref.mass, tol = kBoundaryTol * ref.mass;
    // Candidates whose interval [cum[j-1], cum[j]] comes within tol of r: the possible picks.
    const size_t first = static_cast<size_t>(std::lower_bound(ref.cum.begin(), ref.cum.end(), r - tol) - ref.cum.begin());
    const bool near = (first < ref.cum.size() && ref.cum[first] <= r + tol) || first == ref.cum.size();
    if (!near) {
        ASSERT_EQ(got, want) << where << " u=" << u << " (CPU candidate "
                             << std::find_if(ref.kept.begin(), ref.kept.end(), [&](const auto& c) { return c.second == want; }) -
                                    ref.kept.begin()
                             << " of " << ref.kept.size() << ")";
        ++tally.exact;
        return;
    }
    bool neighbour = got == ref.kept.back().second;  // the walk ran short
    for (size_t j = first; j < ref.kept.size() && (j == 0 || ref.cum[j - 1] <= r + tol); ++j)
        neighbour = neighbour || got == ref.kept[j].second;
    ASSERT_TRUE(neighbour) << where << " u=" << u << ": id " << got << " is not next to the boundary";
    ++tally.boundary;
}

std::string describe(const SampleRowParams& p) {
    return "T=" + std::to_string(p.temperature) + " top_k=" + std::to_string(p.top_k) + " top_p=" +
           std::to_string(p.top_p) + " penalty=" + std::to_string(p.repetition_penalty);
}

class CudaSampling : public ::testing::TestWithParam<DType> {
protected:
    void SetUp() override {
        if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device here";
        gpu = make_cuda_backend(DType::F32);
    }

    // Builds one row per setting of the grid on fresh random logits of n columns, samples them on the GPU
    // (stride > n when `strided`) n_uniforms times, and checks every id against the CPU.
    Tally run_grid(int64_t n, DType t, bool strided, uint32_t seed, int n_uniforms) {
        std::vector<Row> rows;
        std::mt19937 rng(seed);
        auto pick = [&](int64_t m) { return std::uniform_int_distribution<int64_t>(0, m - 1)(rng); };
        for (float temperature : {0.3f, 1.0f, 2.0f})
            for (int32_t top_k : {0, 1, 2, 50, static_cast<int32_t>(n + 5)})
                for (float top_p : {0.0f, 0.5f, 0.9f, 1.0f})
                    for (float penalty : {1.0f, 1.3f}) {
                        Row row;
                        const uint32_t row_seed = seed * 7919u + static_cast<uint32_t>(rows.size());
                        // Peaked (scale 3) and flat (scale 0.3) distributions.
                        const float scale = std::bernoulli_distribution(0.5)(rng) ? 3.0f : 0.3f;
                        auto l = test::random_vec(static_cast<size_t>(n), row_seed, scale);
                        if (n > 2) {
                            // Ties: the maximum twice more, and the values at ranks 2 and 50 repeated so that a
                            // group of equal logits straddles those top-k cuts.
                            std::vector<float> sorted = l;
                            std::sort(sorted.begin(), sorted.end(), std::greater<>());
                            for (int i = 0; i < 2; ++i) l[static_cast<size_t>(pick(n))] = sorted[0];
                            for (int64_t rank : {int64_t{2}, int64_t{50}})
                                if (rank <= n)
                                    for (int i = 0; i < 3; ++i) l[static_cast<size_t>(pick(n))] = sorted[static_cast<size_t>(rank - 1)];
                        }
                        row.logits = rounded(l, t);
                        // History: repeats, the current top id, ids with negative logits, ids outside the vocabulary.
                        const auto top = static_cast<int32_t>(argmax(row.logits));
                        row.history = {top, top, -1, static_cast<int32_t>(n + 3)};
                        for (int i = 0; i < 30; ++i) row.history.push_back(static_cast<int32_t>(pick(n)));
                        row.params.temperature = temperature;
                        row.params.top_k = top_k;
                        row.params.top_p = top_p;
                        row.params.repetition_penalty = penalty;
                        rows.push_back(std::move(row));
                    }
        // Plain greedy rows (temperature 0) with a penalty: the argmax of the penalized logits.
        for (int i = 0; i < 2; ++i) {
            Row row = rows[static_cast<size_t>(i)];
            row.params.temperature = 0.0f;
            row.params.repetition_penalty = i ? 1.3f : 1.0f;
            rows.push_back(std::move(row));
        }
        for (Row& row : rows) row.params.history = row.history;

        std::vector<Reference> refs;
        std::mt19937_64 urng(seed);
        for (Row& row : rows) {
            refs.push_back(reference(row));
            row.uniforms = uniforms_for(refs.back(), urng, n_uniforms);
        }

        // Upload the batch (NaN in the padding of a strided batch: it must not be read).
        const auto n_rows = static_cast<int64_t>(rows.size());
        const int64_t stride = strided ? n + 37 : n;
        std::vector<float> all(static_cast<size_t>(n_rows * stride), NAN);
        for (int64_t r = 0; r < n_rows; ++r)
            std::copy(rows[r].logits.begin(), rows[r].logits.end(), all.begin() + r * stride);
        std::vector<char> bytes(all.size() * dtype_size(t));
        convert_from_f32(t, all.data(), bytes.data(), all.size());
        void* d_logits = gpu->alloc(bytes.size());
        gpu->to_device(d_logits, bytes.data(), bytes.size());
        auto* d_ids = static_cast<int32_t*>(gpu->alloc(static_cast<size_t>(n_rows) * sizeof(int32_t)));
        const TensorView view{d_logits, t, n_rows, n, stride};

        std::vector<SampleRowParams> params;
        for (const Row& row : rows) params.push_back(row.params);
        Tally tally;
        const std::vector<int32_t> poison(static_cast<size_t>(n_rows), -7);
        std::vector<int32_t> got(static_cast<size_t>(n_rows)), again(static_cast<size_t>(n_rows));
        std::vector<double> us(static_cast<size_t>(n_rows));
        for (int k = 0; k < n_uniforms; ++k) {
            for (int64_t r = 0; r < n_rows; ++r) us[static_cast<size_t>(r)] = rows[static_cast<size_t>(r)].uniforms[static_cast<size_t>(k)];
            gpu->to_device(d_ids, poison.data(), poison.size() * sizeof(int32_t));
            gpu->sample_rows(view, params, us, d_ids);
            gpu->to_host(got.data(), d_ids, got.size() * sizeof(int32_t));
            for (int64_t r = 0; r < n_rows; ++r) {
                const std::string where = std::string(dtype_name(t)) + " n=" + std::to_string(n) + " row " +
                                          std::to_string(r) + " (" + describe(rows[r].params) + ")";
                check_draw(refs[r], us[r], got[r], tally, where);
                if (::testing::Test::HasFatalFailure()) break;
            }
            if (::testing::Test::HasFatalFailure()) break;
            if (k == 0) {
                // Deterministic: the same inputs give the same ids; and the CPU op agrees on decisive rows.
                gpu->sample_rows(view, params, us, d_ids);
                gpu->to_host(again.data(), d_ids, again.size() * sizeof(int32_t));
                EXPECT_EQ(again, got);
            }
        }
        // The logits are left as they were.
        std::vector<char> after(bytes.size());
        gpu->to_host(after.data(), d_logits, after.size());
        EXPECT_TRUE(after == bytes) << "sample_rows modified its input";
        gpu->free(d_ids);
        gpu->free(d_logits);
        return tally;
    }

    std::unique_ptr<Backend> gpu;
};

TEST_P(CudaSampling, MatchesCpuAcrossSettingsAndVocabularies) {
    const DType t = GetParam();
    Tally total;
    uint32_t seed = 1 + static_cast<uint32_t>(t) * 100;
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{32003}, int64_t{49152}, int64_t{151936}, int64_t{262144}}) {
        const bool strided = n == 32003;
        const Tally tl = run_grid(n, t, strided, seed++, n > 100000 ? 24 : 40);
        if (HasFatalFailure()) return;
        std::printf("%s n=%lld: %lld exact draws, %lld at a boundary, %lld greedy\n", std::string(dtype_name(t)).c_str(),
                    static_cast<long long>(n), static_cast<long long>(tl.exact), static_cast<long long>(tl.boundary),
                    static_cast<long long>(tl.greedy));
        total.exact += tl.exact;
        total.boundary += tl.boundary;
        total.greedy += tl.greedy;
    }
    // The check must have teeth: most draws decisive and compared exactly (flat rows over 150k+ candidates
    // with no top-k have boundaries closer together than the tolerance: those draws count as "boundary").
    EXPECT_GT(total.exact, 2 * total.boundary);
    EXPECT_GT(total.exact, 10000);
    EXPECT_GT(total.greedy, 0);
}

TEST_P(CudaSampling, CpuBackendOpAgreesOnABatch) {
    // The CPU backend's sample_rows (the reference the generator uses on the CPU) and the GPU's on one
    // batch with the Sampler's default draw settings and penalties.
    const DType t = GetParam();
    CpuBackend cpu;
    const int64_t n = 5003, rows = 6;
    const auto logits = rounded(test::random_vec(static_cast<size_t>(rows * n), 77, 2.0f), t);
    std::vector<std::vector<int32_t>> histories = {{1, 2, 3}, {}, {4999, 4999}, {0}, {7, 8}, {5002}};
    std::vector<SampleRowParams> params(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
        params[r].temperature = 0.7f + 0.2f * static_cast<float>(r);
        params[r].top_k = static_cast<int32_t>(r * 10);
        params[r].top_p = r % 2 ? 0.9f : 1.0f;
        params[r].repetition_penalty = r % 3 ? 1.1f : 1.0f;
        params[r].history = histories[r];
    }
    std::vector<char> bytes(logits.size() * dtype_size(t));
    convert_from_f32(t, logits.data(), bytes.data(), logits.size());
    void* d_logits = gpu->alloc(bytes.size());
    gpu->to_device(d_logits, bytes.data(), bytes.size());
    auto* d_ids = static_cast<int32_t*>(gpu->alloc(static_cast<size_t>(rows) * sizeof(int32_t)));
    std::mt19937_64 rng(3);
    int decisive = 0;
    for (int k = 0; k < 50; ++k) {
        std::vector<double> us(static_cast<size_t>(rows));
        for (double& u : us) u = std::generate_canonical<double, 53>(rng);
        std::vector<int32_t> want(static_cast<size_t>(rows)), got(static_cast<size_t>(rows));
        cpu.sample_rows(make_view(bytes.data(), t, rows, n), params, us, want.data());
        gpu->sample_rows(TensorView{d_logits, t, rows, n, n}, params, us, d_ids);
        gpu->to_host(got.data(), d_ids, got.size() * sizeof(int32_t));
        for (int64_t r = 0; r < rows; ++r) {
            Row row{std::vector<float>(logits.begin() + r * n, logits.begin() + (r + 1) * n), histories[r], params[r], {}};
            const Reference ref = reference(row);
            Tally tally;
            check_draw(ref, us[r], got[r], tally, "row " + std::to_string(r));
            ASSERT_FALSE(HasFatalFailure());
            if (tally.exact) {
                EXPECT_EQ(got[r], want[r]) << "row " << r;
                ++decisive;
            }
        }
    }
    EXPECT_GT(decisive, 250);
    gpu->free(d_ids);
    gpu->free(d_logits);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaSampling, ::testing::Values(DType::F32, DType::F16, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace lamina

#endif  // LAMINA_HAS_CUDA
