// elpips.hpp: a header-only C++17 wrapper over the elpips C API (elpips.h).
//
// RAII handles (Context, Reference) that free themselves, an ImageView describing caller-owned
// pixels, and exceptions (elpips::Error) carrying the status and the library's message instead
// of status codes. Nothing here adds behaviour: every call maps to one C function, so the C
// header's documentation (ownership, defaults, thread-safety) applies unchanged.
//
// Thread-safety: as in C, a Context may be shared between threads (calls are serialised by its
// internal lock); a Reference is immutable and may be shared freely.
//
//   elpips::Options options;                       // defaults: E-LPIPS, adaptive sampling
//   options.raw.sampling = ELPIPS_SAMPLING_FIXED;
//   options.raw.samples = 50;
//   elpips::Context ctx(options);
//   elpips::Result r = ctx.compare(elpips::ImageView::rgb8(ref, w, h), elpips::ImageView::rgb8(cand, w, h));
#ifndef ELPIPS_HPP
#define ELPIPS_HPP

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "elpips.h"

namespace elpips {

// A failed call: the status (an ELPIPS_STATUS_* value) and the library's message.
class Error : public std::runtime_error {
public:
    Error(ElpipsStatus status, const std::string &message)
        : std::runtime_error(message), status_(status) {}
    ElpipsStatus status() const noexcept { return status_; }

private:
    ElpipsStatus status_;
};

namespace detail {
inline std::string describe(ElpipsStatus status, const char *message) {
    std::string text = elpips_status_str(status);
    if (message != nullptr && *message != '\0') {
        text += ": ";
        text += message;
    }
    return text;
}
}  // namespace detail

// The library version at run time, e.g. "0.1.0" (compare ELPIPS_VERSION_STRING).
inline std::string version() { return elpips_version(); }

// Context options: `raw` is the C struct, filled with the library's defaults; change its fields.
struct Options {
    ElpipsOptions raw;
    Options() {
        raw.struct_size = sizeof raw;
        ElpipsStatus s = elpips_options_default(&raw, sizeof raw);
        if (s != ELPIPS_OK) throw Error(s, detail::describe(s, nullptr));
    }
};

// A description of caller-owned pixels; the pixels are read during a call, never kept.
struct ImageView {
    ElpipsImage raw{};

    ImageView() = default;
    ImageView(const void *data, std::uint32_t width, std::uint32_t height, ElpipsPixelFormat format,
              std::size_t stride_bytes = 0, ElpipsTransfer transfer = ELPIPS_TRANSFER_SRGB) {
        raw.data = data;
        raw.width = width;
        raw.height = height;
        raw.stride_bytes = stride_bytes;
        raw.format = format;
        raw.transfer = transfer;
    }
    static ImageView rgb8(const std::uint8_t *data, std::uint32_t width, std::uint32_t height,
                          std::size_t stride_bytes = 0) {
        return ImageView(data, width, height, ELPIPS_PIXEL_FORMAT_RGB8, stride_bytes);
    }
    static ImageView rgba8(const std::uint8_t *data, std::uint32_t width, std::uint32_t height,
                           std::size_t stride_bytes = 0) {
        return ImageView(data, width, height, ELPIPS_PIXEL_FORMAT_RGBA8, stride_bytes);
    }
    static ImageView rgb_f32(const float *data, std::uint32_t width, std::uint32_t height,
                             ElpipsTransfer transfer = ELPIPS_TRANSFER_SRGB, std::size_t stride_bytes = 0) {
        return ImageView(data, width, height, ELPIPS_PIXEL_FORMAT_RGB_F32, stride_bytes, transfer);
    }
};

using Result = ElpipsResult;
// A gate: threshold T; zero error_rate / max_samples / min_samples take the defaults.
using Gate = ElpipsGate;
using Decision = ElpipsDecision;

class Context;

// A reference prepared once for many candidates (see elpips_reference_new). Move-only.
class Reference {
public:
    Reference(Reference &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Reference &operator=(Reference &&other) noexcept {
        if (this != &other) {
            elpips_reference_free(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    Reference(const Reference &) = delete;
    Reference &operator=(const Reference &) = delete;
    ~Reference() { elpips_reference_free(handle_); }

    const ElpipsReference *get() const noexcept { return handle_; }

private:
    friend class Context;
    explicit Reference(ElpipsReference *handle) : handle_(handle) {}
    ElpipsReference *handle_;
};

// A loaded metric. Move-only; frees itself.
class Context {
public:
    Context() : Context(Options()) {}
    explicit Context(const Options &options) {
        char message[1024];
        ElpipsStatus s = elpips_context_new_with_error(&options.raw, &handle_, message, sizeof message);
        if (s != ELPIPS_OK) throw Error(s, detail::describe(s, message));
    }
    Context(Context &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Context &operator=(Context &&other) noexcept {
        if (this != &other) {
            elpips_context_free(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    Context(const Context &) = delete;
    Context &operator=(const Context &) = delete;
    ~Context() { elpips_context_free(handle_); }

    Result compare(const ImageView &reference, const ImageView &candidate) {
        Result r{};
        check(elpips_compare(handle_, &reference.raw, &candidate.raw, &r));
        return r;
    }
    Result compare_files(const std::string &reference_path, const std::string &candidate_path) {
        Result r{};
        check(elpips_compare_files(handle_, reference_path.c_str(), candidate_path.c_str(), &r));
        return r;
    }
    // Is the distance at most gate.threshold? Stops sampling once the verdict is certain at the
    // gate's error rate (see elpips_decide).
    Decision decide(const ImageView &reference, const ImageView &candidate, const Gate &gate) {
        Decision d{};
        check(elpips_decide(handle_, &reference.raw, &candidate.raw, &gate, &d));
        return d;
    }
    Decision decide_files(const std::string &reference_path, const std::string &candidate_path,
                          const Gate &gate) {
        Decision d{};
        check(elpips_decide_files(handle_, reference_path.c_str(), candidate_path.c_str(), &gate, &d));
        return d;
    }
    Reference prepare(const ImageView &reference) {
        ElpipsReference *handle = nullptr;
        check(elpips_reference_new(handle_, &reference.raw, &handle));
        return Reference(handle);
    }
    Result compare(const Reference &reference, const ImageView &candidate) {
        Result r{};
        check(elpips_compare_reference(handle_, reference.get(), &candidate.raw, &r));
        return r;
    }

    ElpipsContext *get() const noexcept { return handle_; }

private:
    void check(ElpipsStatus s) const {
        if (s != ELPIPS_OK) throw Error(s, detail::describe(s, elpips_last_error(handle_)));
    }
    ElpipsContext *handle_ = nullptr;
};

}  // namespace elpips

#endif  // ELPIPS_HPP
