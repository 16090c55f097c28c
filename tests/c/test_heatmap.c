/* Heatmaps and renderer inputs from C: elpips_compare_heatmap fills a caller buffer whose mean
 * is the distance (zero for identical images, hot where the images differ), rejects a wrong
 * length, and the tone-mapping / alpha options of ElpipsOptions act on linear RGBA buffers.
 * Runs LPIPS-AlexNet: deterministic and the cheapest network. */
#include "harness.h"

#define W 48
#define H 40

static void heatmap_of_a_local_change(void) {
    ElpipsOptions o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    ElpipsContext *ctx = test_context(&o);
    unsigned char *a = pattern_rgb8(W, H, 0), *b = pattern_rgb8(W, H, 0);
    float *heat = (float *)malloc(sizeof(float) * W * H);
    ElpipsImage ia = image_rgb8(a, W, H), ib = image_rgb8(b, W, H);
    ElpipsResult r, plain;
    double sum = 0.0, corner = 0.0;
    size_t i;
    unsigned x, y;
    if (!heat) abort();
    memset(&r, 0, sizeof r);
    CHECK_STATUS(ctx, elpips_compare_heatmap(ctx, &ia, &ib, &r, heat, (size_t)W * H), ELPIPS_OK);
    CHECK(r.distance == 0.0);
    for (i = 0; i < (size_t)W * H; i++) CHECK(heat[i] == 0.0f);
    /* Change the 12x12 top-left corner only. */
    for (y = 0; y < 12; y++)
        for (x = 0; x < 12; x++) b[(y * W + x) * 3 + 1] = (unsigned char)(255 * ((x + y) % 2));
    CHECK_STATUS(ctx, elpips_compare_heatmap(ctx, &ia, &ib, &r, heat, (size_t)W * H), ELPIPS_OK);
    CHECK_STATUS(ctx, elpips_compare(ctx, &ia, &ib, &plain), ELPIPS_OK);
    CHECK(r.distance == plain.distance && r.distance > 0.0);
    for (y = 0; y < H; y++)
        for (x = 0; x < W; x++) {
            sum += heat[y * W + x];
            if (x < 24 && y < 20) corner += heat[y * W + x];
        }
    CHECK(fabs(sum / (W * H) - r.distance) < 1e-4 * r.distance);
    CHECK(corner > 0.5 * sum);
    CHECK_STATUS(ctx, elpips_compare_heatmap(ctx, &ia, &ib, &r, heat, (size_t)W * H - 1), ELPIPS_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE(ctx, "heatmap_len");
    CHECK_STATUS(ctx, elpips_compare_heatmap(ctx, &ia, &ib, &r, NULL, 0), ELPIPS_STATUS_NULL_POINTER);
    free(heat);
    free(a);
    free(b);
    elpips_context_free(ctx);
}

/* sRGB encoding, to build the display image a linear buffer should become. */
static float srgb(float v) {
    if (v >= 1.0f) return 1.0f;
    return v <= 0.0031308f ? 12.92f * v : 1.055f * powf(v, 1.0f / 2.4f) - 0.055f;
}

static void linear_rgba_over_a_background(void) {
    ElpipsOptions o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1), bad;
    ElpipsContext *ctx, *none = NULL;
    float *lin = (float *)malloc(sizeof(float) * W * H * 4), *disp = (float *)malloc(sizeof(float) * W * H * 3);
    unsigned char *ref = pattern_rgb8(W, H, 0);
    ElpipsImage il = image_rgb8(ref, W, H), id = image_rgb8(ref, W, H);
    ElpipsResult r;
    size_t i, c;
    if (!lin || !disp) abort();
    CHECK(o.exposure == 0.0f && o.tonemap == ELPIPS_TONEMAP_CLAMP && o.alpha == ELPIPS_ALPHA_IGNORE);
    o.alpha = ELPIPS_ALPHA_OVER;
    o.background[0] = o.background[1] = o.background[2] = 0.25f;
    o.exposure = 1.0f; /* x2 */
    o.tonemap = ELPIPS_TONEMAP_REINHARD;
    ctx = test_context(&o);
    for (i = 0; i < (size_t)W * H; i++) {
        float a = (float)(i % 5) / 4.0f;
        for (c = 0; c < 3; c++) {
            float straight = (float)ref[i * 3 + c] / 255.0f;
            float x;
            lin[i * 4 + c] = a * straight; /* premultiplied */
            x = 2.0f * (a * straight + (1.0f - a) * 0.25f);
            disp[i * 3 + c] = srgb(x / (1.0f + x));
        }
        lin[i * 4 + 3] = a;
    }
    il.data = lin;
    il.format = ELPIPS_PIXEL_FORMAT_RGBA_F32;
    il.transfer = ELPIPS_TRANSFER_LINEAR;
    id.data = disp;
    id.format = ELPIPS_PIXEL_FORMAT_RGB_F32;
    CHECK_STATUS(ctx, elpips_compare(ctx, &il, &id, &r), ELPIPS_OK);
    CHECK(r.distance < 1e-6);
    elpips_context_free(ctx);
    bad = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    bad.tonemap = 7;
    CHECK_STATUS(NULL, elpips_context_new(&bad, &none), ELPIPS_STATUS_INVALID_ARGUMENT);
    CHECK(none == NULL);
    free(lin);
    free(disp);
    free(ref);
}

int main(void) {
    heatmap_of_a_local_change();
    linear_rgba_over_a_background();
    return harness_finish("test_heatmap");
}
