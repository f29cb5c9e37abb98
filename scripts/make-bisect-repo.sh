#!/usr/bin/env bash
# Make a small git repository for a real `harness bisect --fix` run.
#
#   scripts/make-bisect-repo.sh DEST [SOURCE_TREE]
#
# DEST gets a copy of Debian's linux-source 6.1.192 tree (default: the tree the
# harness unpacks for debian-src:6.1.192, fetched when missing) and 7 commits:
#
#   base   the whole tree, as Debian ships it (ext4_inline reproduces)
#   1-3    harmless comment-only changes in fs/ (ext4 inline.c, xfs, ext2)
#   4      THE FIX: ext4 reads EXT4_STATE_MAY_INLINE_DATA under xattr_sem in
#          its write_begin/write_end (delalloc, nodelalloc, journalled), so a
#          buffered write can no longer see the transient state that
#          page_mkwrite's failed inline conversion leaves (ext4_inline stays
#          clean from here on)
#   5-6    more harmless comment-only changes in fs/ext4
#
# Author and dates are fixed, so the commit ids are the same on every machine
# for the same source tree.  Then:
#
#   harness bisect ext4_inline --kernel-source git:DEST --good base --bad tip --fix --runs 2
#
# must name commit 4.  The tags `base`, `fix` and `tip` mark the commits; the
# bisection never reads `fix`, it is there to check the answer.
set -euo pipefail

dest=${1:?usage: make-bisect-repo.sh DEST [SOURCE_TREE]}
src=${2:-}
here=$(cd "$(dirname "$0")/.." && pwd)

if [[ -z $src ]]; then
    src=$(cd "$here" && python3 -c 'from harness.kernels import sources; print(sources.DebianSource().tree("6.1.192").pristine)')
fi
[[ -f $src/Makefile && -f $src/fs/ext4/inode.c ]] || { echo "make-bisect-repo: $src is not a 6.1 kernel tree" >&2; exit 2; }
if [[ -e $dest ]]; then
    echo "make-bisect-repo: $dest exists; remove it first" >&2
    exit 2
fi

echo "copying $src -> $dest"
cp -a "$src" "$dest"
cd "$dest"

git init -q -b master .
git config core.autocrlf false
git config gc.auto 0
git config advice.detachedHead false

n=0
commit() {  # commit AUTHOR_NAME AUTHOR_EMAIL SUBJECT BODY
    n=$((n + 1))
    local date="2026-01-0$((n < 10 ? n : 9))T12:00:00+00:00"
    GIT_AUTHOR_NAME=$1 GIT_AUTHOR_EMAIL=$2 GIT_AUTHOR_DATE=$date \
    GIT_COMMITTER_NAME="Bisect Repo" GIT_COMMITTER_EMAIL=bisect-repo@example.invalid GIT_COMMITTER_DATE=$date \
        git commit -q -m "$3" -m "$4"
    echo "  $(git rev-parse --short=12 HEAD) $3"
}

insert_comment() {  # insert_comment FILE TEXT...: lines at the end of the file's header comment
    local file=$1
    shift
    python3 - "$file" "$@" <<'EOF'
import sys
path, texts = sys.argv[1], sys.argv[2:]
lines = open(path).read().split("\n")
end = next(i for i, line in enumerate(lines) if line.strip() == "*/")
lines[end:end] = [" *"] + [f" * {t}" for t in texts]
open(path, "w").write("\n".join(lines))
EOF
    git add -f "$file"  # Debian's top-level .gitignore ignores everything
}

echo "git add (the whole tree: a minute or two)"
git add -A -f
commit "Bisect Repo" bisect-repo@example.invalid "Import Debian linux-source-6.1 6.1.192" \
    "The tree of Debian's linux-source-6.1 package, as unpacked by the harness (debian-src:6.1.192)."
git tag base

insert_comment fs/ext4/inline.c "Inline data lives in i_block and in the system.data xattr; both" \
    "change under xattr_sem (ext4_write_lock_xattr)."
commit "Alice Comment" alice@example.invalid "ext4: inline: say which lock covers the inline data" \
    "Comment only."

insert_comment fs/xfs/xfs_file.c "Buffered writes go through iomap; page faults through xfs_filemap_fault()."
commit "Bob Comment" bob@example.invalid "xfs: file: point at the fault handler in the header" \
    "Comment only."

insert_comment fs/ext2/file.c "ext2 has no delayed allocation: blocks are allocated in get_block."
commit "Carol Comment" carol@example.invalid "ext2: file: note that there is no delalloc" \
    "Comment only."

