/* A tiny test harness shared by the C test programs: checks that count failures instead of
 * aborting (so one run reports them all), and helpers for synthetic images and contexts.
 * Images are tiny and sample counts small so the programs stay fast under valgrind. */
#ifndef ELPIPS_TEST_HARNESS_H
#define ELPIPS_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elpips.h"

static int harness_failures = 0;
static int harness_checks = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        harness_checks++;                                                            \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            harness_failures++;                                                      \
        }                                                                            \
    } while (0)

/* Checks that `expr` returns `want`; on a mismatch prints both statuses and the context's
 * last error (ctx may be NULL). */
#define CHECK_STATUS(ctx, expr, want)                                                        \
    do {                                                                                     \
        ElpipsStatus got_ = (expr);                                                          \
        harness_checks++;                                                                    \
        if (got_ != (want)) {                                                                \
            fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %d (%s); last error: %s\n",  \
                    __FILE__, __LINE__, #expr, (int)got_, elpips_status_str(got_), (int)(want), \
                    elpips_status_str(want), elpips_last_error(ctx));                        \
            harness_failures++;                                                              \
        }                                                                                    \
    } while (0)

/* Checks that the context's last error mentions `needle`. */
#define CHECK_MESSAGE(ctx, needle)                                                         \
    do {                                                                                   \
        const char *msg_ = elpips_last_error(ctx);                                         \
        harness_checks++;                                                                  \
        if (strstr(msg_, (needle)) == NULL) {                                              \
            fprintf(stderr, "%s:%d: last error \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, \
                    msg_, (needle));                                                       \
            harness_failures++;                                                            \
        }                                                                                  \
    } while (0)

/* Prints the summary; the program's exit status. */
static inline int harness_finish(const char *name) {
    if (harness_failures) {
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, harness_failures, harness_checks);
        return 1;
    }
    printf("%s: %d checks passed\n", name, harness_checks);
    return 0;
}

/* The synthetic test pattern (the same formula as examples/c/compare.c and tests/capi.rs):
 * interleaved RGB8, `shift` XORed into red. Caller frees. */
static inline unsigned char *pattern_rgb8(unsigned w, unsigned h, unsigned char shift) {
    unsigned char *p = (unsigned char *)malloc((size_t)w * h * 3);
    unsigned x, y;
    if (!p) abort();
    for (y = 0; y < h; y++) {
        for (x = 0; x < w; x++) {
            unsigned char *px = p + ((size_t)y * w + x) * 3;
            px[0] = (unsigned char)((x * 7) ^ shift);
            px[1] = (unsigned char)(y * 5);
            px[2] = (unsigned char)((x + y) * 3);
        }
    }
    return p;
}

static inline ElpipsImage image_rgb8(const unsigned char *data, unsigned w, unsigned h) {
    ElpipsImage img;
    memset(&img, 0, sizeof img);
    img.data = data;
    img.width = w;
    img.height = h;
    img.format = ELPIPS_PIXEL_FORMAT_RGB8;
    return img;
}

/* Interleaved float RGB pixels, display-referred (sRGB) values in [0, 1]. */
static inline ElpipsImage image_rgb_f32(const float *data, unsigned w, unsigned h) {
    ElpipsImage img = image_rgb8(NULL, w, h);
    img.data = data;
    img.format = ELPIPS_PIXEL_FORMAT_RGB_F32;
    return img;
}

/* The metric of the reference and threads tests: E-LPIPS, except under valgrind, where the
 * Makefile builds them with LPIPS-AlexNet (-DTEST_METRIC=ELPIPS_METRIC_LPIPS_ALEX -DN=40)
 * because valgrind slows the VGG network down ~300x. */
#ifndef TEST_METRIC
#define TEST_METRIC ELPIPS_METRIC_ELPIPS_VGG
#endif

/* Options for tests: one thread, a fixed small sample count, a fixed seed. */
static inline ElpipsOptions test_options(ElpipsMetric metric, unsigned samples) {
    ElpipsOptions o;
    if (elpips_options_default(&o, sizeof o) != ELPIPS_OK) abort();
    o.metric = metric;
    o.threads = 1;
    o.sampling = ELPIPS_SAMPLING_FIXED;
    o.samples = samples;
    o.seed = 7;
    return o;
}

/* A context or death: tests that need one cannot go on without it. */
static inline ElpipsContext *test_context(const ElpipsOptions *o) {
    ElpipsContext *ctx = NULL;
    char message[512];
    ElpipsStatus s = elpips_context_new_with_error(o, &ctx, message, sizeof message);
    if (s != ELPIPS_OK || ctx == NULL) {
        fprintf(stderr, "cannot create a context: %s: %s\n", elpips_status_str(s), message);
        exit(2);
    }
    return ctx;
}

#endif /* ELPIPS_TEST_HARNESS_H */
