// ROUGE against Google's rouge-score package and the Porter stemmer against NLTK, on fixtures that
// tools/rouge_reference.py wrote with the real packages (tests/data/rouge/PROVENANCE.md).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include "../test_util.h"
#include "core/error.h"
#include "eval/porter_stemmer.h"
#include "eval/rouge.h"
#include "eval/rouge_io.h"

namespace lamina {
namespace {

using nlohmann::json;
using test::TempDir;

// Same formulas in double precision as rouge-score: per-pair scores come out bit-identical here and
// the means differ by ~1e-14 (numpy sums pairwise). 1e-9 leaves room for summation order and a
// compiler's FMA contraction, and nothing else.
constexpr double kTol = 1e-9;

const char* const kTypes[] = {"rouge1", "rouge2", "rougeL", "rougeLsum"};
const char* const kStemming[] = {"plain", "stemmed"};

std::filesystem::path rouge_dir() { return test::data_dir() / "rouge"; }

const json& reference() {
    static const json doc = test::read_json(rouge_dir() / "rouge_reference.json");
    return doc;
}

const json& reference_set(const std::string& name) {
    for (const json& s : reference()["sets"])
        if (s["name"] == name) return s;
    throw Error("rouge_reference.json has no set " + name);
}

const RougeScore& by_type(const RougeScores& s, const std::string& type) {
    if (type == "rouge1") return s.rouge1;
    if (type == "rouge2") return s.rouge2;
    if (type == "rougeL") return s.rougeL;
    return s.rougeLsum;
}

double by_type(const RougeAggregate& a, const std::string& type) {
    if (type == "rouge1") return a.rouge1;
    if (type == "rouge2") return a.rouge2;
    if (type == "rougeL") return a.rougeL;
    return a.rougeLsum;
}

const RougeInterval& by_type(const RougeBootstrap& b, const std::string& type) {
    if (type == "rouge1") return b.rouge1;
    if (type == "rouge2") return b.rouge2;
    if (type == "rougeL") return b.rougeL;
    return b.rougeLsum;
}

std::vector<RougeScores> score_set(const json& set, bool use_stemmer) {
    std::vector<RougeScores> out;
    for (const json& c : set["cases"])
        out.push_back(score_rouge(c["prediction"].get<std::string>(), c["target"].get<std::string>(), use_stemmer));
    return out;
}

TEST(RougeStemmer, MatchesNltkOnWholeWordList) {
    std::ifstream in(rouge_dir() / "porter_stems.tsv");
    ASSERT_TRUE(in) << "missing porter_stems.tsv";
    std::string line;
    size_t n_words = 0, n_changed = 0, n_wrong = 0;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        const size_t tab = line.find('\t');
        ASSERT_NE(tab, std::string::npos) << line;
        const std::string word = line.substr(0, tab), expected = line.substr(tab + 1);
        const std::string got = porter_stem(word);
        ++n_words;
        n_changed += expected != word;
        if (got != expected && ++n_wrong <= 20)
            ADD_FAILURE() << "porter_stem(\"" << word << "\") = \"" << got << "\", nltk: \"" << expected << "\"";
    }
    EXPECT_EQ(n_wrong, 0u) << "of " << n_words << " words";
    // The list is the whole CNN/DailyMail sample vocabulary plus synthetic words (25k); most get stemmed.
    EXPECT_GT(n_words, 20000u);
    EXPECT_GT(n_changed, 5000u);
}

TEST(RougeStemmer, LowercasesAsciiLikeNltk) {
    EXPECT_EQ(porter_stem("Running"), porter_stem("running"));
    EXPECT_EQ(porter_stem("NEWS"), porter_stem("news"));
}

TEST(RougeTokenize, MatchesRougeScoreTokens) {
    size_t n_texts = 0;
    for (const json& set : reference()["sets"]) {
        for (const json& c : set["cases"]) {
            if (!c.contains("tokens")) continue;
            for (int stem = 0; stem < 2; ++stem) {
                const json& tokens = c["tokens"][kStemming[stem]];
                EXPECT_EQ(rouge_tokenize(c["target"].get<std::string>(), stem == 1),
                          tokens[0].get<std::vector<std::string>>())
                    << c["target"];
                EXPECT_EQ(rouge_tokenize(c["prediction"].get<std::string>(), stem == 1),
                          tokens[1].get<std::vector<std::string>>())
                    << c["prediction"];
                n_texts += 2;
            }
        }
    }
    EXPECT_GE(n_texts, 170u);  // upstream (8 pairs) + edge (35 pairs), both texts, both settings
}

TEST(RougeReference, EveryPairMatchesRougeScore) {
    size_t n_pairs = 0;
    for (const json& set : reference()["sets"]) {
        for (int stem = 0; stem < 2; ++stem) {
            const std::vector<RougeScores> got = score_set(set, stem == 1);
            for (size_t i = 0; i < got.size(); ++i) {
                const json& expected = set["cases"][i][kStemming[stem]];
                for (const char* type : kTypes) {
                    const RougeScore& s = by_type(got[i], type);
                    const auto prf = expected[type].get<std::vector<double>>();
                    const std::string where = set["name"].get<std::string>() + "[" + std::to_string(i) + "] " +
                                              kStemming[stem] + " " + type;
                    EXPECT_NEAR(s.precision, prf[0], kTol) << where;
                    EXPECT_NEAR(s.recall, prf[1], kTol) << where;
                    EXPECT_NEAR(s.fmeasure, prf[2], kTol) << where;
                }
                ++n_pairs;
            }
        }
    }
    EXPECT_EQ(n_pairs, 486u);  // 243 (target, prediction) pairs x {plain, stemmed}
}

TEST(RougeReference, MeansMatchAndLieInRougeScoreBootstrapInterval) {
    for (const json& set : reference()["sets"]) {
        for (int stem = 0; stem < 2; ++stem) {
            const RougeAggregate mean = aggregate_rouge(score_set(set, stem == 1));
            for (const char* type : kTypes) {
                const std::string where = set["name"].get<std::string>() + " " + kStemming[stem] + " " + type;
                EXPECT_NEAR(by_type(mean, type), set["mean_fmeasure_x100"][kStemming[stem]][type].get<double>(), kTol)
                    << where;
                const auto interval = set["bootstrap_fmeasure_x100"][kStemming[stem]][type].get<std::vector<double>>();
                EXPECT_LE(interval[0], by_type(mean, type) + kTol) << where;
                EXPECT_GE(interval[2], by_type(mean, type) - kTol) << where;
            }
        }
    }
}

// The copied upstream files are the texts the fixture scored, read as upstream's tests read them.
TEST(RougeReference, UpstreamFilesAreTheScoredInputs) {
    const json& lines = reference_set("upstream_lines")["cases"];
    const std::string targets = test::read_file(rouge_dir() / "target.txt");
    const std::string predictions = test::read_file(rouge_dir() / "prediction.txt");
    EXPECT_EQ(targets, lines[0]["target"].get<std::string>() + lines[1]["target"].get<std::string>());
    EXPECT_EQ(predictions, lines[0]["prediction"].get<std::string>() + lines[1]["prediction"].get<std::string>());
    const json& multi = reference_set("upstream_multi")["cases"][0];
    EXPECT_EQ(test::read_file(rouge_dir() / "pyrouge_files" / "target_multi.0.txt"), multi["target"].get<std::string>());
    EXPECT_EQ(test::read_file(rouge_dir() / "pyrouge_files" / "prediction_multi.0.txt"), multi["prediction"].get<std::string>());
    EXPECT_EQ(test::read_file(rouge_dir() / "delimited.txt"),
              reference_set("upstream_multi")["cases"][3]["target"].get<std::string>());
}

TEST(RougeAggregate, NoExamplesIsAnError) { EXPECT_THROW(aggregate_rouge({}), Error); }

// numpy's resampling cannot be reproduced, so the bootstrap is checked for what it estimates: the mid
// sits at the mean, the interval is ordered, and its width is that of rouge-score's on the same data.
TEST(RougeBootstrap, StatisticallySaneAndSeeded) {
    for (const char* name : {"cnn_lead3", "cnn_reordered"}) {
        const json& set = reference_set(name);
        for (int stem = 0; stem < 2; ++stem) {
            const std::vector<RougeScores> scores = score_set(set, stem == 1);
            const RougeAggregate mean = aggregate_rouge(scores);
            const RougeBootstrap b = bootstrap_rouge(scores, 1000, 0.95, 7);
            for (const char* type : kTypes) {
                const std::string where = std::string(name) + " " + kStemming[stem] + " " + type;
                const RougeInterval& iv = by_type(b, type);
                const auto ref = set["bootstrap_fmeasure_x100"][kStemming[stem]][type].get<std::vector<double>>();
                EXPECT_LE(iv.low, iv.mid) << where;
                EXPECT_LE(iv.mid, iv.high) << where;
                EXPECT_LT(iv.low, by_type(mean, type)) << where;
                EXPECT_GT(iv.high, by_type(mean, type)) << where;
                // The resampled means' median is within a fraction of the interval of the mean (its
                // sampling error with 1000 resamples is ~4% of the width).
                EXPECT_LT(std::fabs(iv.mid - by_type(mean, type)), 0.15 * (iv.high - iv.low)) << where;
                const double width = iv.high - iv.low, ref_width = ref[2] - ref[0];
                EXPECT_GT(width, 0.75 * ref_width) << where;
                EXPECT_LT(width, 1.33 * ref_width) << where;
            }
            const RougeBootstrap again = bootstrap_rouge(scores, 1000, 0.95, 7);
            EXPECT_EQ(again.rougeLsum.low, b.rougeLsum.low);
            EXPECT_EQ(again.rouge2.high, b.rouge2.high);
            const RougeBootstrap other = bootstrap_rouge(scores, 1000, 0.95, 8);
            EXPECT_NE(other.rouge1.low, b.rouge1.low);
        }
    }
}

TEST(RougeBootstrap, OneExampleAndBadArguments) {
    const std::vector<RougeScores> one = {score_rouge("the cat sat", "the cat sat down", false)};
    const RougeBootstrap b = bootstrap_rouge(one, 10, 0.95, 0);
    const double f = 100.0 * one[0].rouge1.fmeasure;
    EXPECT_DOUBLE_EQ(b.rouge1.low, f);
    EXPECT_DOUBLE_EQ(b.rouge1.mid, f);
    EXPECT_DOUBLE_EQ(b.rouge1.high, f);
    EXPECT_THROW(bootstrap_rouge(one, 0), Error);
    EXPECT_THROW(bootstrap_rouge(one, 10, 1.5), Error);
    EXPECT_THROW(bootstrap_rouge({}), Error);
}

TEST(RougeIo, EscapeRoundTripAndLineCounting) {
    for (const std::string text : {"", "a\nb", "back\\slash \\n literal", "\n\n", "tab\tand \\"})
        EXPECT_EQ(unescape_example(escape_example(text)), text);
    EXPECT_EQ(escape_example("a\nb").find('\n'), std::string::npos);
    EXPECT_EQ(unescape_example("x\\qy\\"), "x\\qy\\");  // other backslashes stay
    TempDir dir;
    test::write_file(dir / "a.txt", "one\\ntwo\nthree\n");
    EXPECT_EQ(read_examples(dir / "a.txt"), (std::vector<std::string>{"one\ntwo", "three"}));
    test::write_file(dir / "b.txt", "one\n\nthree");
    EXPECT_EQ(read_examples(dir / "b.txt"), (std::vector<std::string>{"one", "", "three"}));
    test::write_file(dir / "c.txt", "");
    EXPECT_TRUE(read_examples(dir / "c.txt").empty());
    try {
        read_examples(dir / "missing.txt");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("missing.txt"), std::string::npos) << e.what();
    }
    EXPECT_THROW(read_examples(dir.path()), Error);
}

