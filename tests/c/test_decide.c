/* The sequential gate from C: verdicts on both sides, exact for LPIPS (equal to elpips_compare),
 * early stopping for E-LPIPS, the gate's defaults and errors. */
#include "harness.h"

#define N 64

static void lpips_decides_exactly(void) {
    ElpipsOptions o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    ElpipsContext *ctx = test_context(&o);
    unsigned char *a8 = pattern_rgb8(N, N, 0), *b8 = pattern_rgb8(N, N, 0x55);
    ElpipsImage a = image_rgb8(a8, N, N), b = image_rgb8(b8, N, N);
    ElpipsResult plain;
    ElpipsDecision d;
    ElpipsGate g;

    CHECK_STATUS(ctx, elpips_compare(ctx, &a, &b, &plain), ELPIPS_OK);
    memset(&g, 0, sizeof g);
    g.threshold = plain.distance * 1.01;
    CHECK_STATUS(ctx, elpips_decide(ctx, &a, &b, &g, &d), ELPIPS_OK);
    CHECK(d.verdict == ELPIPS_SIDE_BELOW && d.estimate_below);
    CHECK(d.estimate.distance == plain.distance && d.lower == plain.distance && d.upper == plain.distance);
    CHECK(d.looks == 1 && d.looks_planned == 1);
    g.threshold = plain.distance * 0.99;
    CHECK_STATUS(ctx, elpips_decide(ctx, &a, &b, &g, &d), ELPIPS_OK);
    CHECK(d.verdict == ELPIPS_SIDE_ABOVE && !d.estimate_below);

    /* Errors: NULLs, a bad gate (nothing written). */
    CHECK_STATUS(ctx, elpips_decide(ctx, &a, &b, NULL, &d), ELPIPS_STATUS_NULL_POINTER);
    CHECK_MESSAGE(ctx, "gate");
    CHECK_STATUS(ctx, elpips_decide(ctx, &a, &b, &g, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(NULL, elpips_decide(NULL, &a, &b, &g, &d), ELPIPS_STATUS_NULL_POINTER);
    g.threshold = -1.0;
    d.looks = 12345;
    CHECK_STATUS(ctx, elpips_decide(ctx, &a, &b, &g, &d), ELPIPS_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE(ctx, "threshold");
    CHECK(d.looks == 12345);
    g.threshold = 0.1;
    g.error_rate = 0.7;
    CHECK_STATUS(ctx, elpips_decide(ctx, &a, &b, &g, &d), ELPIPS_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE(ctx, "error rate");
    elpips_context_free(ctx);
    free(a8);
    free(b8);
}

static void elpips_stops_early(void) {
    ElpipsOptions o = test_options(ELPIPS_METRIC_ELPIPS_VGG, 1);
    ElpipsContext *ctx = test_context(&o);
    unsigned char *a8 = pattern_rgb8(N, N, 0), *b8 = pattern_rgb8(N, N, 0x55);
    ElpipsImage a = image_rgb8(a8, N, N), b = image_rgb8(b8, N, N);
    ElpipsDecision d, again;
    ElpipsGate g = {0.5, 0.0, 12, 4}; /* far above the ~0.04 distance */

    CHECK_STATUS(ctx, elpips_decide(ctx, &a, &b, &g, &d), ELPIPS_OK);
    CHECK(d.verdict == ELPIPS_SIDE_BELOW);
    CHECK(d.looks == 1 && d.estimate.samples == 4 && d.looks_planned > 1);
    CHECK(d.upper < 0.5 && d.lower <= d.estimate.distance && d.estimate.distance <= d.upper);
    CHECK_STATUS(ctx, elpips_decide(ctx, &a, &b, &g, &again), ELPIPS_OK);
    CHECK(memcmp(&d.estimate.distance, &again.estimate.distance, sizeof(double)) == 0);

    g.threshold = 0.001; /* far below */
    CHECK_STATUS(ctx, elpips_decide(ctx, &a, &b, &g, &d), ELPIPS_OK);
    CHECK(d.verdict == ELPIPS_SIDE_ABOVE && d.lower > 0.001);

    /* Identical images: distance 0, below any positive T. */
    g.threshold = 0.01;
    CHECK_STATUS(ctx, elpips_decide(ctx, &a, &a, &g, &d), ELPIPS_OK);
    CHECK(d.verdict == ELPIPS_SIDE_BELOW && d.estimate.distance == 0.0);
    elpips_context_free(ctx);
    free(a8);
    free(b8);
}

int main(void) {
    lpips_decides_exactly();
    elpips_stops_early();
    return harness_finish("test_decide");
}
