/* Compares two synthetic 64x64 RGB8 buffers with E-LPIPS through the C API and prints the
 * result as JSON. Build against an installed elpips:
 *
 *   cc -std=c99 compare.c $(pkg-config --cflags --libs elpips) -o compare
 *
 * Usage: compare [SEED [SAMPLES]] (defaults 7 and 4). The pattern is the one tests/capi.rs and
 * tests/c write as PNG files, so `elpips compare --json --seed SEED --samples SAMPLES` on those
 * files prints the same distance. */
#include <stdio.h>
#include <stdlib.h>

#include "elpips.h"

#define W 64
#define H 64

/* Red: (7x) XOR shift; green: 5y; blue: 3(x + y), all mod 256. */
static void fill(unsigned char *rgb, unsigned char shift) {
    int x, y;
    for (y = 0; y < H; y++)
        for (x = 0; x < W; x++) {
            unsigned char *px = rgb + (y * W + x) * 3;
            px[0] = (unsigned char)((x * 7) ^ shift);
            px[1] = (unsigned char)(y * 5);
            px[2] = (unsigned char)((x + y) * 3);
        }
}

int main(int argc, char **argv) {
    static unsigned char reference_px[W * H * 3], candidate_px[W * H * 3];
    ElpipsOptions options;
    ElpipsContext *ctx = NULL;
    ElpipsImage reference = {0}, candidate = {0};
    ElpipsResult result;
    ElpipsStatus status;
    char message[512];

    fill(reference_px, 0);
    fill(candidate_px, 0x55);

    elpips_options_default(&options, sizeof options);
    options.seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 7;
    options.sampling = ELPIPS_SAMPLING_FIXED;
    options.samples = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 4;
    options.threads = 1;
    status = elpips_context_new_with_error(&options, &ctx, message, sizeof message);
    if (status != ELPIPS_OK) {
        fprintf(stderr, "compare: %s: %s\n", elpips_status_str(status), message);
        return 2;
    }

    reference.data = reference_px;
    reference.width = W;
    reference.height = H;
    reference.format = ELPIPS_PIXEL_FORMAT_RGB8; /* stride 0: packed rows; transfer 0: sRGB */
    candidate = reference;
    candidate.data = candidate_px;

    status = elpips_compare(ctx, &reference, &candidate, &result);
    if (status != ELPIPS_OK) {
        fprintf(stderr, "compare: %s: %s\n", elpips_status_str(status), elpips_last_error(ctx));
        elpips_context_free(ctx);
        return 2;
    }
    printf("{\"library\": \"%s\", \"distance\": %.17g, \"std_error\": %.17g, \"ci95\": %.17g, "
           "\"samples\": %llu, \"scale_levels\": %u, \"seed\": %llu}\n",
           elpips_version(), result.distance, result.std_error, result.ci95,
           (unsigned long long)result.samples, result.scale_levels,
           (unsigned long long)options.seed);
    elpips_context_free(ctx);
    return 0;
}
