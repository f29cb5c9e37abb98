// ext4 inline data: page_mkwrite's inline conversion races a buffered write.
//
// Thread "fault" (CPU 0) write-faults a MAP_SHARED mapping of a small inline
// file.  ext4_page_mkwrite -> ext4_convert_inline_data destroys the inline
// data, fails to allocate a block (the image's bitmaps are full while its
// group descriptors still count free blocks) and restores the inline data.
// Thread "write" (CPU 1) resets the file with ftruncate and writes 90 bytes
// (sendfile, like syzbot's trace, or pwrite).  A write_begin that lands in
// the window sees no inline data and takes the delalloc path; its write_end
// then sees the restored inline data and calls ext4_write_inline_data_end:
// BUG_ON(pos + len > i_inline_size) in ext4_write_inline_data.
//
// A write that wins outright may move the data out of the inode for good
// (delalloc conversion); the race is then over for that file.  So the race
// runs in rounds: whenever the file has lost EXT4_INLINE_DATA_FL, the writer
// starts a new round on a fresh inline file and the fault thread follows.
//
// -L adds two threads that make lockdep see both orders of inode_lock and
// mmap_lock if ->mmap takes inode_lock (the "convert at mmap" patch): "remap"
// maps and unmaps the current file in a loop (mmap_lock held for write, then
// ->mmap), "faultwrite" writes to a scratch file from a page it has just
// dropped (inode_lock held, then a page fault that takes mmap_lock; while
// "remap" holds it, the fault's trylock fails and takes the lock for real).
// On a kernel whose ->mmap takes no inode_lock they add nothing but noise.
//
// usage: repro DIR [-t SECONDS] [-w sendfile|pwrite] [-m populate|store] [-L]
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define SMALL 16   /* initial inline size */
#define BIG 90     /* > 60 bytes of i_block: needs the xattr part of inline data */

#ifndef EXT4_INLINE_DATA_FL
#define EXT4_INLINE_DATA_FL 0x10000000
#endif
#define ROUND_WRITES 2000  /* at most this many writes on one file */

static atomic_int stop;
static atomic_int cur_fd = -1;  /* the current round's file, published by the writer */
static atomic_long faults, fault_errors, writes, write_errors, rounds, remaps, remap_errors, fault_writes;
static const char *dir;
static int use_pwrite, use_store, lockdep_witness;
static __thread sigjmp_buf fault_jmp;

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu % sysconf(_SC_NPROCESSORS_ONLN), &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(fault_jmp, 1);
}

static void *fault_thread(void *arg)
{
	char *map = MAP_FAILED;
	int mapped_fd = -1;

	(void)arg;
	pin(0);
	while (!atomic_load(&stop)) {
		int fd = atomic_load(&cur_fd);

		if (fd != mapped_fd) {  /* a new round: map its file */
			if (map != MAP_FAILED)
				munmap(map, 4096);
			map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			mapped_fd = fd;
			if (map == MAP_FAILED)
				continue;
		}
		if (map == MAP_FAILED)
			continue;
		atomic_fetch_add(&faults, 1);
		if (use_store) {
			if (sigsetjmp(fault_jmp, 1) == 0)
				((volatile char *)map)[0] = 'M';
			else
				atomic_fetch_add(&fault_errors, 1);
		} else if (madvise(map, 4096, MADV_POPULATE_WRITE)) {
			atomic_fetch_add(&fault_errors, 1);
		}
		/* Drop the PTE so that the next store faults (and converts) again. */
		madvise(map, 4096, MADV_DONTNEED);
	}
	if (map != MAP_FAILED)
		munmap(map, 4096);
	return NULL;
}

/* A fresh 16-byte inline file for a new round; old files stay open a while. */
static int new_round(void)
{
	static int ring[4] = {-1, -1, -1, -1};
	char small[SMALL], path[4096];
	long r = atomic_fetch_add(&rounds, 1);
	int fd;

	snprintf(path, sizeof(path), "%s/inline-%ld", dir, r);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	memset(small, 'S', sizeof(small));
	if (fd < 0 || write(fd, small, SMALL) != SMALL)
		die("create inline file");
	unlink(path);
	if (ring[r % 4] >= 0)
		close(ring[r % 4]);
	ring[r % 4] = fd;
	atomic_store(&cur_fd, fd);
	return fd;
}

static int still_inline(int fd)
{
	int flags = 0;

	return ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && (flags & EXT4_INLINE_DATA_FL);
}

