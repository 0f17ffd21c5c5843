// The CPU backend's rope_kv_write, attention, embedding, gather_rows and argmax_rows, each on its own against a
// plain loop written here from the op's contract in backend/backend.h (not from the CPU code), on small random
// inputs with odd sizes, strided rows, one-token steps and poisoned outputs so unwritten elements show up.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "../test_util.h"
#include "backend/backend.h"

namespace lamina {
namespace {

using test::random_vec;

constexpr float kPoison = -7777.0f;  // what an element the op must not write holds before and after

StepTokens step_tokens(const std::vector<int32_t>& ids, const std::vector<int32_t>& pos, const std::vector<int32_t>& slots) {
    StepTokens tok;
    tok.ids = ids.data();
    tok.positions = pos.data();
    tok.slots = slots.data();
    tok.n_tokens = static_cast<int64_t>(ids.size());
    return tok;
}

// RoPE's angle for position p and pair i: p * theta^(-2i / head_dim), in double.
double rope_angle(int64_t p, int64_t i, int64_t head_dim) {
    constexpr double kTheta = 10000.0;
    return static_cast<double>(p) * std::pow(kTheta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
}

// The op's table: row p = [cos(angle(p, i)) for i < half, sin(angle(p, i)) for i < half].
std::vector<float> rope_table(int64_t n_ctx, int64_t head_dim) {
    const int64_t half = head_dim / 2;
    std::vector<float> t(static_cast<size_t>(n_ctx * head_dim));
    for (int64_t p = 0; p < n_ctx; ++p)
        for (int64_t i = 0; i < half; ++i) {
            t[p * head_dim + i] = static_cast<float>(std::cos(rope_angle(p, i, head_dim)));
            t[p * head_dim + half + i] = static_cast<float>(std::sin(rope_angle(p, i, head_dim)));
        }
    return t;
}

// Hugging Face's apply_rotary_pos_emb on one head: x * cat(cos, cos) + rotate_half(x) * cat(sin, sin), with
// rotate_half(x) = cat(-x[half:], x[:half]).
std::vector<double> hf_rope(const float* x, int64_t pos, int64_t head_dim) {
    const int64_t half = head_dim / 2;
    std::vector<double> out(static_cast<size_t>(head_dim));
    for (int64_t d = 0; d < head_dim; ++d) {
        const int64_t i = d % half;
        const double cos = std::cos(rope_angle(pos, i, head_dim)), sin = std::sin(rope_angle(pos, i, head_dim));
        const double rotated_half = d < half ? -static_cast<double>(x[d + half]) : static_cast<double>(x[d - half]);
        out[static_cast<size_t>(d)] = x[d] * cos + rotated_half * sin;
    }
    return out;
}

// The table holds cos and sin rounded to f32 and the op multiplies and adds in f32: with inputs ~N(0, 1)
// (below 5 in magnitude) a result is off by a few f32 ulps of 5, ~2e-6; a wrong pairing or sign is off by ~1.
constexpr double kRopeTolerance = 4e-6;

struct RopeCase {
    AttentionShape shape;
    std::vector<int32_t> pos, slots;
};

TEST(CpuReferenceOps, RopeKvWriteRotatesQAndKAndWritesTheCacheAtSlotAndPosition) {
    const int64_t n_slot = 3, n_layer = 2, n_ctx = 19, layer = 1;
    const std::vector<RopeCase> cases = {
        {{6, 2, 10, 0.0f}, {0, 18, 3, 7, 9}, {2, 0, 2, 1, 0}},  // GQA, head_dim 10 (an odd half), scattered slots
        {{3, 3, 8, 0.0f}, {5}, {1}},                            // one token, MHA
        {{4, 1, 6, 0.0f}, {1, 2, 3}, {0, 0, 0}},                // MQA, consecutive positions of one sequence
    };
    auto be = make_cpu_backend(2);
    for (const RopeCase& rc : cases) {
        const AttentionShape& s = rc.shape;
        const int64_t D = s.head_dim, q_dim = s.n_head * D, kv_dim = s.n_head_kv * D, qkv_dim = q_dim + 2 * kv_dim;
        const int64_t stride = qkv_dim + 3;  // a strided qkv: the 3 elements after each row are not the op's
        const auto n = static_cast<int64_t>(rc.pos.size());
        const std::vector<int32_t> ids(rc.pos.size(), 0);
        const StepTokens tok = step_tokens(ids, rc.pos, rc.slots);
        std::vector<float> qkv = random_vec(static_cast<size_t>(n * stride), 41 + static_cast<uint32_t>(n));
        for (int64_t t = 0; t < n; ++t)
            for (int64_t j = qkv_dim; j < stride; ++j) qkv[t * stride + j] = kPoison;
        const std::vector<float> before = qkv;
        const std::vector<float> table = rope_table(n_ctx, D);
        std::vector<float> kc(static_cast<size_t>(n_slot * n_layer * n_ctx * kv_dim), kPoison), vc = kc;
        KvCache cache{kc.data(), vc.data(), DType::F32, n_slot, n_layer, n_ctx, kv_dim};

        be->rope_kv_write(TensorView{qkv.data(), DType::F32, n, qkv_dim, stride}, tok,
                          make_view(table.data(), DType::F32, n_ctx, D), s, layer, cache);

        std::vector<bool> written(kc.size(), false);
        for (int64_t t = 0; t < n; ++t) {
            const float* in = before.data() + t * stride;
            const float* out = qkv.data() + t * stride;
            // q heads, then k heads: rotated in place.
            for (int64_t h = 0; h < s.n_head + s.n_head_kv; ++h) {
                const auto want = hf_rope(in + h * D, rc.pos[t], D);
                for (int64_t d = 0; d < D; ++d)
                    ASSERT_NEAR(out[h * D + d], want[d], kRopeTolerance) << "token " << t << " head " << h << " d " << d;
            }
            for (int64_t j = q_dim + kv_dim; j < qkv_dim; ++j) ASSERT_EQ(out[j], in[j]) << "v is not rotated";
            for (int64_t j = qkv_dim; j < stride; ++j) ASSERT_EQ(out[j], kPoison) << "wrote past the row";
            // Cache rows of (slot, layer, pos): [n_slot][n_layer][n_ctx][kv_dim].
            const int64_t row = ((rc.slots[t] * n_layer + layer) * n_ctx + rc.pos[t]) * kv_dim;
            for (int64_t h = 0; h < s.n_head_kv; ++h) {
                const auto k = hf_rope(in + q_dim + h * D, rc.pos[t], D);
                for (int64_t d = 0; d < D; ++d) {
                    ASSERT_NEAR(kc[row + h * D + d], k[d], kRopeTolerance) << "k cache, token " << t;
                    ASSERT_EQ(vc[row + h * D + d], in[q_dim + kv_dim + h * D + d]) << "v cache, token " << t;
                }
            }
            for (int64_t j = 0; j < kv_dim; ++j) written[row + j] = true;
        }
        for (size_t i = 0; i < kc.size(); ++i)
            if (!written[i]) {
                ASSERT_EQ(kc[i], kPoison) << "k cache element " << i << " is no token's (slot, position)";
                ASSERT_EQ(vc[i], kPoison) << "v cache element " << i << " is no token's (slot, position)";
            }
    }
}

// f32 dot products of N(0, 1) entries (scores up to ~5), exp and a weighted sum of up to 23 values ~N(0, 1),
// against double: a few ulps of the scores and the sum, ~1e-6; a wrong position, head or slot is off by ~0.1.
constexpr double kAttentionTolerance = 1e-5;

TEST(CpuReferenceOps, AttentionIsCausalGqaOverTheTokensSlot) {
    const int64_t n_slot = 3, n_layer = 2, n_ctx = 23, layer = 1;
    const std::vector<RopeCase> cases = {
        {{6, 2, 12, 1.0f / std::sqrt(12.0f)}, {0, 22, 4, 9, 9, 13}, {2, 0, 2, 1, 0, 2}},
        {{4, 4, 8, 1.0f / std::sqrt(8.0f)}, {17}, {1}},  // one token, MHA
        {{5, 1, 6, 0.7f}, {0, 1, 2, 3}, {0, 0, 0, 0}},   // MQA, a prefill of one sequence, another scale
    };
    auto be = make_cpu_backend(2);
    uint32_t seed = 60;
    for (const RopeCase& ac : cases) {
        const AttentionShape& s = ac.shape;
        const int64_t D = s.head_dim, q_dim = s.n_head * D, kv_dim = s.n_head_kv * D, qkv_dim = q_dim + 2 * kv_dim;
        const auto n = static_cast<int64_t>(ac.pos.size());
        const std::vector<int32_t> ids(ac.pos.size(), 0);
        const StepTokens tok = step_tokens(ids, ac.pos, ac.slots);
        const std::vector<float> qkv = random_vec(static_cast<size_t>(n * qkv_dim), seed++);
        // Random K and V where the op may read (each token's slot, this layer); NaN everywhere else, so a read of
        // another slot or layer shows in the output. Positions past a token's own are random: a non-causal read
        // changes the result.
        std::vector<float> kc(static_cast<size_t>(n_slot * n_layer * n_ctx * kv_dim), std::numeric_limits<float>::quiet_NaN());
        std::vector<float> vc = kc;
        const auto kr = random_vec(kc.size(), seed++), vr = random_vec(vc.size(), seed++);
        for (int32_t slot : ac.slots)
            for (int64_t i = 0; i < n_ctx * kv_dim; ++i) {
                const int64_t at = (slot * n_layer + layer) * n_ctx * kv_dim + i;
                kc[at] = kr[at];
                vc[at] = vr[at];
            }
        const KvCache cache{kc.data(), vc.data(), DType::F32, n_slot, n_layer, n_ctx, kv_dim};
        std::vector<float> out(static_cast<size_t>(n * q_dim), kPoison);

        be->attention(make_view(qkv.data(), DType::F32, n, qkv_dim), tok, s, layer, cache,
                      make_view(out.data(), DType::F32, n, q_dim));

        const int64_t group = s.n_head / s.n_head_kv;  // query heads per KV head
        for (int64_t t = 0; t < n; ++t)
            for (int64_t h = 0; h < s.n_head; ++h) {
                const float* q = qkv.data() + t * qkv_dim + h * D;
                const int64_t kv_head = h / group;
                auto k_at = [&](int64_t p) { return kc.data() + ((ac.slots[t] * n_layer + layer) * n_ctx + p) * kv_dim + kv_head * D; };
                auto v_at = [&](int64_t p) { return vc.data() + ((ac.slots[t] * n_layer + layer) * n_ctx + p) * kv_dim + kv_head * D; };
                std::vector<double> score(static_cast<size_t>(ac.pos[t] + 1));
                double max_score = -INFINITY;
                for (int64_t p = 0; p <= ac.pos[t]; ++p) {
                    double dot = 0;
                    for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(q[d]) * k_at(p)[d];
                    score[p] = dot * s.scale;
                    max_score = std::max(max_score, score[p]);
                }
                double sum = 0;
                for (double& e : score) sum += (e = std::exp(e - max_score));
                for (int64_t d = 0; d < D; ++d) {
                    double want = 0;
                    for (int64_t p = 0; p <= ac.pos[t]; ++p) want += score[p] / sum * v_at(p)[d];
                    ASSERT_NEAR(out[t * q_dim + h * D + d], want, kAttentionTolerance)
                        << "token " << t << " (slot " << ac.slots[t] << ", pos " << ac.pos[t] << ") head " << h << " d " << d;
                }
            }
    }
}

TEST(CpuReferenceOps, EmbeddingCopiesEachTokensRowAsF32) {
    const int64_t n_vocab = 29, n_embd = 13, stride = n_embd + 2;
    // Multiples of 1/64 below 2 in magnitude are exact in f16 and bf16: the stored table is these values.
    std::mt19937 rng(70);
    std::uniform_int_distribution<int> sixty_fourths(-127, 127);
    std::vector<float> values(static_cast<size_t>(n_vocab * n_embd));
    for (float& v : values) v = static_cast<float>(sixty_fourths(rng)) / 64.0f;
    const std::vector<int32_t> ids = {28, 0, 5, 5, 17, 1, 28}, none(ids.size(), 0);
    const StepTokens tok = step_tokens(ids, none, none);
    auto be = make_cpu_backend(2);
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
        std::vector<char> table(values.size() * dtype_size(dt));
        convert_from_f32(dt, values.data(), table.data(), values.size());
        std::vector<float> out(ids.size() * stride, kPoison);
        be->embedding(make_view(table.data(), dt, n_vocab, n_embd), tok,
                      TensorView{out.data(), DType::F32, tok.n_tokens, n_embd, stride});
        for (size_t t = 0; t < ids.size(); ++t) {
            for (int64_t j = 0; j < n_embd; ++j)
                ASSERT_EQ(out[t * stride + j], values[ids[t] * n_embd + j]) << dtype_name(dt) << " token " << t << " col " << j;
            for (int64_t j = n_embd; j < stride; ++j) ASSERT_EQ(out[t * stride + j], kPoison) << "wrote past the row";
        }
    }
}

TEST(CpuReferenceOps, GatherRowsCopiesTheNamedRowsInOrder) {
    const int64_t rows = 7, cols = 11, x_stride = 16;
    std::vector<float> x = random_vec(static_cast<size_t>(rows * x_stride), 80);
    auto be = make_cpu_backend(2);
    for (const std::vector<int32_t>& pick : {std::vector<int32_t>{6, 0, 6, 3}, std::vector<int32_t>{2}}) {
        const auto n = static_cast<int64_t>(pick.size());
        std::vector<float> out(static_cast<size_t>((n + 1) * cols), kPoison);  // one row more than asked for
        be->gather_rows(TensorView{x.data(), DType::F32, rows, cols, x_stride}, pick.data(), n,
                        make_view(out.data(), DType::F32, n, cols));
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < cols; ++j) ASSERT_EQ(out[i * cols + j], x[pick[i] * x_stride + j]) << "row " << i;
        for (int64_t j = n * cols; j < (n + 1) * cols; ++j) ASSERT_EQ(out[j], kPoison) << "wrote a row past n";
    }
}

// The first index of the largest value, by a strict comparison.
int32_t first_argmax(const float* row, int64_t n) {
    int32_t best = 0;
    for (int64_t i = 1; i < n; ++i)
        if (row[i] > row[best]) best = static_cast<int32_t>(i);
    return best;
}

TEST(CpuReferenceOps, ArgmaxRowsTakesTheFirstIndexOnTies) {
    const int64_t cols = 37;
    std::vector<std::vector<float>> rows;
    for (uint32_t seed = 90; seed < 96; ++seed) rows.push_back(random_vec(cols, seed));
    for (int64_t i : {30, 3, 17}) rows[0][i] = 9.0f;  // a three-way tie: 3
    rows[1][cols - 1] = 9.0f;                          // the last column
    rows[2].assign(cols, -1.5f);                       // all equal: 0
    for (int64_t i : {0, 1}) rows[3][i] = 9.0f;        // a tie at the start: 0
    rows[4].assign(cols, -std::numeric_limits<float>::infinity());
    for (int64_t i : {20, 21}) rows[4][i] = -3.0e38f;  // every value but two is -inf: 20
    const std::vector<int32_t> want = {3, static_cast<int32_t>(cols - 1), 0, 0, 20};
    std::vector<float> logits;
    for (const auto& r : rows) logits.insert(logits.end(), r.begin(), r.end());
    const auto n = static_cast<int64_t>(rows.size());
    std::vector<int32_t> ids(rows.size(), -1);
    auto be = make_cpu_backend(2);
    be->argmax_rows(make_view(logits.data(), DType::F32, n, cols), ids.data());
    for (int64_t r = 0; r < n; ++r) {
        EXPECT_EQ(ids[r], first_argmax(logits.data() + r * cols, cols)) << "row " << r;
        if (r < static_cast<int64_t>(want.size())) {
            EXPECT_EQ(ids[r], want[r]) << "row " << r;
        }
    }
    // One row alone (a decode step of one sequence).
    int32_t one = -1;
    be->argmax_rows(make_view(rows[0].data(), DType::F32, 1, cols), &one);
    EXPECT_EQ(one, 3);
}

}  // namespace
}  // namespace lamina
