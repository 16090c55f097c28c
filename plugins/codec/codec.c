/* Dispatch and argument checks shared by every codec shim. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

int elpips_codec_fail(char *err, size_t err_len, const char *fmt, ...) {
    if (err && err_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return 1;
}

int elpips_codec_available(int codec) {
    switch (codec) {
#ifdef ELPIPS_HAVE_JPEG
    case ELPIPS_CODEC_JPEG: return 1;
#endif
#ifdef ELPIPS_HAVE_WEBP
    case ELPIPS_CODEC_WEBP: return 1;
#endif
#ifdef ELPIPS_HAVE_AVIF
    case ELPIPS_CODEC_AVIF: return 1;
#endif
#ifdef ELPIPS_HAVE_JXL
    case ELPIPS_CODEC_JXL: return 1;
#endif
    default: return 0;
    }
}

/* Each codec's effort range and default (JPEG has none: only the default is accepted). */
static int effort_range(int codec, int *lo, int *hi, int *dflt, const char **name) {
    switch (codec) {
    case ELPIPS_CODEC_WEBP: *lo = 0, *hi = 6, *dflt = ELPIPS_CODEC_WEBP_METHOD_DEFAULT, *name = "webp method"; return 1;
    case ELPIPS_CODEC_AVIF: *lo = 0, *hi = 10, *dflt = ELPIPS_CODEC_AVIF_SPEED_DEFAULT, *name = "avif speed"; return 1;
    case ELPIPS_CODEC_JXL: *lo = 1, *hi = 9, *dflt = ELPIPS_CODEC_JXL_EFFORT_DEFAULT, *name = "jxl effort"; return 1;
    default: return 0;
    }
}

int elpips_codec_encode(int codec, const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels,
                        int quality, int effort, ElpipsCodecOutput *out, char *err, size_t err_len) {
    if (err && err_len > 0) err[0] = '\0';
    if (!out) return elpips_codec_fail(err, err_len, "out is NULL");
    memset(out, 0, sizeof *out);
    if (!pixels) return elpips_codec_fail(err, err_len, "pixels is NULL");
    if (channels != 3 && channels != 4) return elpips_codec_fail(err, err_len, "channels must be 3 (RGB) or 4 (RGBA), not %u", channels);
    /* 16384 is the smallest per-side limit of the four formats (WebP). */
    if (width == 0 || height == 0 || width > 16383 || height > 16383)
        return elpips_codec_fail(err, err_len, "image is %ux%u; each side must be 1..16383", width, height);
    if (quality < 0 || quality > 100) return elpips_codec_fail(err, err_len, "quality %d is outside 0..100", quality);
    int lo, hi, dflt;
    const char *what;
    if (effort_range(codec, &lo, &hi, &dflt, &what)) {
        if (effort == ELPIPS_CODEC_EFFORT_DEFAULT) effort = dflt;
        if (effort < lo || effort > hi) return elpips_codec_fail(err, err_len, "%s %d is outside %d..%d", what, effort, lo, hi);
    } else if (effort != ELPIPS_CODEC_EFFORT_DEFAULT) {
        return elpips_codec_fail(err, err_len, "this codec has no effort setting (got %d)", effort);
    }
    int rc;
    switch (codec) {
#ifdef ELPIPS_HAVE_JPEG
    case ELPIPS_CODEC_JPEG: rc = elpips_jpeg_encode(pixels, width, height, channels, quality, effort, out, err, err_len); break;
#endif
#ifdef ELPIPS_HAVE_WEBP
    case ELPIPS_CODEC_WEBP: rc = elpips_webp_encode(pixels, width, height, channels, quality, effort, out, err, err_len); break;
#endif
#ifdef ELPIPS_HAVE_AVIF
    case ELPIPS_CODEC_AVIF: rc = elpips_avif_encode(pixels, width, height, channels, quality, effort, out, err, err_len); break;
#endif
#ifdef ELPIPS_HAVE_JXL
    case ELPIPS_CODEC_JXL: rc = elpips_jxl_encode(pixels, width, height, channels, quality, effort, out, err, err_len); break;
#endif
    default: return elpips_codec_fail(err, err_len, "codec %d was not compiled in", codec);
    }
    if (rc != 0) elpips_codec_output_free(out);
    return rc;
}

void elpips_codec_output_free(ElpipsCodecOutput *out) {
    if (!out) return;
    free(out->bytes);
    free(out->pixels);
    memset(out, 0, sizeof *out);
}