static void *write_thread(void *arg)
{
	char src_path[] = "/tmp/ext4-inline-srcXXXXXX";
	char buf[BIG];
	int src = mkstemp(src_path);
	int fd = new_round(), n_round = 0;

	(void)arg;
	pin(1);
	if (src < 0)
		die("open (write source)");
	memset(buf, 'W', sizeof(buf));
	if (write(src, buf, sizeof(buf)) != sizeof(buf))
		die("write source");
	unlink(src_path);
	while (!atomic_load(&stop)) {
		ssize_t n;

		if (ftruncate(fd, SMALL))
			atomic_fetch_add(&write_errors, 1);
		if (use_pwrite) {
			n = pwrite(fd, buf, BIG, 0);
		} else {
			off_t in_off = 0;

			lseek(fd, 0, SEEK_SET);
			n = sendfile(fd, src, &in_off, BIG);
		}
		atomic_fetch_add(n == BIG ? &writes : &write_errors, 1);
		if (++n_round >= ROUND_WRITES || !still_inline(fd)) {
			fd = new_round();
			n_round = 0;
		}
	}
	close(src);
	return NULL;
}

/* -L: mmap_lock (write) -> ->mmap, over and over, on the current round's file */
static void *remap_thread(void *arg)
{
	(void)arg;
	pin(0);
	while (!atomic_load(&stop)) {
		void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, atomic_load(&cur_fd), 0);

		if (m == MAP_FAILED) {
			atomic_fetch_add(&remap_errors, 1);
		} else {
			munmap(m, 4096);
			atomic_fetch_add(&remaps, 1);
		}
	}
	return NULL;
}

/* -L: inode_lock -> page fault (mmap_lock): a write from a page just dropped */
static void *faultwrite_thread(void *arg)
{
	char path[4096];
	char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd;

	(void)arg;
	pin(1);
	snprintf(path, sizeof(path), "%s/faultwrite", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || page == MAP_FAILED)
		die("faultwrite setup");
	while (!atomic_load(&stop)) {
		madvise(page, 4096, MADV_DONTNEED);  /* the write's copy-in must fault */
		if (pwrite(fd, page, SMALL, 0) == SMALL)
			atomic_fetch_add(&fault_writes, 1);
	}
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	double seconds = 20;
	pthread_t a, b, c, d;
	struct timespec t0, t1;
	int opt;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR [-t SECONDS] [-w sendfile|pwrite] [-m populate|store] [-L]\n", argv[0]);
		return 2;
	}
	while ((opt = getopt(argc - 1, argv + 1, "t:w:m:L")) != -1) {
		switch (opt) {
		case 't': seconds = atof(optarg); break;
		case 'w': use_pwrite = !strcmp(optarg, "pwrite"); break;
		case 'm': use_store = !strcmp(optarg, "store"); break;
		case 'L': lockdep_witness = 1; break;
		default: return 2;
		}
	}
	dir = argv[1];
	signal(SIGBUS, on_sigbus);

	printf("racing page_mkwrite against %s for %.0f s%s\n", use_pwrite ? "pwrite" : "sendfile", seconds,
	       lockdep_witness ? ", with the lockdep witness threads (-L)" : "");
	fflush(stdout);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (pthread_create(&a, NULL, fault_thread, NULL) || pthread_create(&b, NULL, write_thread, NULL))
		die("pthread_create");
	while (lockdep_witness && atomic_load(&cur_fd) < 0)
		usleep(1000);
	if (lockdep_witness &&
	    (pthread_create(&c, NULL, remap_thread, NULL) || pthread_create(&d, NULL, faultwrite_thread, NULL)))
		die("pthread_create");
	do {
		usleep(100 * 1000);
		clock_gettime(CLOCK_MONOTONIC, &t1);
	} while ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9 < seconds);
	atomic_store(&stop, 1);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	if (lockdep_witness) {
		pthread_join(c, NULL);
		pthread_join(d, NULL);
		printf("lockdep witness: remaps %ld (failed %ld), faulting writes %ld\n", atomic_load(&remaps),
		       atomic_load(&remap_errors), atomic_load(&fault_writes));
	}
	printf("rounds %ld, faults %ld (failed %ld), writes %ld (failed %ld): no crash\n", atomic_load(&rounds),
	       atomic_load(&faults), atomic_load(&fault_errors), atomic_load(&writes), atomic_load(&write_errors));
	return 0;
}
