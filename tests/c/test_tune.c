/* Encoder tuning through the C ABI: a caller-supplied "encoder" (posterisation of a synthetic
 * pattern, coarser at lower settings) searched for a maximum distance and for a target; the
 * answer checked against direct comparisons; one encode per setting; duplicates reused;
 * callback failures, wrong sizes, bad options and NULLs. */
#include "harness.h"

#define W 64
#define H 64

typedef struct {
    const unsigned char *original;
    unsigned char *decoded; /* the last output, valid until the next call */
    unsigned width, height;
    int calls;
    int seen[101];
    int fail_at; /* setting whose encode fails (-1: none) */
} Encoder;

/* Posterisation step of a setting: four settings share each step (so outputs repeat). */
static int step_of(int setting) { return 1 + (100 - setting) / 4 * 3; }

static void posterise(const unsigned char *in, unsigned char *out, size_t n, int step) {
    size_t i;
    for (i = 0; i < n; i++) out[i] = (unsigned char)(in[i] / step * step + step / 2 > 255 ? 255 : in[i] / step * step + step / 2);
}

static int32_t encode(void *user_data, int32_t setting, ElpipsEncoded *out) {
    Encoder *e = (Encoder *)user_data;
    e->calls++;
    if (setting < 0 || setting > 100) return 99;
    e->seen[setting]++;
    if (setting == e->fail_at) return 7;
    posterise(e->original, e->decoded, (size_t)e->width * e->height * 3, step_of(setting));
    out->bytes = 1000u + 40u * (uint64_t)(100 - step_of(setting));
    out->fingerprint = (uint64_t)step_of(setting);
    out->decoded = image_rgb8(e->decoded, e->width, e->height);
    return 0;
}

static double distance_at(ElpipsContext *ctx, const ElpipsReference *ref, const unsigned char *original, int setting) {
    unsigned char *p = (unsigned char *)malloc((size_t)W * H * 3);
    ElpipsImage img;
    ElpipsResult r;
    if (!p) abort();
    posterise(original, p, (size_t)W * H * 3, step_of(setting));
    img = image_rgb8(p, W, H);
    CHECK_STATUS(ctx, elpips_compare_reference(ctx, ref, &img, &r), ELPIPS_OK);
    free(p);
    return r.distance;
}

static void reset(Encoder *e) {
    e->calls = 0;
    memset(e->seen, 0, sizeof e->seen);
    e->fail_at = -1;
}

