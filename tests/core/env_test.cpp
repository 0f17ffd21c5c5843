// The development switches' parsing (core/env.h): unset and empty take the fallback, good values are taken,
// and anything else is a one-line lamina::Error naming the variable, its value and what it takes.
#include "core/env.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "../test_util.h"

namespace lamina {
namespace {

using test::error_of;

constexpr const char* kVar = "LAMINA_ENV_TEST_SWITCH";

class Env : public ::testing::Test {
protected:
    void TearDown() override { unsetenv(kVar); }
    static void set(const char* v) { setenv(kVar, v, 1); }
};

TEST_F(Env, UnsetAndEmptyTakeTheFallback) {
    unsetenv(kVar);
    EXPECT_TRUE(env_switch(kVar, true));
    EXPECT_EQ(env_int(kVar, 7), 7);
    EXPECT_EQ(env_choice(kVar, 2, {0, 1, 2}), 2);
    set("");
    EXPECT_FALSE(env_switch(kVar, false));
    EXPECT_EQ(env_int(kVar, 7), 7);
    EXPECT_EQ(env_choice(kVar, 0, {1, 2, 4, 8}), 0);
}

TEST_F(Env, GoodValuesAreTaken) {
    set("0");
    EXPECT_FALSE(env_switch(kVar, true));
    EXPECT_EQ(env_choice(kVar, 2, {0, 1, 2}), 0);
    EXPECT_EQ(env_int(kVar, 10, 0), 0) << "0 where the switch takes it (a watchdog's 'never')";
    set("1");
    EXPECT_TRUE(env_switch(kVar, false));
    set("8");
    EXPECT_EQ(env_choice(kVar, 0, {1, 2, 4, 8}), 8);
    set("1024");
    EXPECT_EQ(env_int(kVar, 7), 1024);
}

TEST_F(Env, OtherValuesAreOneLineErrors) {
    set("yes");
    EXPECT_EQ(error_of([] { env_switch(kVar, false); }), "LAMINA_ENV_TEST_SWITCH=yes: expected 0 or 1");
    set("2");
    EXPECT_EQ(error_of([] { env_switch(kVar, false); }), "LAMINA_ENV_TEST_SWITCH=2: expected 0 or 1");
    set("3");
    EXPECT_EQ(error_of([] { env_choice(kVar, 0, {1, 2, 4, 8}); }), "LAMINA_ENV_TEST_SWITCH=3: expected 1, 2, 4 or 8");
    EXPECT_EQ(error_of([] { env_choice(kVar, 2, {0, 1, 2}); }), "LAMINA_ENV_TEST_SWITCH=3: expected 0, 1 or 2");
    for (const char* bad : {"0", "-4", "12x", "x", "99999999999"}) {
        set(bad);
        EXPECT_EQ(error_of([] { env_int(kVar, 7); }), std::string(kVar) + "=" + bad + ": expected a positive integer");
    }
    set("-1");
    EXPECT_EQ(error_of([] { env_int(kVar, 10, 0); }), "LAMINA_ENV_TEST_SWITCH=-1: expected an integer >= 0");
}

}  // namespace
}  // namespace lamina
