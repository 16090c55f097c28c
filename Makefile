# Entry points. `make demo` and `make test` run `make setup` themselves, so a fresh clone needs
# nothing but the machine's Rust toolchain and Python 3. `make test` first runs `make deps`
# (packaging/deps.sh): the system packages its tests need (C/C++ compilers, valgrind,
# pkg-config, CMake, GoogleTest, the four encoder libraries), installed with apt-get when run as
# root, otherwise listed before anything is built.
#
# ELPIPS_UPSTREAM_DIR: optional local mirror of the upstream data (CI sets it); otherwise the
# set-up downloads the pinned files and checks their sha256.

CARGO  ?= cargo
PYTHON ?= python3
CC     ?= cc
CXX    ?= c++
BIN    := target/release/elpips
UP     := .cache/upstream

# One version, from Cargo.toml: the header's macros, elpips_version() and the soname use it too.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
MAJOR   := $(word 1,$(subst ., ,$(VERSION)))
ORT_VERSION := 1.31.1
# What a program linking libelpips.a statically needs besides it (`cargo rustc -- --print native-static-libs`).
NATIVE_STATIC_LIBS := -ldl -lgcc_s -lutil -lrt -lpthread -lm -lc

PREFIX ?= /usr/local
LIBDIR  = $(DESTDIR)$(PREFIX)/lib
# Only /usr/lib is on the dynamic loader's path without help (/usr/local/lib needs an ldconfig
# run first): any other prefix's elpips.pc carries an rpath (see packaging/elpips.pc.in).
PC_RPATH = $(if $(filter /usr /usr/,$(PREFIX)),, -Wl$(COMMA)-rpath$(COMMA)$${libdir})
COMMA   := ,

# The C tests and examples build against a package installed here, never against target/.
TEST_PREFIX := $(CURDIR)/.cache/test-prefix
CBUILD      := $(CURDIR)/.cache/cbuild
STRICT_C    := -std=c99 -Wall -Wextra -Werror -pedantic -g
STRICT_CXX  := -std=c++17 -Wall -Wextra -Werror -pedantic -g
PKG         := PKG_CONFIG_PATH=$(TEST_PREFIX)/lib/pkgconfig pkg-config
# ONNX Runtime keeps thread pools and caches alive until exit ("still reachable"); only definite
# leaks and memory errors fail. Suppressions, with reasons, are in tests/c/valgrind.supp.
VALGRIND    := valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
               --show-leak-kinds=definite --suppressions=tests/c/valgrind.supp
# The installed library must find its runtime and models by itself.
NO_ENV      := env -u ORT_DYLIB_PATH -u ELPIPS_MODEL_DIR -u LD_LIBRARY_PATH
PYENV       := .cache/pyenv
C_TESTS     := $(basename $(notdir $(wildcard tests/c/test_*.c)))

.PHONY: dist test-dist test-install test-pip test-pip-models gpu-check gpu-parts test-report deps test-weights fuzz test-tsan bench-integrity setup build demo test test-rust test-c test-examples test-python test-plugins test-e2e test-long test-no-codecs bench bench-venv bench-tune attack interpolate header install install-test clean-cache

deps:
	@packaging/deps.sh

# DEVICE=cuda: also the GPU runtime (onnxruntime-gpu and the CUDA 13 libraries from PyPI, ~1.2 GB,
# into .cache/onnxruntime-gpu/lib); CUDA_LIBS=DIR[:DIR] uses an existing CUDA 13 installation's
# libraries instead of downloading them (docs/performance.md, CUDA).
DEVICE    ?= cpu
CUDA_LIBS ?=
GPU_LIB   := .cache/onnxruntime-gpu/lib
setup:
	$(PYTHON) weights/setup.py $(if $(filter cuda,$(DEVICE)),--device cuda $(if $(CUDA_LIBS),--cuda-libs $(CUDA_LIBS)))

build: setup
	$(CARGO) build --release

