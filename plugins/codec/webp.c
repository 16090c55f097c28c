/* WebP through libwebp's simple API (lossy, method 4, quality 0..100 as cwebp -q). */
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>
#include <webp/encode.h>

#include "shim.h"

int elpips_webp_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels, int quality,
                       ElpipsCodecOutput *out, char *err, size_t err_len) {
    uint8_t *webp = NULL;
    int stride = (int)(width * channels);
    size_t size = channels == 4 ? WebPEncodeRGBA(pixels, (int)width, (int)height, stride, (float)quality, &webp)
                                : WebPEncodeRGB(pixels, (int)width, (int)height, stride, (float)quality, &webp);
    if (size == 0) {
        WebPFree(webp);
        return elpips_codec_fail(err, err_len, "webp: encoding failed");
    }
    out->bytes = malloc(size);
    out->pixels = malloc((size_t)width * height * 3);
    if (!out->bytes || !out->pixels) {
        WebPFree(webp);
        return elpips_codec_fail(err, err_len, "webp: out of memory");
    }
    memcpy(out->bytes, webp, size);
    out->size = size;
    uint8_t *decoded = WebPDecodeRGBInto(webp, size, out->pixels, (size_t)width * height * 3, (int)width * 3);
    WebPFree(webp);
    if (!decoded) return elpips_codec_fail(err, err_len, "webp: decoding the encoded file failed");
    return 0;
}
