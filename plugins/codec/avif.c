/* AVIF through libavif (YUV 4:2:0, 8-bit, one thread; speed 0..10 as avifenc -s, 6 by default).
 * Quality q (0..100) maps to the AV1 quantizer round((100 - q) * 63 / 100), the mapping of
 * libavif 1.x's `quality`, so neighbouring qualities may give the same file. */
#include <stdlib.h>
#include <string.h>
#include <avif/avif.h>

#include "shim.h"

int elpips_avif_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels, int quality, int effort,
                       ElpipsCodecOutput *out, char *err, size_t err_len) {
    int rc = 1;
    avifResult r;
    avifRWData file = AVIF_DATA_EMPTY;
    avifEncoder *enc = NULL;
    avifDecoder *dec = NULL;
    avifImage *decoded = NULL;
    avifImage *image = avifImageCreate((int)width, (int)height, 8, AVIF_PIXEL_FORMAT_YUV420);
    if (!avifCodecName(AVIF_CODEC_CHOICE_AUTO, AVIF_CODEC_FLAG_CAN_ENCODE)) {
        rc = elpips_codec_fail(err, err_len, "avif: this libavif has no AV1 encoder (install libaom3 or librav1e)");
        goto done;
    }
    if (!image) {
        rc = elpips_codec_fail(err, err_len, "avif: out of memory");
        goto done;
    }
    avifRGBImage rgb;
    avifRGBImageSetDefaults(&rgb, image);
    rgb.format = channels == 4 ? AVIF_RGB_FORMAT_RGBA : AVIF_RGB_FORMAT_RGB;
    rgb.depth = 8;
    rgb.pixels = (uint8_t *)pixels; /* read only by avifImageRGBToYUV */
    rgb.rowBytes = width * channels;
    if ((r = avifImageRGBToYUV(image, &rgb)) != AVIF_RESULT_OK) {
        rc = elpips_codec_fail(err, err_len, "avif: RGB to YUV failed: %s", avifResultToString(r));
        goto done;
    }
    enc = avifEncoderCreate();
    if (!enc) {
        rc = elpips_codec_fail(err, err_len, "avif: out of memory");
        goto done;
    }
    int q = ((100 - quality) * 63 + 50) / 100;
    enc->minQuantizer = enc->maxQuantizer = q;
    enc->minQuantizerAlpha = enc->maxQuantizerAlpha = q;
    enc->speed = effort;
    enc->maxThreads = 1;
    if ((r = avifEncoderWrite(enc, image, &file)) != AVIF_RESULT_OK) {
        rc = elpips_codec_fail(err, err_len, "avif: encoding failed: %s", avifResultToString(r));
        goto done;
    }
    out->bytes = malloc(file.size);
    out->pixels = malloc((size_t)width * height * 3);
    if (!out->bytes || !out->pixels) {
        rc = elpips_codec_fail(err, err_len, "avif: out of memory");
        goto done;
    }
    memcpy(out->bytes, file.data, file.size);
    out->size = file.size;
    dec = avifDecoderCreate();
    decoded = avifImageCreateEmpty();
    if (!dec || !decoded) {
        rc = elpips_codec_fail(err, err_len, "avif: out of memory");
        goto done;
    }
    dec->maxThreads = 1;
    if ((r = avifDecoderReadMemory(dec, decoded, file.data, file.size)) != AVIF_RESULT_OK) {
        rc = elpips_codec_fail(err, err_len, "avif: decoding the encoded file failed: %s", avifResultToString(r));
        goto done;
    }
    if (decoded->width != width || decoded->height != height) {
        rc = elpips_codec_fail(err, err_len, "avif: decoded %ux%u, expected %ux%u", decoded->width, decoded->height, width, height);
        goto done;
    }
    avifRGBImage back;
    avifRGBImageSetDefaults(&back, decoded);
    back.format = AVIF_RGB_FORMAT_RGB;
    back.depth = 8;
    back.pixels = out->pixels;
    back.rowBytes = width * 3;
    if ((r = avifImageYUVToRGB(decoded, &back)) != AVIF_RESULT_OK) {
        rc = elpips_codec_fail(err, err_len, "avif: YUV to RGB failed: %s", avifResultToString(r));
        goto done;
    }
    rc = 0;
done:
    if (decoded) avifImageDestroy(decoded);
    if (dec) avifDecoderDestroy(dec);
    if (enc) avifEncoderDestroy(enc);
    if (image) avifImageDestroy(image);
    avifRWDataFree(&file);
    return rc;
}
