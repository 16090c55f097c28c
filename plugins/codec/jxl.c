/* JPEG XL through libjxl (VarDCT, one thread; effort 1..9 as cjxl -e, 7 by default). Quality q maps to
 * a butteraugli distance as cjxl's -q does: q >= 30: 0.1 + (100 - q) * 0.09; below 30:
 * 6.4 + 2.5^((30 - q) / 5) / 6.25, at most 25 (libjxl's limit, reached below q 7); q = 100 is
 * lossless. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <jxl/decode.h>
#include <jxl/encode.h>

#include "shim.h"

static float jxl_distance(int q) {
    if (q >= 30) return 0.1f + (float)(100 - q) * 0.09f;
    float d = 6.4f + (float)pow(2.5, (30 - q) / 5.0) / 6.25f;
    return d > 25.0f ? 25.0f : d;
}

static int jxl_decode(const uint8_t *file, size_t size, uint32_t width, uint32_t height, uint8_t *rgb, char *err, size_t err_len) {
    int rc = 1;
    JxlDecoder *dec = JxlDecoderCreate(NULL);
    JxlPixelFormat format = {3, JXL_TYPE_UINT8, JXL_NATIVE_ENDIAN, 0};
    if (!dec) return elpips_codec_fail(err, err_len, "jxl: out of memory");
    if (JxlDecoderSubscribeEvents(dec, JXL_DEC_BASIC_INFO | JXL_DEC_FULL_IMAGE) != JXL_DEC_SUCCESS ||
        JxlDecoderSetInput(dec, file, size) != JXL_DEC_SUCCESS) {
        rc = elpips_codec_fail(err, err_len, "jxl: cannot set up the decoder");
        goto done;
    }
    JxlDecoderCloseInput(dec);
    for (;;) {
        JxlDecoderStatus s = JxlDecoderProcessInput(dec);
        if (s == JXL_DEC_BASIC_INFO) {
            JxlBasicInfo info;
            if (JxlDecoderGetBasicInfo(dec, &info) != JXL_DEC_SUCCESS || info.xsize != width || info.ysize != height) {
                rc = elpips_codec_fail(err, err_len, "jxl: the decoded image is not %ux%u", width, height);
                goto done;
            }
        } else if (s == JXL_DEC_NEED_IMAGE_OUT_BUFFER) {
            size_t need = 0;
            if (JxlDecoderImageOutBufferSize(dec, &format, &need) != JXL_DEC_SUCCESS || need != (size_t)width * height * 3 ||
                JxlDecoderSetImageOutBuffer(dec, &format, rgb, need) != JXL_DEC_SUCCESS) {
                rc = elpips_codec_fail(err, err_len, "jxl: cannot set the output buffer");
                goto done;
            }
        } else if (s == JXL_DEC_FULL_IMAGE) {
            continue;
        } else if (s == JXL_DEC_SUCCESS) {
            rc = 0;
            goto done;
        } else {
            rc = elpips_codec_fail(err, err_len, "jxl: decoding the encoded file failed (status %d)", (int)s);
            goto done;
        }
    }
done:
    JxlDecoderDestroy(dec);
    return rc;
}

int elpips_jxl_encode(const uint8_t *pixels, uint32_t width, uint32_t height, uint32_t channels, int quality, int effort,
                      ElpipsCodecOutput *out, char *err, size_t err_len) {
    int rc = 1;
    int lossless = quality >= 100;
    uint8_t *buf = NULL;
    JxlEncoder *enc = JxlEncoderCreate(NULL);
    if (!enc) return elpips_codec_fail(err, err_len, "jxl: out of memory");
    JxlBasicInfo info;
    JxlEncoderInitBasicInfo(&info);
    info.xsize = width;
    info.ysize = height;
    info.bits_per_sample = 8;
    info.num_color_channels = 3;
    info.num_extra_channels = channels == 4 ? 1 : 0;
    info.alpha_bits = channels == 4 ? 8 : 0;
    info.uses_original_profile = lossless ? JXL_TRUE : JXL_FALSE;
    JxlColorEncoding colour;
    JxlColorEncodingSetToSRGB(&colour, JXL_FALSE);
    JxlEncoderFrameSettings *frame = NULL;
    if (JxlEncoderSetBasicInfo(enc, &info) != JXL_ENC_SUCCESS || JxlEncoderSetColorEncoding(enc, &colour) != JXL_ENC_SUCCESS ||
        !(frame = JxlEncoderFrameSettingsCreate(enc, NULL)) ||
        JxlEncoderFrameSettingsSetOption(frame, JXL_ENC_FRAME_SETTING_EFFORT, effort) != JXL_ENC_SUCCESS ||
        (lossless ? JxlEncoderSetFrameLossless(frame, JXL_TRUE) : JxlEncoderSetFrameDistance(frame, jxl_distance(quality))) != JXL_ENC_SUCCESS) {
        rc = elpips_codec_fail(err, err_len, "jxl: cannot set up the encoder");
        goto done;
    }
    JxlPixelFormat format = {channels, JXL_TYPE_UINT8, JXL_NATIVE_ENDIAN, 0};
    if (JxlEncoderAddImageFrame(frame, &format, pixels, (size_t)width * height * channels) != JXL_ENC_SUCCESS) {
        rc = elpips_codec_fail(err, err_len, "jxl: encoding failed");
        goto done;
    }
    JxlEncoderCloseInput(enc);
    size_t cap = 4096 + (size_t)width * height, used = 0;
    buf = malloc(cap);
    for (;;) {
        if (!buf) {
            rc = elpips_codec_fail(err, err_len, "jxl: out of memory");
            goto done;
        }
        uint8_t *next = buf + used;
        size_t avail = cap - used;
        JxlEncoderStatus s = JxlEncoderProcessOutput(enc, &next, &avail);
        used = (size_t)(next - buf);
        if (s == JXL_ENC_SUCCESS) break;
        if (s != JXL_ENC_NEED_MORE_OUTPUT) {
            rc = elpips_codec_fail(err, err_len, "jxl: encoding failed");
            goto done;
        }
        cap *= 2;
        uint8_t *grown = realloc(buf, cap);
        if (!grown) free(buf);
        buf = grown;
    }
    out->pixels = malloc((size_t)width * height * 3);
    if (!out->pixels) {
        rc = elpips_codec_fail(err, err_len, "jxl: out of memory");
        goto done;
    }
    out->bytes = buf;
    out->size = used;
    buf = NULL;
    rc = jxl_decode(out->bytes, out->size, width, height, out->pixels, err, err_len);
done:
    free(buf);
    JxlEncoderDestroy(enc);
    return rc;
}
