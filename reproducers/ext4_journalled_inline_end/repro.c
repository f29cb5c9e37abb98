// ext4 inline data: a write to an inline file through the journalled aops
// after a delalloc write moved its data out of the inode (in memory only)
// -> kernel BUG in ext4_write_inline_data (inlined: ..._data_end).
//
// Written here from the code of Debian's 6.1.190 and 6.1.192 sources; the
// fix is "ext4: fix kernel BUG in ext4_write_inline_data_end" (6.1.191):
// ext4_journalled_write_end() now tests EXT4_STATE_MAY_INLINE_DATA as well
// as ext4_has_inline_data() before it takes the inline path, as
// ext4_write_end() and ext4_da_write_end() already did.
//
// The state: an inode that still has inline data (EXT4_INODE_INLINE_DATA,
// i_inline_off) while EXT4_STATE_MAY_INLINE_DATA is clear.  Delalloc makes
// it by design: a write too big for the inode goes through
// ext4_da_convert_inline_data_to_extent(), which dirties page 0 and clears
// MAY_INLINE_DATA, leaving the inline data for writeback to destroy.  The
// steps, one process, no race:
//
//  1. (delalloc mount) write SMALL bytes: the file is inline;
//  2. write BIG bytes at 0: the delalloc conversion; inline flag still set;
//  3. ftruncate(0): page 0 goes away unwritten, so writeback never destroys
//     the inline data; ext4_inline_data_truncate() keeps it (i_size 0);
//  4. remount nodelalloc: per-inode data journalling needs it;
//  5. chattr +j (FS_JOURNAL_DATA_FL): ext4_change_inode_journal_flag()
//     flushes (nothing is dirty) and switches the inode to the journalled
//     aops;
//  6. write BIG bytes at 0: ext4_write_begin() sees MAY_INLINE_DATA clear
//     and maps a block; ext4_journalled_write_end() sees inline data and,
//     without the fix, calls ext4_write_inline_data_end():
//     BUG_ON(pos + len > EXT4_I(inode)->i_inline_size) (60 here).
//
// With the fix, step 6 takes the block path and the program exits 0.
// Any step that does not leave the state it should is an error (exit 2):
// the run then says nothing about the bug.
//
// usage: repro MOUNTPOINT
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <unistd.h>

#define SMALL 16   /* fits in i_block: inline */
#define BIG 300    /* more than any 256-byte inode holds inline */

#ifndef EXT4_INLINE_DATA_FL
#define EXT4_INLINE_DATA_FL 0x10000000
#endif

static void die(const char *what)
{
	fprintf(stderr, "repro: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void fail(const char *what)
{
	fprintf(stderr, "repro: %s\n", what);
	exit(2);
}

static unsigned int flags_of(int fd)
{
	unsigned int flags = 0;

	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
		die("FS_IOC_GETFLAGS");
	return flags;
}

static void write_at0(int fd, size_t len, char fill, const char *step)
{
	char buf[BIG];
	ssize_t done;

	memset(buf, fill, len);
	done = pwrite(fd, buf, len, 0);
	if (done != (ssize_t)len) {
		fprintf(stderr, "repro: %s: pwrite %zu bytes: %zd (%s)\n", step, len, done,
			done < 0 ? strerror(errno) : "short");
		exit(2);
	}
}

static void step(const char *what, unsigned int flags)
{
	printf("repro: %-34s flags 0x%08x (inline %s)\n", what, flags,
	       flags & EXT4_INLINE_DATA_FL ? "yes" : "no");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	char path[4096];
	unsigned int flags;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: %s MOUNTPOINT\n", argv[0]);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/jinline", argv[1]);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die(path);

	write_at0(fd, SMALL, 'a', "1: small write");
	flags = flags_of(fd);
	step("1: small write", flags);
	if (!(flags & EXT4_INLINE_DATA_FL))
		fail("1: the file is not inline: is the image made with -O inline_data and 256-byte inodes?");

	write_at0(fd, BIG, 'b', "2: delalloc conversion");
	flags = flags_of(fd);
	step("2: big delalloc write", flags);
	if (!(flags & EXT4_INLINE_DATA_FL))
		fail("2: the big write moved the data out at once: is the filesystem mounted with delalloc?");

	if (ftruncate(fd, 0) < 0)
		die("3: ftruncate");
	flags = flags_of(fd);
	step("3: truncated to 0", flags);
	if (!(flags & EXT4_INLINE_DATA_FL))
		fail("3: the truncate dropped the inline data: the state is gone");

	if (mount(NULL, argv[1], NULL, MS_REMOUNT, "nodelalloc") < 0)
		die("4: remount nodelalloc");
	step("4: remounted nodelalloc", flags_of(fd));

	if (ioctl(fd, FS_IOC_SETFLAGS, &(unsigned int){flags | FS_JOURNAL_DATA_FL}) < 0)
		die("5: chattr +j (FS_IOC_SETFLAGS)");
	flags = flags_of(fd);
	step("5: chattr +j", flags);
	if (!(flags & FS_JOURNAL_DATA_FL) || !(flags & EXT4_INLINE_DATA_FL))
		fail("5: want both the journal-data and inline flags set");

	/* Without the fix the kernel stops here: kernel BUG in ext4_write_inline_data. */
	write_at0(fd, BIG, 'c', "6: journalled write");
	step("6: journalled write done", flags_of(fd));
	if (fsync(fd) < 0)
		die("6: fsync");
	close(fd);
	printf("repro: no BUG: ext4_journalled_write_end checked EXT4_STATE_MAY_INLINE_DATA\n");
	return 0;
}
