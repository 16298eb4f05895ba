# tests/common/sanitizer.sh - sourced by the shell tests that start nbdkit
# with the built plugin.
#
# sanitizer_preload SO: print the sanitizer runtimes SO links to (ASan,
# UBSan) as an LD_PRELOAD list, or nothing.  nbdkit is not built with them,
# so a sanitizer build of the plugin needs them loaded into nbdkit first.
sanitizer_preload ()
{
    ldd "$1" 2>/dev/null |
        awk '/libasan|libubsan/ { printf "%s%s", sep, $3; sep=":" }'
}
