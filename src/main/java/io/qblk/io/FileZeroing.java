package io.qblk.io;

/** fallocate-based zeroing of a file range, shared by the file backends (syscall and io_uring alike). */
public final class FileZeroing {
    /** Set once the file system answered EOPNOTSUPP for FALLOC_FL_ZERO_RANGE (e.g. tmpfs). */
    private static volatile boolean zeroRangeUnsupported;

    private FileZeroing() {}

    /** One fallocate(2) of a backend's file, however the backend issues it: 0, or the errno it failed with. */
    @FunctionalInterface
    public interface Fallocate {
        int fallocate(int mode, long offset, long length) throws java.io.IOException;
    }

    /**
     * Makes [offset, offset+length) of the file read as zeroes and the file at least offset+length
     * long: FALLOC_FL_ZERO_RANGE, or else a punched hole plus an allocation for the length. Returns
     * false when the file system supports neither (the caller writes zeroes).
     */
    public static boolean zeroRange(Fallocate f, long offset, long length, String name) throws java.io.IOException {
        if (!zeroRangeUnsupported) {
            int e = f.fallocate(LibC.FALLOC_FL_ZERO_RANGE, offset, length);
            if (e == 0) return true;
            if (e != Errno.EOPNOTSUPP) throw new ErrnoException("fallocate zero range " + name + " at " + offset + "+" + length, e);
            zeroRangeUnsupported = true;
        }
        int e = f.fallocate(LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, offset, length);
        if (e != 0) {
            if (e == Errno.EOPNOTSUPP) return false;
            throw new ErrnoException("punch hole " + name + " at " + offset + "+" + length, e);
        }
        // The hole reads as zeroes; allocating it (mode 0) also grows a file that ends inside the
        // range, and never shrinks one that a concurrent writer has grown further.
        e = f.fallocate(0, offset, length);
        if (e != 0) {
            if (e == Errno.EOPNOTSUPP) return false;
            throw new ErrnoException("fallocate " + name + " at " + offset + "+" + length, e);
        }
        return true;
    }

    /** {@link Fallocate} for a descriptor, with the syscall on the calling thread. */
    public static int syscall(int fd, int mode, long offset, long length) {
        return LibC.fallocate(fd, mode, offset, length) == 0 ? 0 : LibC.errno();
    }
}