// --- lamina rouge -------------------------------------------------------------------------------

struct ExampleFiles {
    std::filesystem::path predictions, references;
};

ExampleFiles write_set(const TempDir& dir, const json& set) {
    std::string preds, refs;
    for (const json& c : set["cases"]) {
        preds += escape_example(c["prediction"].get<std::string>()) + "\n";
        refs += escape_example(c["target"].get<std::string>()) + "\n";
    }
    ExampleFiles f{dir / "predictions.txt", dir / "references.txt"};
    test::write_file(f.predictions, preds);
    test::write_file(f.references, refs);
    return f;
}

std::map<std::string, double> parse_scores(const std::string& output) {
    std::map<std::string, double> out;
    std::istringstream in(output);
    std::string line;
    while (std::getline(in, line)) {
        char name[32];
        double value;
        if (std::sscanf(line.c_str(), "%31s : %lf", name, &value) == 2) out.emplace(name, value);
    }
    return out;
}

bool is_one_line(const std::string& s) { return !s.empty() && s.find('\n') == s.size() - 1; }

TEST(RougeCli, PrintsTheMeansOfRougeScore) {
    TempDir dir;
    for (const char* name : {"cnn_lead3", "edge"}) {
        const json& set = reference_set(name);
        const ExampleFiles f = write_set(dir, set);
        for (int stem = 0; stem < 2; ++stem) {
            const auto r = test::run_command(test::lamina_binary() + " rouge --predictions " + f.predictions.string() +
                                             " --references " + f.references.string() +
                                             (stem ? " --use_stemmer" : ""));
            ASSERT_EQ(r.status, 0) << r.output;
            const auto scores = parse_scores(r.output);
            for (const char* type : kTypes) {
                ASSERT_TRUE(scores.count(type)) << r.output;
                // Printed with 6 decimals.
                EXPECT_NEAR(scores.at(type), set["mean_fmeasure_x100"][kStemming[stem]][type].get<double>(), 1e-6)
                    << name << " " << kStemming[stem] << " " << type;
            }
        }
    }
}

