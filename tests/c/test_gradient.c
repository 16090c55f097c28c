/* Gradients from C under the sanitizers: the distance equals elpips_compare's, the gradient
 * predicts the change along a direction (central differences on float pixels), E-LPIPS means
 * over chosen samples, and every bad argument gets its status without touching the outputs. */
#include "harness.h"

#define N 32
#define LEN (3 * N * N)

/* Interleaved float RGB of the test pattern, in [0.1, 0.9]: values are clamped to [0, 1], so a
 * finite-difference step must not cross the ends. */
static float *pattern_f32(unsigned char shift) {
    unsigned char *p8 = pattern_rgb8(N, N, shift);
    float *p = (float *)malloc(sizeof(float) * LEN);
    size_t i;
    if (!p) abort();
    for (i = 0; i < LEN; i++) p[i] = 0.1f + 0.8f * (p8[i] / 255.0f); /* steps stay inside [0, 1] */
    free(p8);
    return p;
}

static double distance_at(ElpipsGradient *g, const float *ref, const float *cand) {
    ElpipsImage a = image_rgb_f32(ref, N, N), b = image_rgb_f32(cand, N, N);
    double d = -1.0;
    float *grad = (float *)malloc(sizeof(float) * LEN);
    if (!grad) abort();
    CHECK(elpips_gradient_compute(g, &a, &b, 0, 0, &d, grad, LEN) == ELPIPS_OK);
    free(grad);
    return d;
}

static void lpips_vgg(void) {
    ElpipsOptions o = test_options(ELPIPS_METRIC_LPIPS_VGG, 1);
    ElpipsGradient *g = NULL;
    ElpipsContext *ctx = test_context(&o);
    float *ref = pattern_f32(0), *cand = pattern_f32(0x33), *plus, *minus;
    float *grad = (float *)malloc(sizeof(float) * LEN);
    ElpipsImage a = image_rgb_f32(ref, N, N), b = image_rgb_f32(cand, N, N);
    ElpipsResult r;
    double d = -1.0, norm = 0.0, numeric;
    const double h = 2e-3;
    size_t i, x, y, c;

    if (!grad) abort();
    CHECK(elpips_gradient_new(&o, &g) == ELPIPS_OK && g != NULL);
    CHECK(elpips_gradient_compute(g, &a, &b, 0, 0, &d, grad, LEN) == ELPIPS_OK);
    CHECK_STATUS(ctx, elpips_compare(ctx, &a, &b, &r), ELPIPS_OK);
    CHECK(fabs(d - r.distance) <= 1e-5 * r.distance);

    /* Along the normalised gradient (planar in the output, interleaved in the image) the
     * directional derivative is |g|. */
    for (i = 0; i < LEN; i++) norm += (double)grad[i] * grad[i];
    norm = sqrt(norm);
    CHECK(norm > 0.0);
    plus = (float *)malloc(sizeof(float) * LEN);
    minus = (float *)malloc(sizeof(float) * LEN);
    if (!plus || !minus) abort();
    for (c = 0; c < 3; c++)
        for (y = 0; y < N; y++)
            for (x = 0; x < N; x++) {
                size_t at = (y * N + x) * 3 + c;
                double step = h * grad[c * N * N + y * N + x] / norm;
                plus[at] = (float)(cand[at] + step);
                minus[at] = (float)(cand[at] - step);
            }
    numeric = (distance_at(g, ref, plus) - distance_at(g, ref, minus)) / (2 * h);
    if (fabs(numeric - norm) > 0.05 * norm) {
        fprintf(stderr, "directional derivative %.6g, gradient norm %.6g\n", numeric, norm);
        harness_failures++;
    }

    /* Bad arguments: statuses, messages, outputs untouched. */
    d = -1.0;
    CHECK(elpips_gradient_compute(g, &a, &b, 0, 0, &d, grad, LEN - 1) == ELPIPS_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(elpips_gradient_last_error(g), "gradient_len") != NULL);
    CHECK(d == -1.0);
    CHECK(elpips_gradient_compute(g, &a, &b, 0, 3, &d, grad, LEN) == ELPIPS_STATUS_INVALID_ARGUMENT);
    CHECK(elpips_gradient_compute(g, NULL, &b, 0, 0, &d, grad, LEN) == ELPIPS_STATUS_NULL_POINTER);
    CHECK(elpips_gradient_compute(g, &a, &b, 0, 0, NULL, grad, LEN) == ELPIPS_STATUS_NULL_POINTER);
    CHECK(elpips_gradient_compute(g, &a, &b, 0, 0, &d, NULL, LEN) == ELPIPS_STATUS_NULL_POINTER);
    CHECK(elpips_gradient_compute(NULL, &a, &b, 0, 0, &d, grad, LEN) == ELPIPS_STATUS_NULL_POINTER);
    CHECK(strcmp(elpips_gradient_last_error(NULL), "") == 0);
    elpips_gradient_free(g);
    elpips_gradient_free(NULL);
    elpips_context_free(ctx);
    free(ref);
    free(cand);
    free(plus);
    free(minus);
    free(grad);
}

static void elpips_vgg(void) {
    ElpipsOptions o = test_options(ELPIPS_METRIC_ELPIPS_VGG, 1);
    ElpipsGradient *g = NULL;
    unsigned char *a8 = pattern_rgb8(N, N, 0), *b8 = pattern_rgb8(N, N, 0x33);
    ElpipsImage a = image_rgb8(a8, N, N), b = image_rgb8(b8, N, N);
    float *g01 = (float *)malloc(sizeof(float) * LEN), *g0 = (float *)malloc(sizeof(float) * LEN);
    float *g1 = (float *)malloc(sizeof(float) * LEN);
    double d01, d0, d1;
    size_t i, off = 0;

    if (!g01 || !g0 || !g1) abort();
    CHECK(elpips_gradient_new(&o, &g) == ELPIPS_OK);
    /* The mean over samples 0 and 1 is the mean of each one's distance and gradient. */
    CHECK(elpips_gradient_compute(g, &a, &b, 0, 2, &d01, g01, LEN) == ELPIPS_OK);
    CHECK(elpips_gradient_compute(g, &a, &b, 0, 1, &d0, g0, LEN) == ELPIPS_OK);
    CHECK(elpips_gradient_compute(g, &a, &b, 1, 1, &d1, g1, LEN) == ELPIPS_OK);
    CHECK(d01 > 0.0 && fabs(d01 - 0.5 * (d0 + d1)) <= 1e-6 * d01);
    for (i = 0; i < LEN; i++)
        if (fabs(g01[i] - 0.5f * (g0[i] + g1[i])) > 1e-4f * (fabsf(g01[i]) + 1e-3f)) off++;
    CHECK(off == 0);
    CHECK(elpips_gradient_compute(g, &a, &b, 0, 0, &d0, g0, LEN) == ELPIPS_STATUS_INVALID_ARGUMENT);
    elpips_gradient_free(g);

    /* LPIPS-AlexNet has no gradient model. */
    o.metric = ELPIPS_METRIC_LPIPS_ALEX;
    g = (ElpipsGradient *)&g; /* not NULL: must be reset on failure */
    CHECK(elpips_gradient_new(&o, &g) == ELPIPS_STATUS_INVALID_ARGUMENT && g == NULL);
    CHECK(elpips_gradient_new(&o, NULL) == ELPIPS_STATUS_NULL_POINTER);
    free(a8);
    free(b8);
    free(g01);
    free(g0);
    free(g1);
}

int main(void) {
    lpips_vgg();
    elpips_vgg();
    return harness_finish("test_gradient");
}
