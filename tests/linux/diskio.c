/* diskio: the disk side of the Ferrite Linux test guest (tests/linux/build.sh builds it static
 * into the initramfs) and of the host baseline of tests/linux/disk-bench.sh (built for the host).
 *
 *   diskio records DEV FIRST SEED
 *       The crash test's writer (frontend/tests/disk_guest.rs, crash_*): for SEQ = FIRST,
 *       FIRST+1, ... forever, writes the RECORDS 4 KiB records of round SEQ with O_DIRECT,
 *       fdatasync()s the device (on a block device with a write-back cache Linux sends ATA
 *       FLUSH CACHE) and only then prints "FERRITE-REC-FLUSHED SEQ flushes N", N being the
 *       device's completed flush requests (/sys/block/DEV/stat, field 16).
 *   diskio bench DEV MIB OPS
 *       Throughput with O_DIRECT and one request at a time over the first MIB MiB of DEV:
 *       sequential 1 MiB write and read, sequential 4 KiB write and read, OPS random 4 KiB
 *       writes and reads (4 KiB-aligned, uniform over the region). Writes end with fdatasync,
 *       counted in their time. Prints "FERRITE-DISK-BENCH name: ... MB/s ... IOPS".
 *
 * A record is 8 sectors; sector J of round SEQ's record in 4 KiB slot SLOT holds the text
 * "ferrite-record seq SEQ slot SLOT sector J seed SEED" (SEQ and SLOT in ten digits), then
 * filler letters 'a' + (SEQ + SLOT + J + k) % 26 up to byte 511, then a newline. The slots of
 * a round: RECORDS / 2 spread over the whole disk (new VHD blocks and qcow2 clusters), the
 * others among the 256 slots before the middle of the disk (rewrites). disk_guest.rs computes
 * the same. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SLOT 4096
#define RECORDS 8
#define HOT 256

static void die(const char *what) {
    fprintf(stderr, "diskio: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t record_slot(uint64_t seed, uint64_t seq, uint64_t i, uint64_t slots) {
    uint64_t h = splitmix64(seed ^ splitmix64(seq * RECORDS + i));
    if (i < RECORDS / 2 || slots < 2 * HOT)
        return h % slots;
    return slots / 2 - HOT + h % HOT;
}

static void record(char *buf, uint64_t seed, uint64_t seq, uint64_t slot) {
    for (int j = 0; j < SLOT / 512; j++) {
        char *s = buf + j * 512;
        int n = snprintf(s, 512, "ferrite-record seq %010llu slot %010llu sector %d seed %llu",
                         (unsigned long long)seq, (unsigned long long)slot, j, (unsigned long long)seed);
        for (int k = n; k < 511; k++)
            s[k] = 'a' + (seq + slot + j + k) % 26;
        s[511] = '\n';
    }
}

static void say(const char *line) {
    size_t n = strlen(line);
    if (write(1, line, n) != (ssize_t)n)
        die("stdout");
}

static void *aligned(size_t n) {
    void *p;
    if (posix_memalign(&p, 4096, n))
        die("posix_memalign");
    return p;
}

static int open_device(const char *dev, uint64_t *size) {
    int fd = open(dev, O_RDWR | O_DIRECT);
    if (fd < 0)
        die(dev);
    off_t end = lseek(fd, 0, SEEK_END);
    if (end < 0)
        die("lseek");
    *size = (uint64_t)end;
    return fd;
}

/* Completed flush requests of /dev/NAME (field 16 of /sys/block/NAME/stat), or -1. */
static long long flushes(const char *dev) {
    const char *name = strrchr(dev, '/') ? strrchr(dev, '/') + 1 : dev;
    char path[256];
    snprintf(path, sizeof path, "/sys/block/%s/stat", name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long long v[17];
    int n = 0;
    while (n < 17 && fscanf(f, "%lld", &v[n]) == 1)
        n++;
    fclose(f);
    return n >= 16 ? v[15] : -1;
}

_Noreturn static void records(const char *dev, uint64_t first, uint64_t seed) {
    uint64_t size;
    int fd = open_device(dev, &size);
    uint64_t slots = size / SLOT;
    char *buf = aligned(SLOT), line[160];
    snprintf(line, sizeof line, "FERRITE-REC-START first %llu slots %llu seed %llu flushes %lld\n",
             (unsigned long long)first, (unsigned long long)slots, (unsigned long long)seed, flushes(dev));
    say(line);
    for (uint64_t seq = first;; seq++) {
        for (uint64_t i = 0; i < RECORDS; i++) {
            uint64_t slot = record_slot(seed, seq, i, slots);
            record(buf, seed, seq, slot);
            if (pwrite(fd, buf, SLOT, (off_t)(slot * SLOT)) != SLOT)
                die("pwrite");
        }
        if (fdatasync(fd))
            die("fdatasync");
        snprintf(line, sizeof line, "FERRITE-REC-FLUSHED %llu flushes %lld\n", (unsigned long long)seq, flushes(dev));
        say(line);
    }
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void report(const char *name, uint64_t bytes, uint64_t ops, double seconds) {
    char line[200];
    snprintf(line, sizeof line, "FERRITE-DISK-BENCH %-14s %8.1f MiB in %7.3f s: %8.1f MB/s %9.0f IOPS\n", name,
             bytes / 1048576.0, seconds, bytes / seconds / 1e6, ops / seconds);
    say(line);
}

static void io(int fd, int writing, char *buf, size_t n, uint64_t at) {
    ssize_t r = writing ? pwrite(fd, buf, n, (off_t)at) : pread(fd, buf, n, (off_t)at);
    if (r != (ssize_t)n)
        die(writing ? "pwrite" : "pread");
}

static int bench(const char *dev, uint64_t mib, uint64_t ops) {
    uint64_t size;
    int fd = open_device(dev, &size);
    uint64_t region = mib << 20;
    if (region > size) {
        fprintf(stderr, "diskio: %s holds %llu bytes, less than %llu MiB\n", dev, (unsigned long long)size,
                (unsigned long long)mib);
        return 1;
    }
    char *buf = aligned(1 << 20);
    for (size_t i = 0; i < 1 << 20; i++)
        buf[i] = (char)splitmix64(i); /* not zeros: no format may skip them */
    /* name, writing, request size, random */
    static const struct { const char *name; int writing; size_t n; int random; } runs[] = {
        {"seq-write-1M", 1, 1 << 20, 0}, {"seq-read-1M", 0, 1 << 20, 0}, {"seq-write-4K", 1, 4096, 0},
        {"seq-read-4K", 0, 4096, 0},     {"rand-write-4K", 1, 4096, 1}, {"rand-read-4K", 0, 4096, 1},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        uint64_t count = runs[r].random ? ops : region / runs[r].n;
        double t = now();
        for (uint64_t i = 0; i < count; i++) {
            uint64_t at = runs[r].random ? splitmix64(r * 1000003 + i) % (region / 4096) * 4096 : i * runs[r].n;
            io(fd, runs[r].writing, buf, runs[r].n, at);
        }
        if (runs[r].writing && fdatasync(fd))
            die("fdatasync");
        report(runs[r].name, count * runs[r].n, count, now() - t);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "records"))
        records(argv[2], strtoull(argv[3], 0, 0), strtoull(argv[4], 0, 0));
    if (argc == 5 && !strcmp(argv[1], "bench"))
        return bench(argv[2], strtoull(argv[3], 0, 0), strtoull(argv[4], 0, 0));
    fprintf(stderr, "usage: diskio records DEV FIRST SEED | diskio bench DEV MIB OPS\n");
    return 2;
}