TEST(RougeCli, BootstrapLines) {
    TempDir dir;
    const ExampleFiles f = write_set(dir, reference_set("cnn_lead3"));
    const auto r = test::run_command(test::lamina_binary() + " rouge --predictions " + f.predictions.string() +
                                     " --references " + f.references.string() + " --bootstrap --seed 3");
    ASSERT_EQ(r.status, 0) << r.output;
    double low, mid, high;
    const size_t at = r.output.find("rougeLsum bootstrap :");
    ASSERT_NE(at, std::string::npos) << r.output;
    ASSERT_EQ(std::sscanf(r.output.c_str() + at, "rougeLsum bootstrap : low %lf mid %lf high %lf", &low, &mid, &high),
              3)
        << r.output;
    EXPECT_LE(low, mid);
    EXPECT_LE(mid, high);
    EXPECT_NEAR(mid, parse_scores(r.output).at("rougeLsum"), 0.15 * (high - low));
}

TEST(RougeCli, MissingFileIsOneLineError) {
    TempDir dir;
    test::write_file(dir / "refs.txt", "a\n");
    const auto r = test::run_command(test::lamina_binary() + " rouge --predictions " + (dir / "nope.txt").string() +
                                     " --references " + (dir / "refs.txt").string());
    EXPECT_NE(r.status, 0);
    EXPECT_TRUE(is_one_line(r.output)) << r.output;
    EXPECT_NE(r.output.find("nope.txt"), std::string::npos) << r.output;
}

