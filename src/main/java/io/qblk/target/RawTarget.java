package io.qblk.target;

import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import io.qblk.io.IoBackend;
import io.qblk.io.LibC;
import io.qblk.io.PosixFileBackend;
import io.qblk.qcow2.Preallocation;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.List;

/** A raw image file served as is (the "loop" target). */
public final class RawTarget implements BlockTarget {
    private final IoBackend file;
    private final long size;

    public RawTarget(IoBackend file) throws IOException {
        this.file = file;
        long s = file.size();
        this.size = s - s % 512;
    }

    /**
     * Creates a new raw file of {@code size} bytes (the file must not exist: O_EXCL), sparse (OFF),
     * reserved (FALLOC) or written with zeroes (FULL). A create that fails (EFBIG, ENOSPC) leaves
     * no file behind. The CLI's {@code create -f raw} and the service's {@code POST /images}.
     */
    public static void create(Path file, long size, Preallocation prealloc) throws IOException {
        if (prealloc == Preallocation.METADATA) throw new IllegalArgumentException("preallocation for raw must be off, falloc or full, not metadata");
        PosixFileBackend f = PosixFileBackend.open(file, false, true, LibC.O_EXCL);
        try (f) {
            f.truncate(size);
            if (prealloc == Preallocation.FALLOC) f.allocate(0, size);
            if (prealloc == Preallocation.FULL) {
                try (Arena arena = Arena.ofConfined()) {
                    MemorySegment zero = arena.allocate(1 << 20, 4096);
                    for (long o = 0; o < size; o += zero.byteSize()) f.write(o, zero.asSlice(0, Math.min(zero.byteSize(), size - o)));
                }
            }
            f.datasync();
        } catch (IOException | RuntimeException e) {
            Files.deleteIfExists(file);
            throw e;
        }
    }

    @Override public long size() { return size; }
    @Override public boolean readOnly() { return file.readOnly(); }
    @Override public void read(long offset, MemorySegment dst) throws IOException { file.read(offset, dst); }

    /** One read of the file at the same offset (nothing to hold: a raw file has no mapping). */
    @Override
    public boolean planRead(long offset, MemorySegment dst, io.qblk.io.FilePlan plan) {
        if (offset < 0 || dst.byteSize() <= 0 || offset > size - dst.byteSize()) return false;
        int fd = file.plainFd(offset, dst);
        if (fd < 0) return false;
        plan.set(file, fd, offset, null, 0);
        return true;
    }

    /** One write of the file at the same offset (nothing to hold; {@link #flush} always syncs, so W2 holds as is). */
    @Override
    public boolean planWrite(long offset, MemorySegment src, io.qblk.io.FilePlan plan) {
        if (file.readOnly() || offset < 0 || src.byteSize() <= 0 || offset > size - src.byteSize()) return false;
        int fd = file.plainFd(offset, src);
        if (fd < 0) return false;
        plan.set(file, fd, offset, null, 0);
        return true;
    }

    @Override
    public void write(long offset, MemorySegment src, boolean fua) throws IOException {
        writable("write");
        file.write(offset, src);
        if (fua) file.datasync();
    }

    @Override public void flush() throws IOException { if (!file.readOnly()) file.datasync(); }

    @Override
    public void discard(long offset, long length) throws IOException {
        writable("discard");
        file.punchHole(offset, length);
    }

    /** Punches the range (it reads as zeroes); without {@code mayUnmap} allocates it again, as qemu's raw driver does. */
    @Override
    public void writeZeroes(long offset, long length, boolean mayUnmap) throws IOException {
        writable("write zeroes");
        file.punchHole(offset, length);
        if (!mayUnmap) file.allocate(offset, length);
    }

    @Override
    public List<Extent> blockStatus(long offset, long length) throws IOException {
        // holes of a sparse file read as zeroes (SEEK_DATA/SEEK_HOLE), as qemu-nbd reports them
        List<Extent> out = new java.util.ArrayList<>();
        for (IoBackend.Extent x : file.extents(offset, length)) out.add(new Extent(x.offset(), x.length(), !x.data(), !x.data()));
        return out;
    }

    @Override
    public String directDisabledReason() {
        return file.directDisabledReason();
    }

    private void writable(String op) throws ErrnoException {
        if (file.readOnly()) throw new ErrnoException(op + " on a read-only image", Errno.EROFS);
    }

    @Override public void close() throws IOException { file.close(); }
}