demo: build
	@echo "== LPIPS's own 2AFC example: which distortion is closer to the reference? (64x64)"
	@for m in lpips-alex lpips-vgg elpips-vgg; do \
	  printf '%-11s ref-p0: ' $$m; $(BIN) compare $(UP)/lpips/imgs/ex_ref.png $(UP)/lpips/imgs/ex_p0.png --metric $$m; \
	  printf '%-11s ref-p1: ' $$m; $(BIN) compare $(UP)/lpips/imgs/ex_ref.png $(UP)/lpips/imgs/ex_p1.png --metric $$m; \
	done
	@echo "== A cat and a dog (480x300), E-LPIPS with adaptive sampling (target: 95% half-width < 5%)"
	$(BIN) compare $(UP)/elpips/inputs/cat.png $(UP)/elpips/inputs/dog.png --rel-error 0.05 --max-samples 100 --json

test: deps setup
	$(MAKE) test-weights
	$(MAKE) test-rust
	$(MAKE) test-c
	$(MAKE) test-install
	$(MAKE) test-pip
	$(MAKE) test-dist
	$(MAKE) test-examples
	$(MAKE) test-python
	$(MAKE) test-plugins
	$(MAKE) test-e2e
	$(MAKE) test-report

# The HTML report of `elpips check --report` and the SVG plots of `elpips rd` in headless Chromium
# (`make deps` installs it), driven over the DevTools protocol: every row and image there and
# decoded, no request off the machine, no script or console error (tests/report/browser_test.py).
# Saves docs/img/report.png with REPORT_SCREENSHOT=1.
test-report: build
	$(PYTHON) tests/report/browser_test.py --elpips $(BIN) --images .cache/upstream/lpips/imgs $(if $(REPORT_SCREENSHOT),--screenshot docs/img/report.png)

# After the release build: the Python rows of tests/bad_inputs.rs load target/release/libelpips.so,
# which `cargo test` does not build.
test-rust: build
	$(CARGO) test --release

# The weights converter: hostile .npy/.pth files (pickles that would run a shell command) are
# refused and nothing runs; conversions to safetensors keep every value (weights/test_convert.py);
# the CUDA set-up's pins and its --cuda-libs checks, without downloading (weights/test_setup_cuda.py).
test-weights: setup
	.cache/venv/bin/python weights/test_convert.py
	.cache/venv/bin/python weights/test_setup_cuda.py

# Regenerates include/elpips.h from src/capi/ (one module per API area) (tests/header.rs checks it is up to date).
header:
	ELPIPS_WRITE_HEADER=1 $(CARGO) test --release --test header

