// The sampling math of one logits row, shared by CpuBackend::sample_rows and runtime's Sampler, so the
// CPU backend draws exactly what the Sampler draws for the same uniform. Semantics: Backend::sample_rows.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "backend/backend.h"

namespace lamina {

// Index of the largest value; the first one on ties (as torch.argmax).
int32_t argmax(std::span<const float> logits);
// Applies the repetition penalty in place to every distinct id in `history`.
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history, float penalty);

// (probability, id) of the candidates a non-greedy draw walks, in its order (descending logit, then
// lower id): the top-k after temperature, cut to the top-p nucleus. Returns the mass the uniform is
// scaled by: the kept probability when top_p cuts, else 1. `logits` must already carry the penalty.
double sample_candidates(std::span<const float> logits, const SampleRowParams& p,
                         std::vector<std::pair<float, int32_t>>& candidates);
// The first candidate whose cumulative probability reaches u * mass; the last one if none does.
int32_t draw_candidate(std::span<const std::pair<float, int32_t>> candidates, double mass, double u);

// The whole chain for one row: penalty (in place on `logits`), then argmax when greedy, else
// sample_candidates and draw_candidate. `candidates` is scratch kept between calls.
int32_t sample_row(std::span<float> logits, const SampleRowParams& p, double u,
                   std::vector<std::pair<float, int32_t>>& candidates);

}  // namespace lamina
