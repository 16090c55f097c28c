// elpips_gtest.hpp: GoogleTest assertions on the E-LPIPS distance, over elpips.hpp (C++17).
//
//   #include <elpips_gtest.hpp>
//
//   TEST(Denoiser, KeepsTheCornellBox) {
//       EXPECT_ELPIPS_BELOW("golden/cornell.png", "out/cornell.png", 0.05);   // file paths
//       ASSERT_ELPIPS_BELOW(reference_view, candidate_view, 0.05);           // elpips::ImageView
//   }
//
// Each assertion is a sequential gate (elpips_decide, as `elpips check`): sampling stops as soon
// as the distance is shown below or above the threshold at a 5% error rate (8 samples first, at
// most 200). A pair still undecided then is settled by the side its estimate lies on, and the
// message says so. A failure prints the distance, its 95% half-width, the sample count and both
// expressions:
//
//   E-LPIPS distance of "out/cornell.png" from "golden/cornell.png" is 0.1123 ± 0.0031
//   (95%, 8 samples), above the allowed 0.05
//
// Change the gate's error rate or sample counts through elpips::gtest::gate() (its threshold is
// each assertion's own).
//
// One elpips::Context per test program, made on first use with elpips::gtest::options() (the
// library's defaults: E-LPIPS VGG, adaptive sampling, seed 0, so a verdict is the same every
// run). Change them before the first assertion, e.g. in main() or a global Environment:
//
//   elpips::gtest::options().raw.seed = 7;
//
// The context is shared by all tests and threads (the library serialises calls on it). A bad
// input (missing file, size mismatch) fails the assertion with the library's message; nothing
// throws out of an assertion. Link: libelpips (pkg-config elpips, or CMake elpips::elpips) and
// GTest.
#ifndef ELPIPS_GTEST_HPP
#define ELPIPS_GTEST_HPP

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include <gtest/gtest.h>

#include "elpips.hpp"

namespace elpips {
namespace gtest {

// The options of the shared context; read once, when the first assertion runs.
inline Options &options() {
    static Options opts;
    return opts;
}

// The gate's error rate and sample counts (zero: the library's defaults).
inline Gate &gate() {
    static Gate g{};
    return g;
}

// The shared context (made on first use; throws elpips::Error if the library cannot load).
inline Context &context() {
    static std::once_flag once;
    static std::unique_ptr<Context> ctx;
    std::call_once(once, [] { ctx.reset(new Context(options())); });
    return *ctx;
}

namespace detail {

inline std::string quoted(const std::string &s) { return "\"" + s + "\""; }
inline std::string describe(const char *, const std::string &path) { return quoted(path); }
inline std::string describe(const char *, const char *path) { return quoted(path); }
inline std::string describe(const char *expr, const ImageView &) { return expr; }

inline Decision measure(const std::string &reference, const std::string &candidate, const Gate &g) {
    return context().decide_files(reference, candidate, g);
}
inline Decision measure(const ImageView &reference, const ImageView &candidate, const Gate &g) {
    return context().decide(reference, candidate, g);
}
inline std::string path(const char *p) { return p; }
inline const std::string &path(const std::string &p) { return p; }
inline const ImageView &path(const ImageView &v) { return v; }

inline std::string format(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4f", x);
    return buf;
}

}  // namespace detail

// The predicate-formatter behind the macros (usable with EXPECT_PRED_FORMAT3 directly).
// Reference and candidate: both file paths (const char * / std::string) or both ImageViews.
template <typename R, typename C>
::testing::AssertionResult DistanceBelow(const char *reference_expr, const char *candidate_expr,
                                         const char *threshold_expr, const R &reference,
                                         const C &candidate, double threshold) {
    const std::string what = "E-LPIPS distance of " + detail::describe(candidate_expr, candidate) +
                             " from " + detail::describe(reference_expr, reference);
    Gate g = gate();
    g.threshold = threshold;
    Decision d{};
    try {
        d = detail::measure(detail::path(reference), detail::path(candidate), g);
    } catch (const std::exception &e) {
        return ::testing::AssertionFailure() << what << " could not be measured: " << e.what();
    }
    const Result &r = d.estimate;
    std::string figures = detail::format(r.distance) + " ± " + detail::format(r.ci95) + " (95%, " +
                          std::to_string(r.samples) + " samples)";
    const bool undecided = d.verdict == ELPIPS_SIDE_UNDECIDED;
    if (undecided) figures += " [undecided at the sample cap: settled by the estimate]";
    if (undecided ? d.estimate_below : d.verdict == ELPIPS_SIDE_BELOW) {
        return ::testing::AssertionSuccess() << what << " is " << figures;
    }
    return ::testing::AssertionFailure() << what << " is " << figures << ", above the allowed "
                                         << threshold_expr;
}

}  // namespace gtest
}  // namespace elpips

// Passes when the E-LPIPS distance of `candidate` from `reference` is at most `threshold`.
#define EXPECT_ELPIPS_BELOW(reference, candidate, threshold) \
    EXPECT_PRED_FORMAT3(::elpips::gtest::DistanceBelow, reference, candidate, threshold)
#define ASSERT_ELPIPS_BELOW(reference, candidate, threshold) \
    ASSERT_PRED_FORMAT3(::elpips::gtest::DistanceBelow, reference, candidate, threshold)

#endif  // ELPIPS_GTEST_HPP
