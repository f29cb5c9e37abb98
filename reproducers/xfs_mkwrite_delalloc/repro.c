// XFS: a failed buffered write punches out delalloc (and page cache) that a
// racing write fault on a MAP_SHARED mapping has just dirtied.
//
// Each round: a sparse file of PAGES pages, mapped MAP_SHARED.  The storer
// (main thread, CPU 0) writes one distinct 8-byte marker into every page, in
// order, through the mapping: each store is a write fault -> page_mkwrite ->
// xfs_buffered_write_iomap_begin.  Meanwhile writers (CPU 1) issue buffered
// writes over the pages just ahead of the storer whose copy-in fails after
// xfs_buffered_write_iomap_begin() reserved delalloc (IOMAP_F_NEW); their
// ->iomap_end then cleans up the unused reservation.  Kernels before 6.1.92
// truncate the page cache and punch the whole range there, without the
// invalidate lock: a marker stored in between is lost.  After the round:
// msync + fsync, drop the file's page cache (POSIX_FADV_DONTNEED), read the
// file back and check every page.
//
// Copy-in failure (-s):
//   unmapped  the source buffer is an unmapped user address: write() faults
//             it in, fails, returns EFAULT (no kernel help needed)
//   protnone  the source buffer is a PROT_NONE mapping (same path)
//   inject    the source buffer is valid and holds exactly the bytes the file
//             must end up with; the harness makes copy_from_user fail for the
//             writer tasks (fail_usercopy, task-filter, make-it-fail on tasks
//             named "writer*").  6.1's iomap_write_iter() retries a failed
//             copy forever, so each write is done by a child process of the
//             "writer" process (children inherit make-it-fail) that is killed
//             after -K ms: the fatal signal fails the write (EINTR) while
//             its delalloc reservation is outstanding.  The kill alone
//             also fails a write that is merely slow (under TCG a 64-page
//             write often outlives -K ms): injection makes every write fail
//             and pins it in the window, it is not the only trigger.
//
// Output: "@@lost page N offset O expected X got Y" per lost marker (or
// stray byte), "@@first-loss-after SECONDS" (racing time at which the
// first marker later found lost was stored; the loss happened after that).  Exit 0 when the run completed (lost
// data or not), 2 on a setup error, 3 when no write failed (nothing tested).
//
// usage: repro DIR [-t SECONDS] [-s unmapped|protnone|inject] [-p PAGES]
//              [-n SPAN] [-l LEAD] [-w WRITERS] [-K MS] [-k] [-v]
//        repro --self-test DIR [-p PAGES] [-c PAGE[,PAGE...]] [-x PAGE]
//        repro --verify FILE [-p PAGES] [-r ROUND]
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define MAX_WRITERS 8
#define MAX_PRINT 4096 /* @@lost lines printed per run */

/* --- markers: pure functions (mirrored in tests/test_xfs_markers.py) ------ */

/* The 8-byte marker of page `page` in round `round`: distinct per page and
 * per round, never zero. */
static uint64_t marker_value(uint32_t round, uint64_t page)
{
	return 0x4d4b000000000000ULL | ((uint64_t)(round & 0xffffff) << 24) | (page & 0xffffff);
}

/* Where in its page the marker goes (8-byte aligned, varies per page). */
static size_t marker_offset(uint64_t page)
{
	return (size_t)((page * 37 + 5) % (PAGE / 8)) * 8;
}

static uint64_t load64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* The expected content of one page: zeroes and the marker. */
static void fill_page(unsigned char *buf, uint32_t round, uint64_t page)
{
	uint64_t m = marker_value(round, page);

	memset(buf, 0, PAGE);
	memcpy(buf + marker_offset(page), &m, sizeof(m));
}

struct loss {
	uint64_t page;
	size_t offset;
	uint64_t expected;
	uint64_t got;
};

/* 0 when `buf` holds exactly page `page` of round `round`; else 1 and the
 * first difference (the marker first, then any stray non-zero word). */
