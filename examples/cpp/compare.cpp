// The C example (examples/c/compare.c) with the C++ wrapper elpips.hpp: two synthetic 64x64
// RGB8 buffers, E-LPIPS with a fixed seed and sample count; also one candidate compared against
// a prepared reference. Build against an installed elpips:
//
//   c++ -std=c++17 compare.cpp $(pkg-config --cflags --libs elpips) -o compare_cpp
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "elpips.hpp"

namespace {
constexpr std::uint32_t kWidth = 64, kHeight = 64;

std::vector<std::uint8_t> pattern(std::uint8_t shift) {
    std::vector<std::uint8_t> rgb(kWidth * kHeight * 3);
    for (std::uint32_t y = 0; y < kHeight; ++y)
        for (std::uint32_t x = 0; x < kWidth; ++x) {
            std::uint8_t *px = &rgb[(y * kWidth + x) * 3];
            px[0] = static_cast<std::uint8_t>((x * 7) ^ shift);
            px[1] = static_cast<std::uint8_t>(y * 5);
            px[2] = static_cast<std::uint8_t>((x + y) * 3);
        }
    return rgb;
}
}  // namespace

int main(int argc, char **argv) {
    try {
        elpips::Options options;
        options.raw.seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 7;
        options.raw.sampling = ELPIPS_SAMPLING_FIXED;
        options.raw.samples = argc > 2 ? static_cast<std::uint32_t>(std::strtoul(argv[2], nullptr, 10)) : 4;
        options.raw.threads = 1;
        elpips::Context ctx(options);

        auto reference_px = pattern(0), candidate_px = pattern(0x55);
        auto reference = elpips::ImageView::rgb8(reference_px.data(), kWidth, kHeight);
        auto candidate = elpips::ImageView::rgb8(candidate_px.data(), kWidth, kHeight);
        elpips::Result direct = ctx.compare(reference, candidate);
        elpips::Reference prepared = ctx.prepare(reference);
        elpips::Result via_reference = ctx.compare(prepared, candidate);
        std::printf("{\"library\": \"%s\", \"distance\": %.17g, \"ci95\": %.17g, \"samples\": %llu, "
                    "\"prepared_equal\": %s}\n",
                    elpips::version().c_str(), direct.distance, direct.ci95,
                    static_cast<unsigned long long>(direct.samples),
                    direct.distance == via_reference.distance ? "true" : "false");

        // Errors arrive as exceptions carrying the status and the message.
        try {
            ctx.compare(reference, elpips::ImageView::rgb8(candidate_px.data(), kWidth, kHeight - 1));
        } catch (const elpips::Error &e) {
            if (e.status() != ELPIPS_STATUS_SIZE_MISMATCH) throw;
        }
        return 0;
    } catch (const elpips::Error &e) {
        std::fprintf(stderr, "compare_cpp: %s (status %d)\n", e.what(), static_cast<int>(e.status()));
        return 2;
    }
}
