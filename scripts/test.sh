#!/bin/sh
# The test command: install dependencies, build, and run the whole suite
# (library, io_uring driver, nbdkit plugin, vhost-user against
# qemu-storage-daemon, and the QEMU test VM for NVMe, VFIO and vDPA), then
# the library, fuzz corpora and vhost-user tests again under ASan+UBSan,
# the library tests under valgrind, the plugin's functional tests with
# nbdkit under valgrind, and short libFuzzer runs built with clang.
#
#   scripts/test.sh            everything
#   SUITES="lib plugin" scripts/test.sh   only these meson suites
#
# Ends with one line: "N passed, N failed, N skipped".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

"$top/scripts/setup-deps.sh" || { echo "test: dependency setup failed"; echo "0 passed, 1 failed"; exit 1; }

# In CI the test VM must run: a missing qemu or kernel is a failure there.
if [ "${CI:-}" = true ]; then
    export BLKIO_VM_REQUIRE=1
fi

# The test VM's guest kernel (a Debian package, unpacked into a cache).
if [ -x tests/vm/setup-kernel.sh ]; then
    tests/vm/setup-kernel.sh || echo "test: test-VM kernel setup failed; VM tests will report it"
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0

suite_args=
for s in ${SUITES:-}; do
    suite_args="$suite_args --suite $s"
done

run_stage() {   # name builddir meson-test-args...
    name=$1; dir=$2; shift 2
    echo "=== $name ==="
    rm -f "$dir/meson-logs/$name".json "$dir/meson-logs/$name"-*.json
    meson test -C "$dir" --logbase "$name" --print-errorlogs --num-processes 2 "$@"
    rc=$?
    [ $rc -eq 0 ] || status=1
    # meson appends the wrapper's name to the log base under --wrap.
    log=$(ls "$dir/meson-logs/$name".json "$dir/meson-logs/$name"-*.json 2>/dev/null | head -1)
    if [ -n "$log" ]; then
        cp "$log" "$logs/$name.json"
    else
        echo '{"name": "'"$name"'", "result": "FAIL"}' > "$logs/$name.json"
        status=1
    fi
}

# 1. Normal build, whole suite.
if ! scripts/build.sh; then
    echo "test: build failed"
    echo "0 passed, 1 failed"
    exit 1
fi
run_stage main build $suite_args

# 2. Library tests under ASan+UBSan.
if [ -z "${SUITES:-}" ] || echo " ${SUITES} " | grep -Eq ' (lib|core) '; then
    if [ ! -f build-asan/build.ninja ]; then
        meson setup build-asan -Db_sanitize=address,undefined \
            -Db_lundef=false -Dplugin=false >/dev/null
    fi
    if ninja -C build-asan >/dev/null; then
        ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
            run_stage asan build-asan --suite core --suite lib --suite fuzz \
                --suite vhost-user
    else
        echo "test: ASan+UBSan build failed"
        echo '{"name": "asan-build", "result": "FAIL"}' > "$logs/asan.json"
        status=1
    fi

    # 3. Library tests under valgrind.
    run_stage valgrind build --suite core --suite lib \
        --wrap='valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --track-fds=no' \
        --timeout-multiplier 4
fi

# 4. The plugin's functional tests with nbdkit under valgrind (the tests
#    that measure time or preload a shim stay out: valgrind slows nbdkit
#    down 20-50x).
if [ -z "${SUITES:-}" ] || echo " ${SUITES} " | grep -q ' plugin '; then
    export BLKIO_TEST_VALGRIND=1
    run_stage plugin-valgrind build \
        --timeout-multiplier 4 \
        test-plugin-dump test-plugin-bad-params test-plugin-info \
        test-plugin-get test-plugin-data test-plugin-flags \
        test-plugin-readonly test-plugin-errors test-plugin-sizes \
        test-plugin-parallel test-plugin-qemu-io test-plugin-vhost-user \
        test-plugin-resize test-plugin-errno-map test-plugin-bad-requests \
        test-plugin-vhost-user-slots
    unset BLKIO_TEST_VALGRIND
fi

# 5. Fuzz targets linked with libFuzzer (clang, ASan+UBSan): a bounded
#    run of each (tests/fuzz/run.sh: 5 s; FUZZ_SECONDS= for longer).
if [ -z "${SUITES:-}" ] || echo " ${SUITES} " | grep -q ' fuzz '; then
    if [ ! -f build-fuzz/build.ninja ]; then
        CC=clang meson setup build-fuzz -Dfuzz=true -Dplugin=false \
            -Db_sanitize=address,undefined -Db_lundef=false \
            -Dc_args=-fsanitize=fuzzer-no-link >/dev/null
    fi
    if ninja -C build-fuzz >/dev/null; then
        run_stage fuzz build-fuzz --suite fuzz-run
    else
        echo "test: libFuzzer build failed"
        echo '{"name": "fuzz-build", "result": "FAIL"}' > "$logs/fuzz.json"
        status=1
    fi
fi

/usr/bin/python3 - "$logs" <<'PY'
import json, os, sys
p = f = s = 0
for name in sorted(os.listdir(sys.argv[1])):
    for line in open(os.path.join(sys.argv[1], name)):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"):
            p += 1
        elif r == "SKIP":
            s += 1
        else:
            f += 1
print(f"{p} passed, {f} failed, {s} skipped")
PY
exit $status
