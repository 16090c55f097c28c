/* Comparing: E-LPIPS results (zero for identical images, reproducible per seed, sample counts,
 * adaptive sampling that stops at its cap), and files (I/O and decode statuses). */
#include "harness.h"

#define N 64

static void elpips_pairs(void) {
    ElpipsOptions o = test_options(ELPIPS_METRIC_ELPIPS_VGG, 2);
    ElpipsContext *ctx = test_context(&o);
    unsigned char *a8 = pattern_rgb8(N, N, 0), *b8 = pattern_rgb8(N, N, 0x55);
    ElpipsImage a = image_rgb8(a8, N, N), b = image_rgb8(b8, N, N);
    ElpipsResult r1, r2, same;

    CHECK_STATUS(ctx, elpips_compare(ctx, &a, &b, &r1), ELPIPS_OK);
    CHECK(r1.distance > 0.0 && r1.distance < 1.0);
    CHECK(r1.samples == 2);
    CHECK(r1.std_error > 0.0 && fabs(r1.ci95 - 1.959963984540054 * r1.std_error) < 1e-12);
    CHECK(r1.scale_levels == 1); /* the size rule: max(1, 64 / 64) */
    CHECK(r1.converged);
    CHECK_STATUS(ctx, elpips_compare(ctx, &a, &b, &r2), ELPIPS_OK);
    CHECK(memcmp(&r1.distance, &r2.distance, sizeof(double)) == 0); /* same seed, same figure */
    CHECK_STATUS(ctx, elpips_compare(ctx, &a, &a, &same), ELPIPS_OK);
    CHECK(same.distance == 0.0);
    printf("E-LPIPS(64x64 pattern, shift 0x55; seed 7, 2 samples) = %.9f +- %.9f\n", r1.distance,
           r1.ci95);
    elpips_context_free(ctx);

    /* Adaptive sampling with an unreachable target stops at max_samples, not converged. */
    o = test_options(ELPIPS_METRIC_ELPIPS_VGG, 0);
    o.sampling = ELPIPS_SAMPLING_ADAPTIVE;
    o.abs_error = 1e-9;
    o.min_samples = 2;
    o.max_samples = 3;
    ctx = test_context(&o);
    CHECK_STATUS(ctx, elpips_compare(ctx, &a, &b, &r1), ELPIPS_OK);
    CHECK(r1.samples == 3 && !r1.converged);
    elpips_context_free(ctx);
    free(a8);
    free(b8);
}

static void files(void) {
    ElpipsOptions o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    ElpipsContext *ctx = test_context(&o);
    const char *ref = ".cache/upstream/lpips/imgs/ex_ref.png";
    const char *p0 = ".cache/upstream/lpips/imgs/ex_p0.png";
    const char *junk = ".cache/cbuild/not-an-image.png";
    ElpipsResult r;
    FILE *f = fopen(junk, "w");
    if (f) {
        fputs("this is not a PNG\n", f);
        fclose(f);
    }
    CHECK_STATUS(ctx, elpips_compare_files(ctx, ref, p0, &r), ELPIPS_OK);
    /* LPIPS-AlexNet of LPIPS's own example pair (the CLI's golden figure). */
    CHECK(r.samples == 1 && r.std_error == 0.0 && r.scale_levels == 0);
    CHECK(r.distance > 0.0);
    CHECK_STATUS(ctx, elpips_compare_files(ctx, ref, "/nonexistent.png", &r), ELPIPS_STATUS_IO);
    CHECK_MESSAGE(ctx, "/nonexistent.png");
    CHECK_STATUS(ctx, elpips_compare_files(ctx, junk, ref, &r), ELPIPS_STATUS_IMAGE_DECODE);
    CHECK_MESSAGE(ctx, "not-an-image.png");
    CHECK_STATUS(ctx, elpips_compare_files(ctx, NULL, ref, &r), ELPIPS_STATUS_NULL_POINTER);
    CHECK_MESSAGE(ctx, "reference_path");
    CHECK_STATUS(ctx, elpips_compare_files(ctx, ref, NULL, &r), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(ctx, elpips_compare_files(ctx, ref, p0, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(NULL, elpips_compare_files(NULL, ref, p0, &r), ELPIPS_STATUS_NULL_POINTER);
    elpips_context_free(ctx);
    remove(junk);
}

int main(void) {
    elpips_pairs();
    files();
    return harness_finish("test_compare");
}
