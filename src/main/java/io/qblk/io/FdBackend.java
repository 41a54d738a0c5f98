package io.qblk.io;

import java.io.IOException;

/**
 * An {@link IoBackend} on one file descriptor: the operations that are plain libc calls on the
 * descriptor whatever carries the reads and writes (pread/pwrite or an io_uring), in one place.
 */
public interface FdBackend extends IoBackend {

    /** The descriptor every call goes to. */
    int fd();

    /** The file's name, as error messages show it. */
    String name();

    @Override
    default int plainFd(long offset, java.lang.foreign.MemorySegment dst) {
        return dst.isNative() && dst.byteSize() > 0 ? fd() : -1;
    }

    @Override
    default long nextData(long offset) throws IOException {
        return seekExtent(offset, LibC.SEEK_DATA);
    }

    @Override
    default long nextHole(long offset) throws IOException {
        return seekExtent(offset, LibC.SEEK_HOLE);
    }

    @Override
    default long size() throws IOException {
        long s = LibC.sizeOf(fd());
        if (s < 0) throw new ErrnoException("lseek " + name(), LibC.errno());
        return s;
    }

    @Override
    default void truncate(long length) throws IOException {
        if (LibC.ftruncate(fd(), length) != 0) throw new ErrnoException("ftruncate " + name(), LibC.errno());
    }

    /** SEEK_DATA / SEEK_HOLE from {@code offset}, clamped to the file size. */
    private long seekExtent(long offset, int whence) throws IOException {
        long size = size();
        if (offset >= size) return size;
        long r = LibC.seek(fd(), offset, whence);
        if (r >= 0) return Math.min(r, size);
        int e = LibC.errno();
        if (e == Errno.ENXIO) return size;
        if (e == Errno.EINVAL) return whence == LibC.SEEK_DATA ? offset : size; // no SEEK_DATA/SEEK_HOLE here: all data
        throw new ErrnoException("lseek " + name(), e);
    }
}
