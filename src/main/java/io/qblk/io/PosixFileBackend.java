package io.qblk.io;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

/**
 * {@link IoBackend} on a file descriptor with pread/pwrite/fdatasync/fallocate through FFM. Every
 * open takes the image's {@link ImageLock} (released on close), except a {@link #openSibling sibling}
 * descriptor, which its first descriptor's lock covers.
 */
public final class PosixFileBackend implements FdBackend {
    private final int fd;
    private final ImageLock.Locked locked; // null: a sibling descriptor
    private final Path path;
    private final boolean readOnly;
    private final String name;
    private volatile boolean closed;

    private PosixFileBackend(int fd, ImageLock.Locked locked, Path path, boolean readOnly) {
        this.fd = fd;
        this.locked = locked;
        this.path = path;
        this.readOnly = readOnly;
        this.name = path.toString();
    }

    /** Opens an existing file. */
    public static PosixFileBackend open(Path path, boolean readOnly) throws IOException {
        return open(path, readOnly, false);
    }

    /** Opens a file, creating it (mode 0644) when {@code create} is set. */
    public static PosixFileBackend open(Path path, boolean readOnly, boolean create) throws IOException {
        return open(path, readOnly, create, 0);
    }

    /** Opens a file with {@code extraFlags} (e.g. {@link LibC#O_DIRECT}) added to the open flags. */
    public static PosixFileBackend open(Path path, boolean readOnly, boolean create, int extraFlags) throws IOException {
        ImageLock.Locked l = ImageLock.open(path, readOnly, create, extraFlags);
        return new PosixFileBackend(l.fd(), l, path, readOnly);
    }

    /**
     * Another descriptor of the file {@code first} has open, with {@code extraFlags} (e.g.
     * {@link LibC#O_DIRECT}), for the same user: {@code first}'s lock covers it. Close it before {@code first}.
     */
    public static PosixFileBackend openSibling(PosixFileBackend first, int extraFlags) throws IOException {
        if (first.locked == null) throw new IllegalArgumentException(first + " is itself a sibling descriptor");
        return new PosixFileBackend(ImageLock.openSibling(first.locked, first.path, first.readOnly, extraFlags), null, first.path, first.readOnly);
    }

    @Override
    public int fd() {
        return fd;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        if (!dst.isNative()) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment bounce = a.allocate(dst.byteSize(), 4096);
                read(offset, bounce);
                dst.copyFrom(bounce);
            }
            return;
        }
        long done = 0, len = dst.byteSize();
        while (done < len) {
            long n = LibC.pread(fd, dst.asSlice(done), len - done, offset + done);
            if (n < 0) {
                int e = LibC.errno();
                if (e == Errno.EINTR) continue;
                throw new ErrnoException("pread " + name + " at " + (offset + done), e);
            }
            if (n == 0) { // past end of file
                dst.asSlice(done).fill((byte) 0);
                return;
            }
            done += n;
        }
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        if (!src.isNative()) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment bounce = a.allocate(src.byteSize(), 4096);
                bounce.copyFrom(src);
                write(offset, bounce);
            }
            return;
        }
        long done = 0, len = src.byteSize();
        while (done < len) {
            long n = LibC.pwrite(fd, src.asSlice(done), len - done, offset + done);
            if (n < 0) {
                int e = LibC.errno();
                if (e == Errno.EINTR) continue;
                throw new ErrnoException("pwrite " + name + " at " + (offset + done), e);
            }
            done += n;
        }
    }

    @Override
    public void datasync() throws IOException {
        if (LibC.fdatasync(fd) != 0) throw new ErrnoException("fdatasync " + name, LibC.errno());
    }

    @Override
    public void allocate(long offset, long length) throws IOException {
        if (length == 0) return;
        if (LibC.fallocate(fd, 0, offset, length) != 0) throw new ErrnoException("fallocate " + name, LibC.errno());
    }

    @Override
    public void punchHole(long offset, long length) throws IOException {
        if (length == 0) return;
        int mode = LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE;
        if (LibC.fallocate(fd, mode, offset, length) != 0) {
            int e = LibC.errno();
            if (e != Errno.EOPNOTSUPP) throw new ErrnoException("punch hole " + name, e);
            // The filesystem cannot punch holes: write zeroes instead so the range still reads as zero.
            writeZeroBytes(offset, length);
        }
    }

    @Override
    public void zeroRange(long offset, long length) throws IOException {
        if (length == 0) return;
        if (!FileZeroing.zeroRange((m, o, l) -> FileZeroing.syscall(fd, m, o, l), offset, length, name)) writeZeroBytes(offset, length);
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public synchronized void close() throws IOException {
        if (closed) return;
        closed = true;
        if (locked != null) locked.close(name);
        else if (LibC.close(fd) != 0) throw new ErrnoException("close " + name, LibC.errno());
    }

    @Override
    public String toString() {
        return name;
    }
}
