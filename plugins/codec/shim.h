/* Internal to the codec shims: each codec's encode-and-decode and the error helper. */
#ifndef ELPIPS_CODEC_SHIM_H
#define ELPIPS_CODEC_SHIM_H

#include "elpips_codec.h"

int elpips_codec_fail(char *err, size_t err_len, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

int elpips_jpeg_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels, int quality, int effort,
                       ElpipsCodecOutput *out, char *err, size_t err_len);
int elpips_webp_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels, int quality, int effort,
                       ElpipsCodecOutput *out, char *err, size_t err_len);
int elpips_avif_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels, int quality, int effort,
                       ElpipsCodecOutput *out, char *err, size_t err_len);
int elpips_jxl_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels, int quality, int effort,
                      ElpipsCodecOutput *out, char *err, size_t err_len);

#endif
