/* Images: every pixel format and transfer, strides, and every way an image description can be
 * wrong (NULL pointers, empty or absurd sizes, short strides, unknown enums, NaN/Inf, size
 * mismatch, too small, too large). Runs LPIPS-AlexNet: deterministic and the cheapest network. */
#include <stdint.h>

#include "harness.h"

#define W 40
#define H 36

static ElpipsContext *ctx;
static unsigned char *ref8, *cand8;

static double distance_of(const ElpipsImage *reference, const ElpipsImage *candidate) {
    ElpipsResult r;
    memset(&r, 0, sizeof r);
    CHECK_STATUS(ctx, elpips_compare(ctx, reference, candidate, &r), ELPIPS_OK);
    return r.distance;
}

static void formats_agree(void) {
    ElpipsImage ref = image_rgb8(ref8, W, H), cand = image_rgb8(cand8, W, H), img;
    double base = distance_of(&ref, &cand);
    size_t i, n = (size_t)W * H;
    size_t padded = W * 4 + 3; /* an RGBA8 row plus 3 bytes of padding */
    unsigned char *rgba8 = (unsigned char *)calloc(padded * H, 1);
    uint16_t *rgb16 = (uint16_t *)malloc(n * 3 * sizeof(uint16_t));
    uint16_t *rgba16 = (uint16_t *)malloc(n * 4 * sizeof(uint16_t));
    float *rgbf = (float *)malloc(n * 3 * sizeof(float));
    float *rgbaf = (float *)malloc(n * 4 * sizeof(float));
    float *linear = (float *)malloc(n * 3 * sizeof(float));
    CHECK(base > 0.0);
    for (i = 0; i < n; i++) {
        size_t y = i / W, x = i % W, c;
        for (c = 0; c < 3; c++) {
            unsigned char v = cand8[i * 3 + c];
            float f = (float)v / 255.0f;
            rgba8[y * padded + x * 4 + c] = v;
            rgb16[i * 3 + c] = (uint16_t)(v * 257);
            rgba16[i * 4 + c] = (uint16_t)(v * 257);
            rgbf[i * 3 + c] = f;
            rgbaf[i * 4 + c] = f;
            /* sRGB decoding: encoded back by ELPIPS_TRANSFER_LINEAR. */
            linear[i * 3 + c] = f <= 0.04045f ? f / 12.92f : powf((f + 0.055f) / 1.055f, 2.4f);
        }
        rgba8[y * padded + x * 4 + 3] = 17; /* alpha: ignored */
        rgba16[i * 4 + 3] = 1234;
        rgbaf[i * 4 + 3] = 0.5f;
    }
    img = cand;
    img.data = rgba8;
    img.format = ELPIPS_PIXEL_FORMAT_RGBA8;
    img.stride_bytes = padded;
    CHECK(distance_of(&ref, &img) == base);
    img.stride_bytes = 0;
    img.data = rgb16;
    img.format = ELPIPS_PIXEL_FORMAT_RGB16;
    CHECK(fabs(distance_of(&ref, &img) - base) < 1e-6);
    img.data = rgba16;
    img.format = ELPIPS_PIXEL_FORMAT_RGBA16;
    CHECK(fabs(distance_of(&ref, &img) - base) < 1e-6);
    img.data = rgbf;
    img.format = ELPIPS_PIXEL_FORMAT_RGB_F32;
    CHECK(distance_of(&ref, &img) == base);
    img.data = rgbaf;
    img.format = ELPIPS_PIXEL_FORMAT_RGBA_F32;
    CHECK(distance_of(&ref, &img) == base);
    img.data = linear;
    img.format = ELPIPS_PIXEL_FORMAT_RGB_F32;
    img.transfer = ELPIPS_TRANSFER_LINEAR;
    CHECK(fabs(distance_of(&ref, &img) - base) < 1e-4);
    /* Float values are clamped to [0, 1]: 1.5 reads as 1, -2 as 0. */
    for (i = 0; i < n * 3; i++) rgbf[i] = rgbf[i] > 0.5f ? 1.5f : -2.0f;
    img.data = rgbf;
    img.transfer = ELPIPS_TRANSFER_SRGB;
    base = distance_of(&ref, &img);
    for (i = 0; i < n * 3; i++) rgbf[i] = rgbf[i] > 0.5f ? 1.0f : 0.0f;
    CHECK(distance_of(&ref, &img) == base);
    free(rgba8);
    free(rgb16);
    free(rgba16);
    free(rgbf);
    free(rgbaf);
    free(linear);
}

