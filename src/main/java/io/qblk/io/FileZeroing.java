package io.qblk.io;

/** fallocate-based zeroing of a file range, shared by the file backends. */
final class FileZeroing {
    /** Set once the file system answered EOPNOTSUPP for FALLOC_FL_ZERO_RANGE (e.g. tmpfs). */
    private static volatile boolean zeroRangeUnsupported;

    private FileZeroing() {}

    /**
     * Makes [offset, offset+length) of {@code fd} read as zeroes and the file at least offset+length
     * long: FALLOC_FL_ZERO_RANGE, or else a punched hole plus an allocation for the length. Returns
     * false when the file system supports neither (the caller writes zeroes).
     */
    static boolean zeroRange(int fd, long offset, long length, String name) throws ErrnoException {
        if (!zeroRangeUnsupported) {
            if (LibC.fallocate(fd, LibC.FALLOC_FL_ZERO_RANGE, offset, length) == 0) return true;
            int e = LibC.errno();
            if (e != Errno.EOPNOTSUPP) throw new ErrnoException("fallocate zero range " + name + " at " + offset + "+" + length, e);
            zeroRangeUnsupported = true;
        }
        if (LibC.fallocate(fd, LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, offset, length) != 0) {
            int e = LibC.errno();
            if (e == Errno.EOPNOTSUPP) return false;
            throw new ErrnoException("punch hole " + name + " at " + offset + "+" + length, e);
        }
        // The hole reads as zeroes; allocating it (mode 0) also grows a file that ends inside the
        // range, and never shrinks one that a concurrent writer has grown further.
        if (LibC.fallocate(fd, 0, offset, length) != 0) {
            int e = LibC.errno();
            if (e == Errno.EOPNOTSUPP) return false;
            throw new ErrnoException("fallocate " + name + " at " + offset + "+" + length, e);
        }
        return true;
    }
}
