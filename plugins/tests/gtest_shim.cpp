// Tests of plugins/gtest/elpips_gtest.hpp: the macros pass and fail where they should, and say why.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <elpips_gtest.hpp>

namespace {

// Two test images of the LPIPS 2AFC set (64x64): a reference and a visibly distorted version.
std::string images() {
    const char *dir = std::getenv("ELPIPS_TEST_IMAGES");
    return dir ? dir : "";
}
// EXPECT_(NON)FATAL_FAILURE statements may not use locals: these are the paths they check.
std::string g_reference, g_distorted;

// A smooth 64x64 gradient and the same with a bright square pasted in.
std::vector<std::uint8_t> gradient(bool with_square) {
    std::vector<std::uint8_t> px(64 * 64 * 3);
    for (int y = 0; y < 64; ++y) {
        for (int x = 0; x < 64; ++x) {
            std::uint8_t *p = &px[(y * 64 + x) * 3];
            p[0] = static_cast<std::uint8_t>(x * 4);
            p[1] = static_cast<std::uint8_t>(y * 4);
            p[2] = static_cast<std::uint8_t>(128);
            if (with_square && x >= 20 && x < 44 && y >= 20 && y < 44) p[0] = p[1] = p[2] = 250;
        }
    }
    return px;
}

TEST(ElpipsGtest, IdenticalFilesPass) {
    EXPECT_ELPIPS_BELOW(g_reference, g_reference, 0.001);
    ASSERT_ELPIPS_BELOW(g_reference.c_str(), g_reference, 0.001);
}

TEST(ElpipsGtest, DistortedFileFailsWithTheFigures) {
    EXPECT_NONFATAL_FAILURE(EXPECT_ELPIPS_BELOW(g_reference, g_distorted, 0.01),
                            "above the allowed 0.01");
    EXPECT_FATAL_FAILURE(ASSERT_ELPIPS_BELOW(g_reference, g_distorted, 0.01), "samples)");
}

TEST(ElpipsGtest, GenerousThresholdPassesTheDistortedFile) {
    EXPECT_ELPIPS_BELOW(g_reference, g_distorted, 0.9);
    // A clear verdict is a sequential gate's first look (8 samples), not a full estimate.
    const ::testing::AssertionResult r =
        elpips::gtest::DistanceBelow("ref", "cand", "0.9", g_reference, g_distorted, 0.9);
    EXPECT_TRUE(r);
    const std::string message = r.message();
    EXPECT_NE(message.find("(95%, 8 samples)"), std::string::npos) << message;
}

TEST(ElpipsGtest, PixelBuffers) {
    const std::vector<std::uint8_t> a = gradient(false), b = gradient(true);
    const elpips::ImageView ref = elpips::ImageView::rgb8(a.data(), 64, 64);
    const elpips::ImageView cand = elpips::ImageView::rgb8(b.data(), 64, 64);
    EXPECT_ELPIPS_BELOW(ref, ref, 0.001);
    const ::testing::AssertionResult r = elpips::gtest::DistanceBelow("ref", "cand", "0.001", ref, cand, 0.001);
    EXPECT_FALSE(r);
    const std::string message = r.message();
    EXPECT_NE(message.find("E-LPIPS distance of cand from ref is"), std::string::npos) << message;
}

TEST(ElpipsGtest, BadInputFailsInsteadOfThrowing) {
    const ::testing::AssertionResult r =
        elpips::gtest::DistanceBelow("a", "b", "0.1", g_reference, std::string("no/such/file.png"), 0.1);
    EXPECT_FALSE(r);
    const std::string message = r.message();
    EXPECT_NE(message.find("could not be measured"), std::string::npos) << message;
    EXPECT_NE(message.find("no/such/file.png"), std::string::npos) << message;

    const std::vector<std::uint8_t> a = gradient(false);
    const elpips::ImageView big = elpips::ImageView::rgb8(a.data(), 64, 64);
    const elpips::ImageView small = elpips::ImageView::rgb8(a.data(), 32, 32);
    EXPECT_FALSE(elpips::gtest::DistanceBelow("big", "small", "0.1", big, small, 0.1));
}

}  // namespace

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    if (images().empty()) {
        std::fprintf(stderr, "set ELPIPS_TEST_IMAGES to the folder of ex_ref.png and ex_p0.png\n");
        return 2;
    }
    g_reference = images() + "/ex_ref.png";
    g_distorted = images() + "/ex_p0.png";
    // Options apply to the shared context made by the first assertion: few samples keep it quick.
    elpips::gtest::options().raw.sampling = ELPIPS_SAMPLING_FIXED;
    elpips::gtest::options().raw.samples = 8;
    elpips::gtest::options().raw.seed = 1;
    return RUN_ALL_TESTS();
}