# Installs the command, the C library, headers, runtime, models, pkg-config file and CMake package:
#   bin/elpips (finds this prefix's runtime and models from its own location: a removed or moved
#   checkout changes nothing, and the whole prefix may be moved),
#   lib/libelpips.so.$(VERSION) (+ .so.$(MAJOR), .so links), lib/libelpips.a,
#   lib/libonnxruntime.so.$(ORT_VERSION) (+ .so.1; found through libelpips' RUNPATH $$ORIGIN),
#   lib/onnxruntime.sha256 (its pin from weights/manifest.json, checked when libelpips loads it),
#   lib/openvino/ (the OpenVINO plugin and its libraries, when `make setup` fetched them: --backend openvino),
#   include/elpips.h, include/elpips.hpp, include/elpips_gtest.hpp (GoogleTest assertions), share/elpips/models/*.onnx (+ manifest, README),
#   lib/pkgconfig/elpips.pc, lib/cmake/elpips/elpips{Config,ConfigVersion}.cmake
#   (+ ElpipsImageTest.cmake: elpips_add_image_test, included by find_package(elpips)),
#   share/man/man1/elpips*.1, completions for bash, zsh and fish (share/bash-completion/completions/elpips,
#   share/zsh/site-functions/_elpips, share/fish/vendor_completions.d/elpips.fish), and the licences
#   of elpips, ONNX Runtime and the weights in share/licenses/elpips
# After `make setup DEVICE=cuda` the GPU runtime is installed instead, with the CUDA libraries and
# their licences beside it (GPU_RUNTIME=no keeps the CPU one; the test prefix does).
GPU_RUNTIME ?= $(if $(wildcard $(GPU_LIB)/libonnxruntime.so.$(ORT_VERSION)),yes,no)
RT_DIR  = $(if $(filter yes,$(GPU_RUNTIME)),$(GPU_LIB),.cache/onnxruntime/lib)
OV_DIR  = .cache/onnxruntime/lib/openvino
RT_PIN  = $(if $(filter yes,$(GPU_RUNTIME)),["cuda"]["library"],["onnxruntime_library"])
SHARE = $(DESTDIR)$(PREFIX)/share
install: build
	install -d $(LIBDIR)/pkgconfig $(LIBDIR)/cmake/elpips $(DESTDIR)$(PREFIX)/include \
	  $(SHARE)/elpips/models $(DESTDIR)$(PREFIX)/bin $(SHARE)/man/man1 $(SHARE)/bash-completion/completions \
	  $(SHARE)/zsh/site-functions $(SHARE)/fish/vendor_completions.d $(SHARE)/licenses/elpips
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/elpips
	$(BIN) completions bash > $(SHARE)/bash-completion/completions/elpips
	$(BIN) completions zsh > $(SHARE)/zsh/site-functions/_elpips
	$(BIN) completions fish > $(SHARE)/fish/vendor_completions.d/elpips.fish
	$(BIN) man --out $(SHARE)/man/man1
	install -m 644 LICENSE $(SHARE)/licenses/elpips/LICENSE
	install -m 644 $(RT_DIR)/LICENSE-*.txt $(wildcard $(RT_DIR)/ThirdPartyNotices-*.txt) $(SHARE)/licenses/elpips/
	install -m 644 $(UP)/elpips/elpips/LICENSE $(SHARE)/licenses/elpips/LICENSE-elpips-weights.txt
	install -m 644 $(UP)/lpips/LICENSE $(SHARE)/licenses/elpips/LICENSE-lpips-weights.txt
	install -m 755 target/release/libelpips.so $(LIBDIR)/libelpips.so.$(VERSION)
	ln -sf libelpips.so.$(VERSION) $(LIBDIR)/libelpips.so.$(MAJOR)
	ln -sf libelpips.so.$(MAJOR) $(LIBDIR)/libelpips.so
	install -m 644 target/release/libelpips.a $(LIBDIR)/libelpips.a
	install -m 755 $(RT_DIR)/libonnxruntime.so.$(ORT_VERSION) $(LIBDIR)/
	ln -sf libonnxruntime.so.$(ORT_VERSION) $(LIBDIR)/libonnxruntime.so.1
	$(PYTHON) -c 'import json,sys; f="libonnxruntime.so.$(ORT_VERSION)"; m=json.load(open(sys.argv[1])); print(m$(RT_PIN)["files"][f]["sha256"] + "  " + f)' \
	  weights/manifest.json > $(LIBDIR)/onnxruntime.sha256
	if [ -d $(OV_DIR) ]; then install -d $(LIBDIR)/openvino && install -m 755 $(OV_DIR)/*.so* $(LIBDIR)/openvino/ && \
	  install -m 644 $(OV_DIR)/third-party-programs.txt $(LIBDIR)/openvino/; fi
	$(if $(filter $(GPU_LIB),$(RT_DIR)),cd $(GPU_LIB) && install -m 755 $$(ls *.so* | grep -v '^libonnxruntime.so') $(LIBDIR)/ && \
	  install -m 644 LICENSE-*.txt $$(ls cuda_libs.path 2>/dev/null) $(LIBDIR)/)
	install -m 644 include/elpips.h bindings/cpp/elpips.hpp plugins/gtest/elpips_gtest.hpp $(DESTDIR)$(PREFIX)/include/
	install -m 644 plugins/cmake/ElpipsImageTest.cmake $(LIBDIR)/cmake/elpips/
	install -m 644 weights/models/*.onnx weights/manifest.json $(DESTDIR)$(PREFIX)/share/elpips/models/
	install -m 644 weights/README.md $(DESTDIR)$(PREFIX)/share/elpips/models/README.md
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@NATIVE_STATIC_LIBS@|$(NATIVE_STATIC_LIBS)|g' -e 's|@RPATH@|$(PC_RPATH)|g' \
	  packaging/elpips.pc.in > $(LIBDIR)/pkgconfig/elpips.pc
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(MAJOR)|g' \
	  -e 's|@NATIVE_STATIC_LIBS_CMAKE@|$(subst $(eval) ,;,$(patsubst -l%,%,$(NATIVE_STATIC_LIBS)))|g' \
	  packaging/elpipsConfig.cmake.in > $(LIBDIR)/cmake/elpips/elpipsConfig.cmake
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(MAJOR)|g' \
	  packaging/elpipsConfigVersion.cmake.in > $(LIBDIR)/cmake/elpips/elpipsConfigVersion.cmake

# A relocatable binary tarball: `make install` into a staging prefix, the binaries stripped of
# their debug information, the licence at the top, then dist/$(DIST).tar.gz (bin, lib, include,
# share: man pages, completions, models, licences) and its checksum, dist/$(DIST).tar.gz.sha256
# (`sha256sum -c`). Unpacked anywhere, bin/elpips and lib/libelpips find their runtime and models
# from where they lie; elpips.pc and the CMake package are relative to themselves. The command
# links the encoder libraries found at build time (`elpips --version` lists them;
# ELPIPS_CODECS_MISSING=all builds one that needs none). With the GPU runtime set up
# (GPU_RUNTIME=yes) the tarball carries it and the CUDA libraries, and its name ends in -cuda.
HOST   := $(shell rustc -vV | sed -n 's/^host: //p')
DIST   := elpips-$(VERSION)-$(HOST)$(if $(filter yes,$(GPU_RUNTIME)),-cuda)
STAGE  := .cache/dist
dist: build
	rm -rf $(STAGE) dist/$(DIST).tar.gz dist/$(DIST).tar.gz.sha256 && mkdir -p dist
	$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(STAGE)/$(DIST) GPU_RUNTIME=$(GPU_RUNTIME) >/dev/null
	strip -S $(STAGE)/$(DIST)/bin/elpips $(STAGE)/$(DIST)/lib/libelpips.so.$(VERSION) $(STAGE)/$(DIST)/lib/libelpips.a
	install -m 644 LICENSE packaging/dist-README.md $(STAGE)/$(DIST)/
	tar -C $(STAGE) --owner=0 --group=0 --numeric-owner -I 'gzip -1' -cf dist/$(DIST).tar.gz $(DIST)
	cd dist && sha256sum $(DIST).tar.gz > $(DIST).tar.gz.sha256
	rm -rf $(STAGE)
	@echo "dist/$(DIST).tar.gz: $$(du -h dist/$(DIST).tar.gz | cut -f1), sha256 in dist/$(DIST).tar.gz.sha256"

# The tarball, checked against its checksum and unpacked elsewhere, works alone: the checks of
# test-install on it (tests/install/check_prefix.py, with the checkout hidden).
test-dist: dist
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	  (cd dist && sha256sum --quiet -c $(DIST).tar.gz.sha256) && \
	  tar -C $$d -xzf dist/$(DIST).tar.gz && \
	  cp $(UP)/lpips/imgs/ex_ref.png $(UP)/lpips/imgs/ex_p0.png $$d/ && \
	  want=$$($(BIN) compare $$d/ex_ref.png $$d/ex_p0.png --metric lpips-alex --threads 1 --json | \
	    $(PYTHON) -c 'import json, sys; print(repr(json.load(sys.stdin)["distance"]))') && \
	  tests/install/hide_checkout.sh $(PYTHON) tests/install/check_prefix.py --prefix $$d/$(DIST) --images $$d \
	    --expect $$want --c-example examples/c/compare.c

# Installs the package into $(TEST_PREFIX) afresh: the C tests, the examples and the Python
# tests use that, as a user would.
install-test: build
	rm -rf $(TEST_PREFIX)
	$(MAKE) --no-print-directory install PREFIX=$(TEST_PREFIX) GPU_RUNTIME=no >/dev/null

# An installed elpips works alone: the test prefix, moved to another folder (hard links), run with
# the checkout's runtime, models and build hidden (tests/install/hide_checkout.sh) and no
# ORT_DYLIB_PATH or ELPIPS_MODEL_DIR: its command, C library, completions, man pages, licences,
# and what a damaged one says (tests/install/check_prefix.py).
test-install: install-test
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	  { cp -al $(TEST_PREFIX) $$d/moved 2>/dev/null || cp -a $(TEST_PREFIX) $$d/moved; } && \
	  cp $(UP)/lpips/imgs/ex_ref.png $(UP)/lpips/imgs/ex_p0.png $$d/ && \
	  want=$$($(BIN) compare $$d/ex_ref.png $$d/ex_p0.png --metric lpips-alex --threads 1 --json | \
	    $(PYTHON) -c 'import json, sys; print(repr(json.load(sys.stdin)["distance"]))') && \
	  tests/install/hide_checkout.sh $(PYTHON) tests/install/check_prefix.py --prefix $$d/moved --images $$d \
	    --expect $$want --c-example examples/c/compare.c

# The pip package, installed into a fresh venv as a user would (`pip install ./bindings/python`:
# setuptools-rust builds the crate with cargo into the checkout's target/, so after `make build`
# it only copies), with the model cache filled from weights/models beforehand as a CI job restores
# it: its command and library run on the onnxruntime wheel's runtime with the checkout hidden
# (tests/install/check_pip.py). Building the models into an empty cache (`python -m elpips setup`,
# ~4 min and the upstream downloads) is `make test-pip-models`, in make test-long.
test-pip: build
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	  $(PYTHON) -m venv $$d/venv && $$d/venv/bin/pip install -q ./bindings/python && \
	  rm -rf bindings/python/build bindings/python/src/elpips.egg-info && \
	  mkdir -p $$d/cache/$(VERSION)/models && cp -l weights/models/*.onnx $$d/cache/$(VERSION)/models/ && \
	  cp weights/manifest.json $$d/cache/$(VERSION)/models/ && \
	  cp $(UP)/lpips/imgs/ex_ref.png $(UP)/lpips/imgs/ex_p0.png $$d/ && \
	  want=$$($(BIN) compare $$d/ex_ref.png $$d/ex_p0.png --metric lpips-alex --threads 1 --json | \
	    $(PYTHON) -c 'import json, sys; print(repr(json.load(sys.stdin)["distance"]))') && \
	  tests/install/hide_checkout.sh env ELPIPS_CACHE_DIR=$$d/cache $$d/venv/bin/python tests/install/check_pip.py \
	    --images $$d --expect $$want

# `python -m elpips setup` into an empty cache: the models built from their pinned sources
# (ELPIPS_UPSTREAM_DIR, or GitHub) equal the checkout's, file for file.
test-pip-models: build
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	  $(PYTHON) -m venv $$d/venv && $$d/venv/bin/pip install -q ./bindings/python && \
	  rm -rf bindings/python/build bindings/python/src/elpips.egg-info && \
	  ELPIPS_CACHE_DIR=$$d/cache $$d/venv/bin/python -m elpips setup && \
	  cmp weights/manifest.json $$d/cache/$(VERSION)/models/manifest.json && \
	  for f in weights/models/*.onnx; do cmp $$f $$d/cache/$(VERSION)/models/$${f##*/} || exit 1; done && \
	  test ! -e $$d/cache/$(VERSION)/build && echo "test-pip-models: python -m elpips setup built the checkout's models"

