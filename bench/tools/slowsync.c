/* Slower storage, simulated: an LD_PRELOAD shim that sleeps SLOW_SYNC_US
 * microseconds (default 2000) before every fsync and fdatasync, so that a
 * benchmark can show what commits cost where the disk is slow (network storage).
 * Every process of the run inherits it, PostgreSQL included. See
 * docs/performance.md ("Tried and dropped") for the run that used it.
 *
 *   gcc -shared -fPIC -O2 -o /tmp/slowsync.so bench/tools/slowsync.c -ldl
 *   LD_PRELOAD=/tmp/slowsync.so uv run python -m bench --quick --no-scale ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

static void pause_like_a_slow_disk(void) {
    const char *setting = getenv("SLOW_SYNC_US");
    usleep(setting ? (useconds_t)atoi(setting) : 2000);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    pause_like_a_slow_disk();
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    pause_like_a_slow_disk();
    return real(fd);
}
