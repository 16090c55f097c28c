# Entry points. `make demo` and `make test` run `make setup` themselves, so a fresh clone needs
# nothing but the machine's Rust toolchain and Python 3.
#
# ELPIPS_UPSTREAM_DIR: optional local mirror of the upstream data (CI sets it); otherwise the
# set-up downloads the pinned files and checks their sha256.

CARGO  ?= cargo
PYTHON ?= python3
BIN    := target/release/elpips
UP     := .cache/upstream

.PHONY: setup build demo test test-long bench clean-cache

setup:
	$(PYTHON) weights/setup.py

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

test: setup
	$(CARGO) test --release

# Slow, thorough checks (many Monte-Carlo samples).
test-long: setup
	$(CARGO) test --release -- --include-ignored

bench: setup
	$(CARGO) bench --bench throughput

clean-cache:
	rm -rf .cache weights/models
