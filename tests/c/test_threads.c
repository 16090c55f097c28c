/* Thread-safety: one context shared by several threads (calls are serialised by its lock), and a
 * context of each thread's own, give each thread the figures a single thread gets; a prepared
 * reference is shared too; last-error messages are per thread. */
#include <pthread.h>

#include "harness.h"

#ifndef N
#define N 64
#endif
#define THREADS 3

static ElpipsContext *shared;
static ElpipsReference *reference;
static unsigned char *ref8;
static unsigned char *cand8[THREADS];
static double expected[THREADS];

struct job {
    int index;
    int failures;
};

static void *work(void *arg) {
    struct job *job = (struct job *)arg;
    ElpipsImage ref = image_rgb8(ref8, N, N), cand = image_rgb8(cand8[job->index], N, N), bad;
    ElpipsResult r1, r2;
    char want[64];
    if (elpips_compare(shared, &ref, &cand, &r1) != ELPIPS_OK || r1.distance != expected[job->index])
        job->failures++;
    if (elpips_compare_reference(shared, reference, &cand, &r2) != ELPIPS_OK ||
        r2.distance != expected[job->index])
        job->failures++;
    {
        /* A context of this thread's own, running in parallel with the others. */
        ElpipsOptions o = test_options(TEST_METRIC, 2);
        ElpipsContext *own = NULL;
        if (elpips_context_new(&o, &own) != ELPIPS_OK) {
            job->failures++;
        } else {
            if (elpips_compare(own, &ref, &cand, &r1) != ELPIPS_OK || r1.distance != expected[job->index])
                job->failures++;
            if (elpips_compare_reference(own, reference, &cand, &r2) != ELPIPS_OK ||
                r2.distance != expected[job->index])
                job->failures++;
            elpips_context_free(own);
        }
    }
    /* A failure whose message names this thread's stride: no other thread's message leaks in. */
    bad = cand;
    bad.stride_bytes = (size_t)(10 + job->index);
    if (elpips_compare(shared, &ref, &bad, &r1) != ELPIPS_STATUS_INVALID_IMAGE) job->failures++;
    sprintf(want, "stride_bytes %d is smaller", 10 + job->index);
    if (strstr(elpips_last_error(shared), want) == NULL) {
        fprintf(stderr, "thread %d: last error \"%s\" lacks \"%s\"\n", job->index,
                elpips_last_error(shared), want);
        job->failures++;
    }
    return NULL;
}

int main(void) {
    ElpipsOptions o = test_options(TEST_METRIC, 2);
    ElpipsImage ref;
    pthread_t threads[THREADS];
    struct job jobs[THREADS];
    int i;
    shared = test_context(&o);
    ref8 = pattern_rgb8(N, N, 0);
    ref = image_rgb8(ref8, N, N);
    CHECK_STATUS(shared, elpips_reference_new(shared, &ref, &reference), ELPIPS_OK);
    for (i = 0; i < THREADS; i++) {
        ElpipsImage cand;
        ElpipsResult r;
        cand8[i] = pattern_rgb8(N, N, (unsigned char)(0x11 * (i + 1)));
        cand = image_rgb8(cand8[i], N, N);
        CHECK_STATUS(shared, elpips_compare(shared, &ref, &cand, &r), ELPIPS_OK);
        expected[i] = r.distance;
    }
    for (i = 0; i < THREADS; i++) {
        jobs[i].index = i;
        jobs[i].failures = 0;
        CHECK(pthread_create(&threads[i], NULL, work, &jobs[i]) == 0);
    }
    for (i = 0; i < THREADS; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        CHECK(jobs[i].failures == 0);
    }
    /* The main thread never failed: its message is still empty. */
    CHECK(strcmp(elpips_last_error(shared), "") == 0);
    elpips_reference_free(reference);
    elpips_context_free(shared);
    free(ref8);
    for (i = 0; i < THREADS; i++) free(cand8[i]);
    return harness_finish("test_threads");
}