static int check_page(const unsigned char *buf, uint32_t round, uint64_t page, struct loss *out)
{
	size_t moff = marker_offset(page), off;
	uint64_t want = marker_value(round, page), got = load64(buf + moff);

	out->page = page;
	if (got != want) {
		out->offset = moff;
		out->expected = want;
		out->got = got;
		return 1;
	}
	for (off = 0; off < PAGE; off += 8) {
		if (off != moff && load64(buf + off) != 0) {
			out->offset = off;
			out->expected = 0;
			out->got = load64(buf + off);
			return 1;
		}
	}
	return 0;
}

static int printed;

static void print_loss(const struct loss *l)
{
	if (printed++ < MAX_PRINT)
		printf("@@lost page %" PRIu64 " offset %zu expected 0x%016" PRIx64 " got 0x%016" PRIx64 "\n",
		       l->page, l->offset, l->expected, l->got);
	else if (printed == MAX_PRINT + 1)
		printf("(more lost markers not printed)\n");
}

/* Read the file back and check every page; the number of bad pages, or -1. */
static long verify_file(int fd, uint32_t round, uint64_t pages, uint64_t *first_bad)
{
	unsigned char *buf = malloc(PAGE * 64);
	uint64_t page = 0, i;
	long bad = 0;

	if (!buf)
		return -1;
	while (page < pages) {
		uint64_t n = pages - page < 64 ? pages - page : 64;
		ssize_t r = pread(fd, buf, n * PAGE, (off_t)(page * PAGE));

		if (r < 0) {
			perror("pread");
			free(buf);
			return -1;
		}
		if ((size_t)r < n * PAGE) /* short file: the rest reads as zeroes */
			memset(buf + r, 0, n * PAGE - r);
		for (i = 0; i < n; i++) {
			struct loss l;

			if (check_page(buf + i * PAGE, round, page + i, &l)) {
				if (!bad && first_bad)
					*first_bad = page + i;
				bad++;
				print_loss(&l);
			}
		}
		page += n;
	}
	free(buf);
	return bad;
}

/* --- the race ---------------------------------------------------------------- */

enum method { UNMAPPED, PROTNONE, INJECT };

struct shared { /* MAP_SHARED: seen by the writer process and its children */
	atomic_int stop;
	atomic_int go;		/* a round is being stored */
	atomic_uint epoch;	/* bumped at each round's end */
	atomic_uint ack[MAX_WRITERS]; /* epoch a writer has seen stopped */
	atomic_long cur;	/* last page stored */
	atomic_long writes, failed, completed, other;
};

static struct shared *sh;
static int fd;
static uint64_t pages = 1024, span = 32, lead = 4;
static int nwriters = 1, kill_ms = 20, verbose;
static enum method method = UNMAPPED;
static unsigned char *badbuf, *image;

