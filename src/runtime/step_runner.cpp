#include "runtime/step_runner.h"

#include "parallel/tp_runner.h"
#include "runtime/model_runner.h"

namespace lamina {

std::unique_ptr<StepRunner> make_step_runner(const Engine& engine, Backend& backend, const ModelLimits& limits) {
    if (engine.tp_size() > 1) return std::make_unique<TpRunner>(engine, backend, limits);
    return std::make_unique<ModelRunner>(engine, backend, limits);
}

}  // namespace lamina
