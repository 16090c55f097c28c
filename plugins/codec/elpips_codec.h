/* One interface over the encoder libraries elpips can tune (libjpeg-turbo, libwebp, libavif,
 * libjxl): encode an RGB(A) buffer at a quality setting, decode the result back, report its
 * size. Each codec is compiled in only when its library was found at build time (build.rs
 * defines ELPIPS_HAVE_<CODEC>); elpips_codec_available() says which were. */
#ifndef ELPIPS_CODEC_H
#define ELPIPS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { ELPIPS_CODEC_JPEG = 0, ELPIPS_CODEC_WEBP = 1, ELPIPS_CODEC_AVIF = 2, ELPIPS_CODEC_JXL = 3 };

/* What one encode produced. Both buffers are malloc'ed by the shim; release them with
 * elpips_codec_output_free. */
typedef struct {
    uint8_t *bytes;  /* the encoded file */
    size_t size;     /* its length in bytes */
    uint8_t *pixels; /* the file decoded back: interleaved RGB8, width * height * 3 bytes (alpha dropped) */
} ElpipsCodecOutput;

/* 1 when `codec` was compiled in, else 0. */
int elpips_codec_available(int codec);

/* The encoder's own speed/effort setting, per codec; ELPIPS_CODEC_EFFORT_DEFAULT gives the
 * value each shim used before it could be set. JPEG has none (it must be the default). */
enum {
    ELPIPS_CODEC_EFFORT_DEFAULT = -1,
    ELPIPS_CODEC_WEBP_METHOD_DEFAULT = 4, /* libwebp method 0 (fastest) .. 6 (smallest), cwebp -m */
    ELPIPS_CODEC_AVIF_SPEED_DEFAULT = 6,  /* libavif speed 0 (slowest, smallest) .. 10 (fastest), avifenc -s */
    ELPIPS_CODEC_JXL_EFFORT_DEFAULT = 7   /* libjxl effort 1 (fastest) .. 9 (smallest), cjxl -e */
};

/* Encodes `width` x `height` pixels of interleaved 8-bit RGB (`channels` 3) or RGBA (4), rows
 * packed, at `quality` (0..100, higher = better and larger; each codec's mapping is in
 * plugins/codec/README.md) and `effort` (the codec's speed/effort setting above, range-checked;
 * ELPIPS_CODEC_EFFORT_DEFAULT for its default), then decodes the file back. Returns 0 and fills
 * `*out` on success; otherwise returns non-zero, leaves `*out` empty and writes a NUL-terminated
 * reason to `err` (`err_len` bytes at most). */
int elpips_codec_encode(int codec, const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels,
                        int quality, int effort, ElpipsCodecOutput *out, char *err, size_t err_len);

/* Frees what elpips_codec_encode allocated and empties `*out`. NULL or empty: no-op. */
void elpips_codec_output_free(ElpipsCodecOutput *out);

#ifdef __cplusplus
}
#endif
#endif