static void die(const char *what)
{
	fprintf(stderr, "repro error: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void pin(int cpu)
{
	cpu_set_t set;
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	CPU_ZERO(&set);
	CPU_SET(cpu % (n > 0 ? n : 1), &set);
	sched_setaffinity(0, sizeof(set), &set);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* The range just ahead of the storer, or 0 when it is at the end. */
static int next_range(uint64_t *rnd, uint64_t *off, uint64_t *n)
{
	long cur = atomic_load(&sh->cur);

	*off = (uint64_t)(cur + 1) + xorshift(rnd) % lead;
	if (*off >= pages)
		return 0;
	*n = pages - *off < span ? pages - *off : span;
	return 1;
}

static void *writer_thread(void *arg)
{
	int id = (int)(long)arg;
	uint64_t rnd = 0x9e3779b97f4a7c15ULL * (id + 1), off, n;

	pin(1 + id);
	while (!atomic_load(&sh->stop)) {
		if (!atomic_load(&sh->go)) {
			atomic_store(&sh->ack[id], atomic_load(&sh->epoch));
			sched_yield();
			continue;
		}
		if (!next_range(&rnd, &off, &n)) {
			sched_yield();
			continue;
		}
		ssize_t r = pwrite(fd, badbuf, n * PAGE, (off_t)(off * PAGE));

		atomic_fetch_add(&sh->writes, 1);
		if (r < 0 && errno == EFAULT)
			atomic_fetch_add(&sh->failed, 1);
		else if (r >= 0)
			atomic_fetch_add(&sh->completed, 1);
		else
			atomic_fetch_add(&sh->other, 1);
	}
	return NULL;
}

/* inject: the "writer" process.  It only forks, sleeps (poll), kills and
 * reaps: none of these copy from or to user memory, so make-it-fail on it
 * is harmless; its children inherit it and their write's copy-in fails. */
static void writer_process(void)
{
	uint64_t rnd = 0x9e3779b97f4a7c15ULL, off, n;

	prctl(PR_SET_NAME, "writer", 0, 0, 0);
	pin(1);
	while (!atomic_load(&sh->stop)) {
		if (!atomic_load(&sh->go)) {
			atomic_store(&sh->ack[0], atomic_load(&sh->epoch));
			poll(NULL, 0, 1);
			continue;
		}
		if (atomic_load(&sh->cur) + 1 >= (long)pages) {
			sched_yield();
			continue;
		}
		xorshift(&rnd);
		pid_t pid = fork();
		int st;

		if (pid == 0) { /* pick the range now: the storer moved on during fork */
			ssize_t r;

			if (!next_range(&rnd, &off, &n))
				_exit(2);
			r = pwrite(fd, image + off * PAGE, n * PAGE, (off_t)(off * PAGE));
			_exit(r == (ssize_t)(n * PAGE) ? 0 : 1);
		}
		if (pid < 0) {
			atomic_fetch_add(&sh->other, 1);
			poll(NULL, 0, 10);
			continue;
		}
		atomic_fetch_add(&sh->writes, 1);
		poll(NULL, 0, 1 + (int)(xorshift(&rnd) % (uint64_t)kill_ms));
		kill(pid, SIGKILL);
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		if (WIFSIGNALED(st))
			atomic_fetch_add(&sh->failed, 1); /* killed inside its write */
		else if (WEXITSTATUS(st) == 0)
			atomic_fetch_add(&sh->completed, 1);
		else if (WEXITSTATUS(st) == 2)
			atomic_fetch_sub(&sh->writes, 1); /* the storer was done: no write */
		else
			atomic_fetch_add(&sh->other, 1);
	}
	_exit(0);
}

static void stop_writers(void)
{
	unsigned int e = atomic_fetch_add(&sh->epoch, 1) + 1;
	int w, n = method == INJECT ? 1 : nwriters;

	atomic_store(&sh->go, 0);
	for (w = 0; w < n; w++)
		while (atomic_load(&sh->ack[w]) != e)
			sched_yield();
}

/* Wait (a while) until the harness has marked the writer process. */
static void wait_marked(pid_t pid)
{
	char path[64], v = 0;
	double t0 = now();

	snprintf(path, sizeof(path), "/proc/%d/make-it-fail", (int)pid);
	while (now() - t0 < 15) {
		int f = open(path, O_RDONLY);

		if (f < 0) {
			printf("note: %s: %s (kernel without fault injection?)\n", path, strerror(errno));
			return;
		}
		if (read(f, &v, 1) == 1 && v == '1') {
			close(f);
			printf("writer process %d marked make-it-fail after %.2f s\n", (int)pid, now() - t0);
			return;
		}
		close(f);
		usleep(20000);
	}
	printf("warning: writer process %d not marked make-it-fail after 15 s\n", (int)pid);
}

static int race(const char *dir, double seconds, int keep_going)
{
	char path[4096];
	size_t len = pages * PAGE;
	pthread_t th[MAX_WRITERS];
	pid_t wpid = -1;
	double t0, first_loss = -1;
	long total_lost = 0, lossy_rounds = 0;
	uint32_t round, rounds = 0;
	double *stored = malloc(pages * sizeof(double)); /* when each marker was stored */
	int w;

	snprintf(path, sizeof(path), "%s/delalloc.dat", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die(path);
	if (!stored)
		die("malloc");
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		die("mmap shared");
	memset(sh, 0, sizeof(*sh));
	atomic_store(&sh->cur, -1);

	if (method == UNMAPPED) {
		/* far from the stack, heap, libraries and mmap area; checked */
		badbuf = (unsigned char *)0x200000000000UL;
		unsigned char vec;
		if (mincore(badbuf, PAGE, &vec) == 0) {
			fprintf(stderr, "repro error: %p is mapped\n", (void *)badbuf);
			return 2;
		}
	} else if (method == PROTNONE) {
		badbuf = mmap(NULL, span * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (badbuf == MAP_FAILED)
			die("mmap PROT_NONE");
	} else {
		image = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (image == MAP_FAILED)
			die("mmap image");
	}

	if (method == INJECT) {
		wpid = fork();
		if (wpid < 0)
			die("fork");
		if (wpid == 0)
			writer_process();
		wait_marked(wpid);
	} else {
		for (w = 0; w < nwriters; w++) {
			char name[16];

			if (pthread_create(&th[w], NULL, writer_thread, (void *)(long)w))
				die("pthread_create");
			snprintf(name, sizeof(name), "writer%d", w);
			pthread_setname_np(th[w], name);
		}
	}
	pin(0);

	printf("racing: %s writes of %" PRIu64 " pages just ahead of the stores, %" PRIu64 " pages a round, %.0f s\n",
	       method == UNMAPPED ? "unmapped-buffer" : method == PROTNONE ? "PROT_NONE-buffer" : "fault-injected",
	       span, pages, seconds);
	t0 = now();
	for (round = 1; now() - t0 < seconds; round++) {
		unsigned char *map;
		uint64_t p, first_bad = 0;
		long lost, writes0 = atomic_load(&sh->writes), failed0 = atomic_load(&sh->failed);

		if (ftruncate(fd, 0) || ftruncate(fd, (off_t)len))
			die("ftruncate");
		if (image)
			for (p = 0; p < pages; p++)
				fill_page(image + p * PAGE, round, p);
		map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED)
			die("mmap file");
		atomic_store(&sh->cur, -1);
		atomic_store(&sh->go, 1);
		for (p = 0; p < pages; p++) {
			uint64_t m = marker_value(round, p);

			memcpy(map + p * PAGE + marker_offset(p), &m, sizeof(m));
			stored[p] = now() - t0;
			atomic_store(&sh->cur, (long)p);
		}
		stop_writers();
		if (msync(map, len, MS_SYNC))
			die("msync");
		munmap(map, len);
		if (fsync(fd))
			die("fsync");
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		lost = verify_file(fd, round, pages, &first_bad);
		if (lost < 0)
			return 2;
		rounds++;
		if (verbose || lost)
			printf("round %u: %ld writes, %ld failed, %ld lost (first page %" PRIu64 "), %.2f s\n", round,
			       atomic_load(&sh->writes) - writes0, atomic_load(&sh->failed) - failed0, lost,
			       lost ? first_bad : 0, now() - t0);
		fflush(stdout);
		if (lost) {
			total_lost += lost;
			lossy_rounds++;
			if (first_loss < 0) { /* the earliest lost marker was stored then */
				first_loss = stored[first_bad];
				printf("@@first-loss-after %.3f\n", first_loss);
				printf("first loss: page %" PRIu64 " stored at %.3f s, found at %.3f s\n", first_bad,
				       first_loss, now() - t0);
			}
			if (!keep_going)
				break;
		}
	}
	atomic_store(&sh->stop, 1);
	if (method == INJECT) {
		waitpid(wpid, NULL, 0);
	} else {
		for (w = 0; w < nwriters; w++)
			pthread_join(th[w], NULL);
	}
	printf("done: %u rounds in %.1f s; writes %ld: %ld failed, %ld completed, %ld other; %ld lost markers in %ld rounds\n",
	       rounds, now() - t0, atomic_load(&sh->writes),
	       atomic_load(&sh->failed), atomic_load(&sh->completed), atomic_load(&sh->other), total_lost, lossy_rounds);
	if (atomic_load(&sh->failed) == 0) {
		printf("no write failed: nothing was tested%s\n",
		       method == INJECT ? " (is fail_usercopy configured and the writer marked?)" : "");
		return 3;
	}
	return 0;
}

/* --- self-test: the verifier on a file we write and damage ourselves -------- */

static int self_test(const char *dir, const char *zero_list, long stray)
{
	char path[4096];
	unsigned char *buf = malloc(PAGE);
	uint64_t p, first_bad = 0;
	long lost, want = 0;
	uint32_t round = 7;
	int f;

	snprintf(path, sizeof(path), "%s/selftest.dat", dir);
	f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (f < 0 || !buf)
		die(path);
	for (p = 0; p < pages; p++) {
		fill_page(buf, round, p);
		if (pwrite(f, buf, PAGE, (off_t)(p * PAGE)) != (ssize_t)PAGE)
			die("pwrite");
	}
	memset(buf, 0, PAGE);
	for (const char *s = zero_list; s && *s;) { /* zero whole pages: lost markers */
		char *end;
		unsigned long z = strtoul(s, &end, 10);

		if (end == s || z >= pages)
			return fprintf(stderr, "bad page list %s\n", zero_list), 2;
		if (pwrite(f, buf, PAGE, (off_t)(z * PAGE)) != (ssize_t)PAGE)
			die("pwrite zero");
		want++;
		s = *end == ',' ? end + 1 : end;
	}
	if (stray >= 0) { /* one stray byte away from the marker */
		uint64_t junk = 0xff;
		size_t off = (marker_offset(stray) + 8) % PAGE;

		if (pwrite(f, &junk, 1, (off_t)(stray * PAGE + off)) != 1)
			die("pwrite stray");
		want++;
	}
	if (fsync(f))
		die("fsync");
	posix_fadvise(f, 0, 0, POSIX_FADV_DONTNEED);
	lost = verify_file(f, round, pages, &first_bad);
	printf("self-test: %ld bad pages of %" PRIu64 " (expected %ld)\n", lost, pages, want);
	close(f);
	unlink(path);
	free(buf);
	return lost == want ? 0 : 1;
}

/* Check an existing file as the end of round `round` (for tests). */
static int verify_only(const char *path, uint32_t round)
{
	uint64_t first_bad = 0;
	long lost;
	int f = open(path, O_RDONLY);

	if (f < 0)
		die(path);
	lost = verify_file(f, round, pages, &first_bad);
	close(f);
	if (lost < 0)
		return 2;
	printf("verify: %ld bad pages of %" PRIu64 "\n", lost, pages);
	return lost ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: repro DIR [-t SECONDS] [-s unmapped|protnone|inject] [-p PAGES] [-n SPAN] [-l LEAD]\n"
			"             [-w WRITERS] [-K KILL_MS] [-k] [-v]\n"
			"       repro --self-test DIR [-p PAGES] [-c PAGE[,PAGE...]] [-x PAGE]\n"
			"       repro --verify FILE [-p PAGES] [-r ROUND]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *dir, *zero_list = NULL;
	double seconds = 20;
	long stray = -1;
	int selftest = 0, verify = 0, keep_going = 0, opt;
	uint32_t round = 1;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !strcmp(argv[1], "--self-test")) {
		selftest = 1;
		argv++;
		argc--;
	} else if (argc > 1 && !strcmp(argv[1], "--verify")) {
		verify = 1;
		argv++;
		argc--;
	}
	if (argc < 2)
		usage();
	dir = argv[1];
	optind = 2;
	while ((opt = getopt(argc, argv, "t:s:p:n:l:w:K:kvc:x:r:")) != -1) {
		switch (opt) {
		case 't': seconds = atof(optarg); break;
		case 's':
			if (!strcmp(optarg, "unmapped"))
				method = UNMAPPED;
			else if (!strcmp(optarg, "protnone"))
				method = PROTNONE;
			else if (!strcmp(optarg, "inject"))
				method = INJECT;
			else
				usage();
			break;
		case 'p': pages = strtoull(optarg, NULL, 0); break;
		case 'n': span = strtoull(optarg, NULL, 0); break;
		case 'l': lead = strtoull(optarg, NULL, 0); break;
		case 'w': nwriters = atoi(optarg); break;
		case 'K': kill_ms = atoi(optarg); break;
		case 'k': keep_going = 1; break;
		case 'v': verbose = 1; break;
		case 'c': zero_list = optarg; break;
		case 'x': stray = atol(optarg); break;
		case 'r': round = (uint32_t)strtoul(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (!pages || pages > 0xffffff || !span || !lead || nwriters < 1 || nwriters > MAX_WRITERS || kill_ms < 1)
		usage();
	if (verify)
		return verify_only(dir, round);
	if (selftest)
		return self_test(dir, zero_list, stray >= 0 && (uint64_t)stray < pages ? stray : -1);
	return race(dir, seconds, keep_going);
}
