/* WebP through libwebp (lossy, quality 0..100 as cwebp -q, method 0..6 as cwebp -m, 4 by default).
 * The advanced API with WEBP_PRESET_DEFAULT is what the simple WebPEncodeRGB(A) runs, with its
 * method 4, so the default gives the same bytes the simple API gave. */
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>
#include <webp/encode.h>

#include "shim.h"

int elpips_webp_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels, int quality, int effort,
                       ElpipsCodecOutput *out, char *err, size_t err_len) {
    WebPConfig config;
    WebPPicture picture;
    WebPMemoryWriter writer;
    if (!WebPConfigPreset(&config, WEBP_PRESET_DEFAULT, (float)quality) || !WebPPictureInit(&picture))
        return elpips_codec_fail(err, err_len, "webp: this libwebp does not match its headers");
    config.method = effort;
    if (!WebPValidateConfig(&config)) return elpips_codec_fail(err, err_len, "webp: method %d is not valid", effort);
    picture.width = (int)width;
    picture.height = (int)height;
    picture.writer = WebPMemoryWrite;
    picture.custom_ptr = &writer;
    WebPMemoryWriterInit(&writer);
    int stride = (int)(width * channels);
    int ok = (channels == 4 ? WebPPictureImportRGBA(&picture, pixels, stride) : WebPPictureImportRGB(&picture, pixels, stride)) &&
             WebPEncode(&config, &picture);
    WebPPictureFree(&picture);
    if (!ok) {
        WebPMemoryWriterClear(&writer);
        return elpips_codec_fail(err, err_len, "webp: encoding failed (error %d)", (int)picture.error_code);
    }
    out->bytes = malloc(writer.size);
    out->pixels = malloc((size_t)width * height * 3);
    if (!out->bytes || !out->pixels) {
        WebPMemoryWriterClear(&writer);
        return elpips_codec_fail(err, err_len, "webp: out of memory");
    }
    memcpy(out->bytes, writer.mem, writer.size);
    out->size = writer.size;
    uint8_t *decoded = WebPDecodeRGBInto(writer.mem, writer.size, out->pixels, (size_t)width * height * 3, (int)width * 3);
    WebPMemoryWriterClear(&writer);
    if (!decoded) return elpips_codec_fail(err, err_len, "webp: decoding the encoded file failed");
    return 0;
}
