/* Prepared references: the same figures as elpips_compare, common random numbers across
 * candidates, size checks at preparation, NULL policy, and a reference outliving its context. */
#include "harness.h"

#ifndef N
#define N 64
#endif

int main(void) {
    ElpipsOptions o = test_options(TEST_METRIC, 2);
    ElpipsContext *ctx = test_context(&o);
    unsigned char *r8 = pattern_rgb8(N, N, 0), *c8 = pattern_rgb8(N, N, 0x55);
    unsigned char *d8 = pattern_rgb8(N, N, 0x0F);
    ElpipsImage ri = image_rgb8(r8, N, N), ci = image_rgb8(c8, N, N), di = image_rgb8(d8, N, N);
    ElpipsImage small = image_rgb8(r8, 8, 8);
    ElpipsReference *ref = (ElpipsReference *)&ref, *none = (ElpipsReference *)&none;
    ElpipsResult direct, prepared, d1, d2, self;

    CHECK_STATUS(ctx, elpips_reference_new(ctx, &ri, &ref), ELPIPS_OK);
    CHECK(ref != NULL);
    /* The prepared reference gives exactly elpips_compare's figure, for each candidate. */
    CHECK_STATUS(ctx, elpips_compare(ctx, &ri, &ci, &direct), ELPIPS_OK);
    CHECK_STATUS(ctx, elpips_compare_reference(ctx, ref, &ci, &prepared), ELPIPS_OK);
    /* Field by field: the struct's padding bytes are not part of the result. */
    CHECK(direct.distance == prepared.distance && direct.std_error == prepared.std_error &&
          direct.ci95 == prepared.ci95 && direct.samples == prepared.samples &&
          direct.scale_levels == prepared.scale_levels && direct.converged == prepared.converged);
    CHECK_STATUS(ctx, elpips_compare_reference(ctx, ref, &di, &d1), ELPIPS_OK);
    CHECK_STATUS(ctx, elpips_compare(ctx, &ri, &di, &d2), ELPIPS_OK);
    CHECK(d1.distance == d2.distance);
    CHECK(d1.distance != prepared.distance);
    /* With common random numbers the reference against itself is exactly 0 at every sample. */
    CHECK_STATUS(ctx, elpips_compare_reference(ctx, ref, &ri, &self), ELPIPS_OK);
    CHECK(self.distance == 0.0 && self.std_error == 0.0);

    /* Errors: the size rules are checked when the reference is prepared. */
    CHECK_STATUS(ctx, elpips_reference_new(ctx, &small, &none), ELPIPS_STATUS_IMAGE_TOO_SMALL);
    CHECK(none == NULL);
    CHECK_MESSAGE(ctx, "needs at least");
    small.width = small.height = 32; /* big enough, but not the reference's size */
    CHECK_STATUS(ctx, elpips_compare_reference(ctx, ref, &small, &d1), ELPIPS_STATUS_SIZE_MISMATCH);
    CHECK_STATUS(NULL, elpips_reference_new(NULL, &ri, &none), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(ctx, elpips_reference_new(ctx, NULL, &none), ELPIPS_STATUS_NULL_POINTER);
    CHECK_MESSAGE(ctx, "`image` is NULL");
    CHECK_STATUS(ctx, elpips_reference_new(ctx, &ri, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(ctx, elpips_compare_reference(ctx, NULL, &ci, &d1), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(ctx, elpips_compare_reference(ctx, ref, NULL, &d1), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(ctx, elpips_compare_reference(ctx, ref, &ci, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(NULL, elpips_compare_reference(NULL, ref, &ci, &d1), ELPIPS_STATUS_NULL_POINTER);

    /* A reference is independent of the context that prepared it. */
    elpips_context_free(ctx);
    ctx = test_context(&o);
    CHECK_STATUS(ctx, elpips_compare_reference(ctx, ref, &ci, &d1), ELPIPS_OK);
    CHECK(d1.distance == direct.distance);

    elpips_reference_free(ref);
    elpips_reference_free(NULL); /* no-op */
    elpips_context_free(ctx);
    free(r8);
    free(c8);
    free(d8);
    return harness_finish("test_reference");
}
