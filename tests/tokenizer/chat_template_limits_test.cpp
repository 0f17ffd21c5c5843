// Issue 24, hardening: a chat template comes with a stranger's model. Each test renders the reproducer of a
// template that used to hang, exhaust memory or overflow the stack, and expects one lamina::Error line naming
// the bound, quickly and within bounded memory; templates that are merely deep or long still render.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <functional>

#include "../test_util.h"
#include "core/error.h"
#include "tokenizer/chat_template.h"

namespace lamina {
namespace {

size_t peak_rss() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<size_t>(u.ru_maxrss) * 1024;
}

Vocab vocab_with(const std::string& tmpl) {
    Vocab v;
    v.tokens = {"<s>", "</s>", "a"};
    v.types = {3, 3, 1};
    v.bos_id = 0;
    v.eos_id = 1;
    v.source = "hostile.gguf";
    v.chat_template = tmpl;
    return v;
}

std::string render(const std::string& tmpl, const ChatTemplateOptions& options = {}) {
    return apply_chat_template(vocab_with(tmpl), {{"user", "Hi"}}, options);
}

// Renders `tmpl`, which must fail within `seconds` (generous: the sanitizer build on a busy 2-core machine
// takes up to 15 s for the longest, the exponential recursion) with a one-line error holding every needle,
// and without growing the peak memory by 512 MB.
void expect_stopped(const std::string& tmpl, std::initializer_list<std::string> needles, double seconds = 60) {
    const size_t rss = peak_rss();
    const auto start = std::chrono::steady_clock::now();
    const std::string msg = test::error_of([&] { render(tmpl); });
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_FALSE(msg.empty()) << "rendered: " << tmpl.substr(0, 200);
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind("hostile.gguf: ", 0), 0u) << msg;
    for (const auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "no '" << n << "' in: " << msg;
    EXPECT_LT(took, seconds) << msg;
    EXPECT_LT(peak_rss() - rss, size_t{512} << 20) << msg;
}

TEST(ChatTemplateLimits, InfiniteMacroRecursionStopsAtTheDepthBound) {
    // Reproducer: overflowed the stack (SIGSEGV).
    expect_stopped("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", {"macro calls nested deeper than 200"});
    expect_stopped("{% macro f(x) %}{% call f(x) %}{% endcall %}{% endmacro %}{{ f(1) }}", {"nested deeper than 200"});
    // Deep but finite recursion within the bound renders.
    EXPECT_EQ(render("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% else %}done{% endif %}{% endmacro %}{{ f(150) }}"), "done");
}

TEST(ChatTemplateLimits, HugeLoopsStopAtTheWorkBound) {
    // Reproducers: range(10^12) tried to build a list of 10^12 integers; two nested loops of 10^5 ran for hours.
    expect_stopped("{% for i in range(1000000000000) %}x{% endfor %}", {"more than 1000000 units of work"});
    expect_stopped("{% for i in range(-9223372036854775807, 9223372036854775807, 1) %}{% endfor %}", {"units of work"});
    expect_stopped("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", {"units of work"});
    // A macro that calls itself twice: 2^60 calls within the depth bound.
    expect_stopped("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
                   {"units of work"});
    // Loops of real sizes run.
    EXPECT_EQ(render("{% for i in range(3, 9, 2) %}{{ i }}{% endfor %}{{ range(5)|length }}"), "3575");
}

// A 2 MB string of one piece ('x' * n makes n pieces, which cost more than their bytes).
const std::string kBig = "{% set s = ('x' * 1000)|replace('x', 'x' * 2000) %}";
// kBig, and a list of ten references to it.
const std::string kTenBig = kBig + "{% set ns = namespace(l=[]) %}{% for i in range(10) %}{% set ns.l = ns.l + [s] %}{% endfor %}";

TEST(ChatTemplateLimits, StringsAreSizedBeforeTheyAreMade) {
    // Reproducer: 'a' * 10^12 appended a piece a trillion times.
    expect_stopped("{{ 'a' * 1000000000000 }}", {"a repeated string of", "bytes, more than the"});
    expect_stopped("{{ 1000000000000 * 'ab' }}", {"a repeated string of"});
    expect_stopped("{{ 'x' * 10000000 }}", {"a repeated string of 490000000 bytes"});
    // Doubling a string 64 times.
    expect_stopped("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
                   {"bytes, more than the"});
    // Builtins whose result grows with an argument, or with the references in a list.
    expect_stopped("{{ 'a\\nb'|indent(10000000000) }}", {"indent() of"});
    expect_stopped(kBig + "{{ s|replace('', s) }}", {"replace() of"});
    expect_stopped(kBig + "{{ s.replace('x', s) }}", {"replace() of"});
    expect_stopped(kTenBig + "{{ ns.l|join(',') }}", {"join() of"});
    expect_stopped(kTenBig + "{{ ns.l }}", {"output of"});
    expect_stopped(kTenBig + "{{ ns.l|tojson }}", {"tojson() of"});
    expect_stopped("{{ messages|tojson(indent=1000000000000) }}", {"tojson() of"});
    expect_stopped(kBig + "{{ s|list|length }}", {"units of work"});
    // The real uses render.
    EXPECT_EQ(render("{{ '-' * 3 }}{{ 'a\\nb'|indent(2) }}{{ ['x', 'y']|join(', ') }}{{ 'aXb'|replace('X', '--') }}"),
              "---a\n  bx, ya--b");
    EXPECT_EQ(render(kBig + "{{ s|length }}"), "2000000");
}

TEST(ChatTemplateLimits, CyclesAreRefusedWhenMade) {
    // Reproducers: a list holding itself, printed or freed, recursed until the stack overflowed.
    expect_stopped("{% set l = [] %}{{ l.append(l) }}", {"a list appended into itself"});
    expect_stopped("{% set l = [] %}{% set m = [l] %}{{ l.append(m) }}", {"a list appended into itself"});
    expect_stopped("{% set ns = namespace() %}{% set ns.me = ns %}", {"a namespace stored into itself"});
    expect_stopped("{% set ns = namespace() %}{% set ns.l = [[ns]] %}", {"a namespace stored into itself"});
    EXPECT_EQ(render("{% set l = [] %}{% set m = [1] %}{% set _ = l.append(m) %}{% set _ = l.append(m) %}{{ l|length }}"), "2");
}

TEST(ChatTemplateLimits, OutputIsBounded) {
    ChatTemplateOptions small;
    small.limits.max_output_bytes = 1000;
    EXPECT_EQ(render("{% for i in range(10) %}0123456789{% endfor %}", small).size(), 100u);
    const std::string e = test::error_of([&] { render("{% for i in range(200) %}0123456789{% endfor %}", small); });
    EXPECT_NE(e.find("output of"), std::string::npos) << e;
    ChatTemplateOptions little_work;
    little_work.limits.max_work = 500;
    EXPECT_NE(test::error_of([&] { render("{% for i in range(100) %}{{ i }}{% endfor %}", little_work); }).find("500 units"),
              std::string::npos);
}

TEST(ChatTemplateLimits, TemplateSizeAndNestingAreBounded) {
    expect_stopped(std::string(kMaxChatTemplateBytes + 1, 'x'), {"the chat template has 262145 bytes"});
    // Reproducer: 100k '(' overflowed the parser's stack.
    expect_stopped("{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}",
                   {"does not parse: brackets nested deeper than 64"});
    EXPECT_EQ(render("{{ " + std::string(64, '(') + "7" + std::string(64, ')') + " }}"), "7");
}

// Shapes the parser or the engine recurse on that the size bound leaves legal run on the render thread's
// large stack instead of overflowing the caller's (each used to crash on an 8 MB stack).
TEST(ChatTemplateLimits, DeepButLegalTemplatesRender) {
    std::string plus = "{{ 1";
    for (int i = 0; i < 100000; ++i) plus += "+1";
    EXPECT_EQ(render(plus + " }}"), "100001");
    std::string nots = "{{ ";
    for (int i = 0; i < 50000; ++i) nots += "not ";
    EXPECT_EQ(render(nots + "false }}"), "False");
    std::string ifs;
    for (int i = 0; i < 10000; ++i) ifs += "{% if 1 %}";
    ifs += "x";
    for (int i = 0; i < 10000; ++i) ifs += "{% endif %}";
    EXPECT_EQ(render(ifs), "x");
    // A list nested 20000 deep by a loop, printed (as nothing) and freed.
    EXPECT_EQ(render("{% for i in range(20000) %}{% set x = [x] %}{% if loop.last %}[{{ x }}]{% endif %}{% endfor %}"), "[]");
}

}  // namespace
}  // namespace lamina
