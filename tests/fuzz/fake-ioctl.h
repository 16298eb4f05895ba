/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * fake-ioctl.h - a kernel device played by the fuzzer, for drivers that
 * talk to theirs only through ioctl() (vhost-vdpa, NVMe Identify).
 *
 * fake-ioctl.c defines ioctl() itself, so the library (linked as usual)
 * calls it: on a file descriptor of /dev/null (the path the target gives
 * the driver; a character device, as the drivers check) the request goes
 * to the target's fake_dev_ioctl(), anything else to the kernel.
 */
#ifndef TESTS_FUZZ_FAKE_IOCTL_H
#define TESTS_FUZZ_FAKE_IOCTL_H

/* The target's device: returns what ioctl() returns (set errno and
 * return -1 to fail). */
int fake_dev_ioctl(unsigned long req, void *arg);

#define FAKE_DEV_PATH "/dev/null"

/* Whether fd is the fake device (FAKE_DEV_PATH opened). */
int fake_is_dev(int fd);

struct blkio;

/* One instance of `driver` on the fake device: create, connect; after a
 * successful connect check(b) then io(b); destroy.  FUZZ_VERBOSE=1
 * prints the last error (how far the input got). */
void fake_dev_run(const char *driver, void (*check)(struct blkio *b),
                  void (*io)(struct blkio *b));

#endif /* TESTS_FUZZ_FAKE_IOCTL_H */
