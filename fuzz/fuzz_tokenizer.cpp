// Hugging Face tokenizer files: tokenizer.json and tokenizer_config.json into a Vocab (validated), then
// a Tokenizer that encodes fixed texts and the input's third part, and decodes what it produced.
// Input: tokenizer.json, tokenizer_config.json[, text].
#include <string>

#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace lamina;
    const auto parts = fuzz::split_parts(data, size, 3);
    static const auto dir = fuzz::input_dir("tokenizer");
    fuzz::write_input_files(dir, {{"tokenizer.json", parts[0]}, {"tokenizer_config.json", fuzz::part(parts, 1)}});
    fuzz::expect_clean([&] {
        const Tokenizer tok(vocab_from_hf_dir(dir));
        for (const std::string_view text : {std::string_view("Hello world, <s> 123 héllo\n\t  x"),
                                            parts.size() > 2 ? parts[2] : std::string_view()}) {
            for (const bool special : {false, true}) {
                const auto ids = tok.encode(text, special, special);
                tok.decode(ids, special);
            }
        }
    });
    return 0;
}
