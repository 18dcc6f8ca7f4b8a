# Thin wrapper over meson/ninja. `make run` and `make test` are the whole set-up.
#   make build            install missing Debian packages, build build/sfa
#   make run              build, then serve on http://127.0.0.1:4000 with state in ./data
#   make test             build, then run every test suite (prints "N passed, N failed")
#   make test SANITIZE=1  the same under ASan+UBSan (in build-san/)
#   make fuzz-smoke       build the libFuzzer harnesses with clang, run each for 30 s
BUILD := build
MESON_OPTS :=
ifeq ($(SANITIZE),1)
BUILD := build-san
MESON_OPTS := -Db_sanitize=address,undefined -Db_lundef=false
endif

.PHONY: build run test deps fuzz fuzz-smoke clean

deps:
	@scripts/deps.sh

# The browser libraries the studio embeds (phoenix, wavesurfer.js, uPlot) and the JavaScript
# test clients (playwright-core, axe-core, ws), pinned by the lockfile. The build needs the
# former, so npm ci runs before meson.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps node_modules/.package-lock.json $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	$(BUILD)/sfa serve --data ./data

test: build
	@rm -f $(BUILD)/meson-logs/testlog.json
	-@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C $(BUILD) --no-rebuild --print-errorlogs --num-processes 2
	@scripts/test-summary.py $(BUILD)/meson-logs/testlog.json

fuzz: node_modules/.package-lock.json
	@scripts/deps.sh
	[ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true -Db_lundef=false
	ninja -C build-fuzz

fuzz-smoke: fuzz
	scripts/fuzz-smoke.sh build-fuzz 30

clean:
	rm -rf build build-san build-fuzz
