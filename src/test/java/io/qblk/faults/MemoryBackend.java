package io.qblk.faults;

import io.qblk.io.IoBackend;
import io.qblk.io.Errno;
import io.qblk.io.ErrnoException;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/** A file held in a growable byte array: the live image of a recorded workload. */
final class MemoryBackend implements IoBackend {
    private byte[] data;
    private long size;

    MemoryBackend() {
        this(new byte[0], 0);
    }

    MemoryBackend(byte[] data, long size) {
        this.data = data;
        this.size = size;
    }

    /** A copy of the current contents, exactly {@link #size()} bytes long. */
    synchronized byte[] snapshot() {
        return Arrays.copyOf(data, (int) size);
    }

    @Override
    public synchronized void read(long offset, MemorySegment dst) throws ErrnoException {
        if (offset < 0) throw new ErrnoException("pread at " + offset, Errno.EINVAL);
        long n = dst.byteSize();
        long have = Math.max(0, Math.min(n, size - offset));
        if (have > 0) MemorySegment.copy(data, (int) offset, dst, ValueLayout.JAVA_BYTE, 0, (int) have);
        if (have < n) dst.asSlice(have).fill((byte) 0);
    }

    @Override
    public synchronized void write(long offset, MemorySegment src) throws ErrnoException {
        if (offset < 0) throw new ErrnoException("pwrite at " + offset, Errno.EINVAL);
        long end = offset + src.byteSize();
        ensure(end);
        MemorySegment.copy(src, ValueLayout.JAVA_BYTE, 0, data, (int) offset, (int) src.byteSize());
        size = Math.max(size, end);
    }

    /** Files past 1 GiB are refused like a file system without space: EFBIG. */
    private void ensure(long end) throws ErrnoException {
        if (end > (1L << 30) || end < 0) throw new ErrnoException("pwrite at " + end, Errno.EFBIG);
        if (end > data.length) data = Arrays.copyOf(data, (int) Math.max(end, Math.min(Integer.MAX_VALUE - 64, data.length * 3L / 2)));
    }

    @Override public void datasync() {}

    @Override public synchronized long size() { return size; }

    @Override
    public synchronized void truncate(long length) throws ErrnoException {
        ensure(length);
        if (length < size) Arrays.fill(data, (int) length, (int) size, (byte) 0);
        size = length;
    }

    @Override
    public synchronized void allocate(long offset, long length) throws ErrnoException {
        if (offset + length > size) truncate(offset + length);
    }

    @Override
    public synchronized void punchHole(long offset, long length) {
        long end = Math.min(size, offset + length);
        if (end > offset) Arrays.fill(data, (int) offset, (int) end, (byte) 0);
    }

    @Override public boolean readOnly() { return false; }

    @Override public void close() {}

    @Override public String toString() { return "memory-image"; }
}
