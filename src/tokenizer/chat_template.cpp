// Chat templates on llama.cpp's Jinja engine, with the bounds of chat_template.h.
//
// The engine (third_party/llama_jinja, unmodified) has no step counter, depth limit or allocation hook, so
// Lamina adds them from outside: after parsing, meter() replaces the AST nodes that loop, call, allocate or
// recurse with subclasses that charge a RenderBudget and then do what the engine's node does (a subclass
// keeps the node's type, which the engine checks with dynamic_cast). Arguments are evaluated once, checked,
// then handed to the engine's code as constants, so side effects happen once and in the engine's order.
//
// Bounded: template size and bracket nesting (the parser recurses on them); macro and caller() depth; work
// (statements, loop items, calls, range(), items and string pieces that builtins scan or make, and the
// quadratic split/replace of the engine); the size of every string a metered node makes, the output, and
// what indent, replace, join, format, tojson and string would make, checked before they run; cycles (a
// list appended into itself, a namespace stored in itself), which would recurse forever when printed.
// Rendering runs on a thread with a kRenderStackBytes stack, so the recursion that remains (a chain of
// 100k '+' in a 256 KiB template, a list nested 100k deep by a loop) fits.
// Not bounded: builtins Lamina does not check that allocate in proportion to an argument (none is known in
// this engine version besides those above; an update must re-read value.cpp), and a sort whose comparison
// is inconsistent (the engine's std::sort; no way to build one from a template is known).
#include "tokenizer/chat_template.h"

#include <pthread.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <functional>
#include <string_view>

#include "core/error.h"
// llama.cpp's Jinja engine and its JSON wrapper (third_party/llama_jinja/common).
#include "jinja/lexer.h"
#include "jinja/parser.h"
#include "jinja/runtime.h"
#include "json.h"