TEST(RougeCli, LineCountMismatchNamesBothFilesAndCounts) {
    TempDir dir;
    test::write_file(dir / "preds.txt", "a\nb\nc\n");
    test::write_file(dir / "refs.txt", "a\nb\\nc\nd\ne\n");
    const auto r = test::run_command(test::lamina_binary() + " rouge --predictions " + (dir / "preds.txt").string() +
                                     " --references " + (dir / "refs.txt").string());
    EXPECT_NE(r.status, 0);
    EXPECT_TRUE(is_one_line(r.output)) << r.output;
    for (const char* part : {"preds.txt", "refs.txt", " 3 ", " 4"})
        EXPECT_NE(r.output.find(part), std::string::npos) << part << " not in: " << r.output;
}

TEST(RougeCli, EmptyFilesAndMissingFlagAreErrors) {
    TempDir dir;
    test::write_file(dir / "p.txt", "");
    test::write_file(dir / "r.txt", "");
    auto r = test::run_command(test::lamina_binary() + " rouge --predictions " + (dir / "p.txt").string() +
                               " --references " + (dir / "r.txt").string());
    EXPECT_NE(r.status, 0);
    EXPECT_TRUE(is_one_line(r.output)) << r.output;
    r = test::run_command(test::lamina_binary() + " rouge --predictions " + (dir / "p.txt").string());
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.output.find("--references"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace lamina
