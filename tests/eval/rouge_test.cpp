// ROUGE against Google's rouge-score package and the Porter stemmer against NLTK, on fixtures that
// tools/rouge_reference.py wrote with the real packages (tests/data/rouge/PROVENANCE.md).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>

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

TEST(RougeIo, InvalidUtf8NamesFileLineAndByte) {
    // Reproducer: a truncated UTF-8 sequence was scored as if it were a separator.
    TempDir dir;
    test::write_file(dir / "a.txt", "fine\nab\xC3(\n");
    const std::string e = test::error_of([&] { read_examples(dir / "a.txt"); });
    for (const char* part : {"a.txt line 2: not valid UTF-8 at byte 2 of the line (byte 7 of the file)"})
        EXPECT_NE(e.find(part), std::string::npos) << e;
    test::write_file(dir / "b.txt", "\xED\xA0\x80\n");  // a UTF-16 surrogate, which UTF-8 may not encode
    EXPECT_NE(test::error_of([&] { read_examples(dir / "b.txt"); }).find("line 1: not valid UTF-8 at byte 0"), std::string::npos);
    test::write_file(dir / "c.txt", "caf\xC3\xA9 \xE2\x84\xAA\n");  // valid: scored as before
    EXPECT_EQ(read_examples(dir / "c.txt").size(), 1u);
}

// --- LCS -----------------------------------------------------------------------------------------------

// rouge_score.rouge_scorer._lcs_table and _backtrack_norec as plain loops over the whole table: the reference
// the bit-parallel LCS must equal, index for index. Returns lcs_ind(ref, can); `length` gets the table's corner.
std::vector<size_t> reference_lcs_indices(const std::vector<int32_t>& ref, const std::vector<int32_t>& can, size_t& length) {
    const size_t rows = ref.size(), cols = can.size();
    std::vector<std::vector<size_t>> t(rows + 1, std::vector<size_t>(cols + 1, 0));
    for (size_t i = 1; i <= rows; ++i)
        for (size_t j = 1; j <= cols; ++j)
            t[i][j] = ref[i - 1] == can[j - 1] ? t[i - 1][j - 1] + 1 : std::max(t[i - 1][j], t[i][j - 1]);
    length = t[rows][cols];
    std::vector<size_t> out;
    size_t i = rows, j = cols;
    while (i > 0 && j > 0) {
        if (ref[i - 1] == can[j - 1]) {
            out.insert(out.begin(), i - 1);
            --i;
            --j;
        } else if (t[i][j - 1] > t[i - 1][j]) {
            --j;
        } else {
            --i;
        }
    }
    return out;
}

TEST(RougeLcs, MatchesRougeScoreTableAndBacktrack) {
    // Small alphabets make many LCSs of one length, so the backtrack's choice among them is exercised;
    // lengths around 64 cross the words of the bit vectors.
    std::mt19937 rng(24);
    const size_t edges[] = {0, 1, 2, 63, 64, 65, 127, 128, 129, 191, 257};
    for (int trial = 0; trial < 600; ++trial) {
        const size_t n = trial % 3 == 0 ? edges[rng() % std::size(edges)] : rng() % 300;
        const size_t m = trial % 3 == 1 ? edges[rng() % std::size(edges)] : rng() % 300;
        const auto alphabet = static_cast<int32_t>(1 + rng() % (trial % 2 ? 4 : 40));
        std::vector<int32_t> ref(n), can(m);
        for (auto& x : ref) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(alphabet));
        for (auto& x : can) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(alphabet));
        size_t length = 0;
        const std::vector<size_t> expected = reference_lcs_indices(ref, can, length);
        ASSERT_EQ(rouge_lcs_length(ref, can), length) << "trial " << trial << " n " << n << " m " << m;
        ASSERT_EQ(rouge_lcs_length(can, ref), length) << "trial " << trial;
        ASSERT_EQ(rouge_lcs_indices(ref, can), expected) << "trial " << trial << " n " << n << " m " << m;
    }
}

size_t peak_rss() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<size_t>(u.ru_maxrss) * 1024;
}

TEST(RougeLcs, TwoLinesOf30kTokensInBoundedMemory) {
    // Reproducer: ROUGE-L of two 30k-token lines filled a 30001 x 30001 table of ints, 3.6 GB, twice
    // (rougeL, then rougeLsum's backtrack).
    std::string prediction, target;
    for (int i = 0; i < 30000; ++i) {
        const std::string word = "w" + std::to_string(i) + " ";
        prediction += word;
        target += i % 3 == 2 ? "z " : word;
    }
    const size_t before = peak_rss();
    const RougeScores s = score_rouge(prediction, target, false);
    EXPECT_LT(peak_rss() - before, size_t{200} << 20);
    // The LCS is the 20000 words both keep, in order; one sentence each, so rougeLsum's union is that LCS.
    for (const RougeScore* r : {&s.rougeL, &s.rougeLsum}) {
        EXPECT_DOUBLE_EQ(r->precision, 20000.0 / 30000.0);
        EXPECT_DOUBLE_EQ(r->recall, 20000.0 / 30000.0);
    }
}

TEST(RougeLcs, SentencePairsAreBounded) {
    // 5000 one-word sentences on each side make 25M pairs for rougeLsum: hours in rouge-score, refused here.
    std::string many;
    for (int i = 0; i < 5000; ++i) many += "a\n";
    const std::string e = test::error_of([&] { score_rouge(many, many, false); });
    EXPECT_NE(e.find("rougeLsum: 5000 x 5000 sentences make more than the 16777216 sentence pairs"), std::string::npos) << e;
    std::string some;
    for (int i = 0; i < 1000; ++i) some += "a b\n";
    EXPECT_DOUBLE_EQ(score_rouge(some, some, false).rougeLsum.fmeasure, 1.0);
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

TEST(RougeCli, InvalidUtf8AndHostileFlagsAreOneLineErrors) {
    TempDir dir;
    test::write_file(dir / "p.txt", "ok\n\xFF\n");
    test::write_file(dir / "r.txt", "ok\nok\n");
    auto r = test::run_command(test::lamina_binary() + " rouge --predictions " + (dir / "p.txt").string() +
                               " --references " + (dir / "r.txt").string());
    EXPECT_NE(r.status, 0);
    EXPECT_TRUE(is_one_line(r.output)) << r.output;
    EXPECT_NE(r.output.find("p.txt line 2: not valid UTF-8 at byte 0"), std::string::npos) << r.output;
    // Reproducer: --bootstrap_samples 2147483647 asked for 64 GB of resampled means.
    r = test::run_command(test::lamina_binary() + " rouge --predictions " + (dir / "r.txt").string() + " --references " +
                          (dir / "r.txt").string() + " --bootstrap --bootstrap_samples 2147483647");
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("--bootstrap_samples"), std::string::npos) << r.output;
    EXPECT_THROW(bootstrap_rouge({RougeScores{}}, kMaxBootstrapSamples + 1), Error);
    // A directory or a device as an input is refused at once.
    r = test::run_command("timeout 20 " + test::lamina_binary() + " rouge --predictions /dev/zero --references " +
                          dir.path().string());
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.status, 124) << "hung";
    EXPECT_TRUE(is_one_line(r.output)) << r.output;
    EXPECT_NE(r.output.find("/dev/zero"), std::string::npos) << r.output;
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