namespace lamina {

namespace {

using json = nlohmann::ordered_json;
using jinja::value;

// Brackets nested deeper than this are refused before parsing: each level costs the parser ~3 KB of stack.
constexpr int kMaxBracketDepth = 64;
// The render thread's stack: parsing, running and freeing a 256 KiB template of the deepest shapes, and
// values nested as deep as the work budget allows, take well under this (only the pages used are touched).
constexpr size_t kRenderStackBytes = size_t{256} << 20;

// Work units (ChatTemplateLimits::max_work), each about a microsecond of the engine's time.
constexpr int64_t kScopeCost = 10;       // a loop item or a call: the engine copies the scope's variables
constexpr int64_t kPiecesPerUnit = 16;   // string pieces (jinja::string parts) copied or scanned per unit
constexpr int64_t kBytesPerUnit = 16384; // string bytes copied or scanned per unit
// The engine keeps a string as a list of pieces, one per part concatenated ('x' * n has n): each costs
// about this much memory besides its bytes, and strings are sized with it.
constexpr size_t kPieceBytes = 48;

// Builtins that take constant time whatever their input's size: not charged for it (a loop that asks
// `messages|length` each turn must not cost the square of the conversation).
bool is_constant_time(const std::string& name) {
    static const char* const kNames[] = {"append", "length", "count", "first", "last", "default", "d",
                                         "get", "int", "float", "abs", "startswith", "endswith", "pop"};
    return std::any_of(std::begin(kNames), std::end(kNames), [&](const char* n) { return name == n; });
}

std::string where(const Vocab& vocab) { return vocab.source.empty() ? "the model" : vocab.source; }

// The variables transformers renders a template with (PreTrainedTokenizerBase.apply_chat_template:
// messages, tools, documents, add_generation_prompt, then the special tokens map, then kwargs).
json template_variables(const Vocab& vocab, const json& messages, const ChatTemplateOptions& options) {
    json vars = json::object();
    vars["messages"] = messages;
    vars["tools"] = options.tools;
    vars["documents"] = nullptr;
    vars["add_generation_prompt"] = options.add_generation_prompt;
    const std::pair<const char*, int32_t> special[] = {
        {"bos_token", vocab.bos_id}, {"eos_token", vocab.eos_id}, {"unk_token", vocab.unk_id}, {"pad_token", vocab.pad_id}};
    for (const auto& [name, id] : special) {
        if (id >= 0 && id < vocab.n_vocab()) vars[name] = vocab.tokens[static_cast<size_t>(id)];
    }
    if (options.date_string) vars["date_string"] = *options.date_string;
    if (!options.variables.is_null()) {
        if (!options.variables.is_object()) throw Error("chat template variables must be a JSON object");
        for (const auto& [key, value] : options.variables.items()) vars[key] = value;
    }
    return vars;
}

std::string_view trim(std::string_view s) {
    constexpr std::string_view kSpace = " \t\r\n";
    const size_t first = s.find_first_not_of(kSpace);
    if (first == std::string_view::npos) return {};
    return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

std::string_view first_line(std::string_view s) {
    s = trim(s);
    return s.substr(0, s.find('\n'));
}

// The engine's messages span several lines (a source excerpt with a caret under the position):
//   syntax:  "parser: <message>\n...<excerpt>...\n   ^"
//   runtime: "\n------------\nWhile executing <node> at line L, column C in source:\n<excerpt>\n   ^\n
//             Error: <message>", where raise_exception's message reads "Jinja Exception: <text>".
// Lamina prints errors on one line: keep the message and the position.
std::string render_error_line(std::string_view what) {
    constexpr std::string_view kWhile = "While executing ";
    constexpr std::string_view kError = "\nError: ";
    constexpr std::string_view kRaised = "Jinja Exception: ";
    const size_t error_at = what.rfind(kError);
    if (error_at == std::string_view::npos) return std::string(first_line(what));
    std::string_view message = trim(what.substr(error_at + kError.size()));
    std::string position;
    if (const size_t at = what.find(kWhile); at != std::string_view::npos) {
        std::string_view line = first_line(what.substr(at + kWhile.size()));
        if (const size_t in = line.rfind(" in source:"); in != std::string_view::npos) line = line.substr(0, in);
        position = " (while executing " + std::string(line) + ")";
    }
    // The message may span lines too: raise_exception's text is the template's, a string literal with newlines
    // in it (the fuzzer's find), and it would break the one-line error.
    const bool raised = message.starts_with(kRaised);
    std::string flat(raised ? message.substr(kRaised.size()) : message);
    for (char& c : flat) {
        if (c == '\n' || c == '\r') c = ' ';
    }
    return (raised ? "the chat template raised an exception: " : "rendering the chat template failed: ") + flat + position;
}

// ---- The budget ------------------------------------------------------------------------------------------

// What one render may still spend (ChatTemplateLimits). Every method throws std::runtime_error past a bound;
// the engine adds the template position and render() turns it into a lamina::Error.
class RenderBudget {
public:
    RenderBudget(const ChatTemplateLimits& limits, size_t input_bytes)
        : limits_(limits),
          max_bytes_(limits.max_output_bytes ? limits.max_output_bytes : (size_t{16} << 20) + 16 * input_bytes) {}

    // A scope copy costs more when the template names many variables (each is copied); `names` counts
    // the template's set, macro and for statements.
    void set_template_names(int64_t names) { scope_cost_ = kScopeCost + names / 4; }
    int64_t scope_cost() const { return scope_cost_; }

    void charge(int64_t units) {
        work_ += units;
        if (work_ > limits_.max_work) {
            throw std::runtime_error("the template needs more than " + std::to_string(limits_.max_work) +
                                     " units of work (a loop or a recursion too large for a chat prompt)");
        }
    }
    // The work of scanning or making `v`: its items, or its string pieces and bytes; a string must fit.
    void charge_size(const value& v) {
        if (jinja::is_val<jinja::value_array>(v)) {
            charge(static_cast<int64_t>(v->as_array().size()));
        } else if (jinja::is_val<jinja::value_object>(v)) {
            charge(static_cast<int64_t>(v->as_ordered_object().size()));
        } else if (jinja::is_val<jinja::value_string>(v)) {
            check_bytes(string_memory(v), "a string");
        }
    }
    // The memory string `v` takes: its bytes and its pieces.
    size_t string_memory(const value& v) { return string_bytes(v) + kPieceBytes * v->val_str.parts.size(); }
    // The bytes of string `v`, charging the work of reading its pieces.
    size_t string_bytes(const value& v) {
        const jinja::string& s = v->val_str;
        size_t bytes = 0;
        for (const auto& part : s.parts) bytes += part.val.size();
        charge(static_cast<int64_t>(s.parts.size()) / kPiecesPerUnit + static_cast<int64_t>(bytes) / kBytesPerUnit);
        return bytes;
    }
    // A string of `bytes` about to be made, or just made.
    void check_bytes(size_t bytes, const char* what) const {
        if (bytes > max_bytes_) {
            throw std::runtime_error(std::string(what) + " of " + std::to_string(bytes) + " bytes, more than the " +
                                     std::to_string(max_bytes_) + " a chat prompt may have");
        }
    }
    // A statement's output: counted against the output bound (and its flattening as work).
    void output(const value& v) {
        output_ += printed_bytes(v, "output");
        check_bytes(output_, "output");
    }
    // The bytes `v` prints as, the way the engine flattens output (strings, numbers, lists of them). Each
    // value visited is a unit of work, so a list of a million references to one long string costs what
    // printing it costs, and is refused before the engine concatenates it.
    // `what` names the result in the error past the bound.
    size_t printed_bytes(const value& v, const char* what) {
        if (jinja::is_val<jinja::value_string>(v)) return string_bytes(v);
        if (jinja::is_val<jinja::value_array>(v)) {
            size_t n = 0;
            for (const value& item : v->as_array()) {
                charge(1);
                n += printed_bytes(item, what);
                check_bytes(n, what);
            }
            return n;
        }
        if (jinja::is_val<jinja::value_int>(v) || jinja::is_val<jinja::value_float>(v)) return 24;
        return jinja::is_val<jinja::value_bool>(v) ? 5 : 0;
    }

    // Depth of nested calls, held for a call's duration.
    class Call {
    public:
        explicit Call(RenderBudget& b) : b_(b) {
            if (++b_.depth_ > b_.limits_.max_call_depth) {
                --b_.depth_;
                throw std::runtime_error("macro calls nested deeper than " + std::to_string(b_.limits_.max_call_depth) +
                                         " (a recursion without end?)");
            }
            b_.charge(b_.scope_cost_);
        }
        ~Call() { --b_.depth_; }
        Call(const Call&) = delete;
        Call& operator=(const Call&) = delete;

    private:
        RenderBudget& b_;
    };

private:
    const ChatTemplateLimits limits_;
    const size_t max_bytes_;
    int64_t scope_cost_ = kScopeCost;
    int64_t work_ = 0;
    size_t output_ = 0;
    int depth_ = 0;
};

// True when `target` can be reached from `v` (v itself, or an item or value within it): storing v into
// target would then make a cycle, which the engine would print, compare or free by recursing forever.
bool reaches(RenderBudget& budget, const value& v, const jinja::value_t* target) {
    if (v.get() == target) return true;
    if (jinja::is_val<jinja::value_array>(v)) {
        for (const value& item : v->as_array()) {
            budget.charge(1);
            if (reaches(budget, item, target)) return true;
        }
    } else if (jinja::is_val<jinja::value_object>(v)) {
        for (const auto& [key, item] : v->as_ordered_object()) {
            budget.charge(1);
            if (reaches(budget, item, target)) return true;
        }
    }
    return false;
}

// An upper bound on the bytes tojson (or string, on a list or object) writes for `v` with `indent`: every
// byte of a string escaped as \uXXXX, and every value on its own line indented to its depth.
size_t json_bytes(RenderBudget& budget, const value& v, size_t indent, size_t depth) {
    budget.charge(1);
    const size_t line = 16 + std::min(indent, SIZE_MAX / 1024) * depth;
    if (jinja::is_val<jinja::value_string>(v)) return 6 * budget.string_bytes(v) + line;
    size_t n = line;
    if (jinja::is_val<jinja::value_array>(v)) {
        for (const value& item : v->as_array()) {
            n += json_bytes(budget, item, indent, depth + 1);
            budget.check_bytes(n, "tojson()");
        }
    } else if (jinja::is_val<jinja::value_object>(v)) {
        for (const auto& [key, item] : v->as_ordered_object()) {
            n += json_bytes(budget, key, indent, depth + 1) + json_bytes(budget, item, indent, depth + 1);
            budget.check_bytes(n, "tojson()");
        }
    }
    return n;
}

// The checks before builtin `name` runs on `input` with `args` (func_args as the builtin gets them, input
// first): what it scans is work; what it would make must fit before it is made.
void check_builtin(RenderBudget& budget, const std::string& name, const value& input, const jinja::func_args& args) {
    if (!input) return;
    if (!is_constant_time(name)) budget.charge_size(input);
    auto text_of = [](const value& v) { return jinja::is_val<jinja::value_string>(v) ? v->val_str.str() : std::string(); };
    const bool is_string = jinja::is_val<jinja::value_string>(input);
    const size_t bytes = is_string ? input->val_str.length() : 0;  // its reading is charged above
    if (name == "append" && args.count() >= 2) {
        if (reaches(budget, args.get_pos(1), input.get())) throw std::runtime_error("a list appended into itself");
    } else if (name == "indent" && is_string) {
        const value width = args.get_kwarg_or_pos("width", 1);
        const std::string s = input->val_str.str();
        const auto lines = static_cast<size_t>(std::count(s.begin(), s.end(), '\n')) + 1;
        const size_t w = jinja::is_val<jinja::value_int>(width) && width->as_int() > 0 ? static_cast<size_t>(width->as_int())
                         : jinja::is_val<jinja::value_string>(width)                   ? budget.string_bytes(width)
                                                                                       : 4;
        budget.check_bytes(bytes + lines * std::min(w, SIZE_MAX / lines / 2), "indent()");
    } else if ((name == "replace" || name == "split" || name == "rsplit") && is_string && args.count() >= 2) {
        // The engine erases or replaces in place per occurrence: occurrences x length in time, and replace's
        // result grows by the replacement per occurrence (per byte for an empty pattern).
        const std::string s = input->val_str.str(), old = text_of(args.get_pos(1));
        size_t hits = old.empty() ? s.size() + 1 : 0;
        for (size_t at = old.empty() ? std::string::npos : s.find(old); at != std::string::npos; at = s.find(old, at + old.size())) ++hits;
        size_t longest = bytes;  // the string each occurrence moves: replace's result, as it grows
        if (name == "replace" && args.count() >= 3) {
            const size_t grow = text_of(args.get_pos(2)).size();
            longest = bytes + hits * std::min(grow, SIZE_MAX / (hits + 1));
            budget.check_bytes(longest, "replace()");
        }
        budget.charge(static_cast<int64_t>(hits) * (1 + static_cast<int64_t>(longest / kBytesPerUnit)));
    } else if (name == "list" && is_string) {
        budget.charge(static_cast<int64_t>(bytes));  // one string per character
    } else if (name == "join" && jinja::is_val<jinja::value_array>(input)) {
        const value sep = args.get_kwarg_or_pos("d", 1);
        const size_t sep_bytes = jinja::is_val<jinja::value_string>(sep) ? budget.string_bytes(sep) : 0;
        const size_t items = input->as_array().size();
        budget.check_bytes(budget.printed_bytes(input, "join()") + items * std::min(sep_bytes, SIZE_MAX / (items + 1)), "join()");
    } else if (name == "format" && is_string) {
        size_t n = bytes;
        for (const value& arg : args.get_args()) n += budget.printed_bytes(arg, "format()");
        budget.check_bytes(n, "format()");
    } else if (name == "tojson" || ((name == "string" || name == "safe") && !is_string)) {
        const value indent = args.get_kwarg_or_pos("indent", 1);
        const size_t per_level = jinja::is_val<jinja::value_int>(indent) && indent->as_int() > 0
                                     ? static_cast<size_t>(std::min<int64_t>(indent->as_int(), int64_t{1} << 30))
                                     : 0;
        budget.check_bytes(json_bytes(budget, input, per_level, 0), (name + "()").c_str());
    }
}

// ---- Metered nodes ---------------------------------------------------------------------------------------

// A value computed already, as an expression node: how checked arguments go back to the engine's code.
struct Constant : jinja::expression {
    explicit Constant(value v) : v(std::move(v)) {}
    value execute_impl(jinja::context&) const override { return v; }
    value v;
};

jinja::statement_ptr constant(value v) { return std::make_unique<Constant>(std::move(v)); }

// A statement of a block (a template's top level, a loop's body, a macro's, …): one unit of work, and its
// output counted against the output bound.
struct MeteredStatement : jinja::statement {
    MeteredStatement(jinja::statement_ptr inner, RenderBudget& budget) : inner(std::move(inner)), budget(budget) {
        pos = this->inner->pos;
    }
    std::string type() const override { return inner->type(); }
    value execute_impl(jinja::context& ctx) const override {
        budget.charge(1);
        value v = inner->execute(ctx);
        budget.output(v);
        return v;
    }
    jinja::statement_ptr inner;
    RenderBudget& budget;
};

// A loop's iterable: each item costs a scope copy before the loop starts.
struct MeteredIterable : jinja::expression {
    MeteredIterable(jinja::statement_ptr inner, RenderBudget& budget) : inner(std::move(inner)), budget(budget) {
        pos = this->inner->pos;
    }
    std::string type() const override { return inner->type(); }
    value execute_impl(jinja::context& ctx) const override {
        value v = inner->execute(ctx);
        if (jinja::is_val<jinja::value_array>(v)) budget.charge(budget.scope_cost() * static_cast<int64_t>(v->as_array().size()));
        if (jinja::is_val<jinja::value_object>(v)) {
            budget.charge(budget.scope_cost() * static_cast<int64_t>(v->as_ordered_object().size()));
        }
        return v;
    }
    jinja::statement_ptr inner;
    RenderBudget& budget;
};

// f(args): call_expression::execute_impl with the depth bound and the builtin checks.
struct MeteredCall : jinja::call_expression {
    MeteredCall(jinja::call_expression&& from, RenderBudget& budget)
        : jinja::call_expression(std::move(from.callee), std::move(from.args)), budget(budget) {
        pos = from.pos;
    }
    value execute_impl(jinja::context& ctx) const override {
        const RenderBudget::Call call(budget);
        jinja::func_args args(ctx);
        for (const auto& arg : this->args) args.push_back(arg->execute(ctx));
        value callee_val = callee->execute(ctx);
        if (!jinja::is_val<jinja::value_func>(callee_val)) {
            throw std::runtime_error("Callee is not a function: got " + callee_val->type());
        }
        const auto* f = jinja::cast_val<jinja::value_func>(callee_val);
        value input;
        if (f->arg0) {  // a builtin bound to its input: s.replace(…), list.append(…)
            input = f->arg0;
            jinja::func_args with_input(args);
            with_input.push_front(input);
            check_builtin(budget, f->name, input, with_input);
        } else if (args.count() > 0 && f->name == "tojson") {  // the global tojson(value, indent)
            input = args.get_pos(0);
            check_builtin(budget, f->name, input, args);
        }
        value result = f->invoke(args);
        if (result != input) budget.charge_size(result);  // a builtin returning its input made nothing
        return result;
    }
    RenderBudget& budget;
};

// {% call f() %}…{% endcall %}: a call too.
struct MeteredCallStatement : jinja::call_statement {
    MeteredCallStatement(jinja::call_statement&& from, RenderBudget& budget)
        : jinja::call_statement(std::move(from.call), std::move(from.caller_args), std::move(from.body)), budget(budget) {
        pos = from.pos;
    }
    value execute_impl(jinja::context& ctx) const override {
        const RenderBudget::Call call(budget);
        return jinja::call_statement::execute_impl(ctx);
    }
    RenderBudget& budget;
};

// x | f(args): the operand and arguments evaluated once, checked, then the engine's filter applied to them.
struct MeteredFilter : jinja::filter_expression {
    MeteredFilter(jinja::filter_expression&& from, RenderBudget& budget)
        : jinja::filter_expression(std::move(from.operand), std::move(from.filter)), budget(budget) {
        pos = from.pos;
    }
    value execute_impl(jinja::context& ctx) const override {
        budget.charge(1);
        value input = operand->execute(ctx);
        const auto* name = jinja::cast_stmt<jinja::identifier>(filter);
        const auto* call = jinja::cast_stmt<jinja::call_expression>(filter);
        if (call) name = jinja::cast_stmt<jinja::identifier>(call->callee);
        if (!name) return jinja::filter_expression(constant(input), nullptr).execute_impl(ctx);  // the engine's error
        jinja::func_args args(ctx);
        args.push_back(input);
        jinja::statements arg_nodes;
        if (call) {
            for (const auto& arg : call->args) {
                value v = arg->execute(ctx);
                args.push_back(v);
                arg_nodes.push_back(constant(std::move(v)));
            }
        }
        const std::string& id = name->val;
        check_builtin(budget, id == "trim" ? "strip" : id == "count" ? "length" : id, input, args);
        jinja::statement_ptr f = std::make_unique<jinja::identifier>(id);
        if (call) f = std::make_unique<jinja::call_expression>(std::move(f), std::move(arg_nodes));
        value result = jinja::filter_expression(constant(input), std::move(f)).execute_impl(ctx);
        if (result != input) budget.charge_size(result);
        return result;
    }
    RenderBudget& budget;
};

// x is test(args): the operand and arguments evaluated once and charged (`in` scans), then the engine's test.
struct MeteredTest : jinja::test_expression {
    MeteredTest(jinja::test_expression&& from, RenderBudget& budget)
        : jinja::test_expression(std::move(from.operand), from.negate, std::move(from.test)), budget(budget) {
        pos = from.pos;
    }
    value execute_impl(jinja::context& ctx) const override {
        budget.charge(1);
        value input = operand->execute(ctx);
        budget.charge_size(input);
        jinja::statement_ptr t;
        if (const auto* id = jinja::cast_stmt<jinja::identifier>(test)) {
            t = std::make_unique<jinja::identifier>(id->val);
        } else if (const auto* call = jinja::cast_stmt<jinja::call_expression>(test);
                   call && jinja::cast_stmt<jinja::identifier>(call->callee)) {
            jinja::statements args;
            for (const auto& arg : call->args) {
                value v = arg->execute(ctx);
                budget.charge_size(v);
                args.push_back(constant(std::move(v)));
            }
            t = std::make_unique<jinja::call_expression>(
                std::make_unique<jinja::identifier>(jinja::cast_stmt<jinja::identifier>(call->callee)->val), std::move(args));
        }
        return jinja::test_expression(constant(std::move(input)), negate, std::move(t)).execute_impl(ctx);  // no t: the engine's error
    }
    RenderBudget& budget;
};

// a op b: string repetition checked before it runs, every result sized after. `and` / `or` keep the
// engine's short circuit.
struct MeteredBinary : jinja::binary_expression {
    MeteredBinary(jinja::binary_expression&& from, RenderBudget& budget)
        : jinja::binary_expression(std::move(from.op), std::move(from.left), std::move(from.right)), budget(budget) {
        pos = from.pos;
    }
    value execute_impl(jinja::context& ctx) const override {
        budget.charge(1);
        if (op.value == "and" || op.value == "or") return jinja::binary_expression::execute_impl(ctx);
        value l = left->execute(ctx);
        value r = right->execute(ctx);
        budget.charge_size(l);
        budget.charge_size(r);
        if (op.value == "*") {
            const bool l_str = jinja::is_val<jinja::value_string>(l), r_str = jinja::is_val<jinja::value_string>(r);
            if ((l_str && jinja::is_val<jinja::value_int>(r)) || (r_str && jinja::is_val<jinja::value_int>(l))) {
                const size_t one = budget.string_memory(l_str ? l : r);  // the engine appends its pieces n times
                const int64_t times = (l_str ? r : l)->as_int();
                if (times > 0) {
                    const auto n = static_cast<uint64_t>(times);
                    budget.check_bytes(n > SIZE_MAX / one ? SIZE_MAX : one * n, "a repeated string");
                    budget.charge(static_cast<int64_t>(std::min<uint64_t>(n, INT64_MAX / 2)) / kPiecesPerUnit);
                }
            }
        } else if (op.value == "~" || (op.value == "+" && (jinja::is_val<jinja::value_string>(l) ||
                                                           jinja::is_val<jinja::value_string>(r)))) {
            budget.check_bytes(budget.printed_bytes(l, "a joined string") + budget.printed_bytes(r, "a joined string"),
                               "a joined string");
        }
        value result = jinja::binary_expression(op, constant(std::move(l)), constant(std::move(r))).execute_impl(ctx);
        budget.charge_size(result);
        return result;
    }
    RenderBudget& budget;
};

// {% set ns.attr = value %}: refused when the value holds ns (a cycle); other assignments as the engine does.
struct MeteredSet : jinja::set_statement {
    MeteredSet(jinja::set_statement&& from, RenderBudget& budget)
        : jinja::set_statement(std::move(from.assignee), std::move(from.val), std::move(from.body)), budget(budget) {
        pos = from.pos;
    }
    value execute_impl(jinja::context& ctx) const override {
        const auto* member = jinja::cast_stmt<jinja::member_expression>(assignee);
        if (!member || !val) return jinja::set_statement::execute_impl(ctx);
        value rhs = val->execute(ctx);
        // The engine's member assignment, on the value computed once.
        if (member->computed) throw std::runtime_error("Cannot assign to computed member");
        const auto* prop = jinja::cast_stmt<jinja::identifier>(member->property);
        if (!prop) throw std::runtime_error("Cannot assign to member with non-identifier property");
        value object = member->object->execute(ctx);
        if (!jinja::is_val<jinja::value_object>(object)) throw std::runtime_error("Cannot assign to member of non-object");
        if (reaches(budget, rhs, object.get())) throw std::runtime_error("a namespace stored into itself");
        jinja::cast_val<jinja::value_object>(object)->insert(prop->val, rhs);
        return jinja::mk_val<jinja::value_undefined>();
    }
    RenderBudget& budget;
};

// range(...) as the engine's, after charging the items it will make.
value bounded_range(RenderBudget& budget, const jinja::func_args& args) {
    auto int_at = [&](size_t i) { return jinja::is_val<jinja::value_int>(args.get_pos(i)) ? args.get_pos(i)->as_int() : 0; };
    const size_t n = args.count();
    const int64_t start = n >= 2 ? int_at(0) : 0, stop = n >= 2 ? int_at(1) : n == 1 ? int_at(0) : 0, step = n == 3 ? int_at(2) : 1;
    if (step != 0 && (step > 0 ? stop > start : start > stop)) {
        // Items: ceil(|stop - start| / |step|), in unsigned arithmetic so no int64 overflows.
        const uint64_t span = step > 0 ? static_cast<uint64_t>(stop) - static_cast<uint64_t>(start)
                                       : static_cast<uint64_t>(start) - static_cast<uint64_t>(stop);
        const uint64_t mag = step > 0 ? static_cast<uint64_t>(step) : static_cast<uint64_t>(-(step + 1)) + 1;
        const uint64_t items = span / mag + (span % mag != 0);
        budget.charge(static_cast<int64_t>(std::min<uint64_t>(items, INT64_MAX / 2)));
    }
    return jinja::global_builtins().at("range")(args);
}

// Replaces, in place, every node of the subtree at `node` that meter() meters. Children the engine checks
// by type (a filter's callee, a loop variable, a macro's name and parameters, an assignee) keep their node.
void meter(jinja::statement_ptr& node, RenderBudget& budget);

void meter_block(jinja::statements& block, RenderBudget& budget) {
    for (auto& stmt : block) {
        meter(stmt, budget);
        stmt = std::make_unique<MeteredStatement>(std::move(stmt), budget);
    }
}

void meter_all(jinja::statements& nodes, RenderBudget& budget) {
    for (auto& n : nodes) meter(n, budget);
}

void meter(jinja::statement_ptr& node, RenderBudget& budget) {
    using namespace jinja;
    statement* s = node.get();
    if (!s) return;
    if (auto* x = dynamic_cast<if_statement*>(s)) {
        meter(x->test, budget);
        meter_block(x->body, budget);
        meter_block(x->alternate, budget);
    } else if (auto* x = dynamic_cast<for_statement*>(s)) {
        // The engine checks for a select_expression (`for x in xs if cond`); its lhs is the iterable then.
        auto* select = dynamic_cast<select_expression*>(x->iterable.get());
        statement_ptr& iterable = select ? select->lhs : x->iterable;
        if (select) meter(select->test, budget);
        meter(iterable, budget);
        iterable = std::make_unique<MeteredIterable>(std::move(iterable), budget);
        meter_block(x->body, budget);
        meter_block(x->default_block, budget);
    } else if (auto* x = dynamic_cast<set_statement*>(s)) {
        meter(x->val, budget);
        meter_block(x->body, budget);
        if (auto* member = dynamic_cast<member_expression*>(x->assignee.get())) meter(member->object, budget);
        node = std::make_unique<MeteredSet>(std::move(*x), budget);
    } else if (auto* x = dynamic_cast<macro_statement*>(s)) {
        for (auto& arg : x->args) {
            if (auto* kw = dynamic_cast<keyword_argument_expression*>(arg.get())) meter(kw->val, budget);
        }
        meter_block(x->body, budget);
    } else if (auto* x = dynamic_cast<filter_statement*>(s)) {
        if (auto* call = dynamic_cast<call_expression*>(x->filter.get())) meter_all(call->args, budget);
        meter_block(x->body, budget);
    } else if (auto* x = dynamic_cast<call_statement*>(s)) {
        if (auto* call = dynamic_cast<call_expression*>(x->call.get())) {
            meter(call->callee, budget);
            meter_all(call->args, budget);
        }
        for (auto& arg : x->caller_args) {
            if (auto* kw = dynamic_cast<keyword_argument_expression*>(arg.get())) meter(kw->val, budget);
        }
        meter_block(x->body, budget);
        node = std::make_unique<MeteredCallStatement>(std::move(*x), budget);
    } else if (auto* x = dynamic_cast<member_expression*>(s)) {
        meter(x->object, budget);
        if (auto* slice = dynamic_cast<slice_expression*>(x->property.get())) {
            meter(slice->start_expr, budget);
            meter(slice->stop_expr, budget);
            meter(slice->step_expr, budget);
        } else if (x->computed) {
            meter(x->property, budget);
        }
    } else if (auto* x = dynamic_cast<call_expression*>(s)) {
        meter(x->callee, budget);
        meter_all(x->args, budget);
        node = std::make_unique<MeteredCall>(std::move(*x), budget);
    } else if (auto* x = dynamic_cast<filter_expression*>(s)) {
        meter(x->operand, budget);
        if (auto* call = dynamic_cast<call_expression*>(x->filter.get())) meter_all(call->args, budget);
        node = std::make_unique<MeteredFilter>(std::move(*x), budget);
    } else if (auto* x = dynamic_cast<test_expression*>(s)) {
        meter(x->operand, budget);
        if (auto* call = dynamic_cast<call_expression*>(x->test.get())) meter_all(call->args, budget);
        node = std::make_unique<MeteredTest>(std::move(*x), budget);
    } else if (auto* x = dynamic_cast<binary_expression*>(s)) {
        meter(x->left, budget);
        meter(x->right, budget);
        node = std::make_unique<MeteredBinary>(std::move(*x), budget);
    } else if (auto* x = dynamic_cast<unary_expression*>(s)) {
        meter(x->argument, budget);
    } else if (auto* x = dynamic_cast<select_expression*>(s)) {
        meter(x->lhs, budget);
        meter(x->test, budget);
    } else if (auto* x = dynamic_cast<ternary_expression*>(s)) {
        meter(x->condition, budget);
        meter(x->true_expr, budget);
        meter(x->false_expr, budget);
    } else if (auto* x = dynamic_cast<keyword_argument_expression*>(s)) {
        meter(x->val, budget);
    } else if (auto* x = dynamic_cast<spread_expression*>(s)) {
        meter(x->argument, budget);
    } else if (auto* x = dynamic_cast<array_literal*>(s)) {
        meter_all(x->val, budget);
    } else if (auto* x = dynamic_cast<tuple_literal*>(s)) {
        meter_all(x->val, budget);
    } else if (auto* x = dynamic_cast<object_literal*>(s)) {
        for (auto& [key, val] : x->val) {
            meter(key, budget);
            meter(val, budget);
        }
    }
}

// The template's set, macro and for statements: an estimate of how many variables a scope holds.
int64_t count_names(const jinja::lexer_result& lexed) {
    int64_t n = 0;
    for (size_t i = 0; i + 1 < lexed.tokens.size(); ++i) {
        const jinja::token& t = lexed.tokens[i + 1];
        if (lexed.tokens[i].t == jinja::token::open_statement && t.t == jinja::token::identifier &&
            (t.value == "set" || t.value == "macro" || t.value == "for")) {
            ++n;
        }
    }
    return n;
}

// The brackets' nesting, from the lexer's tokens, before the parser recurses on it.
void check_nesting(const jinja::lexer_result& lexed) {
    int depth = 0;
    for (const jinja::token& t : lexed.tokens) {
        if (t.t == jinja::token::open_paren || t.t == jinja::token::open_square_bracket ||
            t.t == jinja::token::open_curly_bracket) {
            if (++depth > kMaxBracketDepth) {
                throw std::runtime_error("brackets nested deeper than " + std::to_string(kMaxBracketDepth) +
                                         " at byte " + std::to_string(t.pos));
            }
        } else if (t.t == jinja::token::close_paren || t.t == jinja::token::close_square_bracket ||
                   t.t == jinja::token::close_curly_bracket) {
            depth = std::max(depth - 1, 0);
        }
    }
}

// Runs `f` on a thread with a kRenderStackBytes stack and returns its result or rethrows its exception.
std::string on_render_thread(const std::function<std::string()>& f) {
    struct Job {
        const std::function<std::string()>* f;
        std::string result;
        std::exception_ptr error;
    } job{&f, {}, nullptr};
    auto run = [](void* p) -> void* {
        auto* j = static_cast<Job*>(p);
        try {
            j->result = (*j->f)();
        } catch (...) {
            j->error = std::current_exception();
        }
        return nullptr;
    };
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, kRenderStackBytes);
    pthread_t thread;
    const int rc = pthread_create(&thread, &attr, run, &job);
    pthread_attr_destroy(&attr);
    if (rc != 0) throw Error(std::string("cannot start the chat template thread: ") + std::strerror(rc));
    pthread_join(thread, nullptr);
    if (job.error) std::rethrow_exception(job.error);
    return std::move(job.result);
}

std::string render(const Vocab& vocab, const json& messages, const ChatTemplateOptions& options) {
    if (vocab.chat_template.empty()) {
        throw Error(where(vocab) +
                    ": the model has no chat template (no tokenizer.chat_template in the GGUF, no chat_template in "
                    "tokenizer_config.json or chat_template.jinja); give the prompt as plain text instead");
    }
    if (vocab.chat_template.size() > kMaxChatTemplateBytes) {
        throw Error(where(vocab) + ": the chat template has " + std::to_string(vocab.chat_template.size()) +
                    " bytes, more than the " + std::to_string(kMaxChatTemplateBytes) + " Lamina accepts");
    }
    if (!messages.is_array()) throw Error("chat messages must be a JSON array");
    const std::string vars = template_variables(vocab, messages, options).dump();

    return on_render_thread([&]() -> std::string {
        jinja::program program;
        RenderBudget budget(options.limits, vars.size());
        try {
            jinja::lexer lexer;
            const jinja::lexer_result lexed = lexer.tokenize(vocab.chat_template);
            check_nesting(lexed);
            budget.set_template_names(count_names(lexed));
            program = jinja::parse_from_tokens(lexed);
        } catch (const std::exception& e) {
            throw Error(where(vocab) + ": the chat template does not parse: " + std::string(first_line(e.what())));
        }
        meter_block(program.body, budget);
        try {
            // The source is given so runtime errors name a line and column.
            jinja::context ctx(vocab.chat_template);
            jinja::global_from_json(ctx, common_json::parse(vars), /*mark_input=*/false);
            if (ctx.get_val("range")->is_undefined()) {
                ctx.set_val("range", jinja::mk_val<jinja::value_func>(
                                         "range", [&budget](const jinja::func_args& args) { return bounded_range(budget, args); }));
            }
            jinja::runtime runtime(ctx);
            const jinja::value_array results = runtime.execute(program);
            std::string out = jinja::runtime::gather_string_parts(results)->as_string().str();
            budget.check_bytes(out.size(), "output");
            return out;
        } catch (const std::exception& e) {
            throw Error(where(vocab) + ": " + render_error_line(e.what()));
        }
    });
}

}  // namespace

std::string apply_chat_template_json(const Vocab& vocab, const nlohmann::ordered_json& messages,
                                     const ChatTemplateOptions& options) {
    return render(vocab, messages, options);
}

std::string apply_chat_template(const Vocab& vocab, const std::vector<ChatMessage>& messages,
                                const ChatTemplateOptions& options) {
    json list = json::array();
    for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
    return render(vocab, list, options);
}

std::string apply_chat_template(const Vocab& vocab, const std::vector<std::pair<std::string, std::string>>& messages,
                                bool add_generation_prompt) {
    std::vector<ChatMessage> list;
    list.reserve(messages.size());
    for (const auto& [role, content] : messages) list.push_back({role, content});
    ChatTemplateOptions options;
    options.add_generation_prompt = add_generation_prompt;
    return apply_chat_template(vocab, list, options);
}

}  // namespace lamina