# The C test programs (one per API area), built against the installed package with pkg-config.
# All run under AddressSanitizer + UndefinedBehaviorSanitizer + LeakSanitizer (any leak fails,
# libelpips' allocations included). Valgrind also checks the library's own code, which the
# sanitizers do not instrument; it slows the VGG network ~300x (minutes per context), so it runs
# the programs that use LPIPS-AlexNet, the reference and threads tests rebuilt with it, on MLAS
# (ELPIPS_OPENVINO_PLUGIN empty: valgrind's CPU hides AVX-512, and OpenVINO's JIT kernels are
# opaque to it; the ASan runs take whatever backend `auto` picks).
VALGRIND_TESTS := test_options test_images test_reference test_threads
VALGRIND_BUILD := -DTEST_METRIC=ELPIPS_METRIC_LPIPS_ALEX -DN=40
test-c: install-test
	@mkdir -p $(CBUILD)
	@echo "== the installed header compiles alone as C99 and as C++17, pedantic, warnings as errors"
	$(CC) $(STRICT_C) -fsyntax-only -x c $(TEST_PREFIX)/include/elpips.h
	$(CXX) $(STRICT_CXX) -fsyntax-only -x c++ $(TEST_PREFIX)/include/elpips.h
	$(CXX) $(STRICT_CXX) -fsyntax-only -x c++ -I$(TEST_PREFIX)/include $(TEST_PREFIX)/include/elpips.hpp
	@for t in $(C_TESTS); do \
	  $(CC) $(STRICT_C) -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
	    tests/c/$$t.c -o $(CBUILD)/$$t-asan $$($(PKG) --cflags --libs elpips) \
	    -Wl,-rpath,$(TEST_PREFIX)/lib -lpthread -lm || exit 1; \
	  echo "== $$t (ASan, UBSan, LSan)"; $(NO_ENV) $(CBUILD)/$$t-asan || exit 1; \
	done
	@for t in $(VALGRIND_TESTS); do \
	  $(CC) $(STRICT_C) $(VALGRIND_BUILD) tests/c/$$t.c -o $(CBUILD)/$$t $$($(PKG) --cflags --libs elpips) \
	    -Wl,-rpath,$(TEST_PREFIX)/lib -lpthread -lm || exit 1; \
	  echo "== $$t (valgrind)"; $(NO_ENV) ELPIPS_OPENVINO_PLUGIN= $(VALGRIND) $(CBUILD)/$$t || exit 1; \
	done

