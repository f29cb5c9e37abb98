// SPDX-License-Identifier: GPL-2.0
/*
 * ext2_iomap_blkseq: writeback through a stale cached iomap after
 * truncate + pwrite, on ext2 converted to iomap.
 *
 *   repro MNT [-m race|integrity|selftest] [options]
 *
 * race (default): rounds of
 *     F := 1024 tagged blocks (blocks 0..11 written and synced first, so the
 *          writeback pass starts at block 12 and caches one mapping for
 *          blocks 12..1023: they sit in one indirect block);
 *     thread A: sync_file_range(F, SYNC_FILE_RANGE_WRITE)   (WB_SYNC_NONE:
 *          the pass picks up folios dirtied while it runs);
 *     thread B: after a short random delay, ftruncate(F, S blocks), pwrite
 *          one block at S+j (j >= 1: the allocator gives it the block after
 *          S-1, not its old block), close, then O_DIRECT-write victim files
 *          V.<round>.<k> whose blocks come from the ones F just freed;
 *   then fsync, and every file is read back with O_DIRECT.  A block whose
 *   content is not what was written is reported as
 *       @@lost <file> blk <n>: holds <owner of the content found>
 *   At the end: sync, drop caches, buffered read-back of every file left,
 *   then umount + mount (when the mount point is not busy) and again.
 * integrity: a data-integrity run of the I/O paths (sequential, sparse and
 *   unaligned writes, mmap writes over holes, truncate down/up with partial
 *   blocks, O_DIRECT with the buffered fallback, appends), checked from the
 *   page cache, with O_DIRECT, after drop caches and after a remount.
 * selftest DIR: checks the verifiers on a scratch directory (host tmpfs):
 *   clean files must verify clean, planted bad blocks must be reported.
 *
 * Every block of the race files carries a tag (magic, file id, round,
 * block number) and a fill derived from it, so a wrong block says whose
 * data it holds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define BS 4096
#define MAGIC 0x51455342324554ULL /* "TE2BSEQ" */
#define MAX_REPORT 8		  /* @@lost lines per file and check */

static const char *mnt = ".";
static const char *dev;
static const char *fstype = "ext2";
static const char *mntopts = "";
static int verbose = 1;
static int no_drop;	/* -N: never drop caches (host tests: they are global) */
static double t_start;
static long total_lost;
static double first_loss = -1;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stdout, "repro: ");
	vfprintf(stdout, fmt, ap);
	fprintf(stdout, ": %s\n", strerror(errno));
	va_end(ap);
	fflush(stdout);
	exit(2);
}