int main(void) {
    ElpipsOptions o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 2);
    ElpipsContext *ctx = test_context(&o);
    unsigned char *original = pattern_rgb8(W, H, 0);
    Encoder enc;
    ElpipsImage ri = image_rgb8(original, W, H);
    ElpipsReference *ref = NULL;
    ElpipsTuneOptions t;
    ElpipsTuneResult res;
    ElpipsTuneProbe probes[32];
    size_t written = 0, i, j;
    double threshold;

    memset(&enc, 0, sizeof enc);
    enc.original = original;
    enc.decoded = (unsigned char *)malloc((size_t)W * H * 3);
    enc.width = W;
    enc.height = H;
    reset(&enc);
    CHECK_STATUS(ctx, elpips_reference_new(ctx, &ri, &ref), ELPIPS_OK);

    CHECK_STATUS(NULL, elpips_tune_options_default(&t), ELPIPS_OK);
    CHECK(t.struct_size == sizeof t && t.goal == ELPIPS_TUNE_MAX_DISTANCE && t.min_setting == 0 && t.max_setting == 100);
    CHECK(t.start_setting == ELPIPS_TUNE_START_MIDDLE && t.max_probes == 16 && t.error_rate == 0.05);

    /* A maximum distance halfway between the coarsest and the finest outputs (log scale). */
    threshold = sqrt(distance_at(ctx, ref, original, 0) * distance_at(ctx, ref, original, 96));
    t.threshold = threshold;
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, encode, &enc, &res, probes, 32, &written), ELPIPS_OK);
    CHECK(res.met);
    CHECK(res.probe.result.distance <= threshold);
    CHECK(res.probe.side == ELPIPS_SIDE_BELOW);
    CHECK(written == res.probes && written >= 2 && written <= 8);
    CHECK(enc.calls == (int)written && res.encodes == written);
    CHECK(res.guide_evaluations == 0); /* LPIPS is exact: no guide by default */
    for (i = 0; i <= 100; i++) CHECK(enc.seen[i] <= 1); /* never encoded twice */
    /* The reported figure is the prepared reference's, and a setting one lower fails. */
    CHECK(fabs(res.probe.result.distance - distance_at(ctx, ref, original, res.probe.setting)) < 1e-12);
    CHECK(res.probe.setting == 0 || distance_at(ctx, ref, original, res.probe.setting - 1) > threshold);
    /* Every probe is listed, each setting once; a repeated output reuses its estimate. */
    for (i = 0; i < written; i++) {
        for (j = 0; j < i; j++) CHECK(probes[i].setting != probes[j].setting);
        if (probes[i].duplicate) CHECK(step_of(probes[i].setting) == step_of(probes[i].same_as));
        CHECK(probes[i].result.samples == 1 && probes[i].result.ci95 == 0.0);
    }

    /* A target: the chosen distance is the nearest of all the probes'. */
    reset(&enc);
    t.goal = ELPIPS_TUNE_TARGET;
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, encode, &enc, &res, probes, 32, &written), ELPIPS_OK);
    CHECK(res.met);
    for (i = 0; i < written; i++) CHECK(fabs(res.probe.result.distance - threshold) <= fabs(probes[i].result.distance - threshold));

    /* An unreachable maximum: not met, and the probe with the lowest distance is reported. */
    reset(&enc);
    t.goal = ELPIPS_TUNE_MAX_DISTANCE;
    t.threshold = 1e-9;
    t.max_setting = 80; /* posterisation step 16 at best */
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, encode, &enc, &res, probes, 32, &written), ELPIPS_OK);
    CHECK(!res.met && written > 0);
    for (i = 0; i < written; i++) CHECK(res.probe.result.distance <= probes[i].result.distance);
    t.max_setting = 100;

    /* The callback's failure stops the search with its own status. */
    reset(&enc);
    t.threshold = threshold;
    enc.fail_at = 50;
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, encode, &enc, &res, NULL, 0, NULL), ELPIPS_STATUS_CALLBACK);
    CHECK_MESSAGE(ctx, "returned 7 at setting 50");
    /* A decoded image of another size. */
    reset(&enc);
    enc.width = W / 2;
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, encode, &enc, &res, NULL, 0, NULL), ELPIPS_STATUS_SIZE_MISMATCH);
    enc.width = W;

    /* Bad options and NULLs. */
    t.threshold = 0.0;
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, encode, &enc, &res, NULL, 0, NULL), ELPIPS_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE(ctx, "threshold");
    t.threshold = threshold;
    t.min_setting = 50;
    t.max_setting = 10;
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, encode, &enc, &res, NULL, 0, NULL), ELPIPS_STATUS_INVALID_ARGUMENT);
    t.min_setting = 0;
    t.max_setting = 100;
    t.struct_size = 8;
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, encode, &enc, &res, NULL, 0, NULL), ELPIPS_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE(ctx, "elpips_tune_options_default");
    t.struct_size = sizeof t;
    t.goal = 9;
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, encode, &enc, &res, NULL, 0, NULL), ELPIPS_STATUS_INVALID_ARGUMENT);
    t.goal = ELPIPS_TUNE_MAX_DISTANCE;
    t.guide = 7;
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, encode, &enc, &res, NULL, 0, NULL), ELPIPS_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE(ctx, "unknown tune guide 7");
    t.guide = ELPIPS_TUNE_GUIDE_AUTO;
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, NULL, &enc, &res, NULL, 0, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, encode, &enc, NULL, NULL, 0, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, encode, &enc, &res, NULL, 4, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(ctx, elpips_tune(ctx, NULL, &t, encode, &enc, &res, NULL, 0, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, NULL, encode, &enc, &res, NULL, 0, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(NULL, elpips_tune(NULL, ref, &t, encode, &enc, &res, NULL, 0, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(NULL, elpips_tune_options_default(NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK(strcmp(elpips_status_str(ELPIPS_STATUS_CALLBACK), "callback failed") == 0);
    elpips_reference_free(ref);
    elpips_context_free(ctx);

    /* E-LPIPS: probes sample sequentially (looks at 4, 6, 8) and report their intervals; LPIPS-VGG
     * aims them (the guide's settings are encoded too, at most once more when probed). */
    o = test_options(ELPIPS_METRIC_ELPIPS_VGG, 2);
    ctx = test_context(&o);
    CHECK_STATUS(ctx, elpips_reference_new(ctx, &ri, &ref), ELPIPS_OK);
    reset(&enc);
    t.min_samples = 4;
    t.max_samples = 8;
    t.max_probes = 3;
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, encode, &enc, &res, probes, 32, &written), ELPIPS_OK);
    {
        uint64_t total = 0;
        for (i = 0; i < written; i++) {
            if (probes[i].duplicate) continue;
            CHECK(probes[i].result.samples == 4 || probes[i].result.samples == 6 || probes[i].result.samples == 8);
            CHECK(probes[i].result.ci95 > 0.0);
            total += probes[i].result.samples;
        }
        CHECK(total == res.samples);
    }
    CHECK(res.guide_evaluations >= written && enc.calls == (int)res.encodes);
    for (i = 0; i <= 100; i++) CHECK(enc.seen[i] <= 2);
    /* Without the guide, one encode per probe. */
    reset(&enc);
    t.guide = ELPIPS_TUNE_GUIDE_NONE;
    CHECK_STATUS(ctx, elpips_tune(ctx, ref, &t, encode, &enc, &res, probes, 32, &written), ELPIPS_OK);
    CHECK(res.guide_evaluations == 0 && enc.calls == (int)written && res.encodes == written);
    elpips_reference_free(ref);
    elpips_context_free(ctx);
    free(enc.decoded);
    free(original);
    return harness_finish("test_tune");
}