# The examples, built against the installed package by pkg-config and by CMake; each must print
# the command line's figure for the same pixels and seed.
test-examples: install-test
	@mkdir -p $(CBUILD)
	$(CC) $(STRICT_C) examples/c/compare.c -o $(CBUILD)/compare_c $$($(PKG) --cflags --libs elpips) \
	  -Wl,-rpath,$(TEST_PREFIX)/lib
	$(CXX) $(STRICT_CXX) examples/cpp/compare.cpp -o $(CBUILD)/compare_cpp $$($(PKG) --cflags --libs elpips) \
	  -Wl,-rpath,$(TEST_PREFIX)/lib
	$(CC) $(STRICT_C) examples/c/compare.c -o $(CBUILD)/compare_c_static $$($(PKG) --static --cflags elpips) \
	  $(TEST_PREFIX)/lib/libelpips.a $$($(PKG) --static --libs-only-other --libs-only-l elpips | sed 's/-lelpips//')
	cmake -S examples -B $(CBUILD)/cmake -DCMAKE_PREFIX_PATH=$(TEST_PREFIX) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(CBUILD)/cmake >/dev/null
	@echo "== an installed libelpips looks for its models under <prefix>/share/elpips/models first"
	rm -rf $(CBUILD)/prefix2 && mkdir -p $(CBUILD)/prefix2/lib $(CBUILD)/prefix2/share/elpips/models
	cp $(TEST_PREFIX)/lib/libelpips.so.$(VERSION) $(CBUILD)/prefix2/lib/libelpips.so.$(MAJOR)
	cp $(TEST_PREFIX)/lib/libonnxruntime.so.$(ORT_VERSION) $(TEST_PREFIX)/lib/onnxruntime.sha256 $(CBUILD)/prefix2/lib/
	ln -s libonnxruntime.so.$(ORT_VERSION) $(CBUILD)/prefix2/lib/libonnxruntime.so.1
	! $(NO_ENV) LD_LIBRARY_PATH=$(CBUILD)/prefix2/lib $(CBUILD)/compare_c 2>$(CBUILD)/prefix2.err
	grep -q "prefix2/share/elpips/models/elpips-vgg.onnx not found; the installation at .*prefix2 is incomplete" $(CBUILD)/prefix2.err
	rm -rf $(CBUILD)/prefix2
	@echo "== every command block of the README, as written (the install's prefix outside the loader's path)"
	$(NO_ENV) $(PYTHON) tests/c/readme_commands.py README.md
	$(NO_ENV) $(PYTHON) tests/c/example_matches_cli.py $(BIN) $(CBUILD)/compare_c $(CBUILD)/compare_cpp \
	  $(CBUILD)/compare_c_static $(CBUILD)/cmake/compare_c $(CBUILD)/cmake/compare_cpp $(CBUILD)/cmake/compare_c_static

