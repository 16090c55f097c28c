/* Options and contexts: defaults, struct_size versioning, every option error, NULL policy,
 * versions and status names. */
#define _XOPEN_SOURCE 700 /* mkstemp, for the weights file written below */
#include <unistd.h>

#include "harness.h"

static void versions(void) {
    CHECK(strcmp(elpips_version(), ELPIPS_VERSION_STRING) == 0);
    CHECK(elpips_abi_version() == ELPIPS_ABI_VERSION);
    CHECK(strcmp(elpips_status_str(ELPIPS_OK), "ok") == 0);
    CHECK(strcmp(elpips_status_str(ELPIPS_STATUS_NULL_POINTER), "null pointer") == 0);
    CHECK(strcmp(elpips_status_str(-1), "unknown status") == 0);
    CHECK(strcmp(elpips_status_str(1000), "unknown status") == 0);
    /* The core's error codes 1..10 come first, the C-only ones after, never renumbered. */
    CHECK(ELPIPS_STATUS_INVALID_ARGUMENT == 1 && ELPIPS_STATUS_INFERENCE == 10);
    CHECK(ELPIPS_STATUS_NULL_POINTER == 11 && ELPIPS_STATUS_INTERNAL_ERROR == 15);
}

static void defaults(void) {
    ElpipsOptions o;
    memset(&o, 0xAB, sizeof o); /* garbage, as in uninitialised memory */
    CHECK_STATUS(NULL, elpips_options_default(&o, sizeof o), ELPIPS_OK);
    CHECK(o.struct_size == sizeof(ElpipsOptions));
    CHECK(o.metric == ELPIPS_METRIC_ELPIPS_VGG);
    CHECK(o.device == ELPIPS_DEVICE_CPU);
    CHECK(o.seed == 0);
    CHECK(o.sampler == ELPIPS_SAMPLER_CONTROL); /* the default since issue 18 */
    CHECK(o.sampling == ELPIPS_SAMPLING_ADAPTIVE);
    CHECK(o.abs_error == 0.01 && o.rel_error == 0.025);
    CHECK(o.max_samples == 200 && o.min_samples == 16 && o.samples == 200);
    CHECK(o.threads == 0 && o.scale_levels == 0 && o.max_pixels == 0);
    CHECK(o.runtime_library == NULL && o.model_dir == NULL && o.linear_weights == NULL);
    CHECK(o.backend == ELPIPS_BACKEND_AUTO);
    CHECK(o.tile_samples == 0); /* whole samples unless asked (issue 33) */
    CHECK(o.cheap_draws == 0); /* one stream unless asked (issue 34) */
    CHECK_STATUS(NULL, elpips_options_default(NULL, sizeof o), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(NULL, elpips_options_default(&o, 8), ELPIPS_STATUS_INVALID_ARGUMENT);
}

/* A caller built against the first header (its struct ends before `exposure`) gets only its own
 * bytes written; one built against a newer header gets its unknown trailing fields zeroed. */
static void sized_defaults(void) {
    const size_t v1 = offsetof(ElpipsOptions, exposure);
    unsigned char buf[sizeof(ElpipsOptions) + 16];
    ElpipsOptions o;
    size_t i;
    memset(buf, 0xAB, sizeof buf);
    CHECK_STATUS(NULL, elpips_options_default((ElpipsOptions *)(void *)buf, v1), ELPIPS_OK);
    memcpy(&o, buf, v1);
    CHECK(o.struct_size == v1 && o.metric == ELPIPS_METRIC_ELPIPS_VGG && o.min_samples == 16);
    for (i = v1; i < sizeof buf; i++) CHECK(buf[i] == 0xAB);

    memset(buf, 0xAB, sizeof buf);
    CHECK_STATUS(NULL, elpips_options_default((ElpipsOptions *)(void *)buf, sizeof buf), ELPIPS_OK);
    memcpy(&o, buf, sizeof o);
    CHECK(o.struct_size == sizeof buf && o.tonemap == ELPIPS_TONEMAP_CLAMP);
    for (i = sizeof o; i < sizeof buf; i++) CHECK(buf[i] == 0);
}

/* Tries to create a context from `o`; checks the status and that the message names `needle`. */
static void refused(const ElpipsOptions *o, ElpipsStatus want, const char *needle) {
    ElpipsContext *ctx = (ElpipsContext *)&ctx; /* not NULL: must be reset on failure */
    char message[256];
    CHECK_STATUS(NULL, elpips_context_new_with_error(o, &ctx, message, sizeof message), want);
    CHECK(ctx == NULL);
    if (strstr(message, needle) == NULL) {
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", message, needle);
        harness_failures++;
    }
}

static void option_errors(void) {
    ElpipsOptions o;
    char tiny[8];

    o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    o.struct_size = 8;
    refused(&o, ELPIPS_STATUS_INVALID_ARGUMENT, "struct_size");

    o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    o.metric = 99;
    refused(&o, ELPIPS_STATUS_INVALID_ARGUMENT, "unknown metric 99");

    o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    o.device = ELPIPS_DEVICE_CUDA;
    refused(&o, ELPIPS_STATUS_UNSUPPORTED, "CUDA");

    o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    o.device = 7;
    refused(&o, ELPIPS_STATUS_INVALID_ARGUMENT, "unknown device");

    o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    o.backend = 9;
    refused(&o, ELPIPS_STATUS_INVALID_ARGUMENT, "unknown backend 9");

    /* A caller built against the header before `backend` never sets it: the default applies
       whatever its bytes beyond struct_size hold. */
    o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    o.struct_size = offsetof(ElpipsOptions, backend);
    o.backend = 9;
    {
        ElpipsContext *ctx = NULL;
        CHECK_STATUS(NULL, elpips_context_new(&o, &ctx), ELPIPS_OK);
        elpips_context_free(ctx);
    }

    o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    o.sampler = 9;
    refused(&o, ELPIPS_STATUS_INVALID_ARGUMENT, "unknown sampler 9");

    o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    o.sampling = 5;
    refused(&o, ELPIPS_STATUS_INVALID_ARGUMENT, "unknown sampling");

    o = test_options(ELPIPS_METRIC_ELPIPS_VGG, 0);
    refused(&o, ELPIPS_STATUS_INVALID_ARGUMENT, "at least 1");

    o = test_options(ELPIPS_METRIC_ELPIPS_VGG, 1);
    o.sampling = ELPIPS_SAMPLING_ADAPTIVE;
    o.rel_error = -1.0;
    refused(&o, ELPIPS_STATUS_INVALID_ARGUMENT, "positive");

    o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    o.scale_levels = 2;
    refused(&o, ELPIPS_STATUS_INVALID_ARGUMENT, "elpips-vgg only");

    o = test_options(ELPIPS_METRIC_ELPIPS_VGG, 1);
    o.tile_samples = 2;
    refused(&o, ELPIPS_STATUS_INVALID_ARGUMENT, "tile_samples is 2");
    elpips_options_default(&o, sizeof o);
    o.cheap_draws = 256;
    refused(&o, ELPIPS_STATUS_INVALID_ARGUMENT, "use 0 to 255 cheap draws");
    elpips_options_default(&o, sizeof o);
    o.cheap_draws = 3;
    o.sampler = ELPIPS_SAMPLER_STRATIFIED;
    refused(&o, ELPIPS_STATUS_INVALID_ARGUMENT, "not stratified");

    o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    o.model_dir = "/nonexistent/elpips-models";
    refused(&o, ELPIPS_STATUS_MODEL, "/nonexistent/elpips-models/lpips-alex.features.onnx");

    o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    o.linear_weights = "/nonexistent/weights.safetensors";
    refused(&o, ELPIPS_STATUS_LINEAR_WEIGHTS, "/nonexistent/weights.safetensors");

    /* A pickle-based .npy is refused unread, with the command that converts it. */
    {
        char path[] = "/tmp/elpips-test-weights-XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        static const char npy[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '|O', 'fortran_order': False, 'shape': (), }";
        CHECK(write(fd, npy, sizeof npy - 1) == (ssize_t)(sizeof npy - 1));
        close(fd);
        o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
        o.linear_weights = path;
        refused(&o, ELPIPS_STATUS_LINEAR_WEIGHTS, "convert it with `python3 weights/convert.py safetensors IN OUT`");
        unlink(path);
    }

    /* The runtime is loaded once per process (by the first context below or earlier); another
     * file is refused rather than silently ignored. */
    o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    o.runtime_library = "/nonexistent/libonnxruntime.so";
    refused(&o, ELPIPS_STATUS_RUNTIME, "/nonexistent/libonnxruntime.so");

    /* Messages are truncated to the buffer, always NUL-terminated. */
    {
        ElpipsContext *ctx = NULL;
        o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
        o.metric = 99;
        CHECK_STATUS(NULL, elpips_context_new_with_error(&o, &ctx, tiny, sizeof tiny),
                     ELPIPS_STATUS_INVALID_ARGUMENT);
        CHECK(strlen(tiny) == sizeof tiny - 1);
        CHECK_STATUS(NULL, elpips_context_new_with_error(&o, &ctx, NULL, 0),
                     ELPIPS_STATUS_INVALID_ARGUMENT);
    }
}

/* A caller built against a newer header passes a bigger struct: accepted when the fields this
 * library does not know are zero, refused otherwise. */
static void newer_struct(void) {
    struct {
        ElpipsOptions known;
        uint64_t future_field;
    } bigger;
    ElpipsContext *ctx = NULL;
    char message[256];
    bigger.known = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    bigger.known.struct_size = sizeof bigger;
    bigger.future_field = 0;
    CHECK_STATUS(NULL, elpips_context_new_with_error(&bigger.known, &ctx, message, sizeof message),
                 ELPIPS_OK);
    elpips_context_free(ctx);
    ctx = NULL;
    bigger.future_field = 1;
    CHECK_STATUS(NULL, elpips_context_new_with_error(&bigger.known, &ctx, message, sizeof message),
                 ELPIPS_STATUS_UNSUPPORTED);
    CHECK(ctx == NULL);
}

static void contexts(void) {
    ElpipsOptions o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    ElpipsContext *ctx = NULL;
    CHECK_STATUS(NULL, elpips_context_new(&o, &ctx), ELPIPS_OK);
    CHECK(ctx != NULL);
    CHECK(strcmp(elpips_last_error(ctx), "") == 0); /* no failure yet */
    CHECK_STATUS(NULL, elpips_context_new(&o, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK(strcmp(elpips_last_error(NULL), "") == 0);
    elpips_context_free(ctx);
    elpips_context_free(NULL); /* no-op */

    /* AUTO says what it chose: the CPU, with the CPU-only runtime the tests install. */
    {
        ElpipsDevice device = 99;
        o.device = ELPIPS_DEVICE_AUTO;
        CHECK_STATUS(NULL, elpips_context_new(&o, &ctx), ELPIPS_OK);
        CHECK_STATUS(ctx, elpips_context_device(ctx, &device), ELPIPS_OK);
        CHECK(device == ELPIPS_DEVICE_CPU);
        CHECK_STATUS(ctx, elpips_context_device(ctx, NULL), ELPIPS_STATUS_NULL_POINTER);
        CHECK_STATUS(NULL, elpips_context_device(NULL, &device), ELPIPS_STATUS_NULL_POINTER);
        /* bf16 runs only where the CPU and the OpenVINO plugin allow it; refused with the reason
           elsewhere, and the context keeps fp32. */
        {
            ElpipsStatus st = elpips_context_set_precision(ctx, ELPIPS_PRECISION_BF16);
            CHECK(st == ELPIPS_OK || st == ELPIPS_STATUS_UNSUPPORTED);
            if (st == ELPIPS_STATUS_UNSUPPORTED) CHECK_MESSAGE(ctx, "ELPIPS_PRECISION_BF16");
        }
        /* Precision and tiling are per-context settings; int8 exists for lpips-vgg and
           elpips-vgg, not for this context's lpips-alex. */
        CHECK_STATUS(ctx, elpips_context_set_precision(ctx, 9), ELPIPS_STATUS_INVALID_ARGUMENT);
        CHECK_MESSAGE(ctx, "unknown precision 9");
        CHECK_STATUS(ctx, elpips_context_set_precision(ctx, ELPIPS_PRECISION_INT8), ELPIPS_STATUS_INVALID_ARGUMENT);
        CHECK_MESSAGE(ctx, "lpips-vgg and elpips-vgg");
        CHECK_STATUS(ctx, elpips_context_set_precision(ctx, ELPIPS_PRECISION_FP32), ELPIPS_OK);
        CHECK_STATUS(ctx, elpips_context_set_tile_size(ctx, ELPIPS_TILE_NEVER), ELPIPS_OK);
        CHECK_STATUS(ctx, elpips_context_set_tile_size(ctx, 0), ELPIPS_OK);
        CHECK_STATUS(NULL, elpips_context_set_precision(NULL, ELPIPS_PRECISION_FP32), ELPIPS_STATUS_NULL_POINTER);
        CHECK_STATUS(NULL, elpips_context_set_tile_size(NULL, 0), ELPIPS_STATUS_NULL_POINTER);
        elpips_context_free(ctx);
    }
}

/* The CPU backend: MLAS when asked for; AUTO says what it chose; OpenVINO runs where its plugin
 * is installed and serves this CPU, and is refused with the reason elsewhere. */
static void backends(void) {
    ElpipsOptions o = test_options(ELPIPS_METRIC_LPIPS_ALEX, 1);
    ElpipsContext *ctx = NULL;
    ElpipsBackend backend = 99;
    char message[512];
    ElpipsStatus st;
    o.backend = ELPIPS_BACKEND_MLAS;
    CHECK_STATUS(NULL, elpips_context_new(&o, &ctx), ELPIPS_OK);
    CHECK_STATUS(ctx, elpips_context_backend(ctx, &backend), ELPIPS_OK);
    CHECK(backend == ELPIPS_BACKEND_MLAS);
    CHECK_STATUS(ctx, elpips_context_backend(ctx, NULL), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(NULL, elpips_context_backend(NULL, &backend), ELPIPS_STATUS_NULL_POINTER);
    CHECK_STATUS(ctx, elpips_context_set_precision(ctx, ELPIPS_PRECISION_BF16), ELPIPS_STATUS_UNSUPPORTED);
    elpips_context_free(ctx);
    ctx = NULL;

    o.backend = ELPIPS_BACKEND_AUTO;
    CHECK_STATUS(NULL, elpips_context_new(&o, &ctx), ELPIPS_OK);
    CHECK_STATUS(ctx, elpips_context_backend(ctx, &backend), ELPIPS_OK);
    CHECK(backend == ELPIPS_BACKEND_MLAS || backend == ELPIPS_BACKEND_OPENVINO);
    elpips_context_free(ctx);
    ctx = NULL;

    o.backend = ELPIPS_BACKEND_OPENVINO;
    st = elpips_context_new_with_error(&o, &ctx, message, sizeof message);
    if (st == ELPIPS_OK) {
        CHECK_STATUS(ctx, elpips_context_backend(ctx, &backend), ELPIPS_OK);
        CHECK(backend == ELPIPS_BACKEND_OPENVINO);
        elpips_context_free(ctx);
    } else {
        CHECK(st == ELPIPS_STATUS_UNSUPPORTED && ctx == NULL);
        CHECK(strstr(message, "ELPIPS_BACKEND_OPENVINO") != NULL);
    }
}

/* The installed library found its runtime by itself: libonnxruntime is mapped from the
 * directory libelpips was loaded from (the tests run without ORT_DYLIB_PATH, and the checkout's
 * own copy would be found otherwise). */
static void runtime_beside_library(void) {
    char line[4096], elpips_dir[4096] = "", ort_dir[4096] = "";
    FILE *maps = fopen("/proc/self/maps", "r");
    if (maps == NULL) return; /* not Linux */
    while (fgets(line, sizeof line, maps)) {
        char *path = strchr(line, '/'), *slash;
        if (path == NULL) continue;
        path[strcspn(path, "\n")] = '\0';
        slash = strrchr(path, '/');
        if (strstr(slash, "/libelpips.so") == slash) {
            *slash = '\0';
            strcpy(elpips_dir, path);
        } else if (strstr(slash, "/libonnxruntime.so") == slash) {
            *slash = '\0';
            strcpy(ort_dir, path);
        }
    }
    fclose(maps);
    CHECK(elpips_dir[0] != '\0' && ort_dir[0] != '\0');
    if (strcmp(elpips_dir, ort_dir) != 0) {
        fprintf(stderr, "libelpips from %s but libonnxruntime from %s\n", elpips_dir, ort_dir);
        harness_failures++;
    }
}

int main(void) {
    versions();
    defaults();
    sized_defaults();
    contexts(); /* loads the runtime from its default place first */
    runtime_beside_library();
    option_errors();
    newer_struct();
    backends();
    return harness_finish("test_options");
}
