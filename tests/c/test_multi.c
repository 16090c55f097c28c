/* Several candidates against one prepared reference (elpips_compare_many): each distance equals
 * elpips_compare_reference's, the pairwise differences come from the same draws, NULL policy. */
#include "harness.h"

#ifndef N
#define N 64
#endif

int main(void) {
    ElpipsOptions o = test_options(TEST_METRIC, 3);
    ElpipsContext *ctx = test_context(&o);
    unsigned char *r8 = pattern_rgb8(N, N, 0), *a8 = pattern_rgb8(N, N, 0x55), *b8 = pattern_rgb8(N, N, 0x0F);
    ElpipsImage cands[3];
    ElpipsReference *ref = NULL;
    ElpipsResult results[3], single;
    ElpipsDifference diffs[3];

    cands[0] = image_rgb8(a8, N, N);
    cands[1] = image_rgb8(b8, N, N);
    cands[2] = image_rgb8(r8, N, N);
    CHECK_STATUS(ctx, elpips_reference_new(ctx, &cands[2], &ref), ELPIPS_OK);
    CHECK_STATUS(ctx, elpips_compare_many(ctx, ref, cands, 3, results, diffs), ELPIPS_OK);
    for (int i = 0; i < 2; i++) {
        CHECK_STATUS(ctx, elpips_compare_reference(ctx, ref, &cands[i], &single), ELPIPS_OK);
        CHECK(single.distance == results[i].distance && single.samples == results[i].samples);
    }
    CHECK(results[2].distance == 0.0);
    /* Pairs in order (0,1), (0,2), (1,2); each difference is the difference of the distances. */
    CHECK(diffs[0].first == 0 && diffs[0].second == 1 && diffs[1].second == 2 && diffs[2].first == 1);
    CHECK(fabs(diffs[0].difference - (results[0].distance - results[1].distance)) < 1e-12);
    CHECK(diffs[1].difference == results[0].distance);
    CHECK(diffs[0].ci95 >= 0.0);
    /* Differences are optional. */
    CHECK_STATUS(ctx, elpips_compare_many(ctx, ref, cands, 2, results, NULL), ELPIPS_OK);

    CHECK_STATUS(ctx, elpips_compare_many(ctx, ref, cands, 0, results, NULL), ELPIPS_STATUS_INVALID_ARGUMENT);
    CHECK_MESSAGE(ctx, "at least one candidate");
    CHECK_STATUS(ctx, elpips_compare_many(ctx, NULL, cands, 2, results, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(ctx, elpips_compare_many(ctx, ref, NULL, 2, results, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(ctx, elpips_compare_many(ctx, ref, cands, 2, NULL, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(NULL, elpips_compare_many(NULL, ref, cands, 2, results, NULL), ELPIPS_STATUS_NULL_POINTER);
    cands[1].width = 32;
    CHECK_STATUS(ctx, elpips_compare_many(ctx, ref, cands, 2, results, NULL), ELPIPS_STATUS_SIZE_MISMATCH);

    elpips_reference_free(ref);
    elpips_context_free(ctx);
    free(r8);
    free(a8);
    free(b8);
    return harness_finish("test_multi");
}
