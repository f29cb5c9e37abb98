// Fires the WARN_ON or the BUG_ON of the debug patch
// 0001-ext4-DEBUG-inlined-WARN_ON-and-BUG_ON.patch: both sit in static
// functions of fs/ext4/ioctl.c that the build inlines into __ext4_ioctl(),
// reached through two private ioctls given the magic argument.
//
// usage: repro DIR warn|bug
// Exit 0 after the WARNING's ioctl returned (the kernel goes on); the BUG's
// ioctl does not return (the oops kills the task, or oops=panic the guest).
// Exit 2 on a setup error, 3 when the kernel lacks the patch (ENOTTY).
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/types.h>
#include <unistd.h>

#define EXT4_IOC_DEBUG_WARN_ON _IOW('f', 240, __u32)
#define EXT4_IOC_DEBUG_BUG_ON _IOW('f', 241, __u32)
#define MAGIC 0x1badcafeUL

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[2], "warn") && strcmp(argv[2], "bug"))) {
		fprintf(stderr, "usage: %s DIR warn|bug\n", argv[0]);
		return 2;
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/inlined-title", argv[1]);
	int fd = open(path, O_RDWR | O_CREAT, 0644);
	if (fd < 0) {
		fprintf(stderr, "open %s: %s\n", path, strerror(errno));
		return 2;
	}
	unsigned long cmd = strcmp(argv[2], "warn") ? EXT4_IOC_DEBUG_BUG_ON : EXT4_IOC_DEBUG_WARN_ON;
	if (ioctl(fd, cmd, 0UL) != 0) {  // a harmless argument first: is the patch there?
		fprintf(stderr, "ioctl %#lx: %s%s\n", cmd, strerror(errno),
			errno == ENOTTY ? " (the kernel lacks the debug patch)" : "");
		return errno == ENOTTY ? 3 : 2;
	}
	printf("firing the %s (ioctl %#lx, arg %#lx)\n", argv[2], cmd, MAGIC);
	fflush(stdout);
	if (ioctl(fd, cmd, MAGIC) != 0) {
		fprintf(stderr, "ioctl %#lx: %s\n", cmd, strerror(errno));
		return 2;
	}
	printf("the %s's ioctl returned\n", argv[2]);
	close(fd);
	return 0;
}
