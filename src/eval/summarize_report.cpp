#include "eval/summarize_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "core/file_util.h"

namespace lamina {

namespace {

using nlohmann::json;

std::string format(const char* fmt, double a, double b, double c) {
    char buf[160];
    std::snprintf(buf, sizeof buf, fmt, a, b, c);
    return buf;
}

json config_json(const SummarizeRun& run) {
    const SummarizeOptions& o = run.options;
    return {{"max_input_length", o.max_input_length},
            {"output_len", o.output_len},
            {"batch_size", o.batch_size},
            {"max_ite", o.max_ite},
            {"num_beams", o.num_beams},
            {"num_return_sequences", o.n_return()},
            {"top_k", o.top_k},
            {"temperature", o.temperature},
            {"length_penalty", o.length_penalty},
            {"early_stopping", std::string(early_stopping_name(o.early_stopping))},
            {"no_repeat_ngram_size", o.no_repeat_ngram_size},
            {"repetition_penalty", o.repetition_penalty},
            {"use_stemmer", o.use_stemmer},
            {"eos_token_id", run.eos_id}};
}

json scores_json(const RougeScores& s) {
    return {{"rouge1", s.rouge1.fmeasure}, {"rouge2", s.rouge2.fmeasure}, {"rougeL", s.rougeL.fmeasure},
            {"rougeLsum", s.rougeLsum.fmeasure}};
}

template <typename T>
T field(const json& obj, const char* key, const std::string& where) {
    const auto it = obj.find(key);
    if (it == obj.end()) throw Error(where + ": no \"" + key + "\" field");
    try {
        return it->get<T>();
    } catch (const json::exception&) {
        throw Error(where + ": \"" + key + "\" has the wrong type");
    }
}

}  // namespace

std::string summarize_log(const SummarizeRun& run, const std::string& name) {
    std::string out = name + " (total latency: " + std::to_string(run.total_latency_s) + " sec)\n";
    for (size_t b = 0; b < run.scores.size(); ++b) {
        const RougeAggregate& s = run.scores[b];
        out += name + " beam " + std::to_string(b) + " result\n";
        out += format("  rouge1 : %.6f\n  rouge2 : %.6f\n  rougeL : %.6f\n", s.rouge1, s.rouge2, s.rougeL);
        out += format("  rougeLsum : %.6f\n", s.rougeLsum, 0, 0);
    }
    return out;
}

json summarize_json(const SummarizeRun& run, const json& meta) {
    json doc = meta;
    doc["config"] = config_json(run);
    doc["total_latency_s"] = run.total_latency_s;
    json scores = json::array();
    for (size_t b = 0; b < run.scores.size(); ++b) {
        const RougeAggregate& s = run.scores[b];
        scores.push_back({{"beam", b}, {"rouge1", s.rouge1}, {"rouge2", s.rouge2}, {"rougeL", s.rougeL}, {"rougeLsum", s.rougeLsum}});
    }
    doc["scores"] = scores;
    json examples = json::array();
    for (const SummarizeOutput& e : run.examples) {
        json counts = json::array(), rouge = json::array();
        for (const auto& ids : e.output_ids) counts.push_back(ids.size());
        for (const auto& r : e.rouge) rouge.push_back(scores_json(r));
        examples.push_back({{"id", e.id},
                            {"line", e.line},
                            {"input_tokens", e.input_tokens},
                            {"output_ids", e.output_ids},
                            {"output_tokens", counts},
                            {"outputs", e.outputs},
                            {"latency_s", e.latency_s},
                            {"first_token_latency_s", e.first_token_latency_s},
                            {"rouge", rouge}});
    }
    doc["examples"] = examples;
    return doc;
}

SummarizeReference read_summarize_reference(const std::filesystem::path& path) {
    const std::string text = read_regular_file(path, "reference JSON");
    json doc;
    try {
        doc = json::parse(text);
    } catch (const json::parse_error& e) {
        std::string msg = e.what();
        throw Error(path.string() + ": not valid JSON (" + msg.substr(msg.find(' ') + 1) + ")");
    }
    const std::string where = path.string();
    if (!doc.is_object()) throw Error(where + ": not a JSON object (expected what `lamina summarize --output_json` or tools/hf_summarize.py write)");
    SummarizeReference ref;
    ref.path = path.string();
    ref.engine = doc.value("engine", std::string("reference"));
    ref.config = doc.value("config", json::object());
    ref.total_latency_s = field<double>(doc, "total_latency_s", where);
    const auto scores = field<json>(doc, "scores", where);
    if (!scores.is_array() || scores.empty()) throw Error(where + ": \"scores\" is not a non-empty array");
    for (size_t b = 0; b < scores.size(); ++b) {
        const std::string w = where + " scores[" + std::to_string(b) + "]";
        ref.scores.push_back({field<double>(scores[b], "rouge1", w), field<double>(scores[b], "rouge2", w),
                              field<double>(scores[b], "rougeL", w), field<double>(scores[b], "rougeLsum", w)});
    }
    const auto examples = field<json>(doc, "examples", where);
    if (!examples.is_array()) throw Error(where + ": \"examples\" is not an array");
    for (size_t i = 0; i < examples.size(); ++i) {
        const std::string w = where + " examples[" + std::to_string(i) + "]";
        ref.ids.push_back(field<std::string>(examples[i], "id", w));
        ref.output_ids.push_back(examples[i].contains("output_ids")
                                     ? field<std::vector<std::vector<int32_t>>>(examples[i], "output_ids", w)
                                     : std::vector<std::vector<int32_t>>{});
    }
    return ref;
}

void check_reference_examples(const SummarizeReference& ref, const std::vector<SummarizeExample>& examples) {
    for (size_t i = 0; i < std::max(ref.ids.size(), examples.size()); ++i) {
        if (i >= ref.ids.size())
            throw Error(ref.path + " holds " + std::to_string(ref.ids.size()) + " examples but this run has " +
                        std::to_string(examples.size()) + ": id " + examples[i].id + " (dataset line " +
                        std::to_string(examples[i].line) + ") is not in the reference; rerun it on the same examples");
        if (i >= examples.size())
            throw Error(ref.path + " holds " + std::to_string(ref.ids.size()) + " examples but this run has " +
                        std::to_string(examples.size()) + ": reference id " + ref.ids[i] +
                        " is not in this run (check --max_ite, --batch_size, --dataset_path)");
        if (ref.ids[i] != examples[i].id)
            throw Error(ref.path + " is for a different example set: its example " + std::to_string(i) + " has id " +
                        ref.ids[i] + " but this run's has id " + examples[i].id + " (dataset line " +
                        std::to_string(examples[i].line) + ")");
    }
}

size_t count_identical_outputs(const SummarizeRun& run, const SummarizeReference& ref) {
    size_t same = 0;
    for (size_t i = 0; i < run.examples.size() && i < ref.output_ids.size(); ++i)
        same += !ref.output_ids[i].empty() && run.examples[i].output_ids == ref.output_ids[i];
    return same;
}

std::string comparison_table(const SummarizeRun& run, const SummarizeReference& ref) {
    const std::string other = ref.engine == "hf_transformers" ? "HF" : ref.engine;
    std::string out = "side by side with " + ref.path + " (" + ref.engine + "), " + std::to_string(run.examples.size()) +
                      " examples:\n";
    char line[200];
    std::snprintf(line, sizeof line, "  %-22s %12s %12s %12s\n", "", "lamina", other.c_str(), "difference");
    out += line;
    for (size_t b = 0; b < run.scores.size() && b < ref.scores.size(); ++b) {
        const RougeAggregate& a = run.scores[b];
        const RougeAggregate& r = ref.scores[b];
        const std::pair<const char*, std::pair<double, double>> rows[] = {
            {"rouge1", {a.rouge1, r.rouge1}}, {"rouge2", {a.rouge2, r.rouge2}},
            {"rougeL", {a.rougeL, r.rougeL}}, {"rougeLsum", {a.rougeLsum, r.rougeLsum}}};
        for (const auto& [name, v] : rows) {
            const std::string label = "beam " + std::to_string(b) + " " + name;
            const double diff = std::abs(v.first - v.second) < 5e-5 ? 0.0 : v.first - v.second;  // no "-0.0000"
            std::snprintf(line, sizeof line, "  %-22s %12.4f %12.4f %+12.4f\n", label.c_str(), v.first, v.second, diff);
            out += line;
        }
    }
    std::snprintf(line, sizeof line, "  %-22s %12.3f %12.3f %+12.3f  (lamina/%s %.2fx)\n", "total latency (sec)",
                  run.total_latency_s, ref.total_latency_s, run.total_latency_s - ref.total_latency_s, other.c_str(),
                  ref.total_latency_s > 0 ? run.total_latency_s / ref.total_latency_s : 0.0);
    out += line;
    const bool has_ids = std::any_of(ref.output_ids.begin(), ref.output_ids.end(), [](const auto& v) { return !v.empty(); });
    if (has_ids) {
        out += "  token-identical outputs (every returned beam): " + std::to_string(count_identical_outputs(run, ref)) +
               " of " + std::to_string(run.examples.size()) + " examples\n";
    } else {
        out += "  token-identical outputs: the reference has no output_ids\n";
    }
    // Config fields that differ make the comparison less meaningful: say so.
    const json mine = config_json(run);
    for (const char* key : {"max_input_length", "output_len", "num_beams", "num_return_sequences", "top_k", "length_penalty",
                            "early_stopping", "no_repeat_ngram_size", "repetition_penalty", "use_stemmer", "eos_token_id"}) {
        if (!ref.config.contains(key)) continue;
        const json& theirs = ref.config[key];
        const bool same = theirs.is_number() && mine[key].is_number()
                              ? std::abs(theirs.get<double>() - mine[key].get<double>()) < 1e-6  // 1.2f vs 1.2
                              : theirs == mine[key];
        if (!same)
            out += "  note: " + std::string(key) + " is " + mine[key].dump() + " here but " + theirs.dump() +
                   " in the reference\n";
    }
    return out;
}

}  // namespace lamina
