// Porter stemmer, NLTK_EXTENSIONS mode. The steps follow the paper's numbering. One rule of NLTK's
// that the paper leaves implicit governs every rule list below: the first rule whose suffix the word
// ends with decides; if its condition fails the word is returned unchanged (no later rule is tried).
#include "eval/porter_stemmer.h"

#include <array>
#include <span>
#include <utility>

namespace lamina {

namespace {

bool is_vowel_letter(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }

// The paper's consonant: not a, e, i, o, u, and not a y that follows a consonant. Walks back over a
// run of y's instead of recursing (each y flips the answer of the letter before it).
bool is_consonant(std::string_view w, size_t i) {
    bool flip = false;
    while (i > 0 && w[i] == 'y') {
        flip = !flip;
        --i;
    }
    return !is_vowel_letter(w[i]) != flip;
}

// m in [C](VC){m}[V]: the number of vowel->consonant transitions.
int measure(std::string_view stem) {
    int m = 0;
    bool prev_consonant = true;
    for (size_t i = 0; i < stem.size(); ++i) {
        const bool c = is_vowel_letter(stem[i]) ? false : stem[i] == 'y' ? (i == 0 || !prev_consonant) : true;
        if (c && i > 0 && !prev_consonant) ++m;
        prev_consonant = c;
    }
    return m;
}

bool contains_vowel(std::string_view stem) {
    for (size_t i = 0; i < stem.size(); ++i)
        if (!is_consonant(stem, i)) return true;
    return false;
}

// *d: ends with a double consonant.
bool ends_double_consonant(std::string_view w) {
    const size_t n = w.size();
    return n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1);
}

// *o: ends consonant-vowel-consonant, the last not w, x or y; NLTK also counts a 2-letter
// vowel-consonant word (with no w/x/y exception).
bool ends_cvc(std::string_view w) {
    const size_t n = w.size();
    if (n >= 3 && is_consonant(w, n - 3) && !is_consonant(w, n - 2) && is_consonant(w, n - 1) && w[n - 1] != 'w' &&
        w[n - 1] != 'x' && w[n - 1] != 'y')
        return true;
    return n == 2 && !is_consonant(w, 0) && is_consonant(w, 1);
}

bool ends_with(std::string_view w, std::string_view suffix) { return w.ends_with(suffix); }

std::string_view drop(std::string_view w, size_t n) { return w.substr(0, w.size() - n); }

struct Rule {
    std::string_view suffix, replacement;
};

const Rule* first_match(std::string_view w, std::span<const Rule> rules) {
    for (const Rule& r : rules)
        if (ends_with(w, r.suffix)) return &r;
    return nullptr;
}

// Rules whose condition is measure(stem) > min_measure (steps 2, 3, 4 except their special cases).
std::string apply_measure_rules(std::string_view w, std::span<const Rule> rules, int min_measure) {
    const Rule* r = first_match(w, rules);
    if (!r) return std::string(w);
    const std::string_view stem = drop(w, r->suffix.size());
    if (measure(stem) <= min_measure) return std::string(w);
    return std::string(stem) + std::string(r->replacement);
}

// Step 1a: plurals. NLTK: a 4-letter "-ies" word keeps "ie" (dies -> die, but flies -> fli).
std::string step1a(std::string_view w) {
    if (w.size() == 4 && ends_with(w, "ies")) return std::string(drop(w, 3)) + "ie";
    static constexpr std::array<Rule, 4> rules{{{"sses", "ss"}, {"ies", "i"}, {"ss", "ss"}, {"s", ""}}};
    const Rule* r = first_match(w, rules);
    return r ? std::string(drop(w, r->suffix.size())) + std::string(r->replacement) : std::string(w);
}

// Step 1b: -eed, -ed, -ing, then tidying of what -ed/-ing left.
std::string step1b(std::string_view w) {
    // NLTK: "-ied" -> "ie" on 4-letter words (died -> die), else "i" (spied -> spi), and stop.
    if (ends_with(w, "ied")) return std::string(drop(w, 3)) + (w.size() == 4 ? "ie" : "i");
    if (ends_with(w, "eed")) {
        const std::string_view stem = drop(w, 3);
        return measure(stem) > 0 ? std::string(stem) + "ee" : std::string(w);
    }
    std::string_view stem;
    bool removed = false;
    for (std::string_view suffix : {std::string_view("ed"), std::string_view("ing")}) {
        if (ends_with(w, suffix)) {
            stem = drop(w, suffix.size());
            if (contains_vowel(stem)) {
                removed = true;
                break;
            }
        }
    }
    if (!removed) return std::string(w);
    // at -> ate, bl -> ble, iz -> ize (so step 4 can see -ate/-ble/-ize later).
    if (ends_with(stem, "at") || ends_with(stem, "bl") || ends_with(stem, "iz")) return std::string(stem) + "e";
    if (ends_double_consonant(stem)) {
        const char last = stem.back();
        return last == 'l' || last == 's' || last == 'z' ? std::string(stem) : std::string(drop(stem, 1));
    }
    if (measure(stem) == 1 && ends_cvc(stem)) return std::string(stem) + "e";
    return std::string(stem);
}

// Step 1c: y -> i. NLTK: only after a consonant that is not the word's first letter (happy -> happi,
// enjoy and sky stay).
std::string step1c(std::string_view w) {
    if (!ends_with(w, "y")) return std::string(w);
    const std::string_view stem = drop(w, 1);
    if (stem.size() > 1 && is_consonant(stem, stem.size() - 1)) return std::string(stem) + "i";
    return std::string(w);
}

// Step 2: double suffixes to single ones, for m > 0.
std::string step2(std::string_view w) {
    // NLTK applies alli -> al first and runs step 2 again on the result.
    if (ends_with(w, "alli") && measure(drop(w, 4)) > 0) return step2(std::string(drop(w, 4)) + "al");
    static constexpr std::array<Rule, 22> rules{{
        {"ational", "ate"}, {"tional", "tion"}, {"enci", "ence"},   {"anci", "ance"},   {"izer", "ize"},
        {"bli", "ble"},     {"alli", "al"},     {"entli", "ent"},   {"eli", "e"},       {"ousli", "ous"},
        {"ization", "ize"}, {"ation", "ate"},   {"ator", "ate"},    {"alism", "al"},    {"iveness", "ive"},
        {"fulness", "ful"}, {"ousness", "ous"}, {"aliti", "al"},    {"iviti", "ive"},   {"biliti", "ble"},
        {"fulli", "ful"},   {"logi", "log"},
    }};
    const Rule* r = first_match(w, rules);
    if (!r) return std::string(w);
    // logi -> log: the condition sees the stem with its "l" (so geologi -> geolog, like archaeologi).
    const std::string_view tested = r->suffix == "logi" ? drop(w, 3) : drop(w, r->suffix.size());
    if (measure(tested) <= 0) return std::string(w);
    return std::string(drop(w, r->suffix.size())) + std::string(r->replacement);
}

// Step 3: -ic-, -full, -ness etc., for m > 0.
std::string step3(std::string_view w) {
    static constexpr std::array<Rule, 7> rules{{
        {"icate", "ic"}, {"ative", ""}, {"alize", "al"}, {"iciti", "ic"}, {"ical", "ic"}, {"ful", ""}, {"ness", ""},
    }};
    return apply_measure_rules(w, rules, 0);
}

// Step 4: remove the last suffix for m > 1; -ion only after s or t.
std::string step4(std::string_view w) {
    static constexpr std::array<Rule, 19> rules{{
        {"al", ""},  {"ance", ""}, {"ence", ""}, {"er", ""},  {"ic", ""},  {"able", ""}, {"ible", ""},
        {"ant", ""}, {"ement", ""}, {"ment", ""}, {"ent", ""}, {"ion", ""}, {"ou", ""},   {"ism", ""},
        {"ate", ""}, {"iti", ""},  {"ous", ""},  {"ive", ""}, {"ize", ""},
    }};
    const Rule* r = first_match(w, rules);
    if (!r) return std::string(w);
    const std::string_view stem = drop(w, r->suffix.size());
    if (r->suffix == "ion" && (stem.empty() || (stem.back() != 's' && stem.back() != 't'))) return std::string(w);
    return measure(stem) > 1 ? std::string(stem) : std::string(w);
}

// Step 5a: drop a final e when m > 1, or when m = 1 and the stem does not end cvc (cease -> ceas, rate stays).
std::string step5a(std::string_view w) {
    if (!ends_with(w, "e")) return std::string(w);
    const std::string_view stem = drop(w, 1);
    const int m = measure(stem);
    if (m > 1 || (m == 1 && !ends_cvc(stem))) return std::string(stem);
    return std::string(w);
}

// Step 5b: -ll -> -l when m > 1 (measured on the word less one l: controll -> control, roll stays).
std::string step5b(std::string_view w) {
    if (ends_with(w, "ll") && measure(drop(w, 1)) > 1) return std::string(drop(w, 1));
    return std::string(w);
}

// NLTK's irregular forms, returned as they are looked up (before any step).
std::string_view irregular_form(std::string_view w) {
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 16> forms{{
        {"sky", "sky"},         {"skies", "sky"},        {"dying", "die"},     {"lying", "lie"},
        {"tying", "tie"},       {"news", "news"},        {"innings", "inning"}, {"inning", "inning"},
        {"outings", "outing"},  {"outing", "outing"},    {"cannings", "canning"}, {"canning", "canning"},
        {"howe", "howe"},       {"proceed", "proceed"},  {"exceed", "exceed"}, {"succeed", "succeed"},
    }};
    for (const auto& [form, stem] : forms)
        if (w == form) return stem;
    return {};
}

}  // namespace

std::string porter_stem(std::string_view word) {
    std::string w(word);
    for (char& c : w)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (const std::string_view irregular = irregular_form(w); !irregular.empty()) return std::string(irregular);
    if (w.size() <= 2) return w;
    w = step1a(w);
    w = step1b(w);
    w = step1c(w);
    w = step2(w);
    w = step3(w);
    w = step4(w);
    w = step5a(w);
    return step5b(w);
}

}  // namespace lamina
