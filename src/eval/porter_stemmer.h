// The Porter stemmer exactly as NLTK's PorterStemmer() computes it in its default mode
// (NLTK_EXTENSIONS): Porter (1980) "An algorithm for suffix stripping" with the changes Martin Porter
// later endorsed and NLTK's own additions (a table of irregular forms, words of <= 2 characters kept,
// "ies"/"ied" on 4-letter words, step 1c y->i only after a consonant, alli/fulli/logi in step 2).
// rouge-score stems with it when use_stemmer=True. Checked word for word against nltk on the
// CNN/DailyMail vocabulary (tests/data/rouge/porter_stems.tsv).
#pragma once

#include <string>
#include <string_view>

namespace lamina {

// Stem of one word. ASCII letters are lowercased first (as nltk's stem(word) does); every other
// byte counts as a consonant, like a digit. rouge-score only passes [a-z0-9]+ tokens of > 3 chars.
std::string porter_stem(std::string_view word);

}  // namespace lamina
