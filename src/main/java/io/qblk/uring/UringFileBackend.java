package io.qblk.uring;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.io.IoBackend;
import io.qblk.io.LibC;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/**
 * {@link IoBackend} whose reads, writes, fdatasync and fallocate go through a {@link RingThread}'s
 * io_uring (size and truncate use plain libc calls). A ublk queue passes its own ring thread, so the
 * qcow2 engine's data and metadata I/O share the ring with the queue's ublk commands.
 */
public final class UringFileBackend implements IoBackend {
    private static final long MAX_CHUNK = 1L << 30;

    private final RingThread ring;
    private final boolean ownsRing;
    private final int fd;
    private final boolean readOnly;
    private final String name;
    private volatile boolean closed;

    private UringFileBackend(RingThread ring, boolean ownsRing, int fd, boolean readOnly, String name) {
        this.ring = ring;
        this.ownsRing = ownsRing;
        this.fd = fd;
        this.readOnly = readOnly;
        this.name = name;
    }

    /** Opens {@code path} (creating it with mode 0644 when {@code create}) on an existing ring thread. */
    public static UringFileBackend open(RingThread ring, Path path, boolean readOnly, boolean create) throws IOException {
        return new UringFileBackend(ring, false, openFd(path, readOnly, create), readOnly, path.toString());
    }

    private static int openFd(Path path, boolean readOnly, boolean create) throws IOException {
        int flags = (readOnly ? LibC.O_RDONLY : LibC.O_RDWR) | LibC.O_CLOEXEC | (create ? LibC.O_CREAT : 0);
        int fd = LibC.open(path.toString(), flags, 0644);
        if (fd < 0) {
            int e = LibC.errno();
            if (e == Errno.ENOENT) throw new NoSuchFileException(path.toString());
            throw new ErrnoException("open " + path, e);
        }
        return fd;
    }

    /** Opens {@code path} on a ring thread of its own (64 entries), closed together with the file. */
    public static UringFileBackend open(Path path, boolean readOnly) throws IOException {
        RingThread ring = RingThread.start("uring-" + path.getFileName(), RingOptions.defaults().withEntries(64));
        try {
            return new UringFileBackend(ring, true, openFd(path, readOnly, false), readOnly, path.toString());
        } catch (IOException | RuntimeException e) {
            ring.close();
            throw e;
        }
    }

    public int fd() {
        return fd;
    }

    public RingThread ringThread() {
        return ring;
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
        UringRequest r = ring.acquire();
        try {
            long done = 0, len = dst.byteSize();
            while (done < len) {
                MemorySegment part = done == 0 && len <= MAX_CHUNK ? dst : dst.asSlice(done, Math.min(MAX_CHUNK, len - done));
                ring.execute(r.prepRead(fd, part, offset + done));
                int n = r.result();
                if (n < 0) {
                    if (-n == Errno.EINTR || -n == Errno.EAGAIN) continue;
                    throw new ErrnoException("read " + name + " at " + (offset + done), -n);
                }
                if (n == 0) { // past end of file
                    dst.asSlice(done).fill((byte) 0);
                    return;
                }
                done += n;
            }
        } finally {
            ring.release(r);
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
        UringRequest r = ring.acquire();
        try {
            long done = 0, len = src.byteSize();
            while (done < len) {
                MemorySegment part = done == 0 && len <= MAX_CHUNK ? src : src.asSlice(done, Math.min(MAX_CHUNK, len - done));
                ring.execute(r.prepWrite(fd, part, offset + done));
                int n = r.result();
                if (n < 0) {
                    if (-n == Errno.EINTR || -n == Errno.EAGAIN) continue;
                    throw new ErrnoException("write " + name + " at " + (offset + done), -n);
                }
                if (n == 0) throw new ErrnoException("write " + name + " at " + (offset + done) + " made no progress", Errno.EIO);
                done += n;
            }
        } finally {
            ring.release(r);
        }
    }

    @Override
    public void datasync() throws IOException {
        UringRequest r = ring.acquire();
        try {
            ring.execute(r.prepFsync(fd, true));
            r.checkedResult("fdatasync " + name);
        } finally {
            ring.release(r);
        }
    }

    @Override
    public long size() throws IOException {
        long s = LibC.sizeOf(fd);
        if (s < 0) throw new ErrnoException("lseek " + name, LibC.errno());
        return s;
    }

    @Override
    public void truncate(long length) throws IOException {
        if (LibC.ftruncate(fd, length) != 0) throw new ErrnoException("ftruncate " + name, LibC.errno());
    }

    @Override
    public void allocate(long offset, long length) throws IOException {
        if (length == 0) return;
        fallocate(0, offset, length, "fallocate ");
    }

    @Override
    public void punchHole(long offset, long length) throws IOException {
        if (length == 0) return;
        try {
            fallocate(LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, offset, length, "punch hole ");
        } catch (ErrnoException e) {
            if (e.errno() != Errno.EOPNOTSUPP) throw e;
            // The filesystem cannot punch holes: write zeroes so the range still reads as zero.
            try (Arena a = Arena.ofConfined()) {
                long chunk = Math.min(length, 1 << 20);
                MemorySegment z = a.allocate(chunk, 4096);
                for (long o = 0; o < length; o += chunk) write(offset + o, z.asSlice(0, Math.min(chunk, length - o)));
            }
        }
    }

    private void fallocate(int mode, long offset, long length, String what) throws IOException {
        UringRequest r = ring.acquire();
        try {
            ring.execute(r.prepFallocate(fd, mode, offset, length));
            r.checkedResult(what + name + " at " + offset + "+" + length);
        } finally {
            ring.release(r);
        }
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public synchronized void close() throws IOException {
        if (closed) return;
        closed = true;
        try {
            if (LibC.close(fd) != 0) throw new ErrnoException("close " + name, LibC.errno());
        } finally {
            if (ownsRing) ring.close();
        }
    }

    @Override
    public String toString() {
        return name + " (io_uring)";
    }
}