# The Python package, pip-installed from the repository path into a venv with pinned test
# dependencies, tested against the installed library ($$ELPIPS_LIBRARY, its first choice).
test-python: install-test
	test -x $(PYENV)/bin/python || $(PYTHON) -m venv $(PYENV)
	$(PYENV)/bin/pip install -q -r bindings/python/requirements-test.txt
	$(PYENV)/bin/pip install -q --force-reinstall --no-deps --no-build-isolation ./bindings/python
	rm -rf bindings/python/build bindings/python/src/elpips.egg-info
	cd bindings/python && $(NO_ENV) ELPIPS_LIBRARY=$(TEST_PREFIX)/lib/libelpips.so.$(MAJOR) \
	  ELPIPS_CLI=$(CURDIR)/$(BIN) $(CURDIR)/$(PYENV)/bin/python -m pytest -q -p no:cacheprovider tests
	$(PYENV)/bin/pip install -q --force-reinstall --no-deps --no-build-isolation ./plugins/pytest
	rm -rf plugins/pytest/build plugins/pytest/*.egg-info
	cd plugins/pytest && $(NO_ENV) ELPIPS_LIBRARY=$(TEST_PREFIX)/lib/libelpips.so.$(MAJOR) \
	  $(CURDIR)/$(PYENV)/bin/python -m pytest -q -p no:cacheprovider tests

# The GoogleTest and CMake shims (plugins/), built against the installed package and run by CTest.
test-plugins: install-test
	cmake -S plugins/tests -B $(CBUILD)/plugins -DCMAKE_PREFIX_PATH=$(TEST_PREFIX) -DCMAKE_BUILD_TYPE=Release \
	  -DELPIPS_EXECUTABLE=$(CURDIR)/$(BIN) -DELPIPS_TEST_IMAGES=$(CURDIR)/$(UP)/lpips/imgs >/dev/null
	cmake --build $(CBUILD)/plugins >/dev/null
	cd $(CBUILD)/plugins && $(NO_ENV) ctest --output-on-failure

# The end-to-end gate on real renders: a Cornell box from Mitsuba 3 (reference at 256 spp, noisy
# at 4 spp), the noisy frame denoised by Open Image Denoise and blurred by a broken "denoiser";
# `elpips check` must pass the denoised frame only. Renderer and denoiser come from PyPI, pinned
# with hashes (examples/render/requirements.txt), into .cache/e2e-venv; the frames are cached in
# .cache/e2e (rendered again only when the script or its parameters change).
E2E_VENV := .cache/e2e-venv
$(E2E_VENV)/.installed: examples/render/requirements.txt
	rm -rf $(E2E_VENV) && $(PYTHON) -m venv $(E2E_VENV)
	$(E2E_VENV)/bin/pip install -q --require-hashes --no-deps --only-binary=:all: -r $<
	touch $@

test-e2e: build $(E2E_VENV)/.installed
	$(E2E_VENV)/bin/python examples/render/cornell.py --out .cache/e2e
	$(PYTHON) tests/e2e/render_gate.py --elpips $(BIN) --frames .cache/e2e

test-long: setup
	$(CARGO) test --release -- --include-ignored
	$(MAKE) test-pip-models
	$(MAKE) fuzz
	$(MAKE) test-tsan
	$(MAKE) test-no-codecs

# A build whose encoder libraries are all missing (ELPIPS_CODECS_MISSING pretends so) still
# builds, and `elpips tune` then names the package to install.
test-no-codecs: build
	@# Seeded from the normal build (when absent) so that only elpips itself is rebuilt.
	test -d target/no-codecs/release || { mkdir -p target/no-codecs && cp -a target/release target/no-codecs/; }
	ELPIPS_CODECS_MISSING=all $(CARGO) build --release --target-dir target/no-codecs
	! target/no-codecs/release/elpips tune --codec webp --max-distance 0.1 $(UP)/lpips/imgs/ex_ref.png \
	  -o target/no-codecs/never.webp 2>target/no-codecs/tune.err
	grep -q "built without webp support: install libwebp-dev" target/no-codecs/tune.err
	test ! -e target/no-codecs/never.webp

# ThreadSanitizer over the concurrency tests (nightly with rust-src: `rustup component add
# rust-src --toolchain nightly`): the standard library is rebuilt instrumented so that its locks
# and atomics are understood. ONNX Runtime is not instrumented: its atomics are invisible, so the
# memcpy/memcmp it makes are suppressed (tests/tsan.supp, why there); races in elpips' own code
# (contexts, locks, message maps, references) are in sight.
TSAN_TARGET := $(HOST)
test-tsan: setup
	RUSTFLAGS="-Zsanitizer=thread" TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	  $(CARGO) +nightly test -Zbuild-std --target $(TSAN_TARGET) --release --no-default-features --features capi \
	  --target-dir target/tsan --test concurrency

# Fuzzing (cargo-fuzz, nightly; `cargo install cargo-fuzz`): each target runs FUZZ_SECONDS from
# its committed seeds (fuzz/seeds/<target>) plus the set-up's images and weights; the working
# corpus and any crash land in fuzz/corpus and fuzz/artifacts (git-ignored). A crash fails the
# run: fix it, and copy the input to tests/fuzz-regressions/<target>/ (tests/fuzz_regressions.rs
# replays those in the normal test suite). Targets without committed seeds get an empty seed folder
# (git keeps no empty folders; libFuzzer refuses a missing one).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := decode_image linear_weights capi_image capi_options capi_gate manifest_csv manifest_jsonl summary rd_json serve_request report_text
fuzz: setup
	@mkdir -p $(addprefix fuzz/corpus/,$(FUZZ_TARGETS)) $(addprefix fuzz/seeds/,$(FUZZ_TARGETS))
	cp -n $(UP)/lpips/imgs/*.png fuzz/corpus/decode_image/
	cp -n .cache/linear/*.safetensors fuzz/corpus/linear_weights/
	@for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  (cd fuzz && cargo +nightly fuzz run -O $$t corpus/$$t seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1) \
	    > .cache/fuzz-$$t.log 2>&1; rc=$$?; grep -E "^(stat::|==|SUMMARY|Done)|panicked|ERROR" .cache/fuzz-$$t.log | tail -n 20; \
	  [ $$rc -eq 0 ] || { echo "fuzz $$t failed (rc $$rc): see .cache/fuzz-$$t.log and fuzz/artifacts/$$t"; exit 1; }; \
	done


# The CUDA golden figures (fp32 within 1e-4 relative, E-LPIPS means within their intervals) and the
# GPU benchmark against the CPU, in one command, on a machine with an NVIDIA GPU after
# `make setup DEVICE=cuda` (tests/gpu.rs; without ELPIPS_GPU_CHECK=1 those tests are no-ops).
gpu-check: setup
	ELPIPS_GPU_CHECK=1 $(CARGO) test --release --test gpu -- --nocapture --test-threads=1

# The GPU runtime as parts under 60 MiB for a machine that cannot download it (packaging/gpu/).
gpu-parts:
	packaging/gpu/split.sh $(GPU_LIB) .cache/gpu-parts

# `make bench`: network speed and samples (throughput), then LPIPS-VGG 512x512 against pip lpips
# on PyTorch CPU, int8, reference reuse, GFLOP/s vs the measured peak and the 4K pair's peak
# memory (speed; docs/performance.md), then each CPU backend and precision this machine runs
# (backends: LPIPS-VGG pairs and E-LPIPS samples at 256, 512 and 1080p, first runs of new shapes). The pip lpips venv is optional: without it (no PyPI), the
# speed bench says why and prints the rest.
bench: setup
	-$(MAKE) --no-print-directory bench-venv
	$(CARGO) bench --bench throughput
	$(CARGO) bench --bench estimator
	$(CARGO) bench --bench speed
	$(CARGO) bench --bench memory
	$(CARGO) bench --bench backends

# PyTorch (CPU use of the PyPI wheel; it pulls the nvidia-* runtime wheels, ~5 GB installed) and
# lpips 0.1.4 without torchvision (benches/pip_lpips.py supplies VGG16's layer stack), for the
# comparison only. Never part of `make test`.
BENCH_VENV := .cache/bench/venv
bench-venv:
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -c "import torch, scipy, tqdm, importlib.util as u; assert u.find_spec('lpips')" 2>/dev/null || { \
	  $(BENCH_VENV)/bin/pip install -q torch==2.15.0 numpy scipy tqdm setuptools && \
	  $(BENCH_VENV)/bin/pip install -q --no-deps lpips==0.1.4; }

# Encoder tuning: probes, samples and time to a decision vs plain bisection (docs/codec.md).
# ELPIPS_BENCH_FULL=1 adds 128x128 crops and a third threshold.
bench-tune: setup
	$(CARGO) bench --bench tune

# What the sha256 checks of the models and runtime add to loading a metric.
bench-integrity: setup
	$(CARGO) bench --bench integrity

# The paper's claims (docs/paper.md), minutes on the CPU: the attack harness (prints the JSON
# of the LPIPS and E-LPIPS attacks) and perceptual interpolation; both write their images under
# docs/images/.
attack: setup
	$(CARGO) run --release --example attack -- --json --out-dir docs/images/attack

interpolate: setup
	$(CARGO) run --release --example interpolate -- --out-dir docs/images/interpolate

clean-cache:
	rm -rf .cache weights/models
