/* JPEG through libjpeg-turbo's TurboJPEG API: 4:2:0 chroma, accurate DCT, quality 1..100
 * (0 is encoded as 1), as cjpeg's defaults. */
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "shim.h"

int elpips_jpeg_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels, int quality, int effort,
                       ElpipsCodecOutput *out, char *err, size_t err_len) {
    (void)effort; /* TurboJPEG has no speed setting */
    int rc = 1;
    unsigned char *jpeg = NULL;
    unsigned long jpeg_size = 0;
    tjhandle enc = tjInitCompress(), dec = tjInitDecompress();
    if (!enc || !dec) {
        rc = elpips_codec_fail(err, err_len, "jpeg: cannot create a TurboJPEG handle: %s", tjGetErrorStr2(NULL));
        goto done;
    }
    if (tjCompress2(enc, pixels, (int)width, 0, (int)height, channels == 4 ? TJPF_RGBA : TJPF_RGB, &jpeg, &jpeg_size,
                    TJSAMP_420, quality < 1 ? 1 : quality, TJFLAG_ACCURATEDCT) != 0) {
        rc = elpips_codec_fail(err, err_len, "jpeg: encoding failed: %s", tjGetErrorStr2(enc));
        goto done;
    }
    out->bytes = malloc(jpeg_size);
    out->pixels = malloc((size_t)width * height * 3);
    if (!out->bytes || !out->pixels) {
        rc = elpips_codec_fail(err, err_len, "jpeg: out of memory");
        goto done;
    }
    memcpy(out->bytes, jpeg, jpeg_size);
    out->size = jpeg_size;
    if (tjDecompress2(dec, jpeg, jpeg_size, out->pixels, (int)width, 0, (int)height, TJPF_RGB, TJFLAG_ACCURATEDCT) != 0) {
        rc = elpips_codec_fail(err, err_len, "jpeg: decoding the encoded file failed: %s", tjGetErrorStr2(dec));
        goto done;
    }
    rc = 0;
done:
    tjFree(jpeg);
    if (enc) tjDestroy(enc);
    if (dec) tjDestroy(dec);
    return rc;
}