git apply --index <<'EOF'
--- a/fs/ext4/inode.c
+++ b/fs/ext4/inode.c
@@ -1177,6 +1177,26 @@
 }
 #endif
 
+/*
+ * ext4_convert_inline_data() (page_mkwrite) destroys the inline data, tries
+ * to allocate a block and restores the inline data when that fails, all
+ * under xattr_sem.  EXT4_STATE_MAY_INLINE_DATA is clear in that window: a
+ * buffered write that tested it without the lock took the block path in
+ * write_begin and then found inline data again in write_end, and
+ * ext4_write_inline_data_end() hit BUG_ON(pos + len > i_inline_size).
+ * Read the state under xattr_sem so that write_begin and write_end never
+ * see the transient state.
+ */
+static bool ext4_may_inline_data_locked(struct inode *inode)
+{
+	bool may_inline;
+
+	down_read(&EXT4_I(inode)->xattr_sem);
+	may_inline = ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA);
+	up_read(&EXT4_I(inode)->xattr_sem);
+	return may_inline;
+}
+
 static int ext4_write_begin(struct file *file, struct address_space *mapping,
 			    loff_t pos, unsigned len,
 			    struct page **pagep, void **fsdata)
@@ -1202,7 +1222,7 @@
 	from = pos & (PAGE_SIZE - 1);
 	to = from + len;
 
-	if (ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)) {
+	if (ext4_may_inline_data_locked(inode)) {
 		ret = ext4_try_to_write_inline_data(mapping, inode, pos, len,
 						    pagep);
 		if (ret < 0)
@@ -1344,7 +1364,7 @@
 	trace_ext4_write_end(inode, pos, len, copied);
 
 	if (ext4_has_inline_data(inode) &&
-	    ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA))
+	    ext4_may_inline_data_locked(inode))
 		return ext4_write_inline_data_end(inode, pos, len, copied, page);
 
 	copied = block_write_end(file, mapping, pos, len, copied, page, fsdata);
@@ -1452,7 +1472,7 @@
 	BUG_ON(!ext4_handle_valid(handle));
 
 	if (ext4_has_inline_data(inode) &&
-	    ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA))
+	    ext4_may_inline_data_locked(inode))
 		return ext4_write_inline_data_end(inode, pos, len, copied, page);
 
 	if (unlikely(copied < len) && !PageUptodate(page)) {
@@ -3008,7 +3028,7 @@
 	*fsdata = (void *)0;
 	trace_ext4_da_write_begin(inode, pos, len);
 
-	if (ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA)) {
+	if (ext4_may_inline_data_locked(inode)) {
 		ret = ext4_da_write_inline_data_begin(mapping, inode, pos, len,
 						      pagep, fsdata);
 		if (ret < 0)
@@ -3092,7 +3112,7 @@
 	trace_ext4_da_write_end(inode, pos, len, copied);
 
 	if (write_mode != CONVERT_INLINE_DATA &&
-	    ext4_test_inode_state(inode, EXT4_STATE_MAY_INLINE_DATA) &&
+	    ext4_may_inline_data_locked(inode) &&
 	    ext4_has_inline_data(inode))
 		return ext4_write_inline_data_end(inode, pos, len, copied, page);
 
EOF
commit "Ada Fixer" ada.fixer@example.invalid \
    "ext4: read the may-inline state under xattr_sem in write_begin/write_end" \
    "page_mkwrite's failed inline conversion clears EXT4_STATE_MAY_INLINE_DATA
while it runs (under xattr_sem) and sets it again when it restores the
inline data.  A buffered write that saw the transient state took the
block (delalloc) path in write_begin, then found inline data in write_end:
kernel BUG in ext4_write_inline_data(_end).  Read the state under the lock
in the delalloc, nodelalloc and journalled write_begin/write_end."
git tag fix

insert_comment fs/ext4/page-io.c "Bios are submitted from ext4_io_submit(); completion runs ext4_end_bio()."
commit "Dave Comment" dave@example.invalid "ext4: page-io: name the submit and completion paths" \
    "Comment only."

insert_comment fs/ext4/super.c "Mount options are parsed by ext4_parse_param()."
commit "Erin Comment" erin@example.invalid "ext4: super: point at the option parser" \
    "Comment only."
git tag tip

git log --oneline --no-decorate
echo "done: $dest (tags base, fix, tip)"
