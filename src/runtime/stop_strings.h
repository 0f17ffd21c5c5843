// Stop strings (`run --stop`, OpenAI's `stop`): a sequence's generation ends once its text contains one
// of them, and the text returned ends just before it. Fed the decoded text piece by piece (as tokens
// arrive), it passes on at once whatever can no longer be the start of a stop string and holds back a
// tail that still could, so a stream never shows part of a stop string.
#pragma once

#include <string>
#include <vector>

namespace lamina {

class StopStrings {
public:
    explicit StopStrings(std::vector<std::string> stops);  // empty strings are ignored

    // Adds decoded text; returns the part now safe to show (empty once stopped).
    std::string push(const std::string& piece);
    // The held-back tail, when generation ends without a stop string.
    std::string flush();
    bool stopped() const { return stopped_; }
    bool empty() const { return stops_.empty(); }

private:
    std::vector<std::string> stops_;
    std::string held_;
    bool stopped_ = false;
};

}  // namespace lamina