static void lost(const char *fmt, ...)
{
	va_list ap;

	if (first_loss < 0) {
		first_loss = now() - t_start;
		printf("@@first-loss-after %.3f\n", first_loss);
	}
	total_lost++;
	va_start(ap, fmt);
	printf("@@lost ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
}

/* ---- tagged blocks ------------------------------------------------------ */

struct tag {
	uint64_t magic;
	uint32_t file;
	uint32_t round;
	uint32_t blk;
	uint32_t pad;
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static void fill_block(void *buf, uint32_t file, uint32_t round, uint32_t blk)
{
	struct tag *t = buf;
	uint64_t *w = buf;
	uint64_t seed = ((uint64_t)file << 40) ^ ((uint64_t)round << 20) ^ blk;

	for (size_t i = sizeof(*t) / 8; i < BS / 8; i++)
		w[i] = mix(seed * 4099 + i);
	t->magic = MAGIC;
	t->file = file;
	t->round = round;
	t->blk = blk;
	t->pad = 0;
}

static int is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Names of the race files, for describing what a wrong block holds. */
#define F_ID 1
#define VICTIM_ID(round, k) (100000u + (round) * 64u + (k))

static void file_name(uint32_t id, char *out, size_t len)
{
	if (id == F_ID)
		snprintf(out, len, "F");
	else if (id >= 100000u)
		snprintf(out, len, "V.%u.%u", (id - 100000u) / 64, (id - 100000u) % 64);
	else
		snprintf(out, len, "file#%u", id);
}

/* What a block that is not the expected one holds, in words. */
static void describe(const void *buf, char *out, size_t len)
{
	const struct tag *t = buf;
	char name[64], want[BS] __attribute__((aligned(8)));

	if (is_zero(buf, BS)) {
		snprintf(out, len, "zeros");
		return;
	}
	if (t->magic == MAGIC) {
		fill_block(want, t->file, t->round, t->blk);
		file_name(t->file, name, sizeof(name));
		snprintf(out, len, "%s round %u blk %u%s", name, t->round, t->blk,
			 memcmp(want, buf, BS) ? " (torn)" : "");
		return;
	}
	const unsigned char *p = buf;
	snprintf(out, len, "unrecognised data %02x%02x%02x%02x%02x%02x%02x%02x...",
		 p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]);
}

/*
 * Expected layout of a tagged file: block b holds (id, round, b) when
 * want[b] is set, zeros otherwise (a hole).
 */
struct tagged {
	const char *path;
	uint32_t id, round;
	uint32_t nblocks;
	const unsigned char *want;	/* NULL: every block tagged */
};

static int open_read(const char *path, int direct)
{
	int fd = open(path, O_RDONLY | (direct ? O_DIRECT : 0));

	if (fd < 0 && direct && errno == EINVAL) /* tmpfs: no O_DIRECT */
		fd = open(path, O_RDONLY);
	return fd;
}

/* Returns the number of bad blocks; reports up to MAX_REPORT of them. */
static int verify_tagged(const struct tagged *f, int direct, const char *when)
{
	char *buf, *want, what[160];
	int fd, bad = 0;
	struct stat st;

	if (posix_memalign((void **)&buf, BS, BS) || posix_memalign((void **)&want, BS, BS))
		die("posix_memalign");
	fd = open_read(f->path, direct);
	if (fd < 0) {
		lost("%s: cannot open (%s) %s", f->path, strerror(errno), when);
		free(buf);
		free(want);
		return 1;
	}
	if (fstat(fd, &st) == 0 && st.st_size != (off_t)f->nblocks * BS) {
		lost("%s: size %lld, expected %lld %s", f->path, (long long)st.st_size,
		     (long long)f->nblocks * BS, when);
		bad++;
	}
	for (uint32_t b = 0; b < f->nblocks; b++) {
		ssize_t n = pread(fd, buf, BS, (off_t)b * BS);
		int tagged = !f->want || f->want[b];

		if (n != BS) {
			if (bad++ < MAX_REPORT)
				lost("%s blk %u: read returned %zd (%s) %s", f->path, b, n,
				     n < 0 ? strerror(errno) : "short", when);
			continue;
		}
		if (tagged)
			fill_block(want, f->id, f->round, b);
		else
			memset(want, 0, BS);
		if (!memcmp(buf, want, BS))
			continue;
		if (bad++ < MAX_REPORT) {
			describe(buf, what, sizeof(what));
			lost("%s blk %u: holds %s, expected %s %s", f->path, b, what,
			     tagged ? "its own data" : "zeros (hole)", when);
		}
	}
	if (bad > MAX_REPORT)
		lost("%s: %d bad blocks in all %s", f->path, bad, when);
	close(fd);
	free(buf);
	free(want);
	return bad;
}

static void write_tagged(int fd, uint32_t id, uint32_t round, uint32_t from, uint32_t to)
{
	size_t len = (size_t)(to - from) * BS;
	char *buf;

	if (!len)
		return;
	if (posix_memalign((void **)&buf, BS, len))
		die("posix_memalign");
	for (uint32_t b = from; b < to; b++)
		fill_block(buf + (size_t)(b - from) * BS, id, round, b);
	for (size_t done = 0; done < len;) {
		ssize_t n = pwrite(fd, buf + done, len - done, (off_t)from * BS + done);

		if (n <= 0)
			die("pwrite %u..%u", from, to);
		done += n;
	}
	free(buf);
}

static long fibmap(int fd, long blk)
{
	int b = blk;

	if (ioctl(fd, FIBMAP, &b) < 0)
		return -1;
	return b;
}

/* ---- caches and remount ---------------------------------------------------- */

static int drop_caches(void)
{
	int fd;

	sync();
	if (no_drop) {
		printf("@@note drop caches skipped (-N)\n");
		return -1;
	}
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0 || write(fd, "3\n", 2) != 2) {
		printf("@@note drop_caches failed: %s\n", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* 1: remounted, 0: not possible here (said why), -1: error (mount lost) */
static int remount(void)
{
	if (!dev) {
		printf("@@note remount skipped: no device given (-d {dev})\n");
		return 0;
	}
	if (chdir("/"))
		die("chdir /");
	sync();
	if (umount(mnt)) {
		printf("@@note remount skipped: umount %s: %s (the guest shell's working "
		       "directory is the mount point); verified after drop caches instead\n",
		       mnt, strerror(errno));
		if (chdir(mnt))
			die("chdir %s", mnt);
		return 0;
	}
	if (mount(dev, mnt, fstype, 0, mntopts)) {
		printf("@@note mount %s on %s failed: %s\n", dev, mnt, strerror(errno));
		return -1;
	}
	if (chdir(mnt))
		die("chdir %s", mnt);
	printf("remounted %s on %s\n", dev, mnt);
	return 1;
}

static unsigned long sysfs_ulong(const char *path)
{
	unsigned long v = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return 0;
	if (fscanf(f, "%lu", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

/* ---- race mode -------------------------------------------------------------- */

static uint64_t rng_state;	/* -s SEED, else from the clock (printed) */

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

struct writeback_arg {
	int fd;
	volatile int started;
	double t0, t1;
};

static void *writeback_thread(void *p)
{
	struct writeback_arg *a = p;

	a->t0 = now();
	__atomic_store_n(&a->started, 1, __ATOMIC_SEQ_CST);
	if (sync_file_range(a->fd, 0, 0, SYNC_FILE_RANGE_WRITE))
		die("sync_file_range");
	a->t1 = now();
	return NULL;
}

static void sleep_us(double us)
{
	struct timespec ts;

	if (us <= 0)
		return;
	ts.tv_sec = (time_t)(us / 1e6);
	ts.tv_nsec = (long)((us - ts.tv_sec * 1e6) * 1000);
	nanosleep(&ts, NULL);
}

struct race_opts {
	double seconds;
	uint32_t nblocks;	/* blocks of F */
	double max_delay_us;	/* B's delay; <0: adaptive */
	uint32_t victims, victim_blocks;
	int keep_going;		/* continue after the first loss */
};

static int race(const struct race_opts *o)
{
	const uint32_t N = o->nblocks;
	double ewma_a = -1;	/* writeback pass duration, us */
	unsigned rounds = 0, overlapped = 0, moved = 0, lossy_rounds = 0;
	struct tagged *left = NULL;	/* files kept at the end (for the final checks) */
	unsigned nleft = 0;
	unsigned char *want = calloc(N + 64, 1);
	unsigned long delay_us = sysfs_ulong("/sys/module/ext2/parameters/map_delay_us");

	printf("race: F %u blocks, %u victims x %u blocks, %.0f s, seed %#llx; ext2.map_delay_us=%lu\n",
	       N, o->victims, o->victim_blocks, o->seconds, (unsigned long long)rng_state, delay_us);
	if (N < 128 || !want)
		die("bad -n");

	while (now() - t_start < o->seconds) {
		uint32_t r = ++rounds;
		uint32_t S = N / 2 + rnd() % (N / 2 - 80);
		uint32_t j = 1 + rnd() % 48;
		struct writeback_arg a = { 0 };
		pthread_t th;
		double d, tb0, tb1;
		long old_phys, new_phys;
		int fd, fdw, bad = 0;
		char vname[64];

		fd = open("F", O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			die("open F");
		write_tagged(fd, F_ID, r, 0, 12);
		if (fdatasync(fd))
			die("fdatasync F");
		write_tagged(fd, F_ID, r, 12, N);	/* dirty, blocks allocated */
		old_phys = fibmap(fd, S + j);
		fdw = open("F", O_RDONLY);	/* A's own file: B closes fd */
		if (fdw < 0)
			die("open F");

		if (o->max_delay_us >= 0)
			d = (double)(rnd() % 1000000) / 1e6 * o->max_delay_us;
		else if (ewma_a < 0)
			d = 0;
		else
			d = (0.02 + (double)(rnd() % 1000000) / 1e6 * 0.45) * ewma_a;

		a.fd = fdw;
		if (pthread_create(&th, NULL, writeback_thread, &a))
			die("pthread_create");
		while (!__atomic_load_n(&a.started, __ATOMIC_SEQ_CST))
			;
		sleep_us(d);
		tb0 = now();
		if (ftruncate(fd, (off_t)S * BS))
			die("ftruncate F");
		write_tagged(fd, F_ID, r, S + j, S + j + 1);
		tb1 = now();
		new_phys = fibmap(fd, S + j);
		close(fd);	/* drops F's reservation window */
		for (uint32_t k = 0; k < o->victims; k++) {
			snprintf(vname, sizeof(vname), "V.%u.%u", r, k);
			int v = open(vname, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0644);
			if (v < 0)
				die("open %s", vname);
			write_tagged(v, VICTIM_ID(r, k), r, 0, o->victim_blocks);
			close(v);
		}
		pthread_join(th, NULL);
		if (fsync(fdw))
			die("fsync F");
		close(fdw);

		double a_us = (a.t1 - a.t0) * 1e6;
		ewma_a = ewma_a < 0 ? a_us : 0.7 * ewma_a + 0.3 * a_us;
		int overlap = tb1 < a.t1;	/* truncate + pwrite done while A ran */
		overlapped += overlap;
		moved += old_phys != new_phys;

		/* verify this round from the disk (O_DIRECT) */
		memset(want, 0, N + 64);
		memset(want, 1, S);
		want[S + j] = 1;
		char when[128];
		snprintf(when, sizeof(when), "(round %u, O_DIRECT read after fsync)", r);
		struct tagged f = { "F", F_ID, r, S + j + 1, want };
		bad += verify_tagged(&f, 1, when);
		for (uint32_t k = 0; k < o->victims; k++) {
			snprintf(vname, sizeof(vname), "V.%u.%u", r, k);
			struct tagged v = { vname, VICTIM_ID(r, k), r, o->victim_blocks, NULL };
			bad += verify_tagged(&v, 1, when);
		}
		if (verbose)
			printf("round %u: S=%u j=%u F[%u] block %ld -> %ld, A %.1f ms, B %.1f..%.1f ms%s%s\n",
			       r, S, j, S + j, old_phys, new_phys, a_us / 1e3, (tb0 - a.t0) * 1e3,
			       (tb1 - a.t0) * 1e3, overlap ? " overlap" : "", bad ? " LOSS" : "");
		fflush(stdout);
		if (bad) {
			lossy_rounds++;
			left = realloc(left, sizeof(*left) * (nleft + 1 + o->victims));
			unsigned char *w = malloc(N + 64);
			memcpy(w, want, N + 64);
			left[nleft++] = (struct tagged){ "F", F_ID, r, S + j + 1, w };
			for (uint32_t k = 0; k < o->victims; k++) {
				snprintf(vname, sizeof(vname), "V.%u.%u", r, k);
				left[nleft++] = (struct tagged){ strdup(vname), VICTIM_ID(r, k), r,
								 o->victim_blocks, NULL };
			}
			if (!o->keep_going)
				break;
			/* keep the evidence: next rounds use another F */
			char keep[64];
			snprintf(keep, sizeof(keep), "F.lost.%u", r);
			if (rename("F", keep))
				die("rename F");
			left[nleft - 1 - o->victims].path = strdup(keep);
		} else {
			for (uint32_t k = 0; k < o->victims; k++) {
				snprintf(vname, sizeof(vname), "V.%u.%u", r, k);
				unlink(vname);
			}
		}
	}
	printf("@@stats rounds=%u overlapped=%u moved=%u lossy_rounds=%u writeback_ms=%.1f "
	       "map_delay_count=%lu\n", rounds, overlapped, moved, lossy_rounds,
	       ewma_a / 1e3, sysfs_ulong("/sys/module/ext2/parameters/map_delay_count"));

	/* final checks of what was kept: after drop caches, then after a remount */
	if (nleft) {
		if (drop_caches() == 0)
			for (unsigned i = 0; i < nleft; i++)
				verify_tagged(&left[i], 0, "(buffered read after sync + drop caches)");
		if (remount() == 1)
			for (unsigned i = 0; i < nleft; i++)
				verify_tagged(&left[i], 0, "(buffered read after remount)");
	} else {
		drop_caches();
		remount();
	}
	return total_lost ? 1 : 0;
}

/* ---- integrity mode ------------------------------------------------------------ */

struct model {
	const char *path;
	unsigned char *data;
	size_t size, cap;
};

#define NMODELS 16
static struct model models[NMODELS];
static int nmodels;

static struct model *model(const char *path)
{
	for (int i = 0; i < nmodels; i++)
		if (!strcmp(models[i].path, path))
			return &models[i];
	models[nmodels].path = path;
	return &models[nmodels++];
}

static void model_resize(struct model *m, size_t size)
{
	if (size > m->cap) {
		m->data = realloc(m->data, size);
		memset(m->data + m->cap, 0, size - m->cap);
		m->cap = size;
	}
	if (size > m->size)
		memset(m->data + m->size, 0, size - m->size);
	m->size = size;
}

static void pattern(unsigned char *buf, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(mix(seed + i / 8) >> (8 * (i % 8)));
}

/* pwrite through fd and into the model */
static void mwrite(int fd, const char *path, off_t off, size_t len, uint64_t seed)
{
	struct model *m = model(path);
	unsigned char *buf;

	if (posix_memalign((void **)&buf, BS, len + BS))
		die("posix_memalign");
	pattern(buf, len, seed);
	if (pwrite(fd, buf, len, off) != (ssize_t)len)
		die("pwrite %s %lld+%zu", path, (long long)off, len);
	if (off + len > m->size)
		model_resize(m, off + len);
	memcpy(m->data + off, buf, len);
	free(buf);
}

static void mtruncate(int fd, const char *path, off_t size)
{
	struct model *m = model(path);

	if (ftruncate(fd, size))
		die("ftruncate %s %lld", path, (long long)size);
	model_resize(m, size);
}

static int verify_model(const struct model *m, int direct, const char *when)
{
	unsigned char *buf;
	size_t cap = (m->size + 2 * BS) & ~(size_t)(BS - 1);
	int fd, bad = 0;
	struct stat st;
	ssize_t n, got = 0;

	fd = open_read(m->path, direct);
	if (fd < 0) {
		lost("%s: cannot open (%s) %s", m->path, strerror(errno), when);
		return 1;
	}
	if (fstat(fd, &st) || (size_t)st.st_size != m->size) {
		lost("%s: size %lld, expected %zu %s", m->path, (long long)st.st_size, m->size, when);
		bad++;
	}
	if (posix_memalign((void **)&buf, BS, cap))
		die("posix_memalign");
	memset(buf, 0, cap);
	while ((size_t)got < cap && (n = pread(fd, buf + got, cap - got, got)) > 0)
		got += n;
	if ((size_t)got != m->size && !bad) {
		lost("%s: read %zd bytes, expected %zu %s", m->path, got, m->size, when);
		bad++;
	}
	size_t end = m->size < (size_t)got ? m->size : (size_t)got;
	for (size_t off = 0; off < end; off += BS) {
		size_t len = end - off < BS ? end - off : BS;

		if (!memcmp(buf + off, m->data + off, len))
			continue;
		size_t i = 0;
		while (buf[off + i] == m->data[off + i])
			i++;
		if (bad++ < MAX_REPORT)
			lost("%s blk %zu: differs from byte %zu on (found %s, %02x vs %02x) %s",
			     m->path, off / BS, off + i,
			     is_zero(buf + off + i, len - i) ? "zeros" : "other data",
			     buf[off + i], m->data[off + i], when);
	}
	close(fd);
	free(buf);
	return bad;
}

static int verify_all(int direct, const char *when)
{
	int bad = 0;

	for (int i = 0; i < nmodels; i++)
		bad += verify_model(&models[i], direct, when);
	printf("integrity: %d files checked %s: %s\n", nmodels, when, bad ? "BAD" : "ok");
	fflush(stdout);
	return bad;
}

static int xopen(const char *path, int flags)
{
	int fd = open(path, flags, 0644);

	if (fd < 0)
		die("open %s", path);
	return fd;
}

static int integrity(void)
{
	int fd;
	unsigned char *map;

	/* sequential file, unaligned chunks, then an overwrite across blocks */
	fd = xopen("seq", O_RDWR | O_CREAT | O_TRUNC);
	for (off_t off = 0; off < (1 << 20) + 100; off += 65536 + 13)
		mwrite(fd, "seq", off, 65536 + 13, 1000 + off);
	mwrite(fd, "seq", 4090, 10000, 2);
	close(fd);

	/* sparse: holes between unaligned writes */
	fd = xopen("sparse", O_RDWR | O_CREAT | O_TRUNC);
	mwrite(fd, "sparse", 3000, 5000, 3);
	mwrite(fd, "sparse", 1 << 20, 4096, 4);
	mwrite(fd, "sparse", (3 << 20) + 7, 10, 5);
	close(fd);

	/* mmap writes over holes and into written blocks, EOF mid-page */
	fd = xopen("mmap", O_RDWR | O_CREAT | O_TRUNC);
	mwrite(fd, "mmap", 20000, 3000, 6);
	mtruncate(fd, "mmap", 300001);
	map = mmap(NULL, 300001, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die("mmap");
	{
		struct model *m = model("mmap");
		size_t spots[][2] = { { 0, 4096 }, { 5 * 4096 + 100, 9000 }, { 19000, 2000 },
				      { 70 * 4096, 4096 }, { 300001 - 77, 77 } };
		for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
			pattern(m->data + spots[i][0], spots[i][1], 700 + i);
			memcpy(map + spots[i][0], m->data + spots[i][0], spots[i][1]);
		}
	}
	if (msync(map, 300001, MS_SYNC))
		die("msync");
	munmap(map, 300001);
	close(fd);

	/* truncate down into a block, up again, write past a new hole */
	fd = xopen("trunc", O_RDWR | O_CREAT | O_TRUNC);
	mwrite(fd, "trunc", 0, 65536 + 1000, 8);
	if (fsync(fd))
		die("fsync");
	mtruncate(fd, "trunc", 10000);
	mtruncate(fd, "trunc", 40000);
	mwrite(fd, "trunc", 50000, 100, 9);
	mtruncate(fd, "trunc", 45000);
	mwrite(fd, "trunc", 44990, 20, 10);
	close(fd);

	/* truncate while dirty pages are under writeback, then rewrite */
	fd = xopen("wbtrunc", O_RDWR | O_CREAT | O_TRUNC);
	mwrite(fd, "wbtrunc", 0, 1 << 20, 11);
	if (sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE))
		die("sync_file_range");
	mtruncate(fd, "wbtrunc", 100 * 1024 + 5);
	mwrite(fd, "wbtrunc", 200 * 1024, 8192, 12);
	close(fd);

	/* O_DIRECT: aligned writes, and a write into a hole inside i_size
	 * (blockdev_direct_IO stops there; the rest goes through the page cache) */
	fd = xopen("dio", O_RDWR | O_CREAT | O_TRUNC | O_DIRECT);
	mwrite(fd, "dio", 0, 65536, 13);
	mtruncate(fd, "dio", 1 << 20);
	mwrite(fd, "dio", 512 * 1024, 16384, 14);
	mwrite(fd, "dio", 1 << 20, 8192, 15);
	close(fd);

	/* small appends: i_size grows inside an allocated block */
	fd = xopen("append", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND);
	for (int i = 0; i < 200; i++) {
		mwrite(fd, "append", model("append")->size, 37, 16 + i);
		if (i % 50 == 49 && fsync(fd))
			die("fsync");
	}
	close(fd);

	/* mmap a file extended by ftruncate, all pages written through the map */
	fd = xopen("mmapext", O_RDWR | O_CREAT | O_TRUNC);
	mtruncate(fd, "mmapext", 8192);
	map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die("mmap");
	pattern(model("mmapext")->data, 8192, 300);
	memcpy(map, model("mmapext")->data, 8192);
	munmap(map, 8192);
	mtruncate(fd, "mmapext", 16384);
	close(fd);

	/* small file rewritten shorter */
	fd = xopen("small", O_RDWR | O_CREAT | O_TRUNC);
	mwrite(fd, "small", 0, 100, 17);
	close(fd);
	fd = xopen("small", O_RDWR | O_TRUNC);
	mtruncate(fd, "small", 0);
	mwrite(fd, "small", 0, 50, 18);
	close(fd);

	for (int i = 0; i < nmodels; i++) {
		fd = xopen(models[i].path, O_RDONLY);
		if (fsync(fd))
			die("fsync %s", models[i].path);
		close(fd);
	}
	verify_all(0, "(page cache, after fsync)");
	verify_all(1, "(O_DIRECT)");
	if (drop_caches() == 0)
		verify_all(0, "(after sync + drop caches)");
	if (remount() == 1)
		verify_all(0, "(after remount)");
	return total_lost ? 1 : 0;
}

/* ---- selftest (host, no kernel under test) ------------------------------------------ */

static int selftest(const char *dir)
{
	int fd, fails = 0;
	long before;
	char buf[BS] __attribute__((aligned(BS)));

	if (chdir(dir))
		die("chdir %s", dir);
	/* tagged files: F 16 blocks with a hole at 10, victim 4 blocks */
	unsigned char want[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1 };
	fd = xopen("F", O_RDWR | O_CREAT | O_TRUNC);
	write_tagged(fd, F_ID, 7, 0, 10);
	write_tagged(fd, F_ID, 7, 11, 16);
	close(fd);
	fd = xopen("V.7.0", O_RDWR | O_CREAT | O_TRUNC);
	write_tagged(fd, VICTIM_ID(7, 0), 7, 0, 4);
	close(fd);
	struct tagged f = { "F", F_ID, 7, 16, want };
	struct tagged v = { "V.7.0", VICTIM_ID(7, 0), 7, 4, NULL };

	before = total_lost;
	if (verify_tagged(&f, 1, "(selftest clean)") || verify_tagged(&v, 1, "(selftest clean)") ||
	    total_lost != before) {
		printf("@@selftest FAIL: clean tagged files reported bad\n");
		fails++;
	}
	/* plant: F blk 5 gets V blk 2 (a stale write), V blk 1 gets F blk 12,
	 * F blk 9 zeroed, F's hole (blk 10) gets data */
	fill_block(buf, VICTIM_ID(7, 0), 7, 2);
	fd = xopen("F", O_RDWR);
	if (pwrite(fd, buf, BS, 5 * BS) != BS)
		die("pwrite");
	memset(buf, 0, BS);
	if (pwrite(fd, buf, BS, 9 * BS) != BS)
		die("pwrite");
	fill_block(buf, F_ID, 6, 10);
	if (pwrite(fd, buf, BS, 10 * BS) != BS)
		die("pwrite");
	close(fd);
	fill_block(buf, F_ID, 7, 12);
	fd = xopen("V.7.0", O_RDWR);
	if (pwrite(fd, buf, BS, 1 * BS) != BS)
		die("pwrite");
	close(fd);
	before = total_lost;
	int bf = verify_tagged(&f, 1, "(selftest planted)");
	int bv = verify_tagged(&v, 1, "(selftest planted)");
	if (bf != 3 || bv != 1 || total_lost - before != 4) {
		printf("@@selftest FAIL: planted 3+1 bad blocks, verifier found %d+%d\n", bf, bv);
		fails++;
	}

	/* integrity model: clean, then one flipped byte and a short file */
	nmodels = 0;
	fd = xopen("m", O_RDWR | O_CREAT | O_TRUNC);
	mwrite(fd, "m", 0, 10000, 1);
	mwrite(fd, "m", 20000, 5, 2);
	close(fd);
	before = total_lost;
	if (verify_all(0, "(selftest clean)") || total_lost != before) {
		printf("@@selftest FAIL: clean model file reported bad\n");
		fails++;
	}
	fd = xopen("m", O_RDWR);
	unsigned char c = model("m")->data[8000] ^ 0x5a;
	if (pwrite(fd, &c, 1, 8000) != 1)
		die("pwrite");
	close(fd);
	before = total_lost;
	if (verify_all(0, "(selftest planted)") != 1 || total_lost - before != 1) {
		printf("@@selftest FAIL: flipped byte not reported once\n");
		fails++;
	}
	if (truncate("m", 19000))
		die("truncate");
	if (verify_all(0, "(selftest planted)") < 1) {
		printf("@@selftest FAIL: short file not reported\n");
		fails++;
	}
	printf(fails ? "@@selftest FAIL\n" : "@@selftest ok\n");
	return fails ? 1 : 0;
}

static void usage(void)
{
	printf("usage: repro MNT [-m race|integrity|selftest] [-t SECONDS] [-n BLOCKS]\n"
	       "       [-D MAX_DELAY_US] [-V VICTIMS] [-K VICTIM_BLOCKS] [-s SEED] [-k]\n"
	       "       [-d DEV] [-T FSTYPE] [-o MOUNT_OPTIONS] [-q] [-N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct race_opts o = { .seconds = 20, .nblocks = 1024, .max_delay_us = -1,
			       .victims = 6, .victim_blocks = 12, .keep_going = 0 };
	const char *mode = "race";
	int c;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2 || argv[1][0] == '-')
		usage();
	mnt = argv[1];
	optind = 2;
	while ((c = getopt(argc, argv, "m:t:n:D:V:K:s:kd:T:o:qN")) != -1) {
		switch (c) {
		case 'm': mode = optarg; break;
		case 't': o.seconds = atof(optarg); break;
		case 'n': o.nblocks = atoi(optarg); break;
		case 'D': o.max_delay_us = atof(optarg); break;
		case 'V': o.victims = atoi(optarg); break;
		case 'K': o.victim_blocks = atoi(optarg); break;
		case 's': rng_state = strtoull(optarg, NULL, 0) | 1; break;
		case 'k': o.keep_going = 1; break;
		case 'd': dev = optarg; break;
		case 'T': fstype = optarg; break;
		case 'o': mntopts = optarg; break;
		case 'q': verbose = 0; break;
		case 'N': no_drop = 1; break;
		default: usage();
		}
	}
	if (o.victims > 64 || o.victim_blocks < 1)
		usage();
	t_start = now();
	if (!rng_state) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		rng_state = mix((uint64_t)ts.tv_sec * 1000000007ULL + ts.tv_nsec + getpid()) | 1;
	}
	if (!strcmp(mode, "selftest"))
		return selftest(mnt);
	if (chdir(mnt))
		die("chdir %s", mnt);
	if (!strcmp(mode, "race"))
		return race(&o);
	if (!strcmp(mode, "integrity"))
		return integrity();
	usage();
	return 2;
}