/* Compares `bad` (as the candidate) to a good reference and checks status and message. */
static void refused(const ElpipsImage *bad, ElpipsStatus want, const char *needle) {
    ElpipsImage ref = image_rgb8(ref8, W, H);
    ElpipsResult r;
    r.distance = -1.0;
    CHECK_STATUS(ctx, elpips_compare(ctx, &ref, bad, &r), want);
    CHECK_MESSAGE(ctx, needle);
    CHECK(r.distance == -1.0); /* untouched on failure */
}

static void bad_images(void) {
    ElpipsImage ref = image_rgb8(ref8, W, H), img;
    ElpipsResult r;
    float *f = (float *)calloc((size_t)W * H * 3, sizeof(float));

    CHECK_STATUS(NULL, elpips_compare(NULL, &ref, &ref, &r), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(ctx, elpips_compare(ctx, NULL, &ref, &r), ELPIPS_STATUS_NULL_POINTER);
    CHECK_MESSAGE(ctx, "`reference` is NULL");
    CHECK_STATUS(ctx, elpips_compare(ctx, &ref, NULL, &r), ELPIPS_STATUS_NULL_POINTER);
    CHECK_MESSAGE(ctx, "`candidate` is NULL");
    CHECK_STATUS(ctx, elpips_compare(ctx, &ref, &ref, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_MESSAGE(ctx, "`result` is NULL");

    img = ref;
    img.data = NULL;
    refused(&img, ELPIPS_STATUS_NULL_POINTER, "candidate: `image->data` is NULL");
    img = ref;
    img.width = 0;
    refused(&img, ELPIPS_STATUS_INVALID_IMAGE, "0x36 is empty");
    img = ref;
    img.stride_bytes = W * 3 - 1;
    refused(&img, ELPIPS_STATUS_INVALID_IMAGE, "stride_bytes 119 is smaller than a row");
    img = ref;
    img.stride_bytes = SIZE_MAX; /* stride x (height - 1) overflows */
    refused(&img, ELPIPS_STATUS_INVALID_IMAGE, "does not fit in memory");
    img = ref;
    img.format = 99;
    refused(&img, ELPIPS_STATUS_INVALID_IMAGE, "unknown pixel format 99");
    img = ref;
    img.transfer = 7;
    refused(&img, ELPIPS_STATUS_INVALID_IMAGE, "unknown transfer 7");
    img = ref;
    img.width = 0xFFFFFFFFu;
    img.height = 0xFFFFFFFFu;
    refused(&img, ELPIPS_STATUS_IMAGE_TOO_LARGE, "above the limit");
    img = ref;
    img.width = W - 1;
    refused(&img, ELPIPS_STATUS_SIZE_MISMATCH, "sizes differ");
    img = ref;
    img.width = img.height = 20;
    CHECK_STATUS(ctx, elpips_compare(ctx, &img, &img, &r), ELPIPS_STATUS_IMAGE_TOO_SMALL);
    CHECK_MESSAGE(ctx, "needs at least 31x31");

    img = ref;
    img.data = f;
    img.format = ELPIPS_PIXEL_FORMAT_RGB_F32;
    f[(2 * W + 3) * 3 + 1] = NAN;
    refused(&img, ELPIPS_STATUS_NON_FINITE, "pixel (x 3, y 2) channel 1 is NaN");
    f[(2 * W + 3) * 3 + 1] = 0.0f;
    f[(H - 1) * W * 3] = -INFINITY;
    refused(&img, ELPIPS_STATUS_NON_FINITE, "pixel (x 0, y 35) channel 0 is -inf");
    /* The message stays until the next failure on this thread, then is replaced. */
    CHECK_MESSAGE(ctx, "-inf");
    free(f);
}

static void pixel_budget(void) {
    ElpipsOptions o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    ElpipsContext *small;
    ElpipsImage ref = image_rgb8(ref8, W, H);
    ElpipsResult r;
    o.max_pixels = 1000;
    small = test_context(&o);
    CHECK_STATUS(small, elpips_compare(small, &ref, &ref, &r), ELPIPS_STATUS_IMAGE_TOO_LARGE);
    CHECK_MESSAGE(small, "1440 pixels, above the limit of 1000");
    elpips_context_free(small);
}

int main(void) {
    ElpipsOptions o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    ctx = test_context(&o);
    ref8 = pattern_rgb8(W, H, 0);
    cand8 = pattern_rgb8(W, H, 0x55);
    formats_agree();
    bad_images();
    pixel_budget();
    elpips_context_free(ctx);
    free(ref8);
    free(cand8);
    return harness_finish("test_images");
}
